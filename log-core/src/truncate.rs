//! Truncation of a partition log (`truncate_to`, the follower path): the recovery-point
//! file is lowered first, then later segments go newest first, then the containing segment
//! is cut at a batch boundary, so a crash at any step leaves a prefix of the old log that
//! reaches the recovery point on disk; the leader-epoch checkpoint is cut last.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::compaction_checkpoint::CleanerCheckpoint;
use crate::config::LogConfig;
use crate::error::IoContext;
use crate::file_io;
use crate::file_name::sync_dir;
use crate::load::remove_segment_files;
use crate::partition_log::{Durability, Writer};
use crate::segment::{IndexTracker, Segment, SegmentEnd, NO_TIMESTAMP};
use crate::{LogError, PartitionLog};

impl PartitionLog {
    /// Drops every offset at or after `offset` (a follower truncating to its leader).
    /// Later segments are deleted; the containing one is cut at the first batch that holds
    /// `offset` (so the log end offset may land below `offset` if a batch straddles it, or
    /// where compaction left a gap below it: the log ends with its last kept batch).
    /// Slices of the removed bytes fail with [`LogError::SliceTruncated`].
    pub fn truncate_to(&self, offset: u64) -> Result<(), LogError> {
        let _maintenance = self.lock_maintenance()?;
        let mut durability = self.lock_durability()?;
        let mut writer = self.lock_writer()?;
        self.check_writable()?;
        if offset >= self.log_end_offset() {
            return Ok(());
        }
        // Before anything changes: a compaction pass running beside this stops at its next
        // step (see `compaction.rs`).
        self.truncations.fetch_add(1, Ordering::AcqRel);
        // Before any offset goes: the cleaner checkpoint must not call clean the offsets
        // that later appends will reuse (a crash after this only costs a longer pass).
        let mut cleaner = CleanerCheckpoint::read(&self.dir)?;
        if cleaner.clean_offset() > offset {
            cleaner.cut_to(offset);
            cleaner.write(&self.dir)?;
        }
        let config = self.config();
        let segments = self.segment_snapshot();
        let keep = segments
            .iter()
            .rev()
            .find(|s| s.base_offset <= offset)
            .cloned();
        let Some(keep) =
            keep.filter(|s| offset > s.base_offset || s.base_offset > self.log_start_offset())
        else {
            self.truncate_fully(&mut writer, &segments, offset, &config)
                .map_err(|e| self.poison(e))?;
            durability.synced_below = offset;
            return Ok(());
        };
        let size = keep.size_bytes();
        let cut_position = match keep.locate(offset, size)? {
            Some((position, _)) => position,
            None => size,
        };
        // The log ends where its last kept batch does: past a batch straddling `offset`, and
        // also before a gap compaction left below it. Kafka keeps the target as the log end
        // there, but then a clean close would record a recovery point past the last byte,
        // which the next unclean open would take for fsynced batches gone missing.
        let new_end_offset = kept_end_offset(keep.as_ref(), cut_position, size)?;
        debug_assert!(new_end_offset <= offset && new_end_offset >= keep.base_offset);
        // From here on memory and files change step by step: a failure part-way leaves
        // them apart, so it stops the log taking writes until a reopen recovers.
        self.cut_at(
            &mut writer,
            &mut durability,
            &segments,
            &keep,
            (cut_position, new_end_offset),
        )
        .map_err(|e| self.poison(e))
    }

    /// Cuts the log at `cut` = (position in `keep`, new log end offset): readers first,
    /// then later segments newest first, then the kept segment's file and indexes.
    fn cut_at(
        &self,
        writer: &mut Writer,
        durability: &mut Durability,
        segments: &[Arc<Segment>],
        keep: &Arc<Segment>,
        cut: (u64, u64),
    ) -> Result<(), LogError> {
        let (cut_position, new_end_offset) = cut;
        let config = self.config();
        // Readers stop at the new end before anything is removed; the leader-epoch cache
        // forgets the epochs past it with it, and its file follows once the log is cut.
        let epochs_cut = self.cut_log_end_and_epochs(new_end_offset, false);
        self.high_watermark
            .fetch_min(new_end_offset, Ordering::AcqRel);
        self.recovery_point
            .fetch_min(new_end_offset, Ordering::AcqRel);
        // The recovery-point file comes down before any byte goes: a crash part-way must
        // not leave a log that ends below the offset the file says was fsynced, which the
        // open refuses as damage. It goes to the kept segment's base, never up: bytes
        // appended after the cut are not durable, and a crash must find them above it,
        // where recovery may cut them.
        let lowered = self
            .recovery_point_on_disk
            .load(Ordering::Acquire)
            .min(keep.base_offset);
        self.write_recovery_point(lowered)?;
        durability.synced_below = durability.synced_below.min(keep.base_offset);
        self.rolled_synced_below
            .fetch_min(keep.base_offset, Ordering::AcqRel);
        // Later segments go newest first, before the kept one is cut: a crash part-way
        // leaves a prefix of the old log, which recovery accepts and a retried
        // truncation finishes.
        let mut removed: Vec<Arc<Segment>> = segments
            .iter()
            .filter(|s| s.base_offset > keep.base_offset)
            .cloned()
            .collect();
        removed.reverse();
        {
            let mut map = self.write_segments();
            for segment in &removed {
                map.remove(&segment.base_offset);
            }
        }
        for segment in &removed {
            segment.unpublish(SegmentEnd {
                size_bytes: 0,
                next_offset: segment.base_offset,
                max_timestamp: NO_TIMESTAMP,
            });
            remove_segment_files(&segment.paths)?;
        }
        if !removed.is_empty() {
            sync_dir(&self.dir).io_ctx("fsync directory", &self.dir)?;
        }
        keep.unpublish(SegmentEnd {
            size_bytes: cut_position,
            next_offset: new_end_offset,
            max_timestamp: keep.max_timestamp(),
        });
        file_io::set_len(&keep.log, cut_position, &keep.paths.log)
            .io_ctx("truncate segment", &keep.paths.log)?;
        keep.sync_log().map_err(|e| self.poison(e))?;
        keep.unseal_indexes(config.index_bytes_max)?;
        keep.offset_index.truncate_to_position(cut_position);
        keep.time_index
            .truncate_to_relative_offset(keep.relative_offset(new_end_offset));
        let max_timestamp = max_timestamp_below(keep, cut_position)?;
        keep.publish(SegmentEnd {
            size_bytes: cut_position,
            next_offset: new_end_offset,
            max_timestamp,
        });
        let last_entry = keep
            .offset_index
            .last()
            .map_or(0, |e| u64::from(e.position));
        writer.tracker = IndexTracker {
            bytes_since_entry: cut_position - last_entry,
            max_timestamp,
        };
        if !Arc::ptr_eq(&writer.active, keep) {
            writer.active = Arc::clone(keep);
            writer.active_created_ms = crate::partition_log::wall_clock_now_ms();
        }
        // After the cut, never before: a crash in between leaves entries past the log
        // end, which open drops, rather than batches of an epoch the file lost.
        if epochs_cut {
            self.write_leader_epochs()?;
        }
        Ok(())
    }

    /// Deletes every segment and starts an empty log at `offset`.
    fn truncate_fully(
        &self,
        writer: &mut Writer,
        segments: &[Arc<Segment>],
        offset: u64,
        config: &LogConfig,
    ) -> Result<(), LogError> {
        let epochs_cut = self.cut_log_end_and_epochs(offset, true);
        self.log_start_offset.store(offset, Ordering::Release);
        self.high_watermark.store(offset, Ordering::Release);
        self.recovery_point.store(offset, Ordering::Release);
        self.rolled_synced_below.store(offset, Ordering::Release);
        // Recorded first: if a crash leaves no segment, open starts the log at `offset`.
        self.write_recovery_point(offset)?;
        for segment in segments.iter().rev() {
            segment.unpublish(SegmentEnd {
                size_bytes: 0,
                next_offset: segment.base_offset,
                max_timestamp: NO_TIMESTAMP,
            });
            remove_segment_files(&segment.paths)?;
        }
        let fresh = Arc::new(Segment::create(&self.dir, offset, config.index_bytes_max)?);
        sync_dir(&self.dir).io_ctx("fsync directory", &self.dir)?;
        {
            let mut map = self.write_segments();
            map.clear();
            map.insert(offset, Arc::clone(&fresh));
        }
        writer.active = fresh;
        writer.tracker = IndexTracker::new();
        writer.active_created_ms = crate::partition_log::wall_clock_now_ms();
        if epochs_cut {
            self.write_leader_epochs()?;
        }
        Ok(())
    }
}

/// The offset after the last batch that ends at or before `cut_position` (a batch
/// boundary) in `segment`, or its base if there is none.
fn kept_end_offset(segment: &Segment, cut_position: u64, size_bytes: u64) -> Result<u64, LogError> {
    let mut position = segment
        .offset_index
        .last_where(|e| u64::from(e.position) < cut_position)
        .map_or(0, |e| u64::from(e.position));
    let mut end_offset = segment.base_offset;
    while position < cut_position {
        let header = segment.header_at(position, size_bytes)?;
        end_offset = u64::try_from(header.next_offset()).unwrap_or(end_offset);
        position += header.size_bytes() as u64;
    }
    Ok(end_offset)
}

/// Max timestamp of the batches in the first `size_bytes` of `segment`: the time index's
/// last entry covers the batches up to it; the rest are scanned by header.
fn max_timestamp_below(segment: &Segment, size_bytes: u64) -> Result<i64, LogError> {
    let (mut max_timestamp, start_offset) = match segment.time_index.last() {
        Some(e) => (
            e.timestamp,
            segment.base_offset + u64::from(e.relative_offset),
        ),
        None => (NO_TIMESTAMP, segment.base_offset),
    };
    let mut position = u64::from(
        segment
            .offset_index
            .lookup(segment.relative_offset(start_offset))
            .position,
    );
    while position < size_bytes {
        let header = segment.header_at(position, size_bytes)?;
        max_timestamp = max_timestamp.max(header.max_timestamp);
        position += header.size_bytes() as u64;
    }
    Ok(max_timestamp)
}
