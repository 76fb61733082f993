//! The producer's per-partition batches: the open batch records are added
//! to, full batches waiting for their partition's in-flight request to end,
//! and the sequence numbers of an idempotent producer.
//!
//! Sequence numbers are assigned when a batch is taken for a request, not when
//! it is opened. A request that failed for good gives its sequence numbers
//! back when no later request took any; otherwise the producer id is renewed.
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

use weir_log::batch::BatchBuilder;

use super::delivery::{BatchCompleter, DeliveryFuture};
use super::error::ClientError;
use super::partitioner::partition_for_key;
use super::producer::{ProducerConfig, ProducerRecord};
use crate::producer_state::{increment_sequence, BATCHES_REMEMBERED};

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
    in_flight: usize,
    /// Batches in those requests.
    in_flight_batches: usize,
    /// A request of the current producer id was stored on this partition:
    /// more than one may be in flight.
    confirmed: bool,
    next_sequence: i32,
    spare: Vec<BatchBuilder>,
}

#[derive(Debug)]
pub(crate) struct TopicState {
    pub(crate) name: Arc<str>,
    partitions: Vec<PartitionState>,
    /// Partition of records without a key, until its batch fills.
    sticky: u32,
}

impl TopicState {
    pub(crate) fn new(name: &str, partitions: u32) -> TopicState {
        TopicState {
            name: Arc::from(name),
            partitions: (0..partitions).map(|_| PartitionState::default()).collect(),
            sticky: fastrand::u32(..partitions.max(1)),
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
#[derive(Debug, Clone, Copy)]
pub(crate) enum JobEnd {
    Stored,
    /// Refused: nothing stored, the sequences may be given back.
    NotStored,
    /// Retries ran out: whether anything was stored is unknown.
    Unknown,
}

/// The in-flight slot a request holds on its partition: what
/// [`Accumulator::finish`] needs to free it and settle its sequences.
#[derive(Debug)]
pub(crate) struct RequestSlot {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: u32,
    /// Producer id, epoch and the first batch's base sequence.
    pub(crate) producer: Option<(i64, i16, i32)>,
    /// The sequence after the request's last record.
    pub(crate) next_sequence: i32,
    /// How many batches the request carries.
    pub(crate) batches: usize,
    /// Buffer memory its records took, in bytes.
    pub(crate) reserved_bytes: usize,
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
    /// The producer id must be renewed before the next request (after a
    /// failure that leaves the broker's sequence state unknown).
    pub(crate) renew_producer: bool,
    pub(crate) outstanding_batches: usize,
    pub(crate) flushing: u32,
    pub(crate) closed: bool,
}

impl Accumulator {
    pub(crate) fn new(producer: Option<(i64, i16)>) -> Accumulator {
        Accumulator {
            topics: HashMap::new(),
            producer,
            renew_producer: false,
            outstanding_batches: 0,
            flushing: 0,
            closed: false,
        }
    }

    /// Adds one record to its partition's open batch. None: the topic's
    /// partition count is not known yet.
    pub(crate) fn append(
        &mut self,
        config: &ProducerConfig,
        record: &ProducerRecord<'_>,
        timestamp_ms: i64,
        size_bytes: usize,
    ) -> Result<Option<Appended>, ClientError> {
        if self.closed {
            return Err(ClientError::Closed);
        }
        let Some(topic) = self.topics.get_mut(record.topic) else {
            return Ok(None);
        };
        let count = topic.partition_count();
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
    /// its in-flight limits allow.
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
                // Pipelining needs a producer the broker knows on this
                // partition, and none pending renewal (its old id's sequence
                // may have a gap that will never fill).
                let (in_flight_max, batches_max) = match (producer, state.confirmed) {
                    (Some(_), true) if !self.renew_producer => {
                        (config.max_in_flight_requests, BATCHES_REMEMBERED)
                    }
                    (Some(_), _) => (1, BATCHES_REMEMBERED),
                    (None, _) => (1, usize::MAX),
                };
                while state.in_flight < in_flight_max
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
                    state.in_flight += 1;
                    state.in_flight_batches += batches.len();
                    let slot = RequestSlot {
                        topic: Arc::clone(&topic.name),
                        partition: index,
                        producer: producer.map(|(id, epoch)| (id, epoch, first_sequence)),
                        next_sequence: state.next_sequence,
                        batches: batches.len(),
                        reserved_bytes: batches.iter().map(|b| b.reserved_bytes).sum(),
                    };
                    jobs.push(Job { slot, batches });
                }
            }
        }
        (jobs, next_due)
    }

    /// Ends one of a partition's requests. A request that stored nothing
    /// gives its sequences back if no later request took any; otherwise, or
    /// when whether it was stored is unknown, the producer id is renewed.
    pub(crate) fn finish(&mut self, job: &RequestSlot, builders: Vec<BatchBuilder>, end: JobEnd) {
        self.outstanding_batches = self.outstanding_batches.saturating_sub(job.batches);
        let current = self.producer;
        let Some(state) = self
            .topics
            .get_mut(&*job.topic)
            .and_then(|t| t.partitions.get_mut(usize::try_from(job.partition).ok()?))
        else {
            return;
        };
        debug_assert!(
            state.in_flight > 0,
            "a request ended that was never in flight"
        );
        state.in_flight = state.in_flight.saturating_sub(1);
        state.in_flight_batches = state.in_flight_batches.saturating_sub(job.batches);
        let same_producer = job
            .producer
            .is_some_and(|(id, epoch, _)| current == Some((id, epoch)));
        for builder in builders {
            if state.spare.len() < SPARE_BUILDERS_MAX {
                state.spare.push(builder);
            }
        }
        if !same_producer {
            return;
        }
        match end {
            JobEnd::Stored => state.confirmed = true,
            JobEnd::NotStored if state.next_sequence == job.next_sequence => {
                if let Some((_, _, first)) = job.producer {
                    state.next_sequence = first;
                }
            }
            JobEnd::NotStored | JobEnd::Unknown => self.renew_producer = true,
        }
    }

    /// Starts over with a new producer id: every partition's sequence restarts at 0.
    pub(crate) fn set_producer(&mut self, producer: (i64, i16)) {
        self.producer = Some(producer);
        self.renew_producer = false;
        for topic in self.topics.values_mut() {
            for state in &mut topic.partitions {
                state.next_sequence = 0;
                state.confirmed = false;
            }
        }
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
                .append(&config, &record, 0, size)
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
        accumulator.finish(&first[0].slot, Vec::new(), JobEnd::Stored);

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
        accumulator.finish(&pipelined[0].slot, Vec::new(), JobEnd::Stored);
        assert_eq!(collect(&mut accumulator).len(), 1, "one slot freed");
    }

    #[test]
    fn a_refused_request_gives_its_sequences_back_only_if_none_were_taken_after_it() {
        let mut accumulator = filled(4);
        let first = collect(&mut accumulator);
        accumulator.finish(&first[0].slot, Vec::new(), JobEnd::Stored);
        let pipelined = collect(&mut accumulator);
        assert_eq!(pipelined.len(), 3);

        // The last one in flight: nothing after it, its sequence is reused.
        accumulator.finish(&pipelined[2].slot, Vec::new(), JobEnd::NotStored);
        assert!(!accumulator.renew_producer);
        // One in the middle: later sequences are in flight, so start over
        // with a new producer id instead.
        accumulator.finish(&pipelined[0].slot, Vec::new(), JobEnd::NotStored);
        assert!(accumulator.renew_producer);
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
        accumulator.finish(&first[0].slot, Vec::new(), JobEnd::Stored);
        let second = collect_big(&mut accumulator);
        assert_eq!(second.len(), 1, "the one request already holds the limit");
        assert_eq!(second[0].batches.len(), BATCHES_REMEMBERED);
        accumulator.finish(&second[0].slot, Vec::new(), JobEnd::Stored);
        assert_eq!(collect_big(&mut accumulator)[0].batches.len(), 2);
    }

    #[test]
    fn a_pending_renewal_stops_pipelining() {
        let mut accumulator = filled(6);
        let first = collect(&mut accumulator);
        accumulator.finish(&first[0].slot, Vec::new(), JobEnd::Stored);
        accumulator.renew_producer = true;
        assert_eq!(collect(&mut accumulator).len(), 1);
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
                .append(&config, &record, 0, record.size_bytes())
                .unwrap();
        }
        let first = collect(&mut accumulator);
        assert_eq!(first.len(), 1);
        accumulator.finish(&first[0].slot, Vec::new(), JobEnd::Stored);
        assert_eq!(collect(&mut accumulator).len(), 1);
    }
}
