//! The producer's per-partition batches: the open batch records are added
//! to, full batches waiting for their partition's in-flight request to end,
//! and the sequence numbers of an idempotent producer.
//!
//! Sequence numbers are assigned when a batch is taken for a request, not when
//! it is opened. A request the broker refused after validating it (nothing
//! was stored) gives its sequence numbers back when no later request took
//! any. Any other failure leaves a gap in the partition's sequence that the
//! broker would never see filled, so the producer bumps its epoch (Kafka's
//! KIP-360): once no request is in flight it asks the broker for the next
//! epoch of its id, every partition's sequence restarts at 0, and the
//! batches that were refused only because they came behind the failed one
//! (out of order) are sent again, first in their partition's queue, their
//! header re-stamped with the new epoch and sequence. The failed batch
//! itself fails to its caller: after a timeout or a storage error it may or
//! may not have been stored, and sending it again could store it twice.
//!
//! An idempotent producer keeps up to `max_in_flight_requests` requests per
//! partition in flight (the broker appends them in sequence order whatever
//! order they arrive in). The first request of a producer id on a partition
//! goes alone: until the broker knows the producer there, it has no sequence
//! to order by. At most [`BATCHES_REMEMBERED`] of its batches are in flight
//! per partition, however they are split into requests: the broker remembers
//! that many per producer, so a retry of any of them is still recognised as
//! a duplicate.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use weir_log::batch::BatchBuilder;

use super::delivery::{BatchCompleter, DeliveryFuture};
use super::error::ClientError;
use super::partitioner::partition_for_key;
use super::producer::{ProducerConfig, ProducerRecord};
use weir_proto::sequence::{increment_sequence, BATCHES_REMEMBERED};

/// Builders kept per partition for reuse, so a warm producer allocates no
/// record buffers.
const SPARE_BUILDERS_MAX: usize = 4;

/// A batch being filled or waiting to be sent.
#[derive(Debug)]
pub(crate) struct PendingBatch {
    pub(crate) builder: BatchBuilder,
    pub(crate) created: Instant,
    pub(crate) records: u32,
    pub(crate) reserved_bytes: usize,
    /// Settles the delivery futures of the batch's records.
    pub(crate) done: BatchCompleter,
    /// The batch as last sent, kept so a batch sent again under a new epoch
    /// is re-stamped rather than encoded (and compressed) again.
    pub(crate) encoded: Option<Bytes>,
}

impl PendingBatch {
    /// Whether a record of `size_bytes` would push this non-empty batch past
    /// `batch.size` (Kafka's rule: it starts the next batch instead, so
    /// batches stay within the size and under the broker's `max.message.bytes`).
    fn would_overflow(&self, size_bytes: usize, config: &ProducerConfig) -> bool {
        self.records > 0
            && self.builder.estimated_size_bytes() + size_bytes > config.batch_size_bytes
    }
}

#[derive(Debug, Default)]
pub(crate) struct PartitionState {
    open: Option<PendingBatch>,
    full: VecDeque<PendingBatch>,
    /// The numbers of the requests in flight, in the order they were taken.
    in_flight: VecDeque<u64>,
    /// Batches in those requests.
    in_flight_batches: usize,
    /// The number the next request taken gets.
    next_request: u64,
    /// A request of the current producer id was stored on this partition:
    /// more than one may be in flight.
    confirmed: bool,
    next_sequence: i32,
    /// A request of the current epoch failed here while later ones were in
    /// flight: the broker refuses those as out of order, and they wait for
    /// the epoch bump.
    gap: bool,
    /// Batches refused only because a batch ahead of them failed, by
    /// request number: sent again, in that order, after the epoch bump.
    held: Vec<(u64, Vec<PendingBatch>)>,
    spare: Vec<BatchBuilder>,
}

#[derive(Debug)]
pub(crate) struct TopicState {
    pub(crate) name: Arc<str>,
    partitions: Vec<PartitionState>,
    /// Partition of records without a key, until its batch fills.
    sticky: u32,
    /// When the partition count was last described.
    described_at: Instant,
}

/// How fresh the partition counts an append may use are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Metadata {
    /// As known: an append asks for the topic to be described again (returns
    /// `None`) when it is older than `metadata_max_age` or the record names a
    /// partition beyond it.
    Cached,
    /// Just described: a partition beyond it is the caller's error.
    Fresh,
}

impl TopicState {
    pub(crate) fn new(name: &str, partitions: u32) -> TopicState {
        TopicState {
            name: Arc::from(name),
            partitions: (0..partitions).map(|_| PartitionState::default()).collect(),
            sticky: fastrand::u32(..partitions.max(1)),
            described_at: Instant::now(),
        }
    }

    /// A description failed: what is known serves until the next
    /// `metadata_max_age`, rather than every record asking again.
    pub(crate) fn description_failed(&mut self) {
        self.described_at = Instant::now();
    }

    /// The topic was described again with `partitions`. A topic only grows:
    /// a smaller count (a broker that has not applied the growth yet) keeps
    /// the partitions known, whose batches may be in flight.
    pub(crate) fn described(&mut self, partitions: u32) {
        self.described_at = Instant::now();
        let partitions = usize::try_from(partitions).unwrap_or(usize::MAX);
        if partitions > self.partitions.len() {
            self.partitions
                .resize_with(partitions, PartitionState::default);
        }
    }

    fn partition_count(&self) -> u32 {
        u32::try_from(self.partitions.len()).unwrap_or(u32::MAX)
    }

    /// Moves the sticky partition elsewhere (when its batch filled).
    fn next_sticky(&mut self) {
        let count = self.partition_count();
        if count > 1 {
            self.sticky = (self.sticky + 1 + fastrand::u32(..count - 1)) % count;
        }
    }
}

/// Batches taken for one produce request of one partition.
#[derive(Debug)]
pub(crate) struct Job {
    /// Given back to [`Accumulator::finish`] when the request ends, whatever
    /// became of the batches.
    pub(crate) slot: RequestSlot,
    pub(crate) batches: Vec<PendingBatch>,
}

/// How a request ended, for [`Accumulator::finish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JobEnd {
    Stored,
    /// The broker validated and refused the batches (or they could not be
    /// encoded): nothing stored, the sequences may be given back.
    Refused,
    /// Refused as of a fenced epoch: nothing stored, but the broker's epoch is
    /// not the producer's.
    OutOfSequence,
    /// Refused as out of order: nothing stored, but the broker's sequence is not
    /// where the producer's is.
    OutOfOrder,
    /// Retries ran out, a timeout or a storage error: whether anything was
    /// stored is unknown.
    Unknown,
}

/// The in-flight slot a request holds on its partition: what
/// [`Accumulator::finish`] needs to free it and settle its sequences.
#[derive(Debug)]
pub(crate) struct RequestSlot {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: u32,
    /// The request's number on its partition, in the order requests were taken.
    pub(crate) request: u64,
    /// Producer id, epoch and the first batch's base sequence.
    pub(crate) producer: Option<(i64, i16, i32)>,
    /// The sequence after the request's last record.
    pub(crate) next_sequence: i32,
    /// How many batches the request carries.
    pub(crate) batches: usize,
}

/// What `append` tells `send`.
#[derive(Debug)]
pub(crate) struct Appended {
    pub(crate) delivery: DeliveryFuture,
    /// The sender should look again (a batch filled or started).
    pub(crate) wake: bool,
}

/// All of a producer's batches.
#[derive(Debug)]
pub(crate) struct Accumulator {
    pub(crate) topics: HashMap<String, TopicState>,
    pub(crate) producer: Option<(i64, i16)>,
    /// The producer epoch must be bumped before the next request (after a
    /// failure that leaves a gap in a partition's sequence); no request is
    /// sent until then.
    pub(crate) bump_epoch: bool,
    /// Requests in flight over all partitions: the bump waits for none.
    pub(crate) requests_in_flight: usize,
    pub(crate) outstanding_batches: usize,
    pub(crate) flushing: u32,
    pub(crate) closed: bool,
}

impl Accumulator {
    pub(crate) fn new(producer: Option<(i64, i16)>) -> Accumulator {
        Accumulator {
            topics: HashMap::new(),
            producer,
            bump_epoch: false,
            requests_in_flight: 0,
            outstanding_batches: 0,
            flushing: 0,
            closed: false,
        }
    }

    /// Adds one record to its partition's open batch. None: the topic's
    /// partition count is not known yet, or is to be described again.
    pub(crate) fn append(
        &mut self,
        config: &ProducerConfig,
        record: &ProducerRecord<'_>,
        timestamp_ms: i64,
        size_bytes: usize,
        metadata: Metadata,
    ) -> Result<Option<Appended>, ClientError> {
        if self.closed {
            return Err(ClientError::Closed);
        }
        let Some(topic) = self.topics.get_mut(record.topic) else {
            return Ok(None);
        };
        let count = topic.partition_count();
        let stale = record.partition.is_some_and(|p| p >= count)
            || topic.described_at.elapsed() > config.metadata_max_age;
        if stale && metadata == Metadata::Cached {
            return Ok(None);
        }
        let partition = match (record.partition, record.key) {
            (Some(p), _) if p < count => p,
            (Some(p), _) => {
                return Err(ClientError::InvalidArgument(format!(
                    "topic {:?} has {count} partitions; partition {p} is out of range",
                    record.topic
                )))
            }
            (None, Some(key)) => partition_for_key(key, count),
            (None, None) => {
                // Kafka's sticky partitioner: records without a key fill one
                // partition's batch, then move on once it is full. The batch
                // left behind is closed by the check below on its next record,
                // or sent when it has lingered.
                let sticky_full = topic
                    .partitions
                    .get(topic.sticky as usize)
                    .and_then(|state| state.open.as_ref())
                    .is_some_and(|open| open.would_overflow(size_bytes, config));
                if sticky_full {
                    topic.next_sticky();
                }
                topic.sticky
            }
        };
        let state = usize::try_from(partition)
            .ok()
            .and_then(|i| topic.partitions.get_mut(i))
            .ok_or_else(|| ClientError::InvalidArgument("partition index overflow".to_string()))?;
        let mut wake = false;
        if state
            .open
            .as_ref()
            .is_some_and(|open| open.would_overflow(size_bytes, config))
        {
            if let Some(full) = state.open.take() {
                state.full.push_back(full);
            }
            wake = true;
        }
        let open = match &mut state.open {
            Some(open) => open,
            slot @ None => {
                wake = true;
                self.outstanding_batches += 1;
                // Producer id and sequence are stamped when the batch is sent.
                let builder = state
                    .spare
                    .pop()
                    .unwrap_or_else(|| BatchBuilder::new(config.compression));
                slot.insert(PendingBatch {
                    builder,
                    created: Instant::now(),
                    records: 0,
                    reserved_bytes: 0,
                    done: BatchCompleter::new(),
                    encoded: None,
                })
            }
        };
        open.builder
            .push(timestamp_ms, record.key, record.value, record.headers);
        let relative = open.records;
        open.records += 1;
        open.reserved_bytes += size_bytes;
        let delivery = open.done.future(partition, relative, timestamp_ms);
        if open.builder.estimated_size_bytes() >= config.batch_size_bytes {
            if let Some(full) = state.open.take() {
                state.full.push_back(full);
            }
            wake = true;
            if record.partition.is_none() && record.key.is_none() {
                topic.next_sticky();
            }
        }
        Ok(Some(Appended { delivery, wake }))
    }

    /// Takes every partition's sendable batches (full ones, and open ones past
    /// their linger or being flushed) for requests, as many per partition as
    /// its in-flight limits allow; none while an epoch bump is pending.
    /// Returns the jobs and the earliest time an open batch will be due.
    pub(crate) fn collect(
        &mut self,
        config: &ProducerConfig,
        now: Instant,
    ) -> (Vec<Job>, Option<Instant>) {
        let mut jobs = Vec::new();
        let mut next_due: Option<Instant> = None;
        let send_all = self.flushing > 0 || self.closed;
        let producer = self.producer;
        for topic in self.topics.values_mut() {
            for (index, state) in (0u32..).zip(topic.partitions.iter_mut()) {
                if let Some(open) = &state.open {
                    let due = open.created + config.linger;
                    if send_all || due <= now {
                        if let Some(open) = state.open.take() {
                            state.full.push_back(open);
                        }
                    } else {
                        next_due = Some(next_due.map_or(due, |d| d.min(due)));
                    }
                }
                if self.bump_epoch {
                    // The current epoch's sequence has a gap: nothing more
                    // goes out under it.
                    continue;
                }
                // Pipelining needs a producer the broker knows on this partition.
                let (in_flight_max, batches_max) = match (producer, state.confirmed) {
                    (Some(_), true) => (config.max_in_flight_requests, BATCHES_REMEMBERED),
                    (Some(_), false) => (1, BATCHES_REMEMBERED),
                    (None, _) => (1, usize::MAX),
                };
                while state.in_flight.len() < in_flight_max
                    && state.in_flight_batches < batches_max
                    && !state.full.is_empty()
                {
                    let mut batches = Vec::new();
                    let mut request_bytes = 0usize;
                    while let Some(batch) = state.full.front() {
                        let size = batch.builder.estimated_size_bytes();
                        let full = !batches.is_empty()
                            && (request_bytes + size > config.request_bytes_max
                                || state.in_flight_batches + batches.len() >= batches_max);
                        if full {
                            break;
                        }
                        request_bytes += size;
                        if let Some(batch) = state.full.pop_front() {
                            batches.push(batch);
                        }
                    }
                    let first_sequence = state.next_sequence;
                    for batch in &batches {
                        let records = i32::try_from(batch.records).unwrap_or(i32::MAX);
                        state.next_sequence = increment_sequence(state.next_sequence, records);
                    }
                    let request = state.next_request;
                    state.next_request += 1;
                    state.in_flight.push_back(request);
                    state.in_flight_batches += batches.len();
                    self.requests_in_flight += 1;
                    let slot = RequestSlot {
                        topic: Arc::clone(&topic.name),
                        partition: index,
                        request,
                        producer: producer.map(|(id, epoch)| (id, epoch, first_sequence)),
                        next_sequence: state.next_sequence,
                        batches: batches.len(),
                    };
                    jobs.push(Job { slot, batches });
                }
            }
        }
        (jobs, next_due)
    }

    /// Ends one of a partition's requests. Returns the batches for the caller
    /// to settle (and then [`Accumulator::recycle`]), or `None` when they are
    /// held to be sent again after the epoch bump.
    ///
    /// A refused request gives its sequences back if no later request took
    /// any. Any other failure of the current epoch, or a refusal with later
    /// requests in flight, calls for an epoch bump; a request refused as out
    /// of order behind such a failure (an earlier request of the partition
    /// failed, is still in flight, or the epoch has moved on) is held.
    pub(crate) fn finish(
        &mut self,
        job: &RequestSlot,
        end: JobEnd,
        batches: Vec<PendingBatch>,
    ) -> Option<Vec<PendingBatch>> {
        let current = self.producer;
        self.requests_in_flight = self.requests_in_flight.saturating_sub(1);
        let Some(state) = self
            .topics
            .get_mut(&*job.topic)
            .and_then(|t| t.partitions.get_mut(usize::try_from(job.partition).ok()?))
        else {
            self.outstanding_batches = self.outstanding_batches.saturating_sub(job.batches);
            return Some(batches);
        };
        let position = state.in_flight.iter().position(|r| *r == job.request);
        debug_assert!(
            position.is_some(),
            "a request ended that was never in flight"
        );
        let earlier_in_flight = position.is_some_and(|p| p > 0);
        if let Some(position) = position {
            state.in_flight.remove(position);
        }
        state.in_flight_batches = state.in_flight_batches.saturating_sub(job.batches);
        let same_epoch = job
            .producer
            .is_some_and(|(id, epoch, _)| current == Some((id, epoch)));
        let gap_behind = same_epoch && state.next_sequence != job.next_sequence;
        match end {
            JobEnd::Stored => {
                if same_epoch {
                    state.confirmed = true;
                }
            }
            JobEnd::Refused if same_epoch && !gap_behind && !state.gap => {
                if let Some((_, _, first)) = job.producer {
                    state.next_sequence = first;
                }
            }
            JobEnd::OutOfSequence | JobEnd::OutOfOrder
                if job.producer.is_some() && (!same_epoch || state.gap || earlier_in_flight) =>
            {
                self.bump_epoch = true;
                state.gap = true;
                state.held.push((job.request, batches));
                return None;
            }
            // Out of order with nothing failed or in flight ahead of it: the broker
            // does not know this producer (it forgot it after
            // producer_id_expiration_ms idle, or lost its state). Nothing was stored,
            // so it goes again first under the bumped epoch, as Kafka's producer
            // does on UNKNOWN_PRODUCER_ID. (Fenced is not retried: another epoch won.)
            JobEnd::OutOfOrder if job.producer.is_some() => {
                self.bump_epoch = true;
                state.gap = true;
                state.held.push((job.request, batches));
                return None;
            }
            JobEnd::Refused | JobEnd::OutOfSequence | JobEnd::OutOfOrder | JobEnd::Unknown => {
                if same_epoch {
                    self.bump_epoch = true;
                    state.gap = true;
                }
            }
        }
        self.outstanding_batches = self.outstanding_batches.saturating_sub(job.batches);
        Some(batches)
    }

    /// Keeps a settled batch's builder for reuse.
    pub(crate) fn recycle(&mut self, job: &RequestSlot, builder: BatchBuilder) {
        if let Some(state) = self
            .topics
            .get_mut(&*job.topic)
            .and_then(|t| t.partitions.get_mut(usize::try_from(job.partition).ok()?))
        {
            if state.spare.len() < SPARE_BUILDERS_MAX {
                state.spare.push(builder);
            }
        }
    }

    /// Whether the epoch bump can be asked for now: one is pending and no
    /// request of the old epoch is still in flight.
    pub(crate) fn ready_to_bump(&self) -> bool {
        self.bump_epoch && self.requests_in_flight == 0
    }

    /// Continues under `producer` (the bumped epoch, or a new id): every
    /// partition's sequence restarts at 0, and the held batches go first in
    /// their partition's queue, in the order they were first sent.
    pub(crate) fn set_producer(&mut self, producer: (i64, i16)) {
        self.producer = Some(producer);
        self.bump_epoch = false;
        for topic in self.topics.values_mut() {
            for state in &mut topic.partitions {
                debug_assert!(state.in_flight.is_empty(), "bumped with requests in flight");
                state.next_sequence = 0;
                state.confirmed = false;
                state.gap = false;
                state.held.sort_by_key(|(request, _)| *request);
                for (_, batches) in state.held.drain(..).rev() {
                    for batch in batches.into_iter().rev() {
                        state.full.push_front(batch);
                    }
                }
            }
        }
    }

    /// Takes every batch waiting to be sent (held, full or open) that was
    /// created before `created_before`: when the epoch cannot be bumped, they
    /// fail rather than wait past their delivery timeout. None was stored.
    pub(crate) fn take_expired(&mut self, created_before: Instant) -> Vec<PendingBatch> {
        let mut expired = Vec::new();
        for topic in self.topics.values_mut() {
            for state in &mut topic.partitions {
                for (request, batches) in std::mem::take(&mut state.held) {
                    let (old, young): (Vec<_>, Vec<_>) = batches
                        .into_iter()
                        .partition(|batch| batch.created < created_before);
                    expired.extend(old);
                    if !young.is_empty() {
                        state.held.push((request, young));
                    }
                }
                // Batches are queued oldest first: expire from the front.
                while state
                    .full
                    .front()
                    .is_some_and(|batch| batch.created < created_before)
                {
                    expired.extend(state.full.pop_front());
                }
                if state.full.is_empty()
                    && state
                        .open
                        .as_ref()
                        .is_some_and(|open| open.created < created_before)
                {
                    expired.extend(state.open.take());
                }
            }
        }
        self.outstanding_batches = self.outstanding_batches.saturating_sub(expired.len());
        expired
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn config() -> ProducerConfig {
        ProducerConfig {
            linger: Duration::ZERO,
            batch_size_bytes: 100,
            // One batch per request.
            request_bytes_max: 1,
            max_in_flight_requests: 3,
            ..ProducerConfig::default()
        }
    }

    /// An accumulator of producer 7 holding `batches` full one-record batches.
    fn filled(batches: usize) -> Accumulator {
        let config = config();
        let mut accumulator = Accumulator::new(Some((7, 0)));
        accumulator
            .topics
            .insert("t".to_string(), TopicState::new("t", 1));
        let value = [b'v'; 80];
        let record = ProducerRecord::new("t", &value).with_partition(0);
        for _ in 0..batches {
            let size = record.size_bytes();
            accumulator
                .append(&config, &record, 0, size, Metadata::Fresh)
                .unwrap()
                .expect("topic is known");
        }
        accumulator
    }

    fn collect(accumulator: &mut Accumulator) -> Vec<Job> {
        accumulator
            .collect(&config(), Instant::now() + Duration::from_secs(1))
            .0
    }

    #[test]
    fn the_first_request_goes_alone_then_requests_pipeline_up_to_the_limit() {
        let mut accumulator = filled(6);
        let first = collect(&mut accumulator);
        assert_eq!(first.len(), 1, "the broker does not know the producer yet");
        assert!(collect(&mut accumulator).is_empty());
        accumulator.finish(&first[0].slot, JobEnd::Stored, Vec::new());

        let pipelined = collect(&mut accumulator);
        let sequences: Vec<i32> = pipelined
            .iter()
            .map(|job| job.slot.producer.unwrap().2)
            .collect();
        assert_eq!(
            sequences,
            [1, 2, 3],
            "three in flight, consecutive sequences"
        );
        assert!(collect(&mut accumulator).is_empty(), "at the limit");
        accumulator.finish(&pipelined[0].slot, JobEnd::Stored, Vec::new());
        assert_eq!(collect(&mut accumulator).len(), 1, "one slot freed");
    }

    #[test]
    fn a_refused_request_gives_its_sequences_back_only_if_none_were_taken_after_it() {
        let mut accumulator = filled(5);
        let first = collect(&mut accumulator);
        accumulator.finish(&first[0].slot, JobEnd::Stored, Vec::new());
        let pipelined = collect(&mut accumulator);
        assert_eq!(pipelined.len(), 3);

        // The last one in flight: nothing after it, its sequence is reused.
        accumulator.finish(&pipelined[2].slot, JobEnd::Refused, Vec::new());
        assert!(!accumulator.bump_epoch);
        // One in the middle: later sequences are in flight and will be
        // refused as out of order, so the epoch is bumped.
        accumulator.finish(&pipelined[0].slot, JobEnd::Refused, Vec::new());
        assert!(accumulator.bump_epoch);
    }

    #[test]
    fn the_next_request_after_a_refusal_reuses_its_sequence() {
        let mut accumulator = filled(5);
        let first = collect(&mut accumulator);
        accumulator.finish(&first[0].slot, JobEnd::Stored, Vec::new());
        let second = collect(&mut accumulator);
        assert_eq!(second.len(), 3);
        // Refused from the last: each gives its sequences back in turn.
        for job in second.iter().rev() {
            accumulator.finish(&job.slot, JobEnd::Refused, Vec::new());
        }
        assert!(!accumulator.bump_epoch);
        let third = collect(&mut accumulator);
        assert_eq!(third[0].slot.producer, Some((7, 0, 1)));
    }

    /// Marks a job's batches so they can be recognised when sent again.
    fn mark(job: &mut Job, name: &'static str) {
        for batch in &mut job.batches {
            batch.encoded = Some(Bytes::from_static(name.as_bytes()));
        }
    }

    fn names(job: &Job) -> Vec<&[u8]> {
        job.batches
            .iter()
            .map(|b| b.encoded.as_deref().unwrap_or(b"new"))
            .collect()
    }

    #[test]
    fn batches_refused_behind_a_failure_are_sent_first_after_the_epoch_bump() {
        let mut accumulator = filled(5);
        let first = collect(&mut accumulator);
        accumulator.finish(&first[0].slot, JobEnd::Stored, Vec::new());
        let mut pipelined = collect(&mut accumulator);
        assert_eq!(pipelined.len(), 3);
        mark(&mut pipelined[1], "second");
        mark(&mut pipelined[2], "third");
        let [failed, second, third] = <[Job; 3]>::try_from(pipelined).unwrap();

        // The later ones end first: the earlier one is still in flight.
        assert!(accumulator
            .finish(&third.slot, JobEnd::OutOfSequence, third.batches)
            .is_none());
        assert!(accumulator.bump_epoch);
        assert!(!accumulator.ready_to_bump(), "two requests still in flight");
        assert!(accumulator
            .finish(&failed.slot, JobEnd::Unknown, Vec::new())
            .is_some());
        assert!(accumulator
            .finish(&second.slot, JobEnd::OutOfSequence, second.batches)
            .is_none());
        assert!(
            collect(&mut accumulator).is_empty(),
            "nothing under the old epoch"
        );
        assert!(accumulator.ready_to_bump());

        accumulator.set_producer((7, 1));
        let resent = collect(&mut accumulator);
        assert_eq!(resent.len(), 1, "the new epoch's first request goes alone");
        assert_eq!(resent[0].slot.producer, Some((7, 1, 0)));
        assert_eq!(names(&resent[0]), [b"second"]);
        accumulator.finish(&resent[0].slot, JobEnd::Stored, Vec::new());
        let rest = collect(&mut accumulator);
        let order: Vec<_> = rest.iter().flat_map(names).collect();
        assert_eq!(order, [&b"third"[..], b"new"]);
        assert_eq!(rest[0].slot.producer, Some((7, 1, 1)));
    }

    #[test]
    fn a_fenced_batch_at_the_head_fails_and_bumps_the_epoch() {
        let mut accumulator = filled(2);
        let first = collect(&mut accumulator);
        accumulator.finish(&first[0].slot, JobEnd::Stored, Vec::new());
        let second = collect(&mut accumulator);
        assert!(accumulator
            .finish(&second[0].slot, JobEnd::OutOfSequence, Vec::new())
            .is_some());
        assert!(accumulator.ready_to_bump());
    }

    #[test]
    fn out_of_order_at_the_head_is_sent_again_first_under_the_bumped_epoch() {
        let mut accumulator = filled(2);
        let first = collect(&mut accumulator);
        accumulator.finish(&first[0].slot, JobEnd::Stored, Vec::new());
        let mut second = collect(&mut accumulator);
        mark(&mut second[0], "second");
        let [second] = <[Job; 1]>::try_from(second).unwrap();
        // The broker forgot the producer: nothing ahead failed, nothing stored.
        assert!(accumulator
            .finish(&second.slot, JobEnd::OutOfOrder, second.batches)
            .is_none());
        assert!(accumulator.ready_to_bump());
        accumulator.set_producer((7, 1));
        let resent = collect(&mut accumulator);
        assert_eq!(resent[0].slot.producer, Some((7, 1, 0)));
        assert_eq!(names(&resent[0]), [b"second"]);
    }

    #[test]
    fn no_more_batches_are_in_flight_than_the_broker_remembers() {
        let mut accumulator = filled(12);
        let big_requests = ProducerConfig {
            request_bytes_max: 1 << 20,
            ..config()
        };
        let collect_big = |accumulator: &mut Accumulator| {
            accumulator
                .collect(&big_requests, Instant::now() + Duration::from_secs(1))
                .0
        };
        let first = collect_big(&mut accumulator);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].batches.len(), BATCHES_REMEMBERED);
        accumulator.finish(&first[0].slot, JobEnd::Stored, Vec::new());
        let second = collect_big(&mut accumulator);
        assert_eq!(second.len(), 1, "the one request already holds the limit");
        assert_eq!(second[0].batches.len(), BATCHES_REMEMBERED);
        accumulator.finish(&second[0].slot, JobEnd::Stored, Vec::new());
        assert_eq!(collect_big(&mut accumulator)[0].batches.len(), 2);
    }

    #[test]
    fn a_pending_bump_stops_sending_until_requests_drain() {
        let mut accumulator = filled(6);
        let first = collect(&mut accumulator);
        accumulator.finish(&first[0].slot, JobEnd::Stored, Vec::new());
        let pipelined = collect(&mut accumulator);
        accumulator.finish(&pipelined[0].slot, JobEnd::Unknown, Vec::new());
        assert!(collect(&mut accumulator).is_empty());
        accumulator.finish(&pipelined[1].slot, JobEnd::Stored, Vec::new());
        assert!(!accumulator.ready_to_bump());
        accumulator.finish(&pipelined[2].slot, JobEnd::Stored, Vec::new());
        assert!(accumulator.ready_to_bump());
    }

    #[test]
    fn batches_waiting_past_their_timeout_are_taken_oldest_first() {
        let mut accumulator = filled(3);
        let now = Instant::now() + Duration::from_secs(1);
        assert_eq!(accumulator.take_expired(now).len(), 3);
        assert_eq!(accumulator.outstanding_batches, 0);
        assert!(collect(&mut accumulator).is_empty());
    }

    #[test]
    fn without_idempotence_one_request_is_in_flight() {
        let config = config();
        let mut accumulator = Accumulator::new(None);
        accumulator
            .topics
            .insert("t".to_string(), TopicState::new("t", 1));
        let value = [b'v'; 80];
        let record = ProducerRecord::new("t", &value).with_partition(0);
        for _ in 0..3 {
            accumulator
                .append(&config, &record, 0, record.size_bytes(), Metadata::Fresh)
                .unwrap();
        }
        let first = collect(&mut accumulator);
        assert_eq!(first.len(), 1);
        accumulator.finish(&first[0].slot, JobEnd::Stored, Vec::new());
        assert_eq!(collect(&mut accumulator).len(), 1);
    }
}
