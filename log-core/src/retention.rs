//! Retention: deleting whole old segments by time (`retention.ms`, against each segment's
//! max timestamp) and by size (`retention.bytes`), never the active segment. The log start
//! offset advances before any file is removed; readers holding slices of a deleted segment
//! keep reading it through their open file.

use std::sync::Arc;

use crate::error::IoContext;
use crate::file_name::sync_dir;
use crate::load::remove_segment_files;
use crate::segment::{Segment, NO_TIMESTAMP};
use crate::{LogError, PartitionLog};

/// What one retention pass deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionReport {
    pub segments_deleted: usize,
    pub bytes_deleted: u64,
    pub log_start_offset: u64,
}

impl PartitionLog {
    /// Deletes the oldest sealed segments that are past `retention.ms` at `now_ms`, or that
    /// the log can lose while staying at or above `retention.bytes`. Does nothing unless
    /// the cleanup policy includes delete.
    pub fn enforce_retention(&self, now_ms: i64) -> Result<RetentionReport, LogError> {
        let config = self.config();
        let _maintenance = self.lock_maintenance()?;
        self.check_writable()?;
        let segments = self.segment_snapshot();
        let sealed = segments.split_last().map_or(&[][..], |(_, rest)| rest);
        let mut report = RetentionReport {
            log_start_offset: self.log_start_offset(),
            ..RetentionReport::default()
        };
        if !config.cleanup_policy.deletes() {
            return Ok(report);
        }
        let by_time = match config.retention_ms {
            Some(retention_ms) => sealed
                .iter()
                .take_while(|s| expired(s, now_ms, retention_ms))
                .count(),
            None => 0,
        };
        let by_size = match config.retention_bytes {
            Some(retention_bytes) => {
                let total: u64 = segments.iter().map(|s| s.size_bytes()).sum();
                let mut excess = total.saturating_sub(retention_bytes);
                sealed
                    .iter()
                    .take_while(|s| {
                        let size = s.size_bytes();
                        let fits = size <= excess;
                        if fits {
                            excess -= size;
                        }
                        fits
                    })
                    .count()
            }
            None => 0,
        };
        let count = by_time.max(by_size);
        let Some(doomed) = sealed.get(..count).filter(|d| !d.is_empty()) else {
            return Ok(report);
        };
        let new_start = segments
            .get(count)
            .map_or(self.log_end_offset(), |s| s.base_offset);
        self.delete_segments(doomed, new_start)?;
        report.segments_deleted = doomed.len();
        report.bytes_deleted = doomed.iter().map(|s| s.size_bytes()).sum();
        report.log_start_offset = self.log_start_offset();
        Ok(report)
    }

    /// Removes `doomed` (the oldest segments) from the map, advances the log start, then
    /// removes their files (log first, so a crash leaves at most orphaned indexes, which
    /// open removes). The recovery-point file is left alone: whole segments go from the
    /// front, so every segment left still ends where it did, and if the one holding the
    /// recovery point goes, recovery scans from the first segment left, above it.
    fn delete_segments(&self, doomed: &[Arc<Segment>], new_start: u64) -> Result<(), LogError> {
        {
            let mut map = self.write_segments();
            for segment in doomed {
                map.remove(&segment.base_offset);
            }
        }
        self.set_log_start_offset(new_start);
        // A removal that fails leaves files that reappear after a restart, where the next
        // pass deletes them again; a failed directory fsync is final like any other.
        for segment in doomed {
            remove_segment_files(&segment.paths)?;
        }
        sync_dir(&self.dir)
            .io_ctx("fsync directory", &self.dir)
            .map_err(|e| self.poison(e))?;
        // Only once the deletions are durable: a crash before leaves entries below the log
        // start, which open moves up, never a segment whose epochs the file forgot.
        self.advance_leader_epochs_start(new_start)
    }
}

fn expired(segment: &Segment, now_ms: i64, retention_ms: u64) -> bool {
    let max_timestamp = segment.max_timestamp();
    if max_timestamp == NO_TIMESTAMP {
        // Nothing left to keep (an emptied segment).
        return true;
    }
    let retention_ms = i64::try_from(retention_ms).unwrap_or(i64::MAX);
    now_ms.saturating_sub(max_timestamp) > retention_ms
}
