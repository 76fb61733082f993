//! `PartitionLog`: one partition's log — open, append, roll, durability, close — and the
//! locks that let one writer and many readers share it.
//!
//! Locks, always taken in this order: `cleaner` (one compaction pass at a time, held for
//! the whole pass), `maintenance` (retention, truncation, and each step of a compaction
//! pass that changes files: planning, one segment's swap, the checkpoint),
//! `durability` (fsync bookkeeping, the recovery-point file), `writer` (appends, rolls),
//! `leader_epochs` (the leader-epoch cache, held across its checkpoint write; see
//! `partition_epochs.rs`), `segments` (the map, held only to clone an `Arc<Segment>` or to
//! insert/remove one).
//! Readers take only `segments`, briefly, then `pread` outside any lock; they see a batch
//! only after its bytes are written and its segment's end and the log end offset are
//! published (Release/Acquire). An fsync never holds `segments`, so readers never wait
//! for one; with `FsyncPolicy::Always` the fsync holds `writer` (it is the append).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::append_validation::{produce_checks, summarize, with_validator, BufferSummary};
use crate::batch::{self, BatchHeader, TimestampType};
use crate::config::{FsyncPolicy, LogConfig};
use crate::dir_lock::{DirLock, LockMode};
use crate::error::IoContext;
use crate::file_io;
use crate::file_name::sync_dir;
use crate::leader_epoch::LeaderEpochCache;
use crate::load::load;
use crate::partition_epochs::{latest_or_none, load_cache};
use crate::segment::{IndexTracker, Segment, SegmentEnd};
use crate::LogError;

/// What an append wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: u64,
    pub last_offset: u64,
    pub max_timestamp: i64,
    pub record_count: u32,
    pub bytes: u32,
}

/// Batches that passed [`PartitionLog::validate_append`], ready to be stored.
#[must_use = "nothing is stored until `append` is called"]
pub struct ValidatedAppend<'a> {
    log: &'a PartitionLog,
    batches: &'a mut [u8],
    summary: BufferSummary,
}

impl ValidatedAppend<'_> {
    /// The validated batches, as they will be stored (before offsets are assigned).
    pub fn batches(&self) -> &[u8] {
        self.batches
    }

    /// Records in all the batches.
    pub fn record_count(&self) -> u32 {
        self.summary.record_count
    }

    /// Stores the batches: offsets assigned from the log end offset (base offsets rewritten
    /// in place, outside the CRC), `leader_epoch` stamped, one write; see
    /// [`PartitionLog::append`].
    pub fn append(self, leader_epoch: i32) -> Result<AppendInfo, LogError> {
        self.log
            .append_validated(self.batches, self.summary, leader_epoch)
    }
}

impl std::fmt::Debug for ValidatedAppend<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValidatedAppend")
            .field("dir", &self.log.dir)
            .field("bytes", &self.batches.len())
            .field("summary", &self.summary)
            .finish()
    }
}

/// One partition's log; see the module docs for the concurrency design.
pub struct PartitionLog {
    pub(crate) dir: PathBuf,
    pub(crate) config: RwLock<LogConfig>,
    pub(crate) segments: RwLock<BTreeMap<u64, Arc<Segment>>>,
    pub(crate) writer: Mutex<Writer>,
    pub(crate) maintenance: Mutex<()>,
    pub(crate) cleaner: Mutex<()>,
    /// Truncations so far: a compaction pass that sees it change stops (its key map may
    /// hold keys whose newest value is gone).
    pub(crate) truncations: AtomicU64,
    pub(crate) durability: Mutex<Durability>,
    pub(crate) log_start_offset: AtomicU64,
    pub(crate) log_end_offset: AtomicU64,
    pub(crate) high_watermark: AtomicU64,
    /// Offsets below it are on stable storage.
    pub(crate) recovery_point: AtomicU64,
    /// What the recovery-point file says now (it lags `recovery_point`): a recovery after
    /// a crash scans from here, so compaction stays below it.
    pub(crate) recovery_point_on_disk: AtomicU64,
    /// Every segment with a base below it was fsynced by its roll (under `fsync = always`;
    /// the recovery-point file may not say so yet): `sync_sealed` need not sync it again.
    pub(crate) rolled_synced_below: AtomicU64,
    /// Set once, by the first failure that stops the log taking writes.
    pub(crate) poison_cause: OnceLock<Arc<LogError>>,
    pub(crate) last_flush_ms: AtomicU64,
    /// Each leader epoch's first offset in this log (see `partition_epochs.rs`).
    pub(crate) leader_epochs: Mutex<LeaderEpochCache>,
    /// The latest epoch in `leader_epochs` (-1 for none), changed only with it: an append
    /// in the current epoch compares against it and takes no lock.
    pub(crate) latest_leader_epoch: AtomicI32,
    clock: Instant,
    /// One owner per partition directory, for as long as the log is open.
    _lock: DirLock,
}

// Readers on many threads, one writer at a time: the log must be shareable.
const _: fn() = || {
    fn shareable<T: Send + Sync>() {}
    shareable::<PartitionLog>();
};

pub(crate) struct Writer {
    pub(crate) active: Arc<Segment>,
    pub(crate) tracker: IndexTracker,
    /// Wall-clock ms the active segment's age counts from (`segment.ms`).
    pub(crate) active_created_ms: u64,
}

pub(crate) struct Durability {
    /// Every segment with a base below this is fsynced, and the recovery-point file says so.
    pub(crate) synced_below: u64,
}

impl PartitionLog {
    /// Opens (creating if needed) the partition in `dir`. After a clean close nothing is
    /// scanned; otherwise the segments from the last recovery point on are validated batch
    /// by batch and a torn tail is cut. The high watermark is restored from the checkpoint
    /// (after an unclean stop: from the recovery-point file, else the log start offset).
    ///
    /// The directory is locked exclusively (`.lock`, see [`DirLock`]) for the life of the
    /// log: a second open, in this process or another, fails with [`LogError::Locked`].
    /// Damage below the recovery point fails the open with
    /// [`LogError::DamagedBelowRecoveryPoint`].
    pub fn open(dir: &Path, config: LogConfig) -> Result<PartitionLog, LogError> {
        std::fs::create_dir_all(dir).io_ctx("create partition directory", dir)?;
        let lock = DirLock::acquire(dir, LockMode::Exclusive)?;
        let loaded = load(dir, &config)?;
        let Some((&active_base, active)) = loaded.segments.iter().next_back() else {
            return Err(LogError::Corrupt {
                segment: dir.to_path_buf(),
                position: 0,
                reason: "no segment after loading".to_string(),
            });
        };
        let active = Arc::clone(active);
        let active_created_ms = segment_age_start_ms(&active);
        let log_start = loaded
            .segments
            .keys()
            .next()
            .copied()
            .unwrap_or(active_base);
        let leader_epochs = load_cache(dir, &loaded.segments, log_start, loaded.log_end_offset)?;
        let log = PartitionLog {
            dir: dir.to_path_buf(),
            config: RwLock::new(config),
            writer: Mutex::new(Writer {
                active,
                tracker: loaded.active_tracker,
                active_created_ms,
            }),
            segments: RwLock::new(loaded.segments),
            maintenance: Mutex::new(()),
            cleaner: Mutex::new(()),
            truncations: AtomicU64::new(0),
            durability: Mutex::new(Durability {
                synced_below: active_base,
            }),
            log_start_offset: AtomicU64::new(log_start),
            log_end_offset: AtomicU64::new(loaded.log_end_offset),
            high_watermark: AtomicU64::new(loaded.high_watermark),
            recovery_point: AtomicU64::new(loaded.recovery_point),
            recovery_point_on_disk: AtomicU64::new(loaded.recovery_point),
            rolled_synced_below: AtomicU64::new(active_base),
            poison_cause: OnceLock::new(),
            last_flush_ms: AtomicU64::new(0),
            latest_leader_epoch: AtomicI32::new(latest_or_none(&leader_epochs)),
            leader_epochs: Mutex::new(leader_epochs),
            clock: Instant::now(),
            _lock: lock,
        };
        if !loaded.clean {
            // The recovery fsynced every scanned segment: all of the log is durable now.
            log.write_recovery_point(loaded.log_end_offset)?;
        }
        Ok(log)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A copy of the current settings.
    pub fn config(&self) -> LogConfig {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the settings; takes effect for the next append, roll, retention or compaction.
    pub fn set_config(&self, config: LogConfig) {
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = config;
    }

    pub fn log_start_offset(&self) -> u64 {
        self.log_start_offset.load(Ordering::Acquire)
    }

    pub fn log_end_offset(&self) -> u64 {
        self.log_end_offset.load(Ordering::Acquire)
    }

    pub fn high_watermark(&self) -> u64 {
        self.high_watermark.load(Ordering::Acquire)
    }

    /// Raises the high watermark to `offset`, capped at the log end offset; never lowers it
    /// (only a truncation does).
    pub fn set_high_watermark(&self, offset: u64) {
        let capped = offset.min(self.log_end_offset());
        self.high_watermark.fetch_max(capped, Ordering::AcqRel);
    }

    /// Offsets below it are known to be on stable storage.
    pub fn recovery_point(&self) -> u64 {
        self.recovery_point.load(Ordering::Acquire)
    }

    /// Bytes in all segment files.
    pub fn size_bytes(&self) -> u64 {
        self.read_segments().values().map(|s| s.size_bytes()).sum()
    }

    /// Number of segments (the active one included).
    pub fn segment_count(&self) -> usize {
        self.read_segments().len()
    }

    pub(crate) fn read_segments(&self) -> RwLockReadGuard<'_, BTreeMap<u64, Arc<Segment>>> {
        // The map is only ever changed by whole insert/remove calls: still consistent.
        self.segments.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn write_segments(&self) -> RwLockWriteGuard<'_, BTreeMap<u64, Arc<Segment>>> {
        self.segments.write().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn segment_snapshot(&self) -> Vec<Arc<Segment>> {
        self.read_segments().values().cloned().collect()
    }

    pub(crate) fn lock_writer(&self) -> Result<MutexGuard<'_, Writer>, LogError> {
        self.writer.lock().map_err(|_| self.lock_poisoned())
    }

    pub(crate) fn lock_durability(&self) -> Result<MutexGuard<'_, Durability>, LogError> {
        self.durability.lock().map_err(|_| self.lock_poisoned())
    }

    pub(crate) fn lock_maintenance(&self) -> Result<MutexGuard<'_, ()>, LogError> {
        self.maintenance.lock().map_err(|_| self.lock_poisoned())
    }

    pub(crate) fn lock_cleaner(&self) -> Result<MutexGuard<'_, ()>, LogError> {
        self.cleaner.lock().map_err(|_| self.lock_poisoned())
    }

    fn lock_poisoned(&self) -> LogError {
        LogError::LockPoisoned {
            dir: self.dir.clone(),
        }
    }

    pub(crate) fn now_ms(&self) -> u64 {
        u64::try_from(self.clock.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Validates every batch in `batches` (one or more concatenated), assigns offsets from
    /// the log end offset (rewriting base offsets, outside the CRC) and stamps
    /// `leader_epoch`, then writes them with one write. With
    /// `message.timestamp.type = LogAppendTime` each batch is also marked LogAppendTime with
    /// the wall clock as its max timestamp (CRC recomputed), as a Kafka broker does.
    /// [`PartitionLog::validate_append`] then [`ValidatedAppend::append`], for callers
    /// with nothing to do between the two.
    pub fn append(&self, batches: &mut [u8], leader_epoch: i32) -> Result<AppendInfo, LogError> {
        self.validate_append(batches)?.append(leader_epoch)
    }

    /// The validation half of [`PartitionLog::append`], outside any lock of the log: every
    /// batch whole, intact (CRC-32C) and within `max.message.bytes`, and every record of it
    /// well formed with CreateTime timestamps within `message.timestamp.before.max.ms` /
    /// `after.max.ms` (see [`batch::RecordValidator::validate_produced`]). A caller that
    /// must look at the batches before they are stored (the broker's idempotence check)
    /// does so between this and [`ValidatedAppend::append`], knowing they are intact.
    /// `batches` rewritten in the topic's `compression.type`, or `None` when the topic
    /// keeps the producer's codec (the default) or every batch is in it already; see
    /// `recompress.rs`. The result is appended like any produced buffer.
    pub fn recompress(&self, batches: &[u8]) -> Result<Option<Vec<u8>>, LogError> {
        // Read alone first: the common case, a topic at `producer`, copies nothing.
        let target = self
            .config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .compression;
        let Some(target) = target else {
            return Ok(None);
        };
        let config = self.config();
        let checks = produce_checks(&config, wall_clock_ms());
        with_validator(|validator| {
            crate::recompress::recompress(validator, batches, target, &checks)
        })
    }

    pub fn validate_append<'a>(
        &'a self,
        batches: &'a mut [u8],
    ) -> Result<ValidatedAppend<'a>, LogError> {
        self.check_writable()?;
        let config = self.config();
        let checks = produce_checks(&config, wall_clock_ms());
        let summary = with_validator(|validator| {
            summarize(batches, &checks, |batch| {
                validator.validate_produced(batch, &checks)
            })
        })?;
        #[cfg(feature = "fault-injection")]
        crate::pause_point::reached(&self.dir, crate::pause_point::PausePoint::AfterValidation);
        Ok(ValidatedAppend {
            log: self,
            batches,
            summary,
        })
    }

    /// Writes validated batches: see [`ValidatedAppend::append`].
    fn append_validated(
        &self,
        batches: &mut [u8],
        mut summary: BufferSummary,
        leader_epoch: i32,
    ) -> Result<AppendInfo, LogError> {
        let config = self.config();
        let log_append_time_ms =
            (config.timestamp_type == TimestampType::LogAppendTime).then(wall_clock_ms);
        if let Some(now_ms) = log_append_time_ms {
            summary.max_timestamp = now_ms;
        }
        let mut writer = self.lock_writer()?;
        self.check_writable()?;
        let base_offset = self.log_end_offset.load(Ordering::Acquire);
        let mut position = 0usize;
        let mut next = base_offset;
        let active_base = writer.active.base_offset;
        let buffer_bytes = batches.len() as u64;
        while position < batches.len() {
            let rest = batches.get_mut(position..).unwrap_or_default();
            let header = BatchHeader::parse(rest)
                .map_err(|source| LogError::BatchAt { position, source })?;
            let offset = i64::try_from(next).map_err(|_| LogError::SegmentOverflow {
                segment_base_offset: active_base,
                size_bytes: buffer_bytes,
            })?;
            batch::set_base_offset(rest, offset);
            batch::set_partition_leader_epoch(rest, leader_epoch);
            if let Some(now_ms) = log_append_time_ms {
                // The one rewrite inside the CRC: attributes and max timestamp change, so
                // the CRC is recomputed — over bytes `validate_append` just verified, so no
                // damage can be laundered into a valid batch. Records are not touched.
                let whole = rest.get_mut(..header.size_bytes()).unwrap_or_default();
                batch::set_log_append_time(whole, now_ms);
            }
            next += u64::try_from(header.last_offset_delta).unwrap_or(0) + 1;
            position += header.size_bytes();
        }
        let last_offset = next - 1;
        // Recorded (and its checkpoint written) before any byte: see `partition_epochs.rs`.
        self.note_leader_append(leader_epoch, base_offset)?;
        let (info, rolled) =
            self.write_locked(&mut writer, batches, (base_offset, last_offset), summary)?;
        drop(writer);
        self.after_append(rolled)?;
        Ok(info)
    }

    /// Follower path: `batches` already carry the leader's offsets and epochs, stored as
    /// they came. As Kafka's follower append, offsets may leave gaps (a compacted leader):
    /// the first batch starts at or after the log end offset and each next one after the
    /// previous one's last offset. A batch whose epoch differs from the latest records it
    /// in the leader-epoch cache; a lower one is accepted as Kafka does (see
    /// [`crate::LeaderEpochCache::assign`]).
    pub fn append_replicated(&self, batches: &[u8]) -> Result<AppendInfo, LogError> {
        self.check_writable()?;
        // A leader validated these as produced; checked again as stored batches (every
        // record decodable), so a follower never stores what a reader would refuse.
        let checks = batch::ProduceChecks::new(usize::MAX);
        let summary = with_validator(|validator| {
            summarize(batches, &checks, |batch| {
                validator.validate_stored(batch, batch::DECOMPRESSED_BYTES_MAX_DEFAULT)
            })
        })?;
        let mut writer = self.lock_writer()?;
        self.check_writable()?;
        let log_end = self.log_end_offset.load(Ordering::Acquire);
        let mut expected = log_end;
        let mut first_offset = None;
        let mut latest_epoch = self.latest_leader_epoch.load(Ordering::Acquire);
        let mut epochs_change = false;
        for (position, item) in positions(batches) {
            let header = item?;
            let base = u64::try_from(header.base_offset)
                .ok()
                .filter(|&base| base >= expected);
            let Some(base) = base else {
                return Err(LogError::NonContiguous {
                    position,
                    expected,
                    got: header.base_offset,
                });
            };
            first_offset.get_or_insert(base);
            expected = u64::try_from(header.next_offset()).unwrap_or(u64::MAX);
            let epoch = header.partition_leader_epoch;
            if epoch >= 0 && epoch != latest_epoch {
                epochs_change = true;
                latest_epoch = epoch;
            }
        }
        if epochs_change {
            // Before any byte: see `partition_epochs.rs`.
            self.note_replicated_epochs(batches)?;
        }
        let offsets = (first_offset.unwrap_or(log_end), expected - 1);
        let (info, rolled) = self.write_locked(&mut writer, batches, offsets, summary)?;
        drop(writer);
        self.after_append(rolled)?;
        Ok(info)
    }

    /// Writes validated batches whose offsets are final, `offsets` = (first batch's base,
    /// last batch's last offset); rolls first if needed, at the log end offset (below the
    /// first base when a follower's batches start past a gap).
    fn write_locked(
        &self,
        writer: &mut Writer,
        buf: &[u8],
        offsets: (u64, u64),
        summary: BufferSummary,
    ) -> Result<(AppendInfo, bool), LogError> {
        let config = self.config();
        let (base_offset, last_offset) = offsets;
        let log_end = self.log_end_offset.load(Ordering::Acquire);
        debug_assert!(log_end <= base_offset && base_offset <= last_offset);
        let rolled = self.should_roll(writer, &config, buf.len() as u64, last_offset, summary);
        if rolled {
            self.roll(writer, log_end, &config)?;
        }
        let segment = Arc::clone(&writer.active);
        let start = segment.size_bytes();
        let end_bytes = start + buf.len() as u64;
        if end_bytes > u64::from(u32::MAX)
            || last_offset - segment.base_offset > u64::from(u32::MAX)
        {
            return Err(LogError::SegmentOverflow {
                segment_base_offset: segment.base_offset,
                size_bytes: end_bytes,
            });
        }
        if let Err(source) = file_io::write_all_at(&segment.log, buf, start, &segment.paths.log) {
            let error = LogError::Io {
                op: "append to",
                path: segment.paths.log.clone(),
                source,
            };
            // Cut what may have landed: nothing was published, so readers saw none of it.
            // If even the cut fails the tail is unknown, and only a reopen (which scans and
            // cuts it) can make the log writable again.
            return match file_io::set_len(&segment.log, start, &segment.paths.log) {
                Ok(()) => Err(error),
                Err(_) => Err(self.poison(error)),
            };
        }
        let mut tracker = writer.tracker;
        for (position, item) in positions(buf) {
            let header = item?;
            tracker.on_batch(
                &segment,
                start + position as u64,
                &header,
                config.index_interval_bytes,
            );
        }
        writer.tracker = tracker;
        if config.fsync == FsyncPolicy::Always {
            segment.sync_log().map_err(|e| self.poison(e))?;
        }
        segment.publish(SegmentEnd {
            size_bytes: end_bytes,
            next_offset: last_offset + 1,
            max_timestamp: tracker.max_timestamp,
        });
        self.log_end_offset
            .store(last_offset + 1, Ordering::Release);
        if config.fsync == FsyncPolicy::Always {
            self.recovery_point
                .fetch_max(last_offset + 1, Ordering::AcqRel);
        }
        let info = AppendInfo {
            base_offset,
            last_offset,
            max_timestamp: summary.max_timestamp,
            record_count: summary.record_count,
            bytes: buf.len() as u32,
        };
        Ok((info, rolled))
    }

    fn should_roll(
        &self,
        writer: &Writer,
        config: &LogConfig,
        append_bytes: u64,
        last_offset: u64,
        summary: BufferSummary,
    ) -> bool {
        let segment = &writer.active;
        let size = segment.size_bytes();
        if size == 0 {
            return false;
        }
        size + append_bytes > config.segment_bytes
            || wall_clock_now_ms().saturating_sub(writer.active_created_ms) >= config.segment_ms
            || segment.offset_index.free_entries() < summary.batch_count.min(1)
            || segment.time_index.free_entries() < 2
            || last_offset - segment.base_offset > u64::from(u32::MAX)
            || size + append_bytes > u64::from(u32::MAX)
    }

    /// Seals the old segment's indexes (trimmed and fsynced), then starts a new active
    /// segment at `base_offset`. The old segment's log is fsynced by `after_append`, once
    /// the writer lock is released (as Kafka flushes a rolled segment in the background),
    /// so appends never wait for it; only then does the recovery point move past it
    /// (`sync_sealed`). Under `fsync = always` every append to it was fsynced already.
    ///
    /// A crash before that fsync can lose the old segment's unsynced tail while the new
    /// segment's bytes survive: both lie above the recovery point, where recovery cuts at
    /// the first bad batch or at a segment that ends short of the next, and deletes the
    /// later segments. Nothing in that window was promised durable: under an interval
    /// policy only a flush promises, and a flush fsyncs every segment from the recovery
    /// point on, the sealed one included.
    fn roll(
        &self,
        writer: &mut Writer,
        base_offset: u64,
        config: &LogConfig,
    ) -> Result<(), LogError> {
        let segment = Arc::new(Segment::create(
            &self.dir,
            base_offset,
            config.index_bytes_max,
        )?);
        sync_dir(&self.dir)
            .io_ctx("fsync directory", &self.dir)
            .map_err(|e| self.poison(e))?;
        // Seal before the new segment becomes visible: once it is in the map the old one
        // counts as sealed, and retention and compaction (which hold the maintenance lock,
        // not the writer lock) may delete its files, which would fail the trim.
        writer.active.seal_indexes().map_err(|e| self.poison(e))?;
        if config.fsync == FsyncPolicy::Always {
            // Every append to it was fsynced already, so this costs next to nothing; it
            // keeps the promise of the append that rolled (everything before it is
            // durable) even right after a switch from another policy.
            writer.active.sync_log().map_err(|e| self.poison(e))?;
            self.recovery_point.fetch_max(base_offset, Ordering::AcqRel);
            self.rolled_synced_below
                .fetch_max(base_offset, Ordering::AcqRel);
        }
        self.write_segments()
            .insert(base_offset, Arc::clone(&segment));
        writer.active = segment;
        writer.tracker = IndexTracker::new();
        writer.active_created_ms = wall_clock_now_ms();
        Ok(())
    }

    /// Removes the partition directory and everything in it.
    pub fn delete(self) -> Result<(), LogError> {
        let dir = self.dir.clone();
        drop(self);
        std::fs::remove_dir_all(&dir).io_ctx("remove partition directory", &dir)?;
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent).io_ctx("fsync directory", parent)?;
        }
        Ok(())
    }
}

/// Milliseconds since the Unix epoch, as `u64` (0 for a clock set before it).
pub(crate) fn wall_clock_now_ms() -> u64 {
    u64::try_from(wall_clock_ms()).unwrap_or(0)
}

/// Where the age of an opened active segment counts from: as in Kafka, the timestamp of
/// its first batch (never later than now), so `segment.ms` survives a restart; an empty
/// segment counts from now (it never rolls before its first append anyway).
fn segment_age_start_ms(active: &Segment) -> u64 {
    let now_ms = wall_clock_now_ms();
    match active.header_at(0, active.size_bytes()) {
        Ok(header) if header.max_timestamp >= 0 => {
            u64::try_from(header.max_timestamp).map_or(now_ms, |t| t.min(now_ms))
        }
        _ => now_ms,
    }
}

/// Milliseconds since the Unix epoch (0 for a clock set before it).
fn wall_clock_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Iterates `(position, header)` over a buffer already validated.
pub(crate) fn positions(
    buf: &[u8],
) -> impl Iterator<Item = (usize, Result<BatchHeader, LogError>)> + '_ {
    let mut position = 0usize;
    std::iter::from_fn(move || {
        if position >= buf.len() {
            return None;
        }
        let at = position;
        let rest = buf.get(at..).unwrap_or_default();
        match BatchHeader::parse(rest) {
            Ok(header) => {
                position += header.size_bytes();
                Some((at, Ok(header)))
            }
            Err(source) => {
                position = buf.len();
                Some((
                    at,
                    Err(LogError::BatchAt {
                        position: at,
                        source,
                    }),
                ))
            }
        }
    })
}
