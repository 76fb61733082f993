//! The consumer: assign partitions of a topic, seek, and poll decoded records.
//!
//! Fetches are pipelined: as soon as a response arrives, the positions after
//! it are known from the batch headers alone, so the next fetch is sent
//! before this one's records are decoded and handed out.
//!
//! A partition's position (what [`Consumer::position`] reports) moves only
//! past records `poll` handed out: records decoded but not yet returned stay
//! buffered for the next poll, and a batch that cannot be decoded holds its
//! partition there (see [`Consumer::poll`]).
//!
//! A partition the broker cannot serve (offline after a failed recovery, or
//! unknown) does not stop the others: its error is kept per partition
//! ([`Consumer::partition_errors`]), its position stays, and it is fetched
//! again after a backoff, as Kafka's fetcher does.
//!
//! In a cluster each partition is fetched from its leader: one request per
//! leader, sent together. A partition whose broker answers
//! NOT_LEADER_OR_FOLLOWER (or cannot be reached) keeps its position, the
//! client learns the leaders again (see `cluster_metadata`), and the next
//! fetch of it goes to the new leader.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream::Stream;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use weir_log::batch::{batches, Compression, RecordDecoder};

use super::cluster_metadata::ClusterMetadata;
use super::connection::{bootstrap_list, connect};
use super::error::ClientError;
use super::leader_fetch::{by_leader, fetch_client, fetch_from_leaders, Fetched};
use super::undelivered::Undelivered;
use crate::proto::{
    ErrorCode, FetchRequest, FetchResponse, ListOffsetsRequest, OffsetSpec, PartitionFetchRequest,
    PartitionOffsetQuery,
};

/// How long a partition whose fetch failed is left out of fetches: Kafka's
/// `retry.backoff.ms` default. The broker answers a fetch with a failed
/// partition at once, so without it an idle consumer would spin on it.
const PARTITION_RETRY_BACKOFF: Duration = Duration::from_millis(100);

/// Where to start reading a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeekTo {
    Offset(u64),
    Beginning,
    /// The high watermark: only records produced from now on.
    End,
    /// The first record with a timestamp at or after this (ms since the epoch),
    /// or the end if there is none yet.
    Time(i64),
}

/// What to do when a position is out of the partition's range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetReset {
    Earliest,
    Latest,
    /// Report the error (with the valid range) to the caller.
    Error,
}

/// Consumer settings; names follow Kafka's consumer configs.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// `fetch.max.wait.ms`: how long the broker holds a fetch waiting for data.
    pub fetch_max_wait: Duration,
    pub fetch_min_bytes: u32,
    pub fetch_max_bytes: u32,
    /// `max.partition.fetch.bytes`.
    pub partition_max_bytes: u32,
    /// `auto.offset.reset`, also the start of a partition assigned without a seek.
    pub offset_reset: OffsetReset,
    /// `max.poll.records`: the most records one `poll` returns; the rest
    /// wait for the next.
    pub max_poll_records: usize,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            fetch_max_wait: Duration::from_millis(500),
            fetch_min_bytes: 1,
            fetch_max_bytes: 16 * 1024 * 1024,
            partition_max_bytes: 8 * 1024 * 1024,
            offset_reset: OffsetReset::Latest,
            // Kafka's default.
            max_poll_records: 500,
        }
    }
}

/// A decoded record. Key and value share the fetch buffer when the batch
/// was not compressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    pub topic: Arc<str>,
    pub partition: u32,
    pub offset: u64,
    pub timestamp_ms: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    At(u64),
    Unresolved(SeekTo),
}

#[derive(Debug)]
struct Prefetch {
    /// The positions the fetch was sent for; stale after a seek.
    positions: Vec<(u32, u64)>,
    /// The metadata generation the fetch was routed with.
    generation: u64,
    response: JoinHandle<Result<Fetched, ClientError>>,
}

/// A partition whose last fetch failed.
#[derive(Debug)]
struct PartitionFailure {
    partition: u32,
    error: ClientError,
    /// Left out of fetches until then.
    retry_at: Instant,
}

/// A consumer of assigned partitions of one topic.
#[derive(Debug)]
pub struct Consumer {
    /// Each partition's leader; the bootstrap broker when in no cluster.
    metadata: ClusterMetadata,
    /// A fetch was answered NOT_LEADER_OR_FOLLOWER (or a leader was
    /// unreachable) under this metadata generation: learn the leaders again
    /// before the next fetch.
    stale_metadata: Option<u64>,
    config: ConsumerConfig,
    topic: Arc<str>,
    positions: Vec<(u32, Position)>,
    buffered: Undelivered,
    prefetch: Option<Prefetch>,
    decoder: RecordDecoder,
    /// A batch that could not be decoded: returned by the next `poll` once
    /// the records before it are handed out; its partition's position stays
    /// at the batch.
    failed: Option<ClientError>,
    /// Partitions whose last fetch answered an error, one entry each.
    partition_failures: Vec<PartitionFailure>,
    /// Each partition's high watermark as its last successful fetch answered
    /// it, for [`Consumer::current_lags`].
    high_watermarks: Vec<(u32, u64)>,
}

impl Consumer {
    /// Connects to `addr`: one broker, or a bootstrap list `h1:p1,h2:p2`
    /// (the first that answers).
    pub async fn connect(addr: &str, config: ConsumerConfig) -> Result<Consumer, ClientError> {
        let channel = connect(addr).await?;
        let bootstrap = bootstrap_list(addr)?
            .into_iter()
            .map(String::from)
            .collect();
        Ok(Consumer::start(channel, bootstrap, config))
    }

    pub fn from_channel(channel: Channel, config: ConsumerConfig) -> Consumer {
        Consumer::start(channel, Vec::new(), config)
    }

    fn start(channel: Channel, bootstrap: Vec<String>, config: ConsumerConfig) -> Consumer {
        Consumer {
            metadata: ClusterMetadata::new(channel, bootstrap),
            stale_metadata: None,
            config,
            topic: Arc::from(""),
            positions: Vec::new(),
            buffered: Undelivered::default(),
            prefetch: None,
            decoder: RecordDecoder::new(),
            failed: None,
            partition_failures: Vec::new(),
            high_watermarks: Vec::new(),
        }
    }

    /// Reads `partitions` of `topic` from now on, replacing any assignment.
    /// Each starts where `offset_reset` says until a seek moves it.
    pub fn assign(&mut self, topic: &str, partitions: &[u32]) {
        let start = match self.config.offset_reset {
            OffsetReset::Earliest => SeekTo::Beginning,
            OffsetReset::Latest | OffsetReset::Error => SeekTo::End,
        };
        self.topic = Arc::from(topic);
        self.positions = partitions
            .iter()
            .map(|p| (*p, Position::Unresolved(start)))
            .collect();
        self.buffered.clear();
        self.failed = None;
        self.partition_failures.clear();
        self.high_watermarks.clear();
        self.cancel_prefetch();
    }

    /// The assigned partitions whose last fetch failed, with the error the
    /// broker gave (an offline partition: [`ErrorCode::Storage`]). `poll`
    /// keeps returning the other partitions' records meanwhile; these keep
    /// their positions and are fetched again after a short backoff. A
    /// partition leaves the list when a fetch of it succeeds, or on a seek.
    pub fn partition_errors(&self) -> Vec<(u32, ClientError)> {
        self.partition_failures
            .iter()
            .map(|failure| (failure.partition, failure.error.clone()))
            .collect()
    }

    /// The assigned partitions.
    pub fn assignment(&self) -> Vec<u32> {
        self.positions.iter().map(|(p, _)| *p).collect()
    }

    /// Moves a partition's position; records already buffered for it are dropped.
    pub fn seek(&mut self, partition: u32, to: SeekTo) -> Result<(), ClientError> {
        let slot = self
            .positions
            .iter_mut()
            .find(|(p, _)| *p == partition)
            .ok_or_else(|| {
                ClientError::InvalidArgument(format!(
                    "partition {partition} of topic {:?} is not assigned",
                    self.topic
                ))
            })?;
        slot.1 = match to {
            SeekTo::Offset(offset) => Position::At(offset),
            other => Position::Unresolved(other),
        };
        self.forget_partition_state(partition);
        self.cancel_prefetch();
        Ok(())
    }

    /// Moves every assigned partition.
    pub fn seek_all(&mut self, to: SeekTo) -> Result<(), ClientError> {
        for partition in self.assignment() {
            self.seek(partition, to)?;
        }
        Ok(())
    }

    /// Starts reading more partitions of the assigned topic, each from its
    /// own start, keeping the others' positions and buffered records.
    pub fn add_partitions(&mut self, partitions: &[(u32, SeekTo)]) {
        for (partition, to) in partitions {
            let position = match to {
                SeekTo::Offset(offset) => Position::At(*offset),
                other => Position::Unresolved(*other),
            };
            match self.positions.iter_mut().find(|(p, _)| p == partition) {
                Some(slot) => slot.1 = position,
                None => self.positions.push((*partition, position)),
            }
            self.forget_partition_state(*partition);
        }
        self.cancel_prefetch();
    }

    /// Stops reading `partitions`; the others keep their positions and
    /// buffered records.
    pub fn remove_partitions(&mut self, partitions: &[u32]) {
        self.positions.retain(|(p, _)| !partitions.contains(p));
        self.high_watermarks
            .retain(|(p, _)| !partitions.contains(p));
        for partition in partitions {
            self.forget_partition_state(*partition);
        }
        self.cancel_prefetch();
    }

    fn forget_partition_state(&mut self, partition: u32) {
        self.buffered.remove_partition(partition);
        self.partition_failures.retain(|f| f.partition != partition);
        if matches!(&self.failed, Some(ClientError::BadBatch { partition: p, .. }) if *p == partition)
        {
            self.failed = None;
        }
    }

    /// Each partition's offset after the records `poll` has handed out (what a
    /// commit records), for partitions whose position is known; a partition
    /// still waiting for its first offset lookup has handed nothing out.
    pub fn consumed_positions(&self) -> Vec<(u32, u64)> {
        self.known_positions()
            .into_iter()
            .map(|(partition, position)| {
                let next_buffered = self.buffered.first_offset(partition);
                (
                    partition,
                    next_buffered.map_or(position, |o| o.min(position)),
                )
            })
            .collect()
    }

    /// Each partition's lag: records below the high watermark its last fetch
    /// answered, past its consumed position (Kafka's `currentLag`, KIP-695).
    /// Left out while either is unknown (no fetch of it answered yet). Asks
    /// the broker nothing: a partition whose fetches wait for records is at
    /// the high watermark its last answer gave.
    pub fn current_lags(&self) -> Vec<(u32, u64)> {
        self.consumed_positions()
            .into_iter()
            .filter_map(|(partition, consumed)| {
                let (_, high_watermark) =
                    self.high_watermarks.iter().find(|(p, _)| *p == partition)?;
                Some((partition, high_watermark.saturating_sub(consumed)))
            })
            .collect()
    }

    /// The offset of the next record `poll` returns for `partition`, resolving
    /// a pending seek.
    pub async fn position(&mut self, partition: u32) -> Result<u64, ClientError> {
        self.resolve_positions().await?;
        if let Some(offset) = self.buffered.first_offset(partition) {
            return Ok(offset);
        }
        match self.positions.iter().find(|(p, _)| *p == partition) {
            Some((_, Position::At(offset))) => Ok(*offset),
            _ => Err(ClientError::InvalidArgument(format!(
                "partition {partition} of topic {:?} is not assigned",
                self.topic
            ))),
        }
    }

    /// The high watermark of each assigned partition (the offset after the
    /// last record a consumer can read now).
    pub async fn end_offsets(&self) -> Result<Vec<(u32, u64)>, ClientError> {
        self.list_offsets(SeekTo::End).await
    }

    /// The first offset of each assigned partition.
    pub async fn beginning_offsets(&self) -> Result<Vec<(u32, u64)>, ClientError> {
        self.list_offsets(SeekTo::Beginning).await
    }

    async fn list_offsets(&self, to: SeekTo) -> Result<Vec<(u32, u64)>, ClientError> {
        let partitions: Vec<u32> = self.positions.iter().map(|(p, _)| *p).collect();
        self.query_offsets(&partitions, to).await
    }

    async fn query_offsets(
        &self,
        partitions: &[u32],
        to: SeekTo,
    ) -> Result<Vec<(u32, u64)>, ClientError> {
        if partitions.is_empty() {
            return Ok(Vec::new());
        }
        let (spec, timestamp_ms) = match to {
            SeekTo::Beginning => (OffsetSpec::Earliest, 0),
            SeekTo::End => (OffsetSpec::Latest, 0),
            SeekTo::Time(t) => (OffsetSpec::Timestamp, t),
            SeekTo::Offset(_) => {
                return Err(ClientError::InvalidArgument(
                    "an offset needs no lookup".to_string(),
                ))
            }
        };
        // The high watermark is the leader's (a follower's lags behind it):
        // learn the leaders before the first lookup. A broker in no cluster
        // answers that once, and is not asked again.
        self.metadata.ensure_known().await;
        let mut offsets = Vec::with_capacity(partitions.len());
        for (channel, partitions) in by_leader(&self.metadata, &self.topic, partitions) {
            let request = ListOffsetsRequest {
                topic: self.topic.to_string(),
                partitions: partitions
                    .iter()
                    .map(|p| PartitionOffsetQuery {
                        partition: *p,
                        spec: spec.into(),
                        timestamp_ms,
                    })
                    .collect(),
            };
            let response = fetch_client(channel)
                .list_offsets(request)
                .await?
                .into_inner();
            offsets.extend(
                response
                    .partitions
                    .into_iter()
                    .map(|r| (r.partition, r.offset)),
            );
        }
        Ok(offsets)
    }

    async fn resolve_positions(&mut self) -> Result<(), ClientError> {
        for i in 0..self.positions.len() {
            let (partition, position) = self.positions[i];
            if let Position::Unresolved(to) = position {
                let offset = match to {
                    SeekTo::Offset(offset) => offset,
                    other => self
                        .query_offsets(&[partition], other)
                        .await?
                        .first()
                        .map(|(_, offset)| *offset)
                        .ok_or_else(|| ClientError::Status {
                            code: tonic::Code::Internal,
                            message: format!(
                                "topic {:?} partition {partition}: the broker returned no offset",
                                self.topic
                            ),
                        })?,
                };
                self.positions[i].1 = Position::At(offset);
            }
        }
        Ok(())
    }

    fn known_positions(&self) -> Vec<(u32, u64)> {
        self.positions
            .iter()
            .filter_map(|(p, pos)| match pos {
                Position::At(offset) => Some((*p, *offset)),
                Position::Unresolved(_) => None,
            })
            .collect()
    }

    /// The positions to fetch now: known, and not backing off after a failure.
    fn fetchable_positions(&self) -> Vec<(u32, u64)> {
        let now = Instant::now();
        let mut positions = self.known_positions();
        positions.retain(|(partition, _)| {
            !self
                .partition_failures
                .iter()
                .any(|f| f.partition == *partition && f.retry_at > now)
        });
        positions
    }

    fn cancel_prefetch(&mut self) {
        if let Some(prefetch) = self.prefetch.take() {
            prefetch.response.abort();
        }
    }

    /// Sends one fetch per leader of `positions`' partitions.
    fn start_fetch(&self, positions: Vec<(u32, u64)>, max_wait: Duration) -> Prefetch {
        let generation = self.metadata.generation();
        let partitions: Vec<u32> = positions.iter().map(|(p, _)| *p).collect();
        let requests: Vec<(Channel, FetchRequest)> =
            by_leader(&self.metadata, &self.topic, &partitions)
                .into_iter()
                .map(|(channel, partitions)| {
                    let request = FetchRequest {
                        topic: self.topic.to_string(),
                        max_wait_ms: u32::try_from(max_wait.as_millis()).unwrap_or(u32::MAX),
                        min_bytes: self.config.fetch_min_bytes,
                        max_bytes: self.config.fetch_max_bytes,
                        partitions: partitions
                            .iter()
                            .filter_map(|partition| {
                                let (_, offset) = positions.iter().find(|(p, _)| p == partition)?;
                                Some(PartitionFetchRequest {
                                    partition: *partition,
                                    offset: *offset,
                                    max_bytes: self.config.partition_max_bytes,
                                })
                            })
                            .collect(),
                    };
                    (channel, request)
                })
                .collect();
        let in_cluster = self.metadata.in_cluster();
        let response = tokio::spawn(fetch_from_leaders(requests, in_cluster));
        Prefetch {
            positions,
            generation,
            response,
        }
    }

    /// Returns the records available now (at most `max_poll_records`), or
    /// waits up to about `timeout` for some. An empty result means none
    /// arrived in time.
    ///
    /// A batch that cannot be decoded (a bad CRC, undecodable records) does
    /// not cost the records around it: this poll returns what was decoded
    /// (from the other partitions, and from the bad one's batches before it),
    /// and the next poll returns [`ClientError::BadBatch`] naming topic,
    /// partition and the batch's offset. That partition's position stays at
    /// the batch, so later polls report it again until a seek moves past it
    /// (as Kafka's consumer does); the other partitions carry on.
    ///
    /// A partition the broker answers with an error (offline, unknown) is
    /// not an error of the poll: the other partitions' records are returned,
    /// the error is in [`Consumer::partition_errors`], and the partition's
    /// position stays until a fetch of it succeeds.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>, ClientError> {
        if !self.buffered.is_empty() {
            return Ok(self.buffered.take(self.config.max_poll_records.max(1)));
        }
        if let Some(error) = self.failed.take() {
            return Err(error);
        }
        if let Some(seen) = self.stale_metadata.take() {
            self.metadata.refresh(seen, PARTITION_RETRY_BACKOFF).await;
        }
        self.resolve_positions().await?;
        let positions = self.fetchable_positions();
        if positions.is_empty() {
            // Nothing assigned, or every partition backs off after a failure.
            let retry_in = self
                .partition_failures
                .iter()
                .map(|f| f.retry_at.saturating_duration_since(Instant::now()))
                .min()
                .unwrap_or(timeout);
            tokio::time::sleep(retry_in.min(timeout)).await;
            return Ok(Vec::new());
        }
        if self
            .prefetch
            .as_ref()
            .is_some_and(|prefetch| prefetch.positions != positions)
        {
            self.cancel_prefetch();
        }
        if self.prefetch.is_none() {
            self.prefetch =
                Some(self.start_fetch(positions, timeout.min(self.config.fetch_max_wait)));
        }
        // Awaited in place, so that a poll dropped here (a group consumer races the
        // polls of its topics) leaves the fetch in flight for the next poll: no
        // response is lost and no position moves.
        let in_flight = self.prefetch.as_mut().expect("a fetch was just started");
        let response = (&mut in_flight.response).await;
        let Prefetch {
            positions: fetched,
            generation,
            ..
        } = self.prefetch.take().expect("still in flight");
        let Fetched {
            response,
            unreachable,
        } = response
            .map_err(|e| ClientError::InvalidArgument(format!("fetch task failed: {e}")))??;
        for (partition, error) in unreachable {
            // Its leader may have stopped: kept like a failed partition
            // until the metadata names another.
            self.stale_metadata = Some(generation);
            self.keep_partition_error(partition, error);
        }
        if response
            .partitions
            .iter()
            .any(|r| r.error_code() == ErrorCode::NotLeaderOrFollower)
        {
            self.stale_metadata = Some(generation);
        }
        let records = self.take_response(&fetched, response)?;
        self.buffered.replace(records);
        Ok(self.buffered.take(self.config.max_poll_records.max(1)))
    }

    /// Advances positions past the response, sends the next fetch, then decodes.
    fn take_response(
        &mut self,
        fetched: &[(u32, u64)],
        response: FetchResponse,
    ) -> Result<Vec<ConsumerRecord>, ClientError> {
        let mut next = fetched.to_vec();
        for result in &response.partitions {
            let Some(slot) = next.iter_mut().find(|(p, _)| *p == result.partition) else {
                continue;
            };
            match result.error_code() {
                ErrorCode::None => {}
                ErrorCode::OffsetOutOfRange => {
                    self.reset_out_of_range(result.partition, &result.error_message)?;
                    continue;
                }
                code => {
                    // Kafka's consumer treats these as retriable: the other
                    // partitions are served, this one stays where it is.
                    self.fail_partition(result.partition, code, &result.error_message);
                    continue;
                }
            }
            self.partition_failures
                .retain(|f| f.partition != result.partition);
            match self
                .high_watermarks
                .iter_mut()
                .find(|(p, _)| *p == result.partition)
            {
                Some(slot) => slot.1 = result.high_watermark,
                None => self
                    .high_watermarks
                    .push((result.partition, result.high_watermark)),
            }
            // A garbled batch stops the walk; decoding reports it below.
            for (header, _) in batches(&result.batches).map_while(Result::ok) {
                let after = u64::try_from(header.last_offset()).unwrap_or(0) + 1;
                slot.1 = slot.1.max(after);
            }
        }
        for (partition, offset) in &next {
            if let Some(slot) = self.positions.iter_mut().find(|(p, _)| p == partition) {
                if matches!(slot.1, Position::At(_)) {
                    slot.1 = Position::At(*offset);
                }
            }
        }
        let positions = self.fetchable_positions();
        if !positions.is_empty() {
            self.prefetch = Some(self.start_fetch(positions, self.config.fetch_max_wait));
        }
        let mut records = Vec::new();
        for result in response.partitions {
            let Some((_, from)) = fetched.iter().find(|(p, _)| *p == result.partition) else {
                continue;
            };
            let decoded = self.decode_into(result.partition, *from, &result.batches, &mut records);
            if let Err(error) = decoded {
                self.hold_at_bad_batch(error);
            }
        }
        Ok(records)
    }

    /// Keeps the partition of a batch that failed to decode at that batch
    /// and keeps the error for the next poll. The fetch already sent from
    /// past it is dropped: its positions no longer match.
    fn hold_at_bad_batch(&mut self, error: ClientError) {
        if let ClientError::BadBatch {
            partition, offset, ..
        } = &error
        {
            if let Some(slot) = self.positions.iter_mut().find(|(p, _)| p == partition) {
                slot.1 = Position::At(*offset);
            }
        }
        self.cancel_prefetch();
        if self.failed.is_none() {
            self.failed = Some(error);
        }
    }

    /// Keeps a partition's fetch error and leaves it out of fetches for a
    /// backoff; its position does not move.
    fn fail_partition(&mut self, partition: u32, code: ErrorCode, message: &str) {
        let error = ClientError::Partition {
            topic: self.topic.to_string(),
            partition,
            code,
            message: message.to_string(),
        };
        self.keep_partition_error(partition, error);
    }

    fn keep_partition_error(&mut self, partition: u32, error: ClientError) {
        let retry_at = Instant::now() + PARTITION_RETRY_BACKOFF;
        match self
            .partition_failures
            .iter_mut()
            .find(|f| f.partition == partition)
        {
            Some(failure) => {
                failure.error = error;
                failure.retry_at = retry_at;
            }
            None => {
                tracing::warn!(topic = %self.topic, partition, %error, "fetch failed; serving the other partitions");
                self.partition_failures.push(PartitionFailure {
                    partition,
                    error,
                    retry_at,
                });
            }
        }
    }

    fn reset_out_of_range(&mut self, partition: u32, message: &str) -> Result<(), ClientError> {
        let to = match self.config.offset_reset {
            OffsetReset::Earliest => SeekTo::Beginning,
            OffsetReset::Latest => SeekTo::End,
            OffsetReset::Error => {
                return Err(ClientError::Partition {
                    topic: self.topic.to_string(),
                    partition,
                    code: ErrorCode::OffsetOutOfRange,
                    message: message.to_string(),
                })
            }
        };
        if let Some(slot) = self.positions.iter_mut().find(|(p, _)| *p == partition) {
            slot.1 = Position::Unresolved(to);
        }
        Ok(())
    }

    /// Decodes the records at or after `from` in `data`. On a bad batch,
    /// `out` keeps only the records of the batches before it, and the error
    /// names the batch's first offset (or, if its header cannot be read, the
    /// offset after the last good batch).
    fn decode_into(
        &mut self,
        partition: u32,
        from: u64,
        data: &Bytes,
        out: &mut Vec<ConsumerRecord>,
    ) -> Result<(), ClientError> {
        let mut position = 0usize;
        let mut next_offset = from;
        let topic = Arc::clone(&self.topic);
        let bad = |offset: u64, reason: String| ClientError::BadBatch {
            topic: topic.to_string(),
            partition,
            offset,
            reason,
        };
        for batch in batches(data) {
            let (header, raw) = batch.map_err(|e| bad(next_offset, e.to_string()))?;
            let start = position;
            position += raw.len();
            let last = u64::try_from(header.last_offset()).unwrap_or(0);
            if last < from || header.is_control() {
                next_offset = next_offset.max(last + 1);
                continue;
            }
            let base = u64::try_from(header.base_offset).unwrap_or(0).max(from);
            let kept = out.len();
            let zero_copy = header.compression().ok() == Some(Compression::None);
            let batch_bytes = data.slice(start..position);
            let records = match self.decoder.records(&batch_bytes) {
                Ok(records) => records,
                Err(e) => return Err(bad(base, e.to_string())),
            };
            for record in records {
                let record = match record {
                    Ok(record) => record,
                    Err(e) => {
                        // The batch's records before the bad one are
                        // dropped too: the position goes back to the batch.
                        out.truncate(kept);
                        return Err(bad(base, e.to_string()));
                    }
                };
                let offset = u64::try_from(record.offset).unwrap_or(0);
                if offset < from {
                    continue;
                }
                let share = |slice: &[u8]| {
                    if zero_copy {
                        batch_bytes.slice_ref(slice)
                    } else {
                        Bytes::copy_from_slice(slice)
                    }
                };
                out.push(ConsumerRecord {
                    topic: Arc::clone(&topic),
                    partition,
                    offset,
                    timestamp_ms: record.timestamp,
                    key: record.key.map(share),
                    value: record.value.map(share),
                    headers: record
                        .headers()
                        .map(|(k, v)| (k.to_string(), v.map(Bytes::copy_from_slice)))
                        .collect(),
                });
            }
            next_offset = last + 1;
        }
        Ok(())
    }

    /// The records as a stream, polling with `timeout` between empty rounds.
    pub fn into_stream(
        self,
        timeout: Duration,
    ) -> impl Stream<Item = Result<ConsumerRecord, ClientError>> {
        futures_util::stream::unfold(
            (self, VecDeque::new()),
            move |(mut consumer, mut ready)| async move {
                loop {
                    if let Some(record) = ready.pop_front() {
                        return Some((Ok(record), (consumer, ready)));
                    }
                    match consumer.poll(timeout).await {
                        Ok(records) => ready.extend(records),
                        Err(error) => return Some((Err(error), (consumer, ready))),
                    }
                }
            },
        )
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.cancel_prefetch();
    }
}
