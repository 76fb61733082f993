//! Scanning a segment file batch by batch (length + CRC-32C), rebuilding its indexes, and
//! deciding what a bad batch means. Above the recovery point the bytes were never promised
//! durable, so, as in Kafka, the scan cuts the file at the first batch that does not check
//! (whatever follows it) and the open deletes the later segments. Below it the bytes were
//! fsynced: any bad batch is damage, an error naming the segment, byte and offset, and is
//! never served.

use std::os::unix::fs::FileExt;

use crate::batch::{validate, BatchHeader, BATCH_HEADER_BYTES, LOG_OVERHEAD_BYTES};
use crate::error::IoContext;
use crate::file_io;
use crate::segment::{IndexTracker, Segment, SegmentEnd};
use crate::LogError;

/// How much damage a scan may repair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScanMode {
    /// The segment may hold bytes written but never fsynced, from this recovery point on:
    /// a bad batch at or above it ends the log there; one below it is
    /// `DamagedBelowRecoveryPoint`.
    Recover(u64),
    /// The segment was fsynced: any bad byte is corruption (`Corrupt`).
    Strict,
    /// The segment lies below this recovery point: any bad byte is
    /// `DamagedBelowRecoveryPoint`, naming the first offset it loses.
    BelowRecoveryPoint(u64),
}

/// What a scan found.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ScanResult {
    pub end: SegmentEnd,
    pub tracker: IndexTracker,
    /// Where the file was cut, if it was.
    pub truncated_at: Option<u64>,
}

/// Reads the file in large chunks so a scan of small batches is not a syscall per batch.
struct ChunkReader<'a> {
    segment: &'a Segment,
    file_len: u64,
    buf: Vec<u8>,
    buf_start: u64,
}

const CHUNK_BYTES: usize = 1 << 20;

impl<'a> ChunkReader<'a> {
    /// `len` bytes at `position`; the caller has checked they lie within the file.
    fn get(&mut self, position: u64, len: usize) -> Result<&[u8], LogError> {
        debug_assert!(position + len as u64 <= self.file_len);
        let in_buf = position >= self.buf_start
            && position + len as u64 <= self.buf_start + self.buf.len() as u64;
        if !in_buf {
            let want = len.max(CHUNK_BYTES) as u64;
            let read_len = want.min(self.file_len - position) as usize;
            self.buf.resize(read_len, 0);
            self.segment
                .log
                .read_exact_at(&mut self.buf, position)
                .io_ctx("read segment", &self.segment.paths.log)?;
            self.buf_start = position;
        }
        let from = (position - self.buf_start) as usize;
        self.buf
            .get(from..from + len)
            .ok_or_else(|| LogError::Corrupt {
                segment: self.segment.paths.log.clone(),
                position,
                reason: "read past the buffered chunk".to_string(),
            })
    }
}

/// Scans `segment` (whose indexes are freshly created and empty) from position 0,
/// validating every batch and adding index entries; cuts a bad tail in Recover mode.
/// Nothing is published; the caller publishes `ScanResult::end`.
pub(crate) fn scan_segment(
    segment: &Segment,
    mode: ScanMode,
    interval_bytes: u32,
) -> Result<ScanResult, LogError> {
    let file_len = segment
        .log
        .metadata()
        .io_ctx("stat segment", &segment.paths.log)?
        .len();
    let mut reader = ChunkReader {
        segment,
        file_len,
        buf: Vec::new(),
        buf_start: 0,
    };
    let mut tracker = IndexTracker::new();
    let mut position = 0u64;
    let mut next_offset = segment.base_offset;
    let bad = loop {
        if position == file_len {
            break None;
        }
        match check_batch_at(&mut reader, position, next_offset)? {
            Ok(header) => {
                tracker.on_batch(segment, position, &header, interval_bytes);
                position += header.size_bytes() as u64;
                next_offset = u64::try_from(header.next_offset()).unwrap_or(u64::MAX);
            }
            Err(bad) => break Some(bad),
        }
    };
    let mut truncated_at = None;
    if let Some(bad) = bad {
        match mode {
            ScanMode::Recover(recovery_point) if next_offset < recovery_point => {
                return Err(LogError::DamagedBelowRecoveryPoint {
                    segment: segment.paths.log.clone(),
                    position,
                    offset: next_offset,
                    recovery_point,
                    reason: bad.reason,
                })
            }
            ScanMode::Recover(_) => {}
            ScanMode::Strict => {
                let follows = match bad.next_position {
                    Some(next) => valid_batch_at(&mut reader, next)?,
                    None => false,
                };
                let what = if follows {
                    "; valid batches follow it, so this is not a torn tail"
                } else {
                    "; the segment was already fsynced"
                };
                return Err(LogError::Corrupt {
                    segment: segment.paths.log.clone(),
                    position,
                    reason: format!("{}{what}", bad.reason),
                });
            }
            ScanMode::BelowRecoveryPoint(recovery_point) => {
                return Err(LogError::DamagedBelowRecoveryPoint {
                    segment: segment.paths.log.clone(),
                    position,
                    offset: next_offset,
                    recovery_point,
                    reason: bad.reason,
                })
            }
        }
        file_io::set_len(&segment.log, position, &segment.paths.log)
            .io_ctx("truncate torn tail of", &segment.paths.log)?;
        segment.sync_log()?;
        truncated_at = Some(position);
    }
    Ok(ScanResult {
        end: SegmentEnd {
            size_bytes: position,
            next_offset,
            max_timestamp: tracker.max_timestamp,
        },
        tracker,
        truncated_at,
    })
}

struct BadBatch {
    reason: String,
    /// Where the next batch would start if the length field is to be believed.
    next_position: Option<u64>,
}

/// Checks the batch at `position` fully; the inner Err describes a bad batch.
fn check_batch_at(
    reader: &mut ChunkReader<'_>,
    position: u64,
    expected_offset: u64,
) -> Result<Result<BatchHeader, BadBatch>, LogError> {
    let remaining = reader.file_len - position;
    if remaining < LOG_OVERHEAD_BYTES as u64 {
        return Ok(Err(BadBatch {
            reason: format!("{remaining} bytes remain, less than a batch's length prefix"),
            next_position: None,
        }));
    }
    let prefix = reader.get(position, LOG_OVERHEAD_BYTES)?;
    let mut length = [0u8; 4];
    length.copy_from_slice(&prefix[8..12]);
    let batch_length = i32::from_be_bytes(length);
    let size_bytes = u64::try_from(batch_length)
        .ok()
        .map(|l| l + LOG_OVERHEAD_BYTES as u64)
        .filter(|&s| s >= BATCH_HEADER_BYTES as u64);
    let Some(size_bytes) = size_bytes else {
        return Ok(Err(BadBatch {
            reason: format!("batch length field {batch_length} is impossible"),
            next_position: None,
        }));
    };
    if size_bytes > remaining {
        return Ok(Err(BadBatch {
            reason: format!("batch of {size_bytes} bytes runs past the end of the file ({remaining} bytes remain)"),
            next_position: None,
        }));
    }
    let bytes = reader.get(position, size_bytes as usize)?;
    let next_position = Some(position + size_bytes);
    let header = match validate(bytes, usize::MAX) {
        Ok(header) => header,
        Err(e) => {
            return Ok(Err(BadBatch {
                reason: e.to_string(),
                next_position,
            }))
        }
    };
    let base = header.base_offset;
    let segment_base = reader.segment.base_offset;
    let in_range = u64::try_from(base).is_ok_and(|b| {
        b >= expected_offset
            && b.checked_sub(segment_base)
                .is_some_and(|relative| relative <= u64::from(u32::MAX))
    });
    if !in_range {
        return Ok(Err(BadBatch {
            reason: format!("batch base offset {base} is not after the previous batch (expected at least {expected_offset}) or is not within 2^32 of the segment base {segment_base}"),
            next_position,
        }));
    }
    Ok(Ok(header))
}

fn valid_batch_at(reader: &mut ChunkReader<'_>, position: u64) -> Result<bool, LogError> {
    if position >= reader.file_len {
        return Ok(false);
    }
    Ok(check_batch_at(reader, position, 0)?.is_ok())
}
