//! One segment: a `.log` file of whole batches with its offset and time indexes, the
//! published end (size, next offset, max timestamp) readers rely on, and the read-side
//! lookups (batch header at a position, position of an offset, slices of whole batches).
//!
//! Publication: the writer stores the size, then the next offset (Release) after the bytes
//! are written; readers load them (Acquire) and never look past them, so they never see a
//! half-written batch. Log bytes are read with `pread` only (never mapped), so a truncated
//! file gives an error, not SIGBUS.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::batch::{BatchHeader, BATCH_HEADER_BYTES};
use crate::error::IoContext;
use crate::file_io;
use crate::file_name::SegmentPaths;
use crate::offset_index::OffsetIndex;
use crate::slice::{FileSlice, TruncationFloor};
use crate::time_index::TimeIndex;
use crate::LogError;

/// "No timestamp yet" for a segment's max timestamp.
pub(crate) const NO_TIMESTAMP: i64 = i64::MIN;

pub(crate) struct Segment {
    pub base_offset: u64,
    pub paths: SegmentPaths,
    pub log: Arc<File>,
    /// Truncation floor shared with the slices cut since the last truncation.
    floor: RwLock<Arc<TruncationFloor>>,
    pub offset_index: OffsetIndex,
    pub time_index: TimeIndex,
    size_bytes: AtomicU64,
    next_offset: AtomicU64,
    max_timestamp: AtomicI64,
}

/// The published end of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentEnd {
    pub size_bytes: u64,
    pub next_offset: u64,
    pub max_timestamp: i64,
}

impl Segment {
    /// Creates an empty segment's three files (replacing stale ones of the same name).
    pub fn create(dir: &Path, base_offset: u64, index_bytes_max: u32) -> Result<Segment, LogError> {
        let paths = SegmentPaths::new(dir, base_offset);
        let log = file_io::create(&paths.log).io_ctx("create segment", &paths.log)?;
        let offset_index = OffsetIndex::create(&paths.offset_index, index_bytes_max)
            .io_ctx("create offset index", &paths.offset_index)?;
        let time_index = TimeIndex::create(&paths.time_index, index_bytes_max)
            .io_ctx("create time index", &paths.time_index)?;
        Ok(Segment::assemble(
            base_offset,
            paths,
            log,
            offset_index,
            time_index,
            SegmentEnd {
                size_bytes: 0,
                next_offset: base_offset,
                max_timestamp: NO_TIMESTAMP,
            },
        ))
    }

    pub fn assemble(
        base_offset: u64,
        paths: SegmentPaths,
        log: File,
        offset_index: OffsetIndex,
        time_index: TimeIndex,
        end: SegmentEnd,
    ) -> Segment {
        Segment {
            base_offset,
            paths,
            log: Arc::new(log),
            floor: RwLock::new(Arc::new(TruncationFloor::new())),
            offset_index,
            time_index,
            size_bytes: AtomicU64::new(end.size_bytes),
            next_offset: AtomicU64::new(end.next_offset),
            max_timestamp: AtomicI64::new(end.max_timestamp),
        }
    }

    pub fn size_bytes(&self) -> u64 {
        self.size_bytes.load(Ordering::Acquire)
    }

    pub fn next_offset(&self) -> u64 {
        self.next_offset.load(Ordering::Acquire)
    }

    pub fn max_timestamp(&self) -> i64 {
        self.max_timestamp.load(Ordering::Acquire)
    }

    pub fn end(&self) -> SegmentEnd {
        SegmentEnd {
            size_bytes: self.size_bytes(),
            next_offset: self.next_offset(),
            max_timestamp: self.max_timestamp(),
        }
    }

    /// Makes written bytes visible to readers: size first, then offsets, so a reader that
    /// sees an offset also sees its bytes.
    pub fn publish(&self, end: SegmentEnd) {
        self.max_timestamp
            .store(end.max_timestamp, Ordering::Release);
        self.size_bytes.store(end.size_bytes, Ordering::Release);
        self.next_offset.store(end.next_offset, Ordering::Release);
    }

    /// Withdraws bytes from readers before a truncation touches the file: offsets first.
    pub fn unpublish(&self, end: SegmentEnd) {
        debug_assert!(end.size_bytes <= self.size_bytes());
        self.next_offset.store(end.next_offset, Ordering::Release);
        self.size_bytes.store(end.size_bytes, Ordering::Release);
        self.max_timestamp
            .store(end.max_timestamp, Ordering::Release);
        // Slices cut before now see the cut; slices cut from here on start afresh.
        let mut floor = self.floor.write().unwrap_or_else(|p| p.into_inner());
        floor.lower_to(end.size_bytes);
        *floor = Arc::new(TruncationFloor::new());
    }

    /// The floor to cut slices against; take it before loading the size to read up to.
    pub fn current_floor(&self) -> Arc<TruncationFloor> {
        Arc::clone(&self.floor.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Relative offset of `offset` in this segment (saturating: the index stores u32).
    pub fn relative_offset(&self, offset: u64) -> u32 {
        u32::try_from(offset.saturating_sub(self.base_offset)).unwrap_or(u32::MAX)
    }

    fn corrupt(&self, position: u64, reason: impl Into<String>) -> LogError {
        LogError::Corrupt {
            segment: self.paths.log.clone(),
            position,
            reason: reason.into(),
        }
    }

    /// The header of the batch at `position`, which must end within `size_bytes`.
    pub fn header_at(&self, position: u64, size_bytes: u64) -> Result<BatchHeader, LogError> {
        let mut fixed = [0u8; BATCH_HEADER_BYTES];
        if position + BATCH_HEADER_BYTES as u64 > size_bytes {
            return Err(self.corrupt(position, "a batch header runs past the end of the segment"));
        }
        self.log
            .read_exact_at(&mut fixed, position)
            .io_ctx("read batch header", &self.paths.log)?;
        let header =
            BatchHeader::parse(&fixed).map_err(|e| self.corrupt(position, e.to_string()))?;
        if position + header.size_bytes() as u64 > size_bytes {
            return Err(self.corrupt(position, "a batch runs past the end of the segment"));
        }
        self.check_header(&header)
            .map_err(|reason| self.corrupt(position, reason))?;
        Ok(header)
    }

    /// The cheap guard every header a reader steers by passes (segments below the recovery
    /// point are not CRC-checked on open, and reads never check CRCs): the fields that
    /// place the batch — base offset, offset delta, record count, codec — must be possible
    /// for this segment. Catches damage outside the CRC (base offset) and garbage headers;
    /// damage inside the CRC-covered bytes is left to the consumer's CRC check.
    fn check_header(&self, header: &BatchHeader) -> Result<(), String> {
        let relative = u64::try_from(header.base_offset)
            .ok()
            .and_then(|base| base.checked_sub(self.base_offset));
        if relative.is_none_or(|r| r > u64::from(u32::MAX)) {
            return Err(format!(
                "batch base offset {} is not within 2^32 above the segment base {}",
                header.base_offset, self.base_offset
            ));
        }
        let fits = header.last_offset_delta >= 0
            && header.record_count >= 0
            && i64::from(header.record_count) <= i64::from(header.last_offset_delta) + 1;
        if !fits {
            return Err(format!(
                "batch holds {} records for last offset delta {}",
                header.record_count, header.last_offset_delta
            ));
        }
        header.compression().map(|_| ()).map_err(|e| e.to_string())
    }

    /// Position and header of the first batch whose last offset is at or past `offset`,
    /// within the first `size_bytes`; None when every batch there ends below `offset`.
    pub fn locate(
        &self,
        offset: u64,
        size_bytes: u64,
    ) -> Result<Option<(u64, BatchHeader)>, LogError> {
        let entry = self.offset_index.lookup(self.relative_offset(offset));
        let mut position = u64::from(entry.position);
        while position < size_bytes {
            let header = self.header_at(position, size_bytes)?;
            if header.last_offset() >= 0 && header.last_offset() as u64 >= offset {
                return Ok(Some((position, header)));
            }
            position += header.size_bytes() as u64;
        }
        Ok(None)
    }

    /// Position and header of the first batch whose max timestamp is at or past
    /// `timestamp`, within the first `size_bytes`.
    pub fn locate_time(
        &self,
        timestamp: i64,
        size_bytes: u64,
    ) -> Result<Option<(u64, BatchHeader)>, LogError> {
        let start_offset = match self.time_index.lookup_before(timestamp) {
            Some(entry) => self.base_offset + u64::from(entry.relative_offset),
            None => self.base_offset,
        };
        let entry = self.offset_index.lookup(self.relative_offset(start_offset));
        let mut position = u64::from(entry.position);
        while position < size_bytes {
            let header = self.header_at(position, size_bytes)?;
            if header.max_timestamp >= timestamp {
                return Ok(Some((position, header)));
            }
            position += header.size_bytes() as u64;
        }
        Ok(None)
    }

    /// Whole batches from `start` (a located batch) while they fit in `max_bytes` (the
    /// first always does), end below `upper_bound`, and lie within `size_bytes`.
    pub fn slice_from(
        &self,
        start: (u64, BatchHeader),
        offset: u64,
        max_bytes: usize,
        upper_bound: u64,
        size_bytes: u64,
        floor: &Arc<TruncationFloor>,
    ) -> Result<FileSlice, LogError> {
        let (start_position, mut header) = start;
        let mut position = start_position;
        let mut total_bytes: usize = 0;
        let mut next_offset = offset;
        loop {
            let last = u64::try_from(header.last_offset()).unwrap_or(0);
            if last >= upper_bound {
                break;
            }
            let batch_bytes = header.size_bytes();
            if total_bytes > 0 && total_bytes + batch_bytes > max_bytes {
                break;
            }
            total_bytes += batch_bytes;
            next_offset = last + 1;
            position += batch_bytes as u64;
            if total_bytes >= max_bytes || position >= size_bytes {
                break;
            }
            // Skip over whole batches with the index instead of reading every header: an
            // entry is a batch boundary, and everything before it ends below its offset.
            let max_end = start_position
                .saturating_add(max_bytes as u64)
                .min(size_bytes);
            let jump = self.offset_index.last_where(|e| {
                u64::from(e.position) <= max_end
                    && self.base_offset + u64::from(e.relative_offset) <= upper_bound
            });
            if let Some(entry) = jump.filter(|e| u64::from(e.position) > position) {
                position = u64::from(entry.position);
                total_bytes = (position - start_position) as usize;
                next_offset = self.base_offset + u64::from(entry.relative_offset);
                if total_bytes >= max_bytes || position >= size_bytes {
                    break;
                }
            }
            header = self.header_at(position, size_bytes)?;
        }
        // The scan may have raced with a truncation of this segment: never hand out
        // bytes whose headers were read from a file that has since been cut.
        let end = start_position + total_bytes as u64;
        let floor_bytes = floor.get();
        if end > floor_bytes {
            return Err(LogError::SliceTruncated {
                segment: self.paths.log.clone(),
                position: start_position,
                end,
                truncated_to_bytes: floor_bytes,
            });
        }
        Ok(self.slice(start_position, total_bytes, next_offset, floor))
    }

    pub fn slice(
        &self,
        position: u64,
        len: usize,
        next_offset: u64,
        floor: &Arc<TruncationFloor>,
    ) -> FileSlice {
        FileSlice::new(
            Arc::clone(&self.log),
            self.paths.log.clone(),
            Arc::clone(floor),
            position,
            len,
            next_offset,
        )
    }

    /// Appends the seal entry to the time index (the segment's max timestamp), then trims
    /// and syncs both indexes and maps them read-only.
    pub fn seal_indexes(&self) -> Result<(), LogError> {
        let end = self.end();
        if end.max_timestamp != NO_TIMESTAMP && end.next_offset > self.base_offset {
            let last_relative = self.relative_offset(end.next_offset - 1);
            self.time_index
                .maybe_append(end.max_timestamp, last_relative, 0);
        }
        self.offset_index
            .seal()
            .io_ctx("trim offset index", &self.paths.offset_index)?;
        self.time_index
            .seal()
            .io_ctx("trim time index", &self.paths.time_index)
    }

    /// Maps both indexes writable again, preallocated to `index_bytes_max`.
    pub fn unseal_indexes(&self, index_bytes_max: u32) -> Result<(), LogError> {
        self.offset_index
            .make_writable(index_bytes_max)
            .io_ctx("preallocate offset index", &self.paths.offset_index)?;
        self.time_index
            .make_writable(index_bytes_max)
            .io_ctx("preallocate time index", &self.paths.time_index)
    }

    pub fn sync_log(&self) -> Result<(), LogError> {
        file_io::sync_data(&self.log, &self.paths.log).io_ctx("fsync segment", &self.paths.log)
    }
}

/// Running state for adding sparse index entries as batches are appended or scanned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexTracker {
    /// Log bytes since the last offset index entry (or the segment start).
    pub bytes_since_entry: u64,
    /// Max timestamp of the segment so far.
    pub max_timestamp: i64,
}

impl IndexTracker {
    pub fn new() -> Self {
        IndexTracker {
            bytes_since_entry: 0,
            max_timestamp: NO_TIMESTAMP,
        }
    }

    /// Accounts for the batch at `position`, adding index entries when about
    /// `interval_bytes` passed since the last one. One time index entry stays reserved
    /// for the seal entry.
    pub fn on_batch(
        &mut self,
        segment: &Segment,
        position: u64,
        header: &BatchHeader,
        interval_bytes: u32,
    ) {
        self.max_timestamp = self.max_timestamp.max(header.max_timestamp);
        if position > 0 && self.bytes_since_entry >= u64::from(interval_bytes) {
            let relative = segment.relative_offset(u64::try_from(header.base_offset).unwrap_or(0));
            if let Ok(position) = u32::try_from(position) {
                segment.offset_index.append(relative, position);
                segment
                    .time_index
                    .maybe_append(self.max_timestamp, relative, 1);
            }
            self.bytes_since_entry = 0;
        }
        self.bytes_since_entry += header.size_bytes() as u64;
    }
}
