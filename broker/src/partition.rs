//! One partition as the broker serves it: its log, its leader epoch, its high
//! watermark, the idempotent-producer state (rebuilt on open, snapshotted to
//! `producer-state` every [`SNAPSHOT_INTERVAL_BYTES`] appended and at close),
//! and the signal that wakes long polls when the high watermark moves.
//!
//! Every method here does blocking file I/O or takes a short lock; callers on
//! the async executor go through [`crate::Broker::run_io`].

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};
use tokio::sync::{watch, Notify};
use weir_log::batch::{batches, BatchHeader, NO_PRODUCER_ID};
use weir_log::{LogConfig, PartitionLog};

use crate::append_queue::AppendQueue;
use crate::clock::{system_clock, SharedClock};
use crate::error::BrokerError;
use crate::producer_recovery::{self, Rebuilt};
use crate::producer_snapshot;
use crate::producer_state::{
    increment_sequence, ProducerStates, SequenceCheck, SequenceError, SequencedBatch, StoredRange,
};
use crate::read_buffers;
use crate::replication::{ReplicaRole, RoleKind};
use crate::snapshot_writer::SnapshotWriter;

/// Bytes appended between two periodic producer-state snapshots: after a
/// crash, an open replays the headers of about this much log (more when the
/// crash caught the newest snapshot still waiting to be written).
pub const SNAPSHOT_INTERVAL_BYTES: u64 = 64 * 1024 * 1024;

/// The producer state and how much was appended since it was last snapshotted.
#[derive(Debug)]
struct Producers {
    states: ProducerStates,
    appended_bytes_since_snapshot: u64,
}

/// A partition led by this broker: online (its log open) or offline.
pub struct Partition {
    topic: String,
    index: u32,
    dir: PathBuf,
    /// `None` while offline: the log failed to open at start (damage below the recovery
    /// point, a lock held by another process, an I/O error). Like a Kafka log dir failure
    /// it takes only this partition down; produce and fetch to it answer
    /// `ERROR_CODE_STORAGE` with `offline_cause`, describe shows it, and the broker
    /// tries again at its next start (after `weir log repair`, say).
    log: Option<PartitionLog>,
    offline_cause: Option<String>,
    /// While offline the broker still owns the directory: `weir log repair` must wait
    /// until it stops (the partition comes back only at the next start anyway).
    _offline_lock: Option<weir_log::DirLock>,
    leader_epoch: AtomicI32,
    /// Held across the idempotence check, the append and the high-watermark
    /// advance, so the three are one step for every producer.
    producers: Mutex<Producers>,
    /// The high watermark, published to long polls after every advance.
    high_watermark: watch::Sender<u64>,
    /// Signalled after every append: a produce whose batches are ahead of
    /// their producer's sequence waits on it for the earlier batches.
    appended: Notify,
    /// Produce requests waiting for their append (see `append_queue`).
    append_queue: AppendQueue,
    /// The periodic producer-state snapshots, written off the append path.
    snapshots: SnapshotWriter,
    /// The time of each producer's last append, for producer-id expiry.
    clock: SharedClock,
    /// Alone, leader, follower or not hosted (see `replication::role`).
    pub(crate) replica: ReplicaRole,
}

impl std::fmt::Debug for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Partition")
            .field("topic", &self.topic)
            .field("index", &self.index)
            .field("dir", &self.dir)
            .field("offline_cause", &self.offline_cause)
            .field("leader_epoch", &self.leader_epoch())
            .field("high_watermark", &self.high_watermark())
            .finish_non_exhaustive()
    }
}

/// Where a produce request's batches for one partition ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub base_offset: u64,
    pub last_offset: u64,
    /// True when every batch was a retry of stored batches; the offsets are the originals.
    pub duplicate: bool,
    pub log_start_offset: u64,
    /// The leader epoch the append happened at: an `acks=all` produce is
    /// answered only while this broker still leads at that epoch.
    pub leader_epoch: i32,
}

/// What a read returned: whole stored batches, plus the partition's bounds.
#[derive(Debug, Clone)]
pub struct ReadResult {
    pub batches: Bytes,
    pub high_watermark: u64,
    pub log_start_offset: u64,
    pub log_end_offset: u64,
    /// With `fit`: the size of the first batch when it was left out because
    /// it is larger than `max_bytes` (0 otherwise), so a caller can make
    /// room for it and read again.
    pub unfit_batch_bytes: usize,
    /// With [`ReadInto::Mapped`]: where `batches` lie in the segment file,
    /// for `sendfile`.
    pub slice: Option<weir_log::FileSlice>,
}

/// How a read hands over the stored batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadInto {
    /// Copied out with `pread` into a recycled buffer (the gRPC path).
    Copy,
    /// Memory-mapped, not touched: the bytes stay in the page cache until a
    /// Kafka connection sends them with `sendfile` (see `kafka::frame`).
    Mapped,
}

/// A point-in-time view of a partition for describe.
#[derive(Debug, Clone, Copy)]
pub struct PartitionStatus {
    pub leader_epoch: i32,
    pub log_start_offset: u64,
    pub log_end_offset: u64,
    pub high_watermark: u64,
    pub size_bytes: u64,
}

impl Partition {
    /// Opens (recovering if needed) the log in `dir`.
    pub fn open(
        dir: &Path,
        topic: &str,
        index: u32,
        config: LogConfig,
        leader_epoch: i32,
    ) -> Result<Partition, BrokerError> {
        Partition::open_with_clock(dir, topic, index, config, leader_epoch, system_clock())
    }

    /// [`Partition::open`] with the clock that dates producers' appends.
    pub fn open_with_clock(
        dir: &Path,
        topic: &str,
        index: u32,
        config: LogConfig,
        leader_epoch: i32,
        clock: SharedClock,
    ) -> Result<Partition, BrokerError> {
        Partition::open_log(dir, topic, index, config, leader_epoch, clock, true)
    }

    /// Opens a replica of a replicated topic: it follows no one, takes no
    /// produce and serves no consumer until the cluster's metadata gives it
    /// a role (`replication::manager`). Its high watermark is the one its log
    /// checkpointed, not its log end: the records past it may be on no other
    /// replica, and a leader counting them committed would serve them and
    /// let them be lost with it (Kafka reads the high watermark back from its
    /// replication-offset checkpoint for the same reason).
    pub fn open_replica(
        dir: &Path,
        topic: &str,
        index: u32,
        config: LogConfig,
        leader_epoch: i32,
        clock: SharedClock,
    ) -> Result<Partition, BrokerError> {
        let partition = Partition::open_log(dir, topic, index, config, leader_epoch, clock, false)?;
        partition.replica.set_follower(None);
        Ok(partition)
    }

    fn open_log(
        dir: &Path,
        topic: &str,
        index: u32,
        config: LogConfig,
        leader_epoch: i32,
        clock: SharedClock,
        alone: bool,
    ) -> Result<Partition, BrokerError> {
        let log = PartitionLog::open(dir, config).map_err(|e| BrokerError::log(topic, index, e))?;
        let (states, rebuilt) = producer_recovery::rebuild(&log, clock.now_ms()).map_err(|e| {
            BrokerError::ProducerState {
                topic: topic.to_string(),
                partition: index,
                reason: e.to_string(),
            }
        })?;
        log_rebuilt(topic, index, states.len(), &rebuilt);
        if alone {
            // Replication factor 1: everything in the log is replicated to the whole ISR.
            log.set_high_watermark(log.log_end_offset());
        }
        let (high_watermark, _) = watch::channel(log.high_watermark());
        Ok(Partition {
            topic: topic.to_string(),
            index,
            dir: dir.to_path_buf(),
            log: Some(log),
            offline_cause: None,
            _offline_lock: None,
            leader_epoch: AtomicI32::new(leader_epoch),
            producers: Mutex::new(Producers {
                states,
                appended_bytes_since_snapshot: 0,
            }),
            high_watermark,
            appended: Notify::new(),
            append_queue: AppendQueue::default(),
            snapshots: SnapshotWriter::default(),
            clock,
            replica: ReplicaRole::default(),
        })
    }

    /// A partition whose log could not be opened: it serves only errors naming `cause`.
    /// Holds the directory's lock if it can (not when another process holds it).
    pub fn offline(
        dir: &Path,
        topic: &str,
        index: u32,
        leader_epoch: i32,
        cause: String,
    ) -> Partition {
        Partition {
            topic: topic.to_string(),
            index,
            dir: dir.to_path_buf(),
            log: None,
            offline_cause: Some(cause),
            _offline_lock: weir_log::DirLock::acquire(dir, weir_log::LockMode::Exclusive).ok(),
            leader_epoch: AtomicI32::new(leader_epoch),
            producers: Mutex::new(Producers {
                states: ProducerStates::default(),
                appended_bytes_since_snapshot: 0,
            }),
            high_watermark: watch::channel(0).0,
            appended: Notify::new(),
            append_queue: AppendQueue::default(),
            snapshots: SnapshotWriter::default(),
            clock: system_clock(),
            replica: ReplicaRole::default(),
        }
    }

    /// A partition of which this broker holds no replica: it answers every
    /// produce and fetch with NOT_LEADER_OR_FOLLOWER naming `leader`.
    pub fn not_hosted(
        dir: &Path,
        topic: &str,
        index: u32,
        leader_epoch: i32,
        leader: Option<u64>,
    ) -> Partition {
        Partition {
            topic: topic.to_string(),
            index,
            dir: dir.to_path_buf(),
            log: None,
            offline_cause: None,
            _offline_lock: None,
            leader_epoch: AtomicI32::new(leader_epoch),
            producers: Mutex::new(Producers {
                states: ProducerStates::default(),
                appended_bytes_since_snapshot: 0,
            }),
            high_watermark: watch::channel(0).0,
            appended: Notify::new(),
            append_queue: AppendQueue::default(),
            snapshots: SnapshotWriter::default(),
            clock: system_clock(),
            replica: ReplicaRole::not_hosted(leader),
        }
    }

    pub fn index(&self) -> u32 {
        self.index
    }

    /// Why the partition is offline; `None` while it is online.
    pub fn offline_cause(&self) -> Option<&str> {
        self.offline_cause.as_deref()
    }

    /// The open log, or the offline error naming topic, partition and cause
    /// (or NOT_LEADER_OR_FOLLOWER when this broker holds no replica).
    pub(crate) fn log(&self) -> Result<&PartitionLog, BrokerError> {
        self.log.as_ref().ok_or_else(|| {
            if self.replica.kind() == RoleKind::NotHosted {
                return self.not_leader();
            }
            BrokerError::PartitionOffline {
                topic: self.topic.clone(),
                partition: self.index,
                cause: self.offline_cause.clone().unwrap_or_default(),
            }
        })
    }

    pub(crate) fn not_leader(&self) -> BrokerError {
        BrokerError::NotLeader {
            topic: self.topic.clone(),
            partition: self.index,
            leader: self.replica.leader(),
        }
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub(crate) fn clock(&self) -> &SharedClock {
        &self.clock
    }

    pub fn high_watermark(&self) -> u64 {
        self.log.as_ref().map_or(0, PartitionLog::high_watermark)
    }

    pub fn log_start_offset(&self) -> u64 {
        self.log.as_ref().map_or(0, PartitionLog::log_start_offset)
    }

    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch.load(Ordering::Acquire)
    }

    pub(crate) fn set_leader_epoch(&self, leader_epoch: i32) {
        self.leader_epoch.store(leader_epoch, Ordering::Release);
    }

    /// A follower's append: the leader's batches, offsets and epochs as they
    /// are, then their idempotent producers' sequences recorded as the
    /// leader recorded them, all under the producer lock so the state
    /// matches the log.
    pub(crate) fn append_replicated(&self, buf: &[u8]) -> Result<(), BrokerError> {
        let log = self.log()?;
        let mut producers = self.lock_producers()?;
        // Under the lock `become_leader` takes: a replica that became leader
        // since its caller checked stores nothing from the old leader.
        if self.replica.kind() != RoleKind::Follower {
            return Err(self.not_leader());
        }
        log.append_replicated(buf).map_err(|e| self.error(e))?;
        let now_ms = self.clock.now_ms();
        for item in batches(buf) {
            let (header, _) = item.map_err(|e| self.error(e.into()))?;
            if let Some(batch) = sequenced(&header) {
                let base = u64::try_from(header.base_offset).unwrap_or(0);
                let last = u64::try_from(header.last_offset()).unwrap_or(base);
                producers.states.record(&batch, base, last, now_ms);
            }
        }
        producers.appended_bytes_since_snapshot += buf.len() as u64;
        drop(producers);
        self.appended.notify_waiters();
        Ok(())
    }

    /// Cuts the log to `offset` (a follower dropping what its leader does not
    /// have) and rebuilds the idempotent-producer state from what is left,
    /// all under the producer lock, so the state matches the log again.
    ///
    /// Kept as it was, the state would still remember the cut batches: a
    /// producer's retry of one of them, once this replica leads, would be
    /// answered as a duplicate at offsets the log no longer holds, and under
    /// `acks=all` wait for a high watermark that never passes them, retry
    /// after retry. Kafka rebuilds the state on truncation too
    /// (`ProducerStateManager.truncateAndReload`). The snapshot is then
    /// rewritten at the new log end, durably: one taken above the cut would
    /// otherwise load its cut batches at the next open once the log grew back
    /// past its offset.
    pub(crate) fn truncate_log_to(&self, offset: u64) -> Result<(), BrokerError> {
        let log = self.log()?;
        let mut producers = self.lock_producers()?;
        if offset >= log.log_end_offset() {
            return Ok(());
        }
        log.truncate_to(offset).map_err(|e| self.error(e))?;
        let (states, rebuilt) =
            producer_recovery::rebuild(log, self.clock.now_ms()).map_err(|e| {
                BrokerError::ProducerState {
                    topic: self.topic.clone(),
                    partition: self.index,
                    reason: format!("cannot rebuild it after cutting the log to {offset}: {e}"),
                }
            })?;
        let log_end = log.log_end_offset();
        tracing::info!(topic = %self.topic, partition = self.index, log_end, producers = states.len(), ?rebuilt, "producer state rebuilt after the cut");
        producers.states = states;
        producers.appended_bytes_since_snapshot = 0;
        let _superseded = self.snapshots.supersede();
        producer_snapshot::write(log.dir(), &producers.states, log_end, true).map_err(|source| {
            BrokerError::Io {
                op: "write producer-state snapshot in",
                path: log.dir().to_path_buf(),
                source,
            }
        })
    }

    /// Runs `change` (a change of role) while no append runs: every append
    /// holds the producer lock from its role check to its write.
    pub(crate) fn exclusive_of_appends<T>(
        &self,
        change: impl FnOnce() -> T,
    ) -> Result<T, BrokerError> {
        let _appends = self.lock_producers()?;
        Ok(change())
    }

    /// Replaces the log settings; they apply from the next append, roll or retention.
    pub fn set_config(&self, config: LogConfig) {
        if let Some(log) = &self.log {
            log.set_config(config);
        }
    }

    /// A receiver that sees every high-watermark advance after this call.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.high_watermark.subscribe()
    }

    /// Offsets and size; all zero while offline.
    pub fn status(&self) -> PartitionStatus {
        PartitionStatus {
            leader_epoch: self.leader_epoch(),
            log_start_offset: self.log_start_offset(),
            log_end_offset: self.log.as_ref().map_or(0, PartitionLog::log_end_offset),
            high_watermark: self.high_watermark(),
            size_bytes: self.log.as_ref().map_or(0, PartitionLog::size_bytes),
        }
    }

    /// Segments of the log, the active one included; 0 while offline.
    pub fn segment_count(&self) -> usize {
        self.log.as_ref().map_or(0, PartitionLog::segment_count)
    }

    fn error(&self, source: weir_log::LogError) -> BrokerError {
        BrokerError::log(&self.topic, self.index, source)
    }

    fn lock_producers(&self) -> Result<MutexGuard<'_, Producers>, BrokerError> {
        self.producers.lock().map_err(|_| {
            BrokerError::TaskFailed(format!(
                "topic {:?} partition {}: producer state lock poisoned by an earlier panic",
                self.topic, self.index
            ))
        })
    }

    /// [`Partition::append`] of a produce request's buffer, first rewritten in the topic's
    /// `compression.type` if it sets one other than the producer's: `buf` is then the
    /// stored batches.
    pub(crate) fn append_produced(&self, buf: &mut BytesMut) -> Result<Appended, BrokerError> {
        if let Some(recompressed) = self.log()?.recompress(buf).map_err(|e| self.error(e))? {
            *buf = BytesMut::from(&recompressed[..]);
        }
        self.append(buf)
    }

    /// Appends one or more concatenated batches as received, after the
    /// idempotent-producer check; advances the high watermark.
    ///
    /// The batches are validated (CRC-32C, every record) before the producer
    /// state is consulted, and outside its lock: a damaged retry is refused as
    /// damaged, never answered as a duplicate, and moves no producer state.
    pub fn append(&self, buf: &mut [u8]) -> Result<Appended, BrokerError> {
        if !matches!(self.replica.kind(), RoleKind::Solo | RoleKind::Leader) {
            return Err(self.not_leader());
        }
        let log = self.log()?;
        let validated = log.validate_append(buf).map_err(|e| self.error(e))?;
        let mut producers = self.lock_producers()?;
        // Again under the lock a change of role takes (`exclusive_of_appends`): a
        // replica that became a follower since the check above must not write a
        // client's batch, which would carry the new leader's epoch and so escape the
        // truncation that removes what a follower holds beyond its leader.
        if !matches!(self.replica.kind(), RoleKind::Solo | RoleKind::Leader) {
            return Err(self.not_leader());
        }
        if let Some(stored) = self.check_sequences(&producers.states, validated.batches())? {
            // The state remembers only batches the log holds (a cut rebuilds
            // it: `truncate_log_to`), so a duplicate's offsets are stored ones.
            debug_assert!(
                stored.last_offset < log.log_end_offset(),
                "a duplicate answered at offsets {}..={} past the log end {}",
                stored.base_offset,
                stored.last_offset,
                log.log_end_offset()
            );
            return Ok(Appended {
                base_offset: stored.base_offset,
                last_offset: stored.last_offset,
                duplicate: true,
                log_start_offset: log.log_start_offset(),
                leader_epoch: self.leader_epoch(),
            });
        }
        let leader_epoch = self.leader_epoch();
        let info = validated.append(leader_epoch).map_err(|e| self.error(e))?;
        // The log rewrote each batch's base offset in place: remember where
        // every idempotent batch went, and when.
        let now_ms = self.clock.now_ms();
        for item in batches(buf) {
            let (header, _) = item.map_err(|e| self.error(e.into()))?;
            if let Some(sequenced) = sequenced(&header) {
                let base = u64::try_from(header.base_offset).unwrap_or(0);
                let last = u64::try_from(header.last_offset()).unwrap_or(base);
                producers.states.record(&sequenced, base, last, now_ms);
            }
        }
        producers.appended_bytes_since_snapshot += buf.len() as u64;
        if producers.appended_bytes_since_snapshot >= SNAPSHOT_INTERVAL_BYTES {
            producers.appended_bytes_since_snapshot = 0;
            // Encoded under the lock, so the state matches the log end
            // exactly; written by a thread of its own (`snapshot_writer`).
            let log_end = log.log_end_offset();
            let bytes = producer_snapshot::encode(&producers.states, log_end);
            self.snapshots.write_later(log.dir(), bytes, log_end);
        }
        drop(producers);
        self.advance_high_watermark();
        self.appended.notify_waiters();
        Ok(Appended {
            base_offset: info.base_offset,
            last_offset: info.last_offset,
            duplicate: false,
            log_start_offset: log.log_start_offset(),
            leader_epoch,
        })
    }

    /// Signalled after every append (see [`crate::rpc`]'s produce: a request
    /// whose first batch is ahead of its producer's sequence waits here).
    pub fn appended(&self) -> &Notify {
        &self.appended
    }

    pub(crate) fn append_queue(&self) -> &AppendQueue {
        &self.append_queue
    }

    /// Alone, the high watermark is the log end offset; as a leader, the
    /// smallest log end offset over the ISR (`ReplicaTracker`).
    fn advance_high_watermark(&self) {
        let Some(log) = &self.log else {
            return;
        };
        let log_end = log.log_end_offset();
        let target = match self.replica.kind() {
            RoleKind::Solo => log_end,
            RoleKind::Leader => match self.replica.tracker().as_mut() {
                Some(tracker) => {
                    tracker.on_leader_append(log_end);
                    tracker.high_watermark()
                }
                None => return,
            },
            RoleKind::Follower | RoleKind::NotHosted => return,
        };
        self.publish_high_watermark(target);
    }

    /// Wakes whoever waits on the high watermark without moving it: the
    /// replica's role changed, and `acks=all` waiters must look again.
    pub(crate) fn wake_high_watermark_waiters(&self) {
        self.high_watermark.send_modify(|_| {});
    }

    /// Raises the high watermark to `target` (capped at the log end, never
    /// lowered) and wakes whoever waits on it.
    pub(crate) fn publish_high_watermark(&self, target: u64) {
        let Some(log) = &self.log else {
            return;
        };
        log.set_high_watermark(target);
        let high_watermark = log.high_watermark();
        self.high_watermark.send_if_modified(|published| {
            debug_assert!(*published <= high_watermark, "high watermark went back");
            let moved = *published != high_watermark;
            *published = high_watermark;
            moved
        });
    }

    /// Checks every idempotent batch in `buf` against the producer state.
    /// Returns the stored range when the whole buffer is a retry of stored
    /// batches, `None` when it is all new.
    fn check_sequences(
        &self,
        producers: &ProducerStates,
        buf: &[u8],
    ) -> Result<Option<StoredRange>, BrokerError> {
        let mut duplicate: Option<StoredRange> = None;
        let mut fresh = false;
        // The last batch of this request that will be appended: a later batch
        // of the same producer continues it rather than the stored state.
        let mut appended_before: Option<SequencedBatch> = None;
        for item in batches(buf) {
            let (header, _) = item.map_err(|e| self.error(e.into()))?;
            let Some(batch) = sequenced(&header) else {
                fresh = true;
                continue;
            };
            let check = match appended_before {
                Some(prev)
                    if prev.producer_id == batch.producer_id
                        && prev.producer_epoch == batch.producer_epoch =>
                {
                    let expected = increment_sequence(prev.last_sequence, 1);
                    if batch.first_sequence == expected {
                        Ok(SequenceCheck::Append)
                    } else {
                        Err(SequenceError::OutOfOrder { expected })
                    }
                }
                _ => producers.check(&batch),
            };
            match check.map_err(|e| self.sequence_error(&batch, e))? {
                SequenceCheck::Append => {
                    fresh = true;
                    appended_before = Some(batch);
                }
                SequenceCheck::Duplicate(stored) => {
                    duplicate = Some(match duplicate {
                        Some(first) => StoredRange {
                            last_offset: stored.last_offset,
                            last_sequence: stored.last_sequence,
                            ..first
                        },
                        None => stored,
                    });
                }
            }
        }
        match (duplicate, fresh) {
            (Some(stored), false) => Ok(Some(stored)),
            (None, _) => Ok(None),
            (Some(_), true) => Err(BrokerError::InvalidRequest {
                topic: self.topic.clone(),
                reason: format!(
                    "partition {}: a request mixes retried batches with new ones",
                    self.index
                ),
            }),
        }
    }

    fn sequence_error(&self, batch: &SequencedBatch, error: SequenceError) -> BrokerError {
        match error {
            SequenceError::OutOfOrder { expected } => BrokerError::OutOfOrderSequence {
                topic: self.topic.clone(),
                partition: self.index,
                producer_id: batch.producer_id,
                producer_epoch: batch.producer_epoch,
                sequence: batch.first_sequence,
                expected,
            },
            SequenceError::Fenced { current_epoch } => BrokerError::ProducerFenced {
                topic: self.topic.clone(),
                partition: self.index,
                producer_id: batch.producer_id,
                producer_epoch: batch.producer_epoch,
                current_epoch,
            },
        }
    }

    /// Whole batches from the one holding `offset`, up to `max_bytes`, never
    /// past the high watermark. With `fit`, a first batch larger than
    /// `max_bytes` is left out; without, it is returned whole so a consumer
    /// always makes progress.
    pub fn read(
        &self,
        offset: u64,
        max_bytes: usize,
        fit: bool,
    ) -> Result<ReadResult, BrokerError> {
        self.read_into(offset, max_bytes, fit, ReadInto::Copy)
    }

    /// Whole batches from the one holding `offset`, up to `max_bytes`, as far as the
    /// log end: for a leader rebuilding its own state from its log (the group
    /// coordinator), where records past the high watermark are the ones a new leader's
    /// followers have not fetched yet, acknowledged before the election all the same.
    pub(crate) fn read_to_log_end(
        &self,
        offset: u64,
        max_bytes: usize,
    ) -> Result<Bytes, BrokerError> {
        if !matches!(self.replica.kind(), RoleKind::Solo | RoleKind::Leader) {
            return Err(self.not_leader());
        }
        let log = self.log()?;
        let log_end_offset = log.log_end_offset();
        if offset >= log_end_offset {
            return Ok(Bytes::new());
        }
        let slice = log
            .read(offset, max_bytes, log_end_offset)
            .map_err(|e| self.read_error(e, offset))?;
        read_buffers::read(&slice).map_err(|e| self.error(e))
    }

    /// [`Partition::read`], handing the batches over as `into` says.
    pub fn read_into(
        &self,
        offset: u64,
        max_bytes: usize,
        fit: bool,
        into: ReadInto,
    ) -> Result<ReadResult, BrokerError> {
        // Consumers read from the leader (Kafka before KIP-392).
        if !matches!(self.replica.kind(), RoleKind::Solo | RoleKind::Leader) {
            return Err(self.not_leader());
        }
        let log = self.log()?;
        let high_watermark = self.high_watermark();
        let log_start_offset = self.log_start_offset();
        let log_end_offset = log.log_end_offset();
        if offset < log_start_offset || offset > log_end_offset {
            return Err(BrokerError::OffsetOutOfRange {
                topic: self.topic.clone(),
                partition: self.index,
                offset,
                log_start: log_start_offset,
                high_watermark,
            });
        }
        let mut batches = Bytes::new();
        let mut unfit_batch_bytes = 0;
        let mut mapped = None;
        if offset < high_watermark && max_bytes > 0 {
            let slice = log
                .read(offset, max_bytes, high_watermark)
                .map_err(|e| self.read_error(e, offset))?;
            if fit && slice.len() > max_bytes {
                unfit_batch_bytes = slice.len();
            } else {
                match into {
                    ReadInto::Copy => {
                        batches = read_buffers::read(&slice).map_err(|e| self.error(e))?;
                    }
                    ReadInto::Mapped => {
                        batches = crate::mapped_batches::map(&slice).map_err(|source| {
                            BrokerError::Io {
                                op: "map the batches of",
                                path: self.dir.clone(),
                                source,
                            }
                        })?;
                        mapped = Some(slice);
                    }
                }
            }
        }
        Ok(ReadResult {
            batches,
            high_watermark,
            log_start_offset,
            log_end_offset,
            unfit_batch_bytes,
            slice: mapped,
        })
    }

    fn read_error(&self, error: weir_log::LogError, offset: u64) -> BrokerError {
        match error {
            // Retention moved the start between our bounds check and the read.
            weir_log::LogError::OffsetOutOfRange { .. } => BrokerError::OffsetOutOfRange {
                topic: self.topic.clone(),
                partition: self.index,
                offset,
                log_start: self.log_start_offset(),
                high_watermark: self.high_watermark(),
            },
            other => self.error(other),
        }
    }

    /// The first offset whose record timestamp is at least `timestamp_ms`.
    pub fn offset_for_time(&self, timestamp_ms: i64) -> Result<Option<u64>, BrokerError> {
        let log = self.log()?;
        let found = log
            .offset_for_time(timestamp_ms)
            .map_err(|e| self.error(e))?;
        Ok(found.filter(|offset| *offset < self.high_watermark()))
    }

    /// Compacts (if the cleanup policy says so), then deletes segments past
    /// retention (likewise). Returns the number of segments deleted and rewritten.
    pub fn clean(
        &self,
        now_ms: i64,
        producer_id_expiration_ms: u64,
    ) -> Result<Cleaned, BrokerError> {
        let Some(log) = &self.log else {
            return Ok(Cleaned::default());
        };
        // Compaction never takes the append path's locks (it works below the high
        // watermark, on sealed segments): appends go on during a pass. A pass that fails
        // does not stop retention, which never reads batches.
        let compacted = log.compact(now_ms);
        if let Ok(report) = &compacted {
            for skipped in &report.skipped {
                tracing::warn!(
                    segment = %skipped.segment.display(),
                    position = skipped.position,
                    offset = skipped.offset,
                    reason = %skipped.reason,
                    "compaction left a segment with a damaged batch as it is"
                );
            }
        }
        // Excludes appends meanwhile: the log's roll (which trims the sealed
        // segment's indexes) raced with retention deleting that segment and
        // poisoned the log. Retention runs rarely; appends wait at most one pass.
        let mut producers = self.lock_producers()?;
        let producers_expired = producers
            .states
            .remove_expired(now_ms, producer_id_expiration_ms);
        let retained = log.enforce_retention(now_ms).map_err(|e| self.error(e))?;
        drop(producers);
        let compacted = compacted.map_err(|e| self.error(e))?;
        Ok(Cleaned {
            segments_deleted: retained.segments_deleted,
            segments_compacted: compacted.segments_rewritten,
            producers_expired,
        })
    }

    /// The epoch of `producer_id`'s newest batch here, if it is remembered.
    pub fn producer_epoch(&self, producer_id: i64) -> Result<Option<i16>, BrokerError> {
        Ok(self.lock_producers()?.states.epoch(producer_id))
    }

    /// Idempotent producers remembered now.
    pub fn producer_count(&self) -> Result<usize, BrokerError> {
        Ok(self.lock_producers()?.states.len())
    }

    /// Writes the producer-state snapshot, flushes, writes the clean-shutdown
    /// checkpoint and releases the log.
    pub fn close(self) -> Result<(), BrokerError> {
        let (topic, index) = (self.topic, self.index);
        // No periodic snapshot lands after this one, nor once the log's
        // directory lock is released.
        let snapshots = self.snapshots;
        let _superseded = snapshots.supersede();
        let Some(log) = self.log else {
            // Offline: nothing was opened, so nothing is written.
            return Ok(());
        };
        let producers = self.producers.into_inner().map_err(|_| {
            BrokerError::TaskFailed(format!(
                "topic {topic:?} partition {index}: producer state lock poisoned by an earlier panic"
            ))
        })?;
        producer_snapshot::write(log.dir(), &producers.states, log.log_end_offset(), true)
            .map_err(|source| BrokerError::Io {
                op: "write producer-state snapshot in",
                path: log.dir().to_path_buf(),
                source,
            })?;
        log.close().map_err(|e| BrokerError::log(&topic, index, e))
    }

    /// Removes the partition's directory.
    pub fn delete(self) -> Result<(), BrokerError> {
        let (topic, index) = (self.topic, self.index);
        // No periodic snapshot is written into the directory being removed.
        let snapshots = self.snapshots;
        let _superseded = snapshots.supersede();
        match self.log {
            Some(log) => log.delete().map_err(|e| BrokerError::log(&topic, index, e)),
            None => match std::fs::remove_dir_all(&self.dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(BrokerError::Io {
                    op: "remove partition directory",
                    path: self.dir,
                    source: e,
                }),
                _ => Ok(()),
            },
        }
    }
}

fn log_rebuilt(topic: &str, index: u32, producers: usize, rebuilt: &Rebuilt) {
    match rebuilt {
        Rebuilt::Snapshot {
            snapshot_offset,
            batches_replayed,
        } => tracing::debug!(
            topic,
            partition = index,
            producers,
            snapshot_offset,
            batches_replayed,
            "producer state from snapshot"
        ),
        Rebuilt::TailScan {
            segments,
            log_bytes,
            reached_log_start,
            snapshot_refused,
        } => {
            if let Some(reason) = snapshot_refused {
                tracing::warn!(topic, partition = index, %reason, "producer-state snapshot not used");
            }
            tracing::info!(
                topic,
                partition = index,
                producers,
                segments,
                log_bytes,
                reached_log_start,
                "producer state rebuilt from the log tail"
            );
        }
    }
}

/// What one [`Partition::clean`] pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cleaned {
    pub segments_deleted: usize,
    pub segments_compacted: usize,
    pub producers_expired: usize,
}

/// The idempotence fields of a batch, if it comes from an idempotent producer.
pub(crate) fn sequenced(header: &BatchHeader) -> Option<SequencedBatch> {
    if header.producer_id == NO_PRODUCER_ID
        || header.base_sequence < 0
        || header.last_offset_delta < 0
    {
        return None;
    }
    let last_sequence = increment_sequence(header.base_sequence, header.last_offset_delta);
    Some(SequencedBatch {
        producer_id: header.producer_id,
        producer_epoch: header.producer_epoch,
        first_sequence: header.base_sequence,
        last_sequence,
    })
}
