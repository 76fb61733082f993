//! Finding segment files (`<base offset, 20 digits>.log` with `.index` and
//! `.timeindex` beside it), reading batches from a `.log` one at a time with
//! positioned reads, and reading index files. File names and index entries are
//! decoded by `weir_log::inspect`, the engine's own decoders.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use weir_log::batch::{BatchError, LOG_OVERHEAD_BYTES};
use weir_log::inspect::{self, IndexLayoutError, OffsetEntry, SegmentFileKind, TimeEntry};

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
    match inspect::parse_segment_file_name(name)? {
        (base_offset, SegmentFileKind::Log) => Some(base_offset),
        _ => None,
    }
}

/// A shared lock of the partition directory at `path` (or holding the `.log` file at
/// `path`), so a broker cannot be writing, cutting or deleting what is read: a reader would
/// report an append in flight or a retention delete as damage. Refused, naming the holder,
/// while a broker has the partition open; a directory without a lock file is read as is.
pub fn lock_for_reading(path: &Path) -> anyhow::Result<Option<weir_log::DirLock>> {
    let dir = if path.is_dir() {
        path
    } else {
        match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        }
    };
    weir_log::DirLock::acquire_shared_if_present(dir)
        .map_err(|e| anyhow::anyhow!("{e}; stop it, or read a copy of the directory"))
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

/// The written entries of an offset index file (`None` if there is no file), or
/// the first problem with its layout.
pub fn read_offset_index(
    path: &Path,
) -> anyhow::Result<Option<Result<Vec<OffsetEntry>, IndexLayoutError>>> {
    Ok(read_file(path)?.map(|bytes| inspect::offset_index_entries(&bytes)))
}

/// The written entries of a time index file (`None` if there is no file), or the
/// first problem with its layout.
pub fn read_time_index(
    path: &Path,
) -> anyhow::Result<Option<Result<Vec<TimeEntry>, IndexLayoutError>>> {
    Ok(read_file(path)?.map(|bytes| inspect::time_index_entries(&bytes)))
}

fn read_file(path: &Path) -> anyhow::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err).with_context(|| format!("cannot read {}", path.display())),
    }
}
