//! A partition log's leader-epoch cache (see `leader_epoch.rs`), kept in step with the
//! log: loaded (or rebuilt) on open and cut to the recovered log, extended by appends,
//! cut by truncation and retention; and the questions replication asks of it.
//!
//! Ordering against the log, so that a crash at any point leaves a file that names no
//! epoch whose batches are gone once open has cut it to the log, and misses no epoch whose
//! batches survived:
//!
//! - an append that brings a new epoch writes the file *before* its batches (under the
//!   writer lock): a crash leaves an entry at or past the recovered log end, which open
//!   drops;
//! - truncation cuts the cache in memory with the log end, and writes the file *after*
//!   the log is cut: a crash leaves extra entries past the end, which open drops;
//! - retention writes the file *after* the segment deletions are durable: a crash leaves
//!   entries below the log start, which open moves up.
//!
//! The append path compares the batch's epoch with `latest_leader_epoch` (an atomic) and
//! takes the cache's lock only when it differs, once per epoch. The cache's lock is held
//! while the file is written, so a caller asking for an epoch's end offset waits for at
//! most one checkpoint write; the lock order puts it after `writer`, before `segments`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};

use crate::batch::NO_PARTITION_LEADER_EPOCH;
use crate::leader_epoch::{Assigned, EpochEntry, LeaderEpochCache};
use crate::leader_epoch_checkpoint::{self as checkpoint, CheckpointRead};
use crate::partition_log::positions;
use crate::segment::Segment;
use crate::{LogError, PartitionLog};

/// What a follower does next, from its leader's answer to OffsetsForLeaderEpoch (KIP-279):
/// truncate to `offset`, then, unless `complete`, ask again for its (new) latest epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerTruncation {
    pub offset: u64,
    /// False when the leader answered with an epoch this log does not have: the cut
    /// removed this log's epochs above it, and the next answer decides where it ends.
    pub complete: bool,
}

/// Loads the cache of a just-loaded directory: reads the file (rebuilding it from the
/// batch headers when missing or damaged), cuts it to the log, and writes it back if that
/// changed anything.
pub(crate) fn load_cache(
    dir: &Path,
    segments: &BTreeMap<u64, Arc<Segment>>,
    log_start_offset: u64,
    log_end_offset: u64,
) -> Result<LeaderEpochCache, LogError> {
    let (mut cache, mut changed) = match checkpoint::read(dir)? {
        CheckpointRead::Found(cache) => (cache, false),
        CheckpointRead::Missing => {
            if log_end_offset > log_start_offset {
                tracing::warn!(
                    dir = %dir.display(),
                    "leader-epoch checkpoint is missing; rebuilding it from the batch headers"
                );
            }
            (checkpoint::rebuild(segments, log_end_offset)?, true)
        }
        CheckpointRead::Damaged(why) => {
            tracing::warn!(
                dir = %dir.display(),
                "leader-epoch checkpoint is damaged ({why}); rebuilding it from the batch headers"
            );
            (checkpoint::rebuild(segments, log_end_offset)?, true)
        }
    };
    // An epoch recorded before its batches were lost (a torn tail recovery cut, a crash
    // before the write), or before a truncation whose file write a crash prevented.
    changed |= cache.truncate_from_end(log_end_offset);
    // Retention whose file write a crash prevented.
    changed |= cache.truncate_from_start(log_start_offset);
    if changed {
        checkpoint::write(dir, &cache)?;
    }
    Ok(cache)
}

/// The atomic's value for a cache.
pub(crate) fn latest_or_none(cache: &LeaderEpochCache) -> i32 {
    cache.latest_epoch().unwrap_or(NO_PARTITION_LEADER_EPOCH)
}

impl PartitionLog {
    fn lock_epochs(&self) -> MutexGuard<'_, LeaderEpochCache> {
        // Every change is a whole replacement or a whole method call: still consistent.
        self.leader_epochs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The newest leader epoch that wrote batches to this log.
    pub fn latest_leader_epoch(&self) -> Option<i32> {
        let latest = self.latest_leader_epoch.load(Ordering::Acquire);
        (latest >= 0).then_some(latest)
    }

    /// What a leader answers a follower's (or consumer's) OffsetsForLeaderEpoch for
    /// `requested_epoch`: `(largest epoch <= requested, where it ended)`; the latest epoch
    /// ends at the log end offset. None when this log knows no epoch at or below it, or
    /// it is above the latest (Kafka's UNDEFINED_EPOCH_OFFSET). See
    /// [`LeaderEpochCache::end_offset_for`] for every edge.
    pub fn leader_epoch_end_offset(&self, requested_epoch: i32) -> Option<(i32, u64)> {
        let cache = self.lock_epochs();
        // Read under the lock: truncation moves the log end and cuts the cache together.
        cache.end_offset_for(requested_epoch, self.log_end_offset())
    }

    /// The leader epoch of the batch holding `offset`; None outside the log or below its
    /// earliest recorded epoch.
    pub fn leader_epoch_for_offset(&self, offset: u64) -> Option<i32> {
        let cache = self.lock_epochs();
        if offset < self.log_start_offset() || offset >= self.log_end_offset() {
            return None;
        }
        cache.epoch_for_offset(offset)
    }

    /// A copy of the cache's entries, oldest first.
    pub fn leader_epochs(&self) -> Vec<EpochEntry> {
        self.lock_epochs().entries().to_vec()
    }

    /// KIP-279's step for a follower whose log ends at its log end offset: given the
    /// leader's answer for this log's latest epoch, where to truncate, and whether that
    /// settles it. As Kafka's fetcher:
    ///
    /// - no answer (the leader knows no epoch at or below ours) or no epoch here: the
    ///   high watermark, complete;
    /// - the leader's epoch is one this log has: the smaller of its end here and there;
    ///   complete;
    /// - the leader's epoch is one this log lacks: where this log's largest epoch below
    ///   it ends, not complete (ask again with the latest epoch left).
    ///
    /// Never above the log end offset. The follower calls [`PartitionLog::truncate_to`]
    /// with the offset; each incomplete round removes at least this log's latest epoch,
    /// so the loop ends.
    pub fn follower_truncation(&self, leader_answer: Option<(i32, u64)>) -> FollowerTruncation {
        let cache = self.lock_epochs();
        let log_end = self.log_end_offset();
        let at_high_watermark = FollowerTruncation {
            offset: self.high_watermark().min(log_end),
            complete: true,
        };
        let Some((leader_epoch, leader_end)) = leader_answer else {
            return at_high_watermark;
        };
        if cache.is_empty() {
            return at_high_watermark;
        }
        match cache.end_offset_for(leader_epoch, log_end) {
            Some((epoch, end)) if epoch == leader_epoch => FollowerTruncation {
                offset: end.min(leader_end).min(log_end),
                complete: true,
            },
            Some((_, end)) => FollowerTruncation {
                offset: end.min(log_end),
                complete: false,
            },
            // The leader's epoch is above every epoch here (it answered for a lower one
            // than we asked, so this cannot be; Kafka truncates to its end then too).
            None => FollowerTruncation {
                offset: leader_end.min(log_end),
                complete: true,
            },
        }
    }

    /// A new leader's first act (Kafka's `makeLeader` assigns the epoch the same way):
    /// records that `epoch` starts at the log end offset before any batch of it, so a
    /// follower asking for an earlier epoch learns at once where that one ended here. An
    /// entry with no batch yet is dropped by a restart (open cuts entries at the log end,
    /// as Kafka's loader does); the broker assigns it again when it leads again. A lower
    /// epoch than the latest is [`LogError::StaleLeaderEpoch`]; the latest is a no-op.
    pub fn assign_leader_epoch(&self, epoch: i32) -> Result<(), LogError> {
        let _writer = self.lock_writer()?;
        self.check_writable()?;
        self.note_leader_append(epoch, self.log_end_offset())
    }

    /// Leader append at `epoch` starting at `start_offset`, under the writer lock, before
    /// the batches are written. A lower epoch than the latest is refused: a leader's epoch
    /// only grows, so the caller is a deposed leader.
    pub(crate) fn note_leader_append(&self, epoch: i32, start_offset: u64) -> Result<(), LogError> {
        if epoch == self.latest_leader_epoch.load(Ordering::Acquire) || epoch < 0 {
            return Ok(());
        }
        let mut cache = self.lock_epochs();
        if let Some(latest_epoch) = cache.latest_epoch().filter(|&latest| epoch < latest) {
            return Err(LogError::StaleLeaderEpoch {
                dir: self.dir.clone(),
                epoch,
                latest_epoch,
            });
        }
        let mut next = cache.clone();
        let assigned = next.assign(epoch, start_offset);
        debug_assert!(
            !matches!(assigned, Assigned::Conflicted { .. }),
            "{assigned:?}"
        );
        self.replace_epochs(&mut cache, next)
    }

    /// Follower append of `batches` (already checked, base offsets final) that carries
    /// an epoch other than the latest, under the writer lock, before they are written.
    pub(crate) fn note_replicated_epochs(&self, batches: &[u8]) -> Result<(), LogError> {
        let mut cache = self.lock_epochs();
        let mut next = cache.clone();
        for (position, header) in positions(batches) {
            let header = header?;
            let start_offset = u64::try_from(header.base_offset).unwrap_or(0);
            if let Assigned::Conflicted { removed } =
                next.assign(header.partition_leader_epoch, start_offset)
            {
                // Kafka's follower accepts a leader's batch of a lower epoch than its
                // latest and drops the conflicting entries, with a warning.
                tracing::warn!(
                    dir = %self.dir.display(),
                    epoch = header.partition_leader_epoch,
                    start_offset,
                    position,
                    ?removed,
                    "replicated batch's leader epoch removes later leader-epoch entries"
                );
            }
        }
        self.replace_epochs(&mut cache, next)
    }

    /// Writes `next` to the file, then makes it the cache. A failed write poisons the log
    /// and leaves the cache as it was.
    fn replace_epochs(
        &self,
        cache: &mut MutexGuard<'_, LeaderEpochCache>,
        next: LeaderEpochCache,
    ) -> Result<(), LogError> {
        if **cache == next {
            return Ok(());
        }
        checkpoint::write(&self.dir, &next).map_err(|e| self.poison(e))?;
        **cache = next;
        self.latest_leader_epoch
            .store(latest_or_none(cache), Ordering::Release);
        Ok(())
    }

    /// Truncation: stores the new log end and cuts the cache to it in one step, so no
    /// reader sees an epoch end past the log end. True when the cache changed; the caller
    /// then writes the file once the log is cut ([`Self::write_leader_epochs`]).
    pub(crate) fn cut_log_end_and_epochs(&self, new_end_offset: u64, emptied: bool) -> bool {
        let mut cache = self.lock_epochs();
        self.log_end_offset.store(new_end_offset, Ordering::Release);
        let changed = if emptied {
            cache.clear()
        } else {
            cache.truncate_from_end(new_end_offset)
        };
        self.latest_leader_epoch
            .store(latest_or_none(&cache), Ordering::Release);
        changed
    }

    /// Writes the cache as it is now (after a truncation cut the log).
    pub(crate) fn write_leader_epochs(&self) -> Result<(), LogError> {
        let cache = self.lock_epochs();
        checkpoint::write(&self.dir, &cache)
    }

    /// Retention moved the log start to `start_offset` and its deletions are durable.
    pub(crate) fn advance_leader_epochs_start(&self, start_offset: u64) -> Result<(), LogError> {
        let mut cache = self.lock_epochs();
        let mut next = cache.clone();
        if !next.truncate_from_start(start_offset) {
            return Ok(());
        }
        self.replace_epochs(&mut cache, next)
    }
}
