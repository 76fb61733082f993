//! Finding segment files (`<base offset, 20 digits>.log` with `.index` and
//! `.timeindex` beside it), reading batches from a `.log` one at a time with
//! positioned reads, and reading index entries.
//!
//! Index entry layouts are those of `weir-log` (little-endian, fixed size):
//! offset index `relative offset u32 | position u32`, time index
//! `timestamp i64 | relative offset u32`. Index files of an active segment are
//! preallocated, so an all-zero entry marks the end of the written entries.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use weir_log::batch::{BatchError, LOG_OVERHEAD_BYTES};
use weir_log::{OFFSET_INDEX_ENTRY_BYTES, TIME_INDEX_ENTRY_BYTES};

const BASE_OFFSET_DIGITS: usize = 20;
/// Smallest legal batch length field: a 61-byte header holds 49 bytes after it.
const BATCH_LENGTH_MIN: i32 = 49;

/// One segment's files.
#[derive(Debug, Clone)]
pub struct SegmentFiles {
    /// From the file name; `None` for a `.log` whose name is not a base offset.
    pub base_offset: Option<u64>,
    pub log: PathBuf,
    pub offset_index: PathBuf,
    pub time_index: PathBuf,
}

impl SegmentFiles {
    fn for_log(log: PathBuf) -> SegmentFiles {
        let base_offset = log
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(parse_log_name);
        SegmentFiles {
            base_offset,
            offset_index: log.with_extension("index"),
            time_index: log.with_extension("timeindex"),
            log,
        }
    }
}

/// The base offset named by `<20 digits>.log`.
fn parse_log_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".log")?;
    if stem.len() != BASE_OFFSET_DIGITS || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// The segments at `path`: every segment of a partition directory in offset
/// order, or the one `.log` file named.
pub fn find_segments(path: &Path) -> anyhow::Result<Vec<SegmentFiles>> {
    let metadata =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if metadata.is_file() {
        if path.extension().is_none_or(|ext| ext != "log") {
            bail!("{} is not a .log segment file", path.display());
        }
        return Ok(vec![SegmentFiles::for_log(path.to_path_buf())]);
    }
    let mut segments = Vec::new();
    let entries =
        std::fs::read_dir(path).with_context(|| format!("cannot list {}", path.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", path.display()))?;
        let name = entry.file_name();
        let Some(base_offset) = name.to_str().and_then(parse_log_name) else {
            continue;
        };
        let mut files = SegmentFiles::for_log(entry.path());
        files.base_offset = Some(base_offset);
        segments.push(files);
    }
    if segments.is_empty() {
        bail!(
            "{} holds no segment files (<base offset>.log)",
            path.display()
        );
    }
    segments.sort_by_key(|segment| segment.base_offset);
    Ok(segments)
}

/// What the bytes at the scan position are.
pub enum Scanned<'a> {
    /// One whole batch (framing checked, contents not yet).
    Batch { position: u64, bytes: &'a [u8] },
    /// The end of the file, exactly after the last batch.
    End,
    /// Bytes that cannot be split into a batch; nothing after can be trusted.
    Broken { position: u64, error: BatchError },
}

/// Reads a `.log` batch by batch, holding one batch in memory at a time.
pub struct BatchScanner {
    file: File,
    len_bytes: u64,
    position: u64,
    buf: Vec<u8>,
}

impl BatchScanner {
    pub fn open(path: &Path) -> anyhow::Result<BatchScanner> {
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let len_bytes = file
            .metadata()
            .with_context(|| format!("cannot stat {}", path.display()))?
            .len();
        Ok(BatchScanner {
            file,
            len_bytes,
            position: 0,
            buf: Vec::new(),
        })
    }

    pub fn len_bytes(&self) -> u64 {
        self.len_bytes
    }

    pub fn next_batch(&mut self) -> io::Result<Scanned<'_>> {
        let position = self.position;
        let remaining = self.len_bytes - position;
        if remaining == 0 {
            return Ok(Scanned::End);
        }
        let truncated = |needed_bytes: usize| Scanned::Broken {
            position,
            error: BatchError::Truncated {
                position: usize::try_from(position).unwrap_or(usize::MAX),
                needed_bytes,
                available_bytes: usize::try_from(remaining).unwrap_or(usize::MAX),
            },
        };
        let mut overhead = [0u8; LOG_OVERHEAD_BYTES];
        if remaining < LOG_OVERHEAD_BYTES as u64 {
            return Ok(truncated(LOG_OVERHEAD_BYTES));
        }
        self.file.read_exact_at(&mut overhead, position)?;
        let mut length = [0u8; 4];
        length.copy_from_slice(&overhead[8..12]);
        let batch_length = i32::from_be_bytes(length);
        if batch_length < BATCH_LENGTH_MIN {
            return Ok(Scanned::Broken {
                position,
                error: BatchError::InvalidLength {
                    position: usize::try_from(position).unwrap_or(usize::MAX),
                    batch_length,
                },
            });
        }
        // Positive and at most i32::MAX + 12, so it fits both u64 and usize.
        let size_bytes = batch_length as u64 + LOG_OVERHEAD_BYTES as u64;
        if size_bytes > remaining {
            return Ok(truncated(usize::try_from(size_bytes).unwrap_or(usize::MAX)));
        }
        // Sized by a length already checked against the bytes in the file.
        self.buf.resize(size_bytes as usize, 0);
        self.file.read_exact_at(&mut self.buf, position)?;
        self.position += size_bytes;
        Ok(Scanned::Batch {
            position,
            bytes: &self.buf,
        })
    }
}

/// An offset index entry and where it sits in its file.
#[derive(Debug, Clone, Copy)]
pub struct OffsetEntry {
    pub file_position: u64,
    pub relative_offset: u32,
    pub position: u32,
}

/// A time index entry and where it sits in its file.
#[derive(Debug, Clone, Copy)]
pub struct TimeEntry {
    pub file_position: u64,
    pub timestamp: i64,
    pub relative_offset: u32,
}

/// A problem in an index file: the byte where it is and what it is.
pub struct IndexProblem {
    pub file_position: u64,
    pub reason: String,
}

/// The written entries of an index file (`None` if there is no file), or the
/// first problem with its layout: a size that is not whole entries, or
/// non-zero bytes after the all-zero end marker.
fn read_entries<E>(
    path: &Path,
    entry_bytes: usize,
    decode: impl Fn(u64, &[u8]) -> E,
    is_zero: impl Fn(&E) -> bool,
) -> anyhow::Result<Option<Result<Vec<E>, IndexProblem>>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err).with_context(|| format!("cannot read {}", path.display())),
    };
    if bytes.len() % entry_bytes != 0 {
        let whole = bytes.len() - bytes.len() % entry_bytes;
        return Ok(Some(Err(IndexProblem {
            file_position: whole as u64,
            reason: format!(
                "the file size {} is not a multiple of the {entry_bytes}-byte entry",
                bytes.len()
            ),
        })));
    }
    let mut entries = Vec::new();
    let mut chunks = bytes.chunks_exact(entry_bytes).enumerate();
    for (index, chunk) in &mut chunks {
        let entry = decode((index * entry_bytes) as u64, chunk);
        if is_zero(&entry) {
            break;
        }
        entries.push(entry);
    }
    for (index, chunk) in chunks {
        if chunk.iter().any(|&b| b != 0) {
            return Ok(Some(Err(IndexProblem {
                file_position: (index * entry_bytes) as u64,
                reason: "an entry follows the all-zero end of the written entries".to_owned(),
            })));
        }
    }
    Ok(Some(Ok(entries)))
}

pub fn read_offset_index(
    path: &Path,
) -> anyhow::Result<Option<Result<Vec<OffsetEntry>, IndexProblem>>> {
    read_entries(
        path,
        OFFSET_INDEX_ENTRY_BYTES,
        |file_position, chunk| OffsetEntry {
            file_position,
            relative_offset: u32_le(&chunk[0..4]),
            position: u32_le(&chunk[4..8]),
        },
        |entry| entry.relative_offset == 0 && entry.position == 0,
    )
}

pub fn read_time_index(
    path: &Path,
) -> anyhow::Result<Option<Result<Vec<TimeEntry>, IndexProblem>>> {
    read_entries(
        path,
        TIME_INDEX_ENTRY_BYTES,
        |file_position, chunk| {
            let mut timestamp = [0u8; 8];
            timestamp.copy_from_slice(&chunk[0..8]);
            TimeEntry {
                file_position,
                timestamp: i64::from_le_bytes(timestamp),
                relative_offset: u32_le(&chunk[8..12]),
            }
        },
        |entry| entry.timestamp == 0 && entry.relative_offset == 0,
    )
}

fn u32_le(bytes: &[u8]) -> u32 {
    let mut out = [0u8; 4];
    out.copy_from_slice(bytes);
    u32::from_le_bytes(out)
}

const _: () = assert!(OFFSET_INDEX_ENTRY_BYTES == 8);
const _: () = assert!(TIME_INDEX_ENTRY_BYTES == 12);
