//! Compaction (`cleanup.policy=compact`): in sealed segments keep only the newest record of
//! each key; drop tombstones (null value) once older than `delete.retention.ms`. Offsets are
//! preserved: a batch that loses records is rebuilt as one batch per run of consecutive
//! kept offsets, so reads simply skip the gaps.
//!
//! Transactions: records of a transaction take part only once its COMMIT marker is in the
//! compacted segments (`compaction_keys`); such a batch is rewritten like any other, keeping
//! its transactional bit and producer fields. Markers, and batches of aborted or undecided
//! transactions, are kept whole.
//!
//! Each segment is rewritten crash-safely: the new log is written to `<name>.log.cleaned`
//! and fsynced; the old indexes are removed (directory fsync); the cleaned file is renamed
//! over the log (directory fsync); then the indexes are rebuilt from the new log. A crash
//! before the rename leaves the old log (open deletes `.cleaned` files and rebuilds any
//! missing index); after it, the new log, whose missing indexes open rebuilds.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use crate::batch::{self, BatchBuilder, BatchHeader, RecordDecoder, RecordView, TimestampType};
use crate::compaction_keys::KeyScan;
use crate::config::LogConfig;
use crate::error::IoContext;
use crate::file_io;
use crate::file_name::{remove_if_exists, sync_dir, CLEANED_SUFFIX};
use crate::load::rebuild;
use crate::recovery::ScanMode;
use crate::segment::{Segment, SegmentEnd};
use crate::{LogError, PartitionLog};

/// What one compaction pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactionReport {
    pub segments_rewritten: usize,
    pub records_kept: u64,
    pub records_removed: u64,
    pub tombstones_removed: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

impl PartitionLog {
    /// Compacts the sealed segments (never the active one) at `now_ms`. Does nothing unless
    /// the cleanup policy includes compact.
    pub fn compact(&self, now_ms: i64) -> Result<CompactionReport, LogError> {
        let config = self.config();
        let mut report = CompactionReport::default();
        self.check_writable()?;
        if !config.cleanup_policy.compacts() {
            return Ok(report);
        }
        let _maintenance = self.lock_maintenance()?;
        let segments = self.segment_snapshot();
        let sealed = segments.split_last().map_or(&[][..], |(_, rest)| rest);
        let mut decoder = RecordDecoder::new();
        let mut keys = KeyScan::default();
        for segment in sealed {
            for_each_batch(segment, |_, header, bytes| {
                Ok(keys.visit(header, bytes, &mut decoder)?)
            })?;
        }
        for (i, segment) in sealed.iter().enumerate() {
            let next_base = segments.get(i + 1).map_or(u64::MAX, |s| s.base_offset);
            let policy = KeepPolicy {
                latest: &keys.latest,
                committed: &keys.committed,
                now_ms,
                delete_retention_ms: i64::try_from(config.delete_retention_ms).unwrap_or(i64::MAX),
            };
            self.compact_segment(segment, next_base, &policy, &config, &mut report)?;
        }
        Ok(report)
    }

    fn compact_segment(
        &self,
        segment: &Arc<Segment>,
        next_base: u64,
        policy: &KeepPolicy<'_>,
        config: &LogConfig,
        report: &mut CompactionReport,
    ) -> Result<(), LogError> {
        let mut out = Vec::new();
        let mut changed = false;
        let mut decoder = RecordDecoder::new();
        let size_before = segment.size_bytes();
        for_each_batch(segment, |_, header, bytes| {
            let kept = rewrite_batch(header, bytes, policy, &mut decoder, &mut out, report)?;
            changed |= !kept;
            Ok(())
        })?;
        report.bytes_before += size_before;
        report.bytes_after += out.len() as u64;
        if !changed {
            return Ok(());
        }
        self.replace_segment(segment, next_base, &out, config)?;
        report.segments_rewritten += 1;
        Ok(())
    }

    /// Swaps `segment`'s log for `bytes` crash-safely (see the module docs) and installs
    /// the new segment for readers. Readers already holding the old one keep its file.
    fn replace_segment(
        &self,
        segment: &Arc<Segment>,
        next_base: u64,
        bytes: &[u8],
        config: &LogConfig,
    ) -> Result<(), LogError> {
        let paths = &segment.paths;
        let cleaned = paths.with_suffix(CLEANED_SUFFIX);
        // Until the rename nothing the log relies on has changed: a failed write (a full
        // disk) only leaves a `.cleaned` file, removed here or by the next open.
        let written = file_io::create(&cleaned.log)
            .and_then(|mut file| file_io::write_all(&mut file, bytes, &cleaned.log))
            .io_ctx("write compacted segment", &cleaned.log);
        if let Err(error) = written {
            let _ = remove_if_exists(&cleaned.log);
            return Err(error);
        }
        self.swap_in_cleaned(segment, &cleaned.log)
            .map_err(|e| self.poison(e))?;
        let (fresh, _) = rebuild(&self.dir, segment.base_offset, config, ScanMode::Strict)
            .map_err(|e| self.poison(e))?;
        let mut end: SegmentEnd = fresh.end();
        end.next_offset = next_base;
        fresh.publish(end);
        fresh.seal_indexes().map_err(|e| self.poison(e))?;
        self.write_segments()
            .insert(segment.base_offset, Arc::new(fresh));
        Ok(())
    }

    /// Fsyncs the compacted log, removes the old indexes and renames it over the old log,
    /// fsyncing the directory after each change (see the module docs for crash cases).
    fn swap_in_cleaned(&self, segment: &Segment, cleaned_log: &Path) -> Result<(), LogError> {
        let paths = &segment.paths;
        let file = File::open(cleaned_log).io_ctx("open compacted segment", cleaned_log)?;
        file_io::sync_all(&file, cleaned_log).io_ctx("fsync compacted segment", cleaned_log)?;
        drop(file);
        remove_if_exists(&paths.offset_index).io_ctx("remove offset index", &paths.offset_index)?;
        remove_if_exists(&paths.time_index).io_ctx("remove time index", &paths.time_index)?;
        sync_dir(&self.dir).io_ctx("fsync directory", &self.dir)?;
        file_io::rename(cleaned_log, &paths.log)
            .io_ctx("rename compacted segment into place", &paths.log)?;
        sync_dir(&self.dir).io_ctx("fsync directory", &self.dir)
    }
}

struct KeepPolicy<'a> {
    latest: &'a HashMap<Bytes, u64>,
    /// Base offsets of transactional batches whose transaction committed.
    committed: &'a HashSet<i64>,
    now_ms: i64,
    delete_retention_ms: i64,
}

impl KeepPolicy<'_> {
    /// Keyless records cannot be superseded and are kept.
    fn keeps(&self, record: &RecordView<'_>) -> bool {
        let Some(key) = record.key else { return true };
        let newest = u64::try_from(record.offset).ok() == self.latest.get(key).copied();
        if !newest {
            return false;
        }
        record.value.is_some()
            || self.now_ms.saturating_sub(record.timestamp) <= self.delete_retention_ms
    }
}

/// Appends the kept part of one batch to `out`; returns true when the batch was kept whole.
fn rewrite_batch(
    header: &BatchHeader,
    bytes: &[u8],
    policy: &KeepPolicy<'_>,
    decoder: &mut RecordDecoder,
    out: &mut Vec<u8>,
    report: &mut CompactionReport,
) -> Result<bool, LogError> {
    // Markers, and data of aborted or undecided transactions, are kept as they are.
    let decided = !header.is_transactional() || policy.committed.contains(&header.base_offset);
    if header.is_control() || !decided {
        out.extend_from_slice(bytes);
        report.records_kept += u64::try_from(header.record_count).unwrap_or(0);
        return Ok(true);
    }
    let records: Vec<RecordView<'_>> = decoder.records(bytes)?.collect::<Result<_, _>>()?;
    let keep: Vec<bool> = records.iter().map(|r| policy.keeps(r)).collect();
    for (record, &kept) in records.iter().zip(&keep) {
        if kept {
            report.records_kept += 1;
        } else {
            report.records_removed += 1;
            if record.value.is_none()
                && policy.latest.get(record.key.unwrap_or_default()).copied()
                    == u64::try_from(record.offset).ok()
            {
                report.tombstones_removed += 1;
            }
        }
    }
    if keep.iter().all(|&k| k) {
        out.extend_from_slice(bytes);
        return Ok(true);
    }
    let compression = header.compression()?;
    let mut run: Option<(i64, BatchBuilder)> = None;
    let mut previous: Option<i64> = None;
    for (record, &kept) in records.iter().zip(&keep) {
        if !kept {
            continue;
        }
        let contiguous = previous.is_some_and(|p| p + 1 == record.offset);
        if !contiguous {
            if let Some((start, mut builder)) = run.take() {
                emit_run(&mut builder, header, start, out)?;
            }
            run = Some((
                record.offset,
                run_builder(header, compression, record.offset),
            ));
        }
        if let Some((_, builder)) = run.as_mut() {
            let headers: Vec<(&str, Option<&[u8]>)> = record.headers().collect();
            builder.push(record.timestamp, record.key, record.value, &headers);
        }
        previous = Some(record.offset);
    }
    if let Some((start, mut builder)) = run {
        emit_run(&mut builder, header, start, out)?;
    }
    Ok(false)
}

/// A builder for a run starting at `base_offset` that carries over the original batch's
/// codec, producer fields (sequence advanced to the run), transactional bit and timestamp
/// type. (Control batches are never rewritten.)
fn run_builder(
    original: &BatchHeader,
    compression: batch::Compression,
    base_offset: i64,
) -> BatchBuilder {
    let sequence = if original.base_sequence >= 0 {
        let delta = i32::try_from(base_offset - original.base_offset).unwrap_or(0);
        original.base_sequence.wrapping_add(delta)
    } else {
        original.base_sequence
    };
    debug_assert!(!original.is_control());
    let builder = BatchBuilder::new(compression)
        .with_producer(original.producer_id, original.producer_epoch, sequence)
        .with_transactional(original.is_transactional());
    if original.timestamp_type() == TimestampType::LogAppendTime {
        builder.with_log_append_time(original.max_timestamp)
    } else {
        builder
    }
}

/// Builds the pushed run as one batch at `base_offset` with the original leader epoch.
fn emit_run(
    builder: &mut BatchBuilder,
    original: &BatchHeader,
    base_offset: i64,
    out: &mut Vec<u8>,
) -> Result<(), LogError> {
    let built = builder.build()?;
    let start = out.len();
    out.extend_from_slice(&built);
    let batch_bytes = out.get_mut(start..).unwrap_or_default();
    batch::set_base_offset(batch_bytes, base_offset);
    batch::set_partition_leader_epoch(batch_bytes, original.partition_leader_epoch);
    Ok(())
}

/// Calls `visit(position, header, bytes)` for each batch of a sealed segment.
fn for_each_batch(
    segment: &Segment,
    mut visit: impl FnMut(u64, &BatchHeader, &[u8]) -> Result<(), LogError>,
) -> Result<(), LogError> {
    let size = segment.size_bytes();
    let mut position = 0u64;
    let mut buf = Vec::new();
    while position < size {
        let header = segment.header_at(position, size)?;
        buf.resize(header.size_bytes(), 0);
        segment
            .log
            .read_exact_at(&mut buf, position)
            .io_ctx("read segment", &segment.paths.log)?;
        visit(position, &header, &buf).map_err(|e| match e {
            LogError::Batch(e) => LogError::Corrupt {
                segment: segment.paths.log.clone(),
                position,
                reason: e.to_string(),
            },
            other => other,
        })?;
        position += header.size_bytes() as u64;
    }
    Ok(())
}
