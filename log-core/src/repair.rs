//! `weir log repair`: cutting a partition that does not open (damage below the recovery
//! point) back to its last whole batch. Under the exclusive directory lock, every batch of
//! every segment is checked (length, CRC-32C, offsets increasing within the segment's
//! range); the first that does not check is where the log ends: that segment is cut there,
//! its indexes removed (the next open rebuilds them) and every later segment deleted.
//!
//! Dropping fsynced data is the operator's decision, never the open's: the open refuses
//! such a partition with `DamagedBelowRecoveryPoint`, the broker serves it as offline, and
//! the plan says exactly what the cut loses before `apply` does it.

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::batch::{validate, BatchHeader, BATCH_HEADER_BYTES, LOG_OVERHEAD_BYTES};
use crate::checkpoint::{Checkpoint, CheckpointKind};
use crate::compaction_checkpoint::CleanerCheckpoint;
use crate::dir_lock::{DirLock, LockMode};
use crate::error::IoContext;
use crate::file_io;
use crate::file_name::{
    parse_segment_file_name, remove_if_exists, sync_dir, SegmentFileKind, SegmentPaths,
};
use crate::LogError;

/// Where the log would end, and what that drops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairCut {
    /// The segment cut, and the byte it is cut at (the start of the first bad batch).
    pub segment: PathBuf,
    pub position: u64,
    /// Why the batch there does not check.
    pub reason: String,
    /// The first offset dropped: the log end after the cut.
    pub first_offset: u64,
    /// The highest offset the dropped bytes hold, as far as their readable headers tell;
    /// `None` when no whole header follows the cut.
    pub last_offset: Option<u64>,
    /// Bytes dropped: the cut segment's tail and every later segment.
    pub bytes: u64,
    /// Later segments' log files, deleted with their indexes.
    pub deleted_segments: Vec<PathBuf>,
}

/// A checked partition directory, held exclusively until dropped or applied.
#[derive(Debug)]
pub struct Repair {
    dir: PathBuf,
    cut: Option<RepairCut>,
    _lock: DirLock,
}

impl Repair {
    /// Locks `dir` exclusively (failing with [`LogError::Locked`] while a broker or
    /// anything else has it open) and checks every batch. Changes nothing.
    pub fn plan(dir: &Path) -> Result<Repair, LogError> {
        let metadata = fs::metadata(dir).io_ctx("read partition directory", dir)?;
        if !metadata.is_dir() {
            return Err(LogError::Io {
                op: "repair",
                path: dir.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotADirectory,
                    "not a partition directory",
                ),
            });
        }
        let lock = DirLock::acquire(dir, LockMode::Exclusive)?;
        let bases = segment_bases(dir)?;
        let mut cut = None;
        for (i, &base) in bases.iter().enumerate() {
            let paths = SegmentPaths::new(dir, base);
            let next_base = bases.get(i + 1).copied();
            let Some(bad) = first_bad_batch(&paths.log, base, next_base)? else {
                continue;
            };
            let mut bytes = bad.file_len - bad.position;
            let mut last_offset = bad.last_offset_after;
            let mut deleted_segments = Vec::new();
            for &later in &bases[i + 1..] {
                let later_paths = SegmentPaths::new(dir, later);
                let (len, last) = readable_extent(&later_paths.log)?;
                bytes += len;
                last_offset = last_offset.max(last);
                deleted_segments.push(later_paths.log);
            }
            cut = Some(RepairCut {
                segment: paths.log,
                position: bad.position,
                reason: bad.reason,
                first_offset: bad.offset,
                last_offset: last_offset.filter(|&last| last >= bad.offset),
                bytes,
                deleted_segments,
            });
            break;
        }
        if cut.is_none() {
            cut = short_of_recovery_point(dir, &bases)?;
        }
        Ok(Repair {
            dir: dir.to_path_buf(),
            cut,
            _lock: lock,
        })
    }

    /// What `apply` would drop; `None` when every batch checks.
    pub fn cut(&self) -> Option<&RepairCut> {
        self.cut.as_ref()
    }

    /// Cuts the log as planned, durably, and releases the directory.
    pub fn apply(self) -> Result<Option<RepairCut>, LogError> {
        let Some(cut) = self.cut.clone() else {
            return Ok(None);
        };
        // Both checkpoints go down before any byte does. A clean-shutdown checkpoint
        // describes the files as they were; a recovery point past the cut would make the
        // next open (or one after a crash part way through) refuse the shorter log as
        // fsynced batches gone missing.
        Checkpoint::remove(&self.dir, CheckpointKind::CleanShutdown)?;
        lower_recovery_point(&self.dir, cut.first_offset)?;
        // Offsets from the cut on are gone: the cleaner must not count them clean when they
        // are written again (their tombstones would go before `delete.retention.ms`).
        let mut cleaner = CleanerCheckpoint::read(&self.dir)?;
        if cleaner.clean_offset() > cut.first_offset {
            cleaner.cut_to(cut.first_offset);
            cleaner.write(&self.dir)?;
        }
        // The later segments go first, newest first, and durably: a crash part way leaves a
        // log that ends early, never one with a hole before a later segment.
        for log in cut.deleted_segments.iter().rev() {
            for path in [
                log.clone(),
                log.with_extension("index"),
                log.with_extension("timeindex"),
            ] {
                remove_if_exists(&path).io_ctx("remove segment file", &path)?;
            }
        }
        sync_dir(&self.dir).io_ctx("fsync directory", &self.dir)?;
        let file = fs::OpenOptions::new()
            .write(true)
            .open(&cut.segment)
            .io_ctx("open segment", &cut.segment)?;
        file_io::set_len(&file, cut.position, &cut.segment)
            .io_ctx("truncate segment", &cut.segment)?;
        file_io::sync_data(&file, &cut.segment).io_ctx("fsync segment", &cut.segment)?;
        // Its indexes may point past the cut: the next open rebuilds them.
        for extension in ["index", "timeindex"] {
            let index = cut.segment.with_extension(extension);
            remove_if_exists(&index).io_ctx("remove index", &index)?;
        }
        sync_dir(&self.dir).io_ctx("fsync directory", &self.dir)?;
        Ok(Some(cut))
    }
}

/// Rewrites the recovery-point file to `offset` if it names a later one.
fn lower_recovery_point(dir: &Path, offset: u64) -> Result<(), LogError> {
    let Some(point) = Checkpoint::read(dir, CheckpointKind::RecoveryPoint)? else {
        return Ok(());
    };
    if point.log_end_offset <= offset {
        return Ok(());
    }
    Checkpoint {
        log_end_offset: offset,
        high_watermark: point.high_watermark.min(offset),
        log_start_offset: point.log_start_offset.min(offset),
        ..point
    }
    .write(dir, CheckpointKind::RecoveryPoint)
}

/// Every batch checks, yet the segment holding the recovery point ends below it (bytes
/// lost at a batch boundary after they were fsynced): the log ends there. The cut drops
/// no byte of that segment, only the later ones (a log with a hole would serve offsets
/// past bytes that are gone), and brings the recovery point down to what is left.
fn short_of_recovery_point(dir: &Path, bases: &[u64]) -> Result<Option<RepairCut>, LogError> {
    let Some(point) = Checkpoint::read(dir, CheckpointKind::RecoveryPoint)? else {
        return Ok(None);
    };
    let Some(i) = bases.iter().rposition(|&b| b <= point.log_end_offset) else {
        return Ok(None);
    };
    let paths = SegmentPaths::new(dir, bases[i]);
    let file = File::open(&paths.log).io_ctx("open segment", &paths.log)?;
    let len = file.metadata().io_ctx("stat segment", &paths.log)?.len();
    let end_offset = last_readable_offset(&file, 0, len)?.map_or(bases[i], |last| last + 1);
    if end_offset >= point.log_end_offset {
        return Ok(None);
    }
    let mut bytes = 0;
    let mut last_offset = None;
    let mut deleted_segments = Vec::new();
    for &later in &bases[i + 1..] {
        let later_paths = SegmentPaths::new(dir, later);
        let (len, last) = readable_extent(&later_paths.log)?;
        bytes += len;
        last_offset = last_offset.max(last);
        deleted_segments.push(later_paths.log);
    }
    Ok(Some(RepairCut {
        segment: paths.log,
        position: len,
        reason: format!(
            "the segment ends at offset {end_offset}, below the recovery point {}: fsynced batches are missing",
            point.log_end_offset
        ),
        first_offset: end_offset,
        last_offset,
        bytes,
        deleted_segments,
    }))
}

fn segment_bases(dir: &Path) -> Result<Vec<u64>, LogError> {
    let mut bases = Vec::new();
    for entry in fs::read_dir(dir).io_ctx("list partition directory", dir)? {
        let entry = entry.io_ctx("list partition directory", dir)?;
        if let Some((base, SegmentFileKind::Log)) =
            entry.file_name().to_str().and_then(parse_segment_file_name)
        {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

struct BadBatch {
    position: u64,
    offset: u64,
    reason: String,
    file_len: u64,
    /// Highest last offset among readable headers from the bad batch on.
    last_offset_after: Option<u64>,
}

/// The first batch of the segment at `path` that does not check, if any.
fn first_bad_batch(
    path: &Path,
    base: u64,
    next_base: Option<u64>,
) -> Result<Option<BadBatch>, LogError> {
    let file = File::open(path).io_ctx("open segment", path)?;
    let file_len = file.metadata().io_ctx("stat segment", path)?.len();
    let mut position = 0u64;
    let mut expected = base;
    let mut bytes = Vec::new();
    while position < file_len {
        let reason = match read_batch(&file, path, position, file_len, &mut bytes)? {
            Err(reason) => reason,
            Ok(()) => match validate(&bytes, usize::MAX) {
                Err(e) => e.to_string(),
                Ok(header) => match offsets_fit(&header, base, expected, next_base) {
                    Err(reason) => reason,
                    Ok(next) => {
                        position += bytes.len() as u64;
                        expected = next;
                        continue;
                    }
                },
            },
        };
        let last_offset_after = last_readable_offset(&file, position, file_len)?;
        return Ok(Some(BadBatch {
            position,
            offset: expected,
            reason,
            file_len,
            last_offset_after,
        }));
    }
    Ok(None)
}

/// Reads the whole batch at `position` into `bytes`; the inner Err says why it cannot.
fn read_batch(
    file: &File,
    path: &Path,
    position: u64,
    file_len: u64,
    bytes: &mut Vec<u8>,
) -> Result<Result<(), String>, LogError> {
    let remaining = file_len - position;
    if remaining < LOG_OVERHEAD_BYTES as u64 {
        return Ok(Err(format!(
            "{remaining} bytes remain, less than a batch's length prefix"
        )));
    }
    let mut prefix = [0u8; LOG_OVERHEAD_BYTES];
    file.read_exact_at(&mut prefix, position)
        .io_ctx("read segment", path)?;
    let length = i32::from_be_bytes([prefix[8], prefix[9], prefix[10], prefix[11]]);
    let Some(size) = u64::try_from(length)
        .ok()
        .map(|l| l + LOG_OVERHEAD_BYTES as u64)
        .filter(|&s| s >= BATCH_HEADER_BYTES as u64)
    else {
        return Ok(Err(format!("batch length field {length} is impossible")));
    };
    if size > remaining {
        return Ok(Err(format!(
            "batch of {size} bytes runs past the end of the file ({remaining} bytes remain)"
        )));
    }
    bytes.resize(size as usize, 0);
    file.read_exact_at(bytes, position)
        .io_ctx("read segment", path)?;
    Ok(Ok(()))
}

/// The batch's offsets follow `expected`, stay within 2^32 of the segment base and below
/// the next segment; returns the offset after it.
fn offsets_fit(
    header: &BatchHeader,
    base: u64,
    expected: u64,
    next_base: Option<u64>,
) -> Result<u64, String> {
    let first = u64::try_from(header.base_offset).ok();
    let next = u64::try_from(header.next_offset()).ok();
    match (first, next) {
        (Some(first), Some(next))
            if first >= expected
                && next > first
                && next - 1 - base <= u64::from(u32::MAX)
                && next_base.is_none_or(|limit| next <= limit) =>
        {
            Ok(next)
        }
        _ => Err(format!(
            "batch offsets {}..={} do not follow offset {expected} within the segment",
            header.base_offset,
            header.last_offset()
        )),
    }
}

/// The highest last offset among the headers that parse from `position` on, stepping by
/// their length fields (no CRC check: they are being dropped, only counted).
fn last_readable_offset(
    file: &File,
    mut position: u64,
    file_len: u64,
) -> Result<Option<u64>, LogError> {
    let mut last = None;
    let mut fixed = [0u8; BATCH_HEADER_BYTES];
    while position + BATCH_HEADER_BYTES as u64 <= file_len {
        if file.read_exact_at(&mut fixed, position).is_err() {
            break;
        }
        let Ok(header) = BatchHeader::parse(&fixed) else {
            break;
        };
        if header.size_bytes() < BATCH_HEADER_BYTES {
            break;
        }
        if let Ok(offset) = u64::try_from(header.last_offset()) {
            last = last.max(Some(offset));
        }
        position += header.size_bytes() as u64;
    }
    Ok(last)
}

/// The size of the segment at `path` and the highest offset its readable headers hold.
fn readable_extent(path: &Path) -> Result<(u64, Option<u64>), LogError> {
    let file = File::open(path).io_ctx("open segment", path)?;
    let len = file.metadata().io_ctx("stat segment", path)?.len();
    Ok((len, last_readable_offset(&file, 0, len)?))
}
