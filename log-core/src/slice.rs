//! `FileSlice`: whole batches in one segment file, handed to readers without copying,
//! like Kafka's `FileRecords`.
//!
//! The slice holds the open file, so a segment that retention deletes stays readable.
//! Truncation is detected, not raced: each segment keeps the lowest size it was ever
//! truncated to, lowered before the file shrinks; a read that ends above it is refused
//! after the bytes are copied, so truncated or rewritten bytes are never returned.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use crate::batch::BatchHeader;
use crate::LogError;

/// Shared between a segment and the slices cut from it.
#[derive(Debug)]
pub(crate) struct TruncationFloor {
    /// Lowest size the segment file was truncated to since it was opened (u64::MAX: never).
    bytes: AtomicU64,
}

impl TruncationFloor {
    pub fn new() -> Self {
        TruncationFloor {
            bytes: AtomicU64::new(u64::MAX),
        }
    }

    /// Called before the file is shortened to `size_bytes`.
    pub fn lower_to(&self, size_bytes: u64) {
        self.bytes.fetch_min(size_bytes, Ordering::SeqCst);
    }

    pub fn get(&self) -> u64 {
        self.bytes.load(Ordering::SeqCst)
    }
}

/// Whole batches of one segment file: (file, position, length).
#[derive(Debug, Clone)]
pub struct FileSlice {
    file: Arc<File>,
    path: PathBuf,
    floor: Arc<TruncationFloor>,
    position: u64,
    len: usize,
    next_offset: u64,
}

impl FileSlice {
    pub(crate) fn new(
        file: Arc<File>,
        path: PathBuf,
        floor: Arc<TruncationFloor>,
        position: u64,
        len: usize,
        next_offset: u64,
    ) -> FileSlice {
        FileSlice {
            file,
            path,
            floor,
            position,
            len,
            next_offset,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The segment file, for `sendfile`; bytes `position()..position()+len()`. Unlike
    /// [`FileSlice::to_bytes`], nothing checks these bytes on the way out beyond the first
    /// batch header the log steered by (see FORMAT.md, "What a reader may receive").
    pub fn file(&self) -> &File {
        &self.file
    }

    pub fn position(&self) -> u64 {
        self.position
    }

    /// The offset after the last batch in the slice (the offset to read next).
    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// Copies the batches out with `pread`. Fails with [`LogError::SliceTruncated`] when a
    /// truncation removed any of the bytes, even if later appends wrote new bytes there,
    /// and with [`LogError::Corrupt`] when the bytes are not whole batches back to back.
    pub fn to_bytes(&self) -> Result<Bytes, LogError> {
        let mut buf = vec![0u8; self.len];
        self.read_into(&mut buf)?;
        Ok(Bytes::from(buf))
    }

    /// As [`FileSlice::to_bytes`], into a caller buffer of exactly `len()` bytes, so a
    /// reader in a loop allocates nothing.
    pub fn read_into(&self, buf: &mut [u8]) -> Result<(), LogError> {
        debug_assert_eq!(buf.len(), self.len);
        let end = self.position + self.len as u64;
        self.check_floor(end)?;
        let read = self.file.read_exact_at(buf, self.position);
        // Checked after the copy: a truncation that raced with it has lowered the floor
        // before it touched the file, so torn bytes never pass.
        self.check_floor(end)?;
        read.map_err(|source| LogError::Io {
            op: "read",
            path: self.path.clone(),
            source,
        })?;
        self.check_framing(buf)
    }

    /// The copied bytes must be whole batches back to back: each header parses (length,
    /// magic), the lengths chain to exactly `len()`, and base offsets increase and stay
    /// below `next_offset()`. Batches after the first were framed by the offset index, not
    /// re-read, so this is where damage to their headers shows. No CRC: that stays the
    /// consumer's check, as in Kafka.
    fn check_framing(&self, buf: &[u8]) -> Result<(), LogError> {
        let mut at = 0usize;
        let mut next_base = i64::MIN;
        let end_offset = i64::try_from(self.next_offset).unwrap_or(i64::MAX);
        while at < buf.len() {
            let rest = buf.get(at..).unwrap_or_default();
            let header = BatchHeader::parse(rest).map_err(|e| self.corrupt(at, e.to_string()))?;
            if header.size_bytes() > rest.len() {
                return Err(self.corrupt(at, "a batch runs past the end of the slice"));
            }
            let in_order = header.base_offset >= next_base
                && header.last_offset_delta >= 0
                && header.last_offset() < end_offset;
            if !in_order {
                return Err(self.corrupt(
                    at,
                    format!(
                        "batch offsets {}..={} are not after the previous batch and below {}",
                        header.base_offset,
                        header.last_offset(),
                        self.next_offset
                    ),
                ));
            }
            next_base = header.next_offset();
            at += header.size_bytes();
        }
        Ok(())
    }

    fn corrupt(&self, at: usize, reason: impl Into<String>) -> LogError {
        LogError::Corrupt {
            segment: self.path.clone(),
            position: self.position + at as u64,
            reason: reason.into(),
        }
    }

    fn check_floor(&self, end: u64) -> Result<(), LogError> {
        let floor = self.floor.get();
        if end > floor {
            return Err(LogError::SliceTruncated {
                segment: self.path.clone(),
                position: self.position,
                end,
                truncated_to_bytes: floor,
            });
        }
        Ok(())
    }
}
