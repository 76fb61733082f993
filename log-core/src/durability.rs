//! Durability of a partition log: fsync policy bookkeeping, the recovery-point file, flush,
//! clean close, and poisoning — a failed fsync is final.
//!
//! Why final: after a failed `fsync` the kernel may already have dropped the dirty pages
//! it could not write (and cleared the error), so a retried `fsync` can succeed without
//! the data ever reaching the disk. The log therefore stops taking writes at the first
//! failure of any step that makes state durable — an fsync of a segment, index, checkpoint
//! or the directory, a checkpoint replacement, an index seal — and of any change that stops
//! half done (a write whose undo fails, a truncation). Every later append, flush,
//! truncation, retention or compaction returns [`LogError::Poisoned`] with the first cause.
//! Reads keep working: acknowledged bytes are still in the files. Reopening recovers from
//! what is on disk.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::checkpoint::{Checkpoint, CheckpointKind};
use crate::config::FsyncPolicy;
use crate::segment::Segment;
use crate::{LogError, PartitionLog};

impl PartitionLog {
    /// Err([`LogError::Poisoned`]) once an earlier failure stopped the log taking writes.
    pub(crate) fn check_writable(&self) -> Result<(), LogError> {
        match self.poison_cause.get() {
            None => Ok(()),
            Some(cause) => Err(LogError::Poisoned {
                dir: self.dir.clone(),
                cause: Arc::clone(cause),
            }),
        }
    }

    /// Stops the log taking writes for good (see the module docs) and returns the error
    /// to report: `Poisoned`, naming `error` as its cause.
    pub(crate) fn poison(&self, error: LogError) -> LogError {
        let cause = match error {
            // Already poisoned further down: keep the original cause.
            LogError::Poisoned { cause, .. } => cause,
            other => Arc::new(other),
        };
        // The first cause wins; a racing second failure still reports its own.
        let _ = self.poison_cause.set(Arc::clone(&cause));
        LogError::Poisoned {
            dir: self.dir.clone(),
            cause,
        }
    }

    /// True once a failed fsync (or a change that stopped half done) stopped the log
    /// taking writes.
    pub fn is_poisoned(&self) -> bool {
        self.poison_cause.get().is_some()
    }

    /// After an append: fsync a segment that just rolled, and apply `FsyncPolicy::IntervalMs`.
    pub(crate) fn after_append(&self, rolled: bool) -> Result<(), LogError> {
        if rolled {
            self.sync_sealed()?;
        }
        if let FsyncPolicy::IntervalMs(interval_ms) = self.config().fsync {
            let since = self
                .now_ms()
                .saturating_sub(self.last_flush_ms.load(Ordering::Acquire));
            if since >= interval_ms {
                self.flush_inner(false)?;
            }
        }
        Ok(())
    }

    /// Fsyncs the sealed segments not yet synced (a roll leaves its old segment to this,
    /// outside the writer lock) and then advances the recovery point, in memory and in its
    /// file, to the active segment, so a recovery after a crash scans only that one.
    fn sync_sealed(&self) -> Result<(), LogError> {
        let mut durability = self.lock_durability()?;
        let rolled_synced_below = self.rolled_synced_below.load(Ordering::Acquire);
        let (pending, active_base) = {
            let map = self.read_segments();
            let active_base = map.keys().next_back().copied().unwrap_or(0);
            let from = durability.synced_below.max(rolled_synced_below);
            let pending: Vec<Arc<Segment>> = map
                .range(from.min(active_base)..active_base)
                .map(|(_, s)| Arc::clone(s))
                .collect();
            (pending, active_base)
        };
        #[cfg(feature = "fault-injection")]
        crate::pause_point::reached(&self.dir, crate::pause_point::PausePoint::BeforeSealedFsync);
        for segment in pending {
            segment.sync_log().map_err(|e| self.poison(e))?;
        }
        if active_base > durability.synced_below {
            self.recovery_point.fetch_max(active_base, Ordering::AcqRel);
            self.write_recovery_point(active_base)?;
            durability.synced_below = active_base;
        }
        Ok(())
    }

    /// Replaces the recovery-point file; a failure poisons the log.
    ///
    /// The file never names more than the in-memory recovery point, which moves only after
    /// the fsyncs it covers (`sync_sealed`, `flush_inner`, an `always` append or roll):
    /// a sealed segment is durable before the recovery point moves past it, whichever
    /// thread fsyncs it. Lowering it (truncation) is always allowed.
    pub(crate) fn write_recovery_point(&self, offset: u64) -> Result<(), LogError> {
        debug_assert!(
            offset <= self.recovery_point(),
            "recovery-point file {offset} past what was fsynced ({})",
            self.recovery_point()
        );
        Checkpoint {
            log_start_offset: self.log_start_offset(),
            log_end_offset: offset,
            high_watermark: self.high_watermark().min(offset),
            active_base_offset: 0,
            active_size_bytes: 0,
        }
        .write(&self.dir, CheckpointKind::RecoveryPoint)
        .map_err(|e| self.poison(e))?;
        self.recovery_point_on_disk.store(offset, Ordering::Release);
        Ok(())
    }

    /// Fsyncs everything appended so far. A failure poisons the log.
    pub fn flush(&self) -> Result<(), LogError> {
        self.flush_inner(true)
    }

    pub(crate) fn flush_inner(&self, wait: bool) -> Result<(), LogError> {
        self.check_writable()?;
        let mut durability = if wait {
            self.lock_durability()?
        } else {
            match self.durability.try_lock() {
                Ok(guard) => guard,
                // Another flush is running; it covers this append's interval.
                Err(_) => return Ok(()),
            }
        };
        self.last_flush_ms.store(self.now_ms(), Ordering::Release);
        // The end offset first: every byte below it is in a segment of the snapshot.
        let log_end = self.log_end_offset();
        let (pending, active_base) = {
            let map = self.read_segments();
            let active_base = map.keys().next_back().copied().unwrap_or(0);
            let pending: Vec<Arc<Segment>> = map
                .range(durability.synced_below..)
                .map(|(_, s)| Arc::clone(s))
                .collect();
            (pending, active_base)
        };
        for segment in &pending {
            segment.sync_log().map_err(|e| self.poison(e))?;
        }
        self.recovery_point.fetch_max(log_end, Ordering::AcqRel);
        if active_base > durability.synced_below {
            self.write_recovery_point(active_base)?;
            durability.synced_below = active_base;
        }
        Ok(())
    }

    /// Retention moved the log start: readers see it before files go.
    pub(crate) fn set_log_start_offset(&self, offset: u64) {
        self.log_start_offset.fetch_max(offset, Ordering::AcqRel);
        self.high_watermark
            .fetch_max(offset.min(self.log_end_offset()), Ordering::AcqRel);
    }

    /// Flushes, trims the active segment's indexes and writes the clean-shutdown checkpoint,
    /// so the next open scans nothing. On any failure no clean-shutdown checkpoint is left
    /// behind, so the next open recovers.
    pub fn close(self) -> Result<(), LogError> {
        self.flush()?;
        // Everything is durable: after the next open consumes the clean-shutdown
        // checkpoint, damage anywhere below this end is refused, never cut.
        self.write_recovery_point(self.log_end_offset())?;
        let writer = self.lock_writer()?;
        let active = Arc::clone(&writer.active);
        active.seal_indexes().map_err(|e| self.poison(e))?;
        let written = Checkpoint {
            log_start_offset: self.log_start_offset(),
            log_end_offset: self.log_end_offset(),
            high_watermark: self.high_watermark(),
            active_base_offset: active.base_offset,
            active_size_bytes: active.size_bytes(),
        }
        .write(&self.dir, CheckpointKind::CleanShutdown);
        if let Err(error) = written {
            // The rename may have happened before the directory fsync failed. Taking the
            // file back is best effort: if even that fails, the checkpoint still tells the
            // truth (everything it describes was fsynced above); it only skips a scan.
            let _ = Checkpoint::remove(&self.dir, CheckpointKind::CleanShutdown);
            return Err(self.poison(error));
        }
        Ok(())
    }
}
