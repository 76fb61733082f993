//! Reading a partition log: whole-batch slices by offset (bounded by bytes and by an upper
//! offset such as the high watermark) and the first offset at or after a timestamp.
//! Readers take the segment map's read lock only to clone a segment, then `pread`.

use std::os::unix::fs::FileExt;
use std::sync::Arc;

use crate::batch::{self, RecordDecoder, TimestampType};
use crate::error::IoContext;
use crate::segment::{Segment, NO_TIMESTAMP};
use crate::slice::FileSlice;
use crate::{LogError, PartitionLog};

impl PartitionLog {
    /// Whole batches starting with the batch containing `offset`, up to `max_bytes` (at
    /// least one whole batch even if larger), ending below `upper_bound` (exclusive, e.g.
    /// the high watermark). `offset == log_end_offset()` gives an empty slice.
    pub fn read(
        &self,
        offset: u64,
        max_bytes: usize,
        upper_bound: u64,
    ) -> Result<FileSlice, LogError> {
        // A truncation racing with the lookup shows up as unreadable headers; retry so the
        // caller sees the log as it is now.
        let mut attempt = 0;
        loop {
            match self.read_once(offset, max_bytes, upper_bound) {
                Err((_, true)) if attempt < 3 => attempt += 1,
                Err((error, _)) => return Err(error),
                Ok(slice) => return Ok(slice),
            }
        }
    }

    /// On error, also says whether a concurrent truncation may explain it.
    fn read_once(
        &self,
        offset: u64,
        max_bytes: usize,
        upper_bound: u64,
    ) -> Result<FileSlice, (LogError, bool)> {
        let log_end = self.log_end_offset();
        let log_start = self.log_start_offset();
        let out_of_range = || LogError::OffsetOutOfRange {
            offset,
            log_start,
            log_end,
        };
        if offset < log_start || offset > log_end {
            return Err((out_of_range(), false));
        }
        let limit = upper_bound.min(log_end);
        let mut segment = {
            let map = self.read_segments();
            match map.range(..=offset).next_back() {
                Some((_, s)) => Arc::clone(s),
                // Retention removed the segment after the range check.
                None => return Err((out_of_range(), false)),
            }
        };
        if offset >= limit {
            return Ok(empty_slice(&segment, offset));
        }
        loop {
            let floor = segment.current_floor();
            let size = segment.size_bytes();
            let located = segment.locate(offset, size).and_then(|found| match found {
                Some(start) => segment
                    .slice_from(start, offset, max_bytes, limit, size, &floor)
                    .map(Some),
                None => Ok(None),
            });
            match located {
                Ok(Some(slice)) => return Ok(slice),
                Ok(None) => {}
                Err(error) => {
                    let raced = floor.get() < size;
                    return Err((error, raced));
                }
            }
            // Every batch here ends below `offset` (a compaction gap): the next segment.
            let next = {
                let map = self.read_segments();
                map.range(segment.base_offset + 1..)
                    .next()
                    .map(|(_, s)| Arc::clone(s))
            };
            match next {
                Some(s) => segment = s,
                None => return Ok(empty_slice(&segment, offset)),
            }
        }
    }

    /// The first offset whose record timestamp is at or after `timestamp_ms`, or None when
    /// every record is older.
    pub fn offset_for_time(&self, timestamp_ms: i64) -> Result<Option<u64>, LogError> {
        let log_end = self.log_end_offset();
        let mut decoder = RecordDecoder::new();
        let mut buf = Vec::new();
        for segment in self.segment_snapshot() {
            let max_timestamp = segment.max_timestamp();
            if max_timestamp == NO_TIMESTAMP || max_timestamp < timestamp_ms {
                continue;
            }
            let size = segment.size_bytes();
            let Some((position, header)) = segment.locate_time(timestamp_ms, size)? else {
                continue;
            };
            if u64::try_from(header.base_offset).map_or(true, |b| b >= log_end) {
                return Ok(None);
            }
            if header.timestamp_type() == TimestampType::LogAppendTime {
                return Ok(u64::try_from(header.base_offset).ok());
            }
            buf.resize(header.size_bytes(), 0);
            segment
                .log
                .read_exact_at(&mut buf, position)
                .io_ctx("read batch", &segment.paths.log)?;
            let corrupt = |e: batch::BatchError| LogError::Corrupt {
                segment: segment.paths.log.clone(),
                position,
                reason: e.to_string(),
            };
            for record in decoder.records(&buf).map_err(corrupt)? {
                let record = record.map_err(corrupt)?;
                if record.timestamp >= timestamp_ms {
                    return Ok(u64::try_from(record.offset).ok());
                }
            }
        }
        Ok(None)
    }
}

fn empty_slice(segment: &Segment, offset: u64) -> FileSlice {
    let floor = segment.current_floor();
    segment.slice(segment.size_bytes(), 0, offset, &floor)
}
