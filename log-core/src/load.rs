//! Opening a partition directory: removing leftovers of interrupted operations, reading the
//! checkpoints, loading sealed segments with their indexes (rebuilt when missing or
//! damaged), and either trusting a clean-shutdown checkpoint (no scan) or recovering the
//! segments from the recovery point on.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, OpenOptions};
use std::io;
use std::path::Path;
use std::sync::Arc;

use crate::checkpoint::{Checkpoint, CheckpointKind};
use crate::config::LogConfig;
use crate::error::IoContext;
use crate::file_name::{
    parse_segment_file_name, remove_if_exists, sync_dir, SegmentFileKind, SegmentPaths,
    CLEANED_SUFFIX, TEMP_SUFFIX,
};
use crate::offset_index::OffsetIndex;
use crate::recovery::{scan_segment, ScanMode};
use crate::segment::{IndexTracker, Segment, SegmentEnd, NO_TIMESTAMP};
use crate::time_index::TimeIndex;
use crate::LogError;

/// A partition directory, loaded.
pub(crate) struct LoadedLog {
    pub segments: BTreeMap<u64, Arc<Segment>>,
    /// Index state of the active (last) segment.
    pub active_tracker: IndexTracker,
    pub log_end_offset: u64,
    pub high_watermark: u64,
    /// Offsets below it are on stable storage.
    pub recovery_point: u64,
    /// True when the clean-shutdown checkpoint was used and nothing was scanned.
    pub clean: bool,
}

pub(crate) fn load(dir: &Path, config: &LogConfig) -> Result<LoadedLog, LogError> {
    fs::create_dir_all(dir).io_ctx("create partition directory", dir)?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent).io_ctx("fsync directory", parent)?;
    }
    crate::compaction_swap::finish_interrupted_swaps(dir)?;
    let bases: Vec<u64> = list_and_clean(dir)?.into_iter().collect();
    let clean = Checkpoint::read(dir, CheckpointKind::CleanShutdown)?;
    let recovery = Checkpoint::read(dir, CheckpointKind::RecoveryPoint)?;
    let Some(&last_base) = bases.last() else {
        if clean.is_some() {
            Checkpoint::remove(dir, CheckpointKind::CleanShutdown)?;
        }
        // A directory emptied by a full truncation keeps its log end in the checkpoints.
        let base = clean.or(recovery).map_or(0, |c| c.log_end_offset);
        return create_empty(dir, config, base);
    };
    let last_paths = SegmentPaths::new(dir, last_base);
    let last_len = fs::metadata(&last_paths.log)
        .io_ctx("stat segment", &last_paths.log)?
        .len();
    let clean = clean.filter(|c| {
        c.active_base_offset == last_base
            && c.active_size_bytes == last_len
            && c.log_end_offset >= last_base
    });
    if clean.is_none() && Checkpoint::read(dir, CheckpointKind::CleanShutdown)?.is_some() {
        // It describes other files than these: the recovery below ignores it.
        Checkpoint::remove(dir, CheckpointKind::CleanShutdown)?;
    }
    let scan_from = match (clean, recovery) {
        (Some(_), _) => None,
        (None, Some(r)) => Some(
            bases
                .iter()
                .rev()
                .find(|&&b| b <= r.log_end_offset)
                .copied()
                .unwrap_or(bases[0]),
        ),
        (None, None) => Some(bases[0]),
    };
    let checkpoint_read = clean.is_some() || recovery.is_some();
    // Everything below it was fsynced: damage there is an error, never cut or served.
    let recovery_point = match (clean, recovery) {
        (Some(c), _) => c.log_end_offset,
        (None, Some(r)) => r.log_end_offset,
        (None, None) => 0,
    };

    let mut segments = BTreeMap::new();
    let mut scanned = BTreeSet::new();
    let mut active_tracker = IndexTracker::new();
    let mut cut = false;
    let mut removed_any = false;
    for (i, &base) in bases.iter().enumerate() {
        let next_base = bases.get(i + 1).copied();
        let paths = SegmentPaths::new(dir, base);
        if cut {
            // Kafka's rule: a bad batch above the recovery point ends the log. The later
            // segments were never promised durable either (a roll does not wait for the
            // old segment's fsync under `fsync = never`), and a log with a hole in it
            // would serve offsets past bytes that are gone.
            remove_segment_files(&paths)?;
            removed_any = true;
            continue;
        }
        if scan_from.is_some_and(|from| base >= from) {
            let (segment, result) = rebuild(dir, base, config, ScanMode::Recover(recovery_point))?;
            if segment.next_offset() < recovery_point {
                // It ends on a batch boundary below what the recovery point says was
                // fsynced: the bytes went after they were durable, which no crash does.
                // Every cut that lowers the log end (truncation, repair) lowers the
                // recovery-point file first, so this is damage, refused like a torn batch.
                return Err(LogError::DamagedBelowRecoveryPoint {
                    segment: segment.paths.log.clone(),
                    position: segment.size_bytes(),
                    offset: segment.next_offset(),
                    recovery_point,
                    reason: format!(
                        "the segment ends at offset {} although offsets up to the recovery point were fsynced",
                        segment.next_offset()
                    ),
                });
            }
            // A scanned segment that ends short of the next one lost its tail whole (a power
            // cut under `fsync = never` kept the next segment's bytes but not these): the
            // later segments go too, or the log would serve a hole. Nothing else leaves a gap
            // here: compaction rewrites only segments below the recovery point. Without a
            // recovery-point file to trust, a short segment may be a compacted one: kept.
            let short =
                checkpoint_read && next_base.is_some_and(|next| segment.next_offset() < next);
            cut = result.truncated_at.is_some() || short;
            active_tracker = result.tracker;
            scanned.insert(base);
            segments.insert(base, Arc::new(segment));
        } else if let (None, Some(c)) = (next_base, clean) {
            let (segment, tracker) =
                open_active_clean(dir, base, c.log_end_offset, config, recovery_point)?;
            active_tracker = tracker;
            segments.insert(base, Arc::new(segment));
        } else {
            let next = next_base.unwrap_or(u64::MAX);
            segments.insert(
                base,
                Arc::new(open_sealed(dir, base, next, config, recovery_point)?),
            );
        }
    }
    if removed_any {
        sync_dir(dir).io_ctx("fsync directory", dir)?;
    }
    if clean.is_some() {
        // Removed only now that every segment opened: an open that fails on damage leaves
        // it, so the next open again treats the whole log as below the recovery point
        // (refusing, not cutting, fsynced bytes). Removed before the log takes a write, so
        // a later crash is never mistaken for a clean stop.
        Checkpoint::remove(dir, CheckpointKind::CleanShutdown)?;
    }
    finish(
        dir,
        config,
        segments,
        &scanned,
        active_tracker,
        clean,
        recovery,
    )
}

/// Seals every scanned segment but the last, fixes sealed next offsets, and computes the
/// log-level offsets.
fn finish(
    dir: &Path,
    config: &LogConfig,
    segments: BTreeMap<u64, Arc<Segment>>,
    scanned: &BTreeSet<u64>,
    active_tracker: IndexTracker,
    clean: Option<Checkpoint>,
    recovery: Option<Checkpoint>,
) -> Result<LoadedLog, LogError> {
    let Some((&active_base, active)) = segments.iter().next_back() else {
        return create_empty(dir, config, 0);
    };
    let active = Arc::clone(active);
    let bases: Vec<u64> = segments.keys().copied().collect();
    for (i, base) in bases.iter().enumerate() {
        let Some(segment) = segments.get(base) else {
            continue;
        };
        if let Some(&next_base) = bases.get(i + 1) {
            let mut end = segment.end();
            end.next_offset = next_base;
            segment.publish(end);
            if scanned.contains(base) {
                segment.seal_indexes()?;
            }
        }
    }
    // Scanned bytes may still be only in the page cache: make them durable before the
    // recovery point claims them.
    for base in scanned {
        if let Some(segment) = segments.get(base) {
            segment.sync_log()?;
        }
    }
    let log_end_offset = active.next_offset();
    let log_start_offset = bases.first().copied().unwrap_or(active_base);
    let high_watermark = clean
        .map(|c| c.high_watermark)
        .or(recovery.map(|r| r.high_watermark))
        .unwrap_or(log_start_offset)
        .clamp(log_start_offset, log_end_offset);
    Ok(LoadedLog {
        segments,
        active_tracker,
        log_end_offset,
        high_watermark,
        recovery_point: log_end_offset,
        clean: clean.is_some(),
    })
}

fn create_empty(dir: &Path, config: &LogConfig, base: u64) -> Result<LoadedLog, LogError> {
    let segment = Segment::create(dir, base, config.index_bytes_max)?;
    sync_dir(dir).io_ctx("fsync directory", dir)?;
    let mut segments = BTreeMap::new();
    segments.insert(base, Arc::new(segment));
    Ok(LoadedLog {
        segments,
        active_tracker: IndexTracker::new(),
        log_end_offset: base,
        high_watermark: base,
        recovery_point: base,
        clean: false,
    })
}

/// Removes files that interrupted operations leave (temp and compaction output, index
/// files without a log) and returns the base offsets of the segment logs.
fn list_and_clean(dir: &Path) -> Result<BTreeSet<u64>, LogError> {
    let mut logs = BTreeSet::new();
    let mut indexes = Vec::new();
    let mut removed_any = false;
    for entry in fs::read_dir(dir).io_ctx("list partition directory", dir)? {
        let entry = entry.io_ctx("list partition directory", dir)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(TEMP_SUFFIX) || name.ends_with(CLEANED_SUFFIX) {
            remove_if_exists(&entry.path()).io_ctx("remove leftover file", &entry.path())?;
            removed_any = true;
            continue;
        }
        match parse_segment_file_name(name) {
            Some((base, SegmentFileKind::Log)) => {
                logs.insert(base);
            }
            Some((base, _)) => indexes.push((base, entry.path())),
            None => {}
        }
    }
    for (base, path) in indexes {
        if !logs.contains(&base) {
            remove_if_exists(&path).io_ctx("remove orphaned index", &path)?;
            removed_any = true;
        }
    }
    if removed_any {
        sync_dir(dir).io_ctx("fsync directory", dir)?;
    }
    Ok(logs)
}

pub(crate) fn remove_segment_files(paths: &SegmentPaths) -> Result<(), LogError> {
    remove_if_exists(&paths.log).io_ctx("remove segment", &paths.log)?;
    remove_if_exists(&paths.offset_index).io_ctx("remove offset index", &paths.offset_index)?;
    remove_if_exists(&paths.time_index).io_ctx("remove time index", &paths.time_index)
}

fn open_log(paths: &SegmentPaths) -> Result<fs::File, LogError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(&paths.log)
        .io_ctx("open segment", &paths.log)
}

/// Rebuilds both indexes of a segment by scanning its log; the indexes stay writable.
pub(crate) fn rebuild(
    dir: &Path,
    base: u64,
    config: &LogConfig,
    mode: ScanMode,
) -> Result<(Segment, crate::recovery::ScanResult), LogError> {
    let paths = SegmentPaths::new(dir, base);
    let log = open_log(&paths)?;
    let offset_index = OffsetIndex::create(&paths.offset_index, config.index_bytes_max)
        .io_ctx("create offset index", &paths.offset_index)?;
    let time_index = TimeIndex::create(&paths.time_index, config.index_bytes_max)
        .io_ctx("create time index", &paths.time_index)?;
    let empty_end = SegmentEnd {
        size_bytes: 0,
        next_offset: base,
        max_timestamp: NO_TIMESTAMP,
    };
    let segment = Segment::assemble(base, paths, log, offset_index, time_index, empty_end);
    let result = scan_segment(&segment, mode, config.index_interval_bytes)?;
    segment.publish(result.end);
    Ok((segment, result))
}

/// Opens both indexes read-only; None when either is missing or damaged.
fn open_indexes(
    paths: &SegmentPaths,
    size_bytes: u64,
    relative_offset_end: u64,
) -> Result<Option<(OffsetIndex, TimeIndex)>, LogError> {
    let offset_index = match OffsetIndex::open(&paths.offset_index, size_bytes) {
        Ok(Ok(index)) => index,
        Ok(Err(_damaged)) => return Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).io_ctx("open offset index", &paths.offset_index),
    };
    let time_index = match TimeIndex::open(&paths.time_index, relative_offset_end) {
        Ok(Ok(index)) => index,
        Ok(Err(_damaged)) => return Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).io_ctx("open time index", &paths.time_index),
    };
    Ok(Some((offset_index, time_index)))
}

/// Opens a segment below the recovery point, checking its indexes and its tail cheaply
/// (entries increase, stay within the file, the last offset entry points at a batch with
/// that offset, a non-empty segment has a time entry, the batches after the last entry
/// chain and end exactly at the end of the file). A failed check rebuilds the indexes with
/// a full scan, which reports damage as `DamagedBelowRecoveryPoint`.
fn open_trusted(
    dir: &Path,
    base: u64,
    next_offset: u64,
    config: &LogConfig,
    recovery_point: u64,
) -> Result<Segment, LogError> {
    let paths = SegmentPaths::new(dir, base);
    let log = open_log(&paths)?;
    let size_bytes = log.metadata().io_ctx("stat segment", &paths.log)?.len();
    let relative_offset_end = next_offset.saturating_sub(base);
    if let Some((offset_index, time_index)) = open_indexes(&paths, size_bytes, relative_offset_end)?
    {
        let max_timestamp = time_index.last().map_or(NO_TIMESTAMP, |e| e.timestamp);
        let end = SegmentEnd {
            size_bytes,
            next_offset,
            max_timestamp,
        };
        let segment = Segment::assemble(base, paths, log, offset_index, time_index, end);
        if indexes_agree(&segment, size_bytes) && tail_is_whole(&segment, size_bytes, next_offset) {
            return Ok(segment);
        }
    }
    let (segment, _) = rebuild(
        dir,
        base,
        config,
        ScanMode::BelowRecoveryPoint(recovery_point),
    )?;
    Ok(segment)
}

fn indexes_agree(segment: &Segment, size_bytes: u64) -> bool {
    if size_bytes > 0 && segment.time_index.last().is_none() {
        return false;
    }
    match segment.offset_index.last() {
        None => true,
        Some(entry) => segment
            .header_at(u64::from(entry.position), size_bytes)
            .is_ok_and(|h| {
                u64::try_from(h.base_offset).ok()
                    == Some(segment.base_offset + u64::from(entry.relative_offset))
            }),
    }
}

/// The batches from the last offset index entry on (about `index.interval.bytes` of them)
/// chain and end exactly at `size_bytes`, below `next_offset`: a tail cut by a disk fault
/// or a lost write is found at open, not by the reader that reaches it.
fn tail_is_whole(segment: &Segment, size_bytes: u64, next_offset: u64) -> bool {
    let (mut position, mut expected) = match segment.offset_index.last() {
        Some(entry) => (
            u64::from(entry.position),
            segment.base_offset + u64::from(entry.relative_offset),
        ),
        None => (0, segment.base_offset),
    };
    while position < size_bytes {
        let Ok(header) = segment.header_at(position, size_bytes) else {
            return false;
        };
        let (Ok(base), Ok(next)) = (
            u64::try_from(header.base_offset),
            u64::try_from(header.next_offset()),
        ) else {
            return false;
        };
        if base < expected || next > next_offset {
            return false;
        }
        expected = next;
        position += header.size_bytes() as u64;
    }
    position == size_bytes
}

fn open_sealed(
    dir: &Path,
    base: u64,
    next_base: u64,
    config: &LogConfig,
    recovery_point: u64,
) -> Result<Segment, LogError> {
    let segment = open_trusted(dir, base, next_base, config, recovery_point)?;
    // A rebuilt index is writable: trim it like any sealed segment's.
    segment.seal_indexes()?;
    Ok(segment)
}

fn open_active_clean(
    dir: &Path,
    base: u64,
    log_end_offset: u64,
    config: &LogConfig,
    recovery_point: u64,
) -> Result<(Segment, IndexTracker), LogError> {
    let segment = open_trusted(dir, base, log_end_offset, config, recovery_point)?;
    segment.unseal_indexes(config.index_bytes_max)?;
    let end = segment.end();
    let last_entry_position = segment
        .offset_index
        .last()
        .map_or(0, |e| u64::from(e.position));
    let tracker = IndexTracker {
        bytes_since_entry: end.size_bytes - last_entry_position,
        max_timestamp: end.max_timestamp,
    };
    Ok((segment, tracker))
}
