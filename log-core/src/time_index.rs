//! The sparse time index of a segment: timestamp (i64 LE) -> relative offset (u32 LE).
//!
//! An entry (t, r) says every batch with base offset at or below `segment base + r` has a
//! max timestamp at or below t; timestamps strictly increase from entry to entry. A search
//! for the first batch with max timestamp >= T starts at the last entry with t < T. When a
//! segment is sealed its last entry holds the segment's max timestamp, which retention
//! reads after a restart without scanning the log.

use std::io;
use std::path::Path;

use crate::index_file::{IndexEntry, IndexFile};

/// Bytes of one time index entry.
pub const TIME_INDEX_ENTRY_BYTES: usize = 12;

/// One time index entry: every batch with base offset at or below
/// `segment base + relative_offset` has a max timestamp at or below `timestamp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeEntry {
    pub timestamp: i64,
    pub relative_offset: u32,
}

impl IndexEntry for TimeEntry {
    const BYTES: usize = TIME_INDEX_ENTRY_BYTES;

    fn decode(bytes: &[u8]) -> Self {
        let mut t = [0u8; 8];
        let mut r = [0u8; 4];
        t.copy_from_slice(&bytes[0..8]);
        r.copy_from_slice(&bytes[8..12]);
        TimeEntry {
            timestamp: i64::from_le_bytes(t),
            relative_offset: u32::from_le_bytes(r),
        }
    }

    fn encode(&self, out: &mut [u8]) {
        out[0..8].copy_from_slice(&self.timestamp.to_le_bytes());
        out[8..12].copy_from_slice(&self.relative_offset.to_le_bytes());
    }
}

pub(crate) struct TimeIndex {
    file: IndexFile<TimeEntry>,
}

impl TimeIndex {
    pub fn create(path: &Path, capacity_bytes: u32) -> io::Result<Self> {
        Ok(TimeIndex {
            file: IndexFile::create(path, capacity_bytes)?,
        })
    }

    /// Opens an existing index; `relative_offset_end` bounds the relative offsets of the
    /// segment. Returns the reason when the entries are damaged.
    pub fn open(path: &Path, relative_offset_end: u64) -> io::Result<Result<Self, String>> {
        let opened =
            IndexFile::open_existing(path, |entries: &mut dyn Iterator<Item = TimeEntry>| {
                let mut count = 0usize;
                let mut previous: Option<TimeEntry> = None;
                for entry in entries {
                    if let Some(prev) = previous {
                        if entry.timestamp == 0 && entry.relative_offset == 0 {
                            break;
                        }
                        if entry.timestamp <= prev.timestamp
                            || entry.relative_offset < prev.relative_offset
                        {
                            return Err(format!("entry {count} does not increase"));
                        }
                    }
                    if u64::from(entry.relative_offset) >= relative_offset_end.max(1) {
                        return Err(format!(
                            "entry {count} names relative offset {} past the segment",
                            entry.relative_offset
                        ));
                    }
                    previous = Some(entry);
                    count += 1;
                }
                Ok(count)
            })?;
        Ok(opened.map(|file| TimeIndex { file }))
    }

    /// The last entry with a timestamp below `timestamp`, if any.
    pub fn lookup_before(&self, timestamp: i64) -> Option<TimeEntry> {
        self.file.last_where(|e| e.timestamp < timestamp)
    }

    pub fn last(&self) -> Option<TimeEntry> {
        self.file.last()
    }

    pub fn free_entries(&self) -> usize {
        self.file.free_entries()
    }

    /// Appends (timestamp, relative offset) when the timestamp is newer than the last entry.
    /// `keep_free` entries stay reserved (for the entry written when the segment is sealed).
    pub fn maybe_append(&self, timestamp: i64, relative_offset: u32, keep_free: usize) -> bool {
        if let Some(last) = self.file.last() {
            if timestamp <= last.timestamp || relative_offset < last.relative_offset {
                return false;
            }
        }
        if self.file.free_entries() <= keep_free {
            return false;
        }
        self.file.append(TimeEntry {
            timestamp,
            relative_offset,
        })
    }

    /// Drops the entries for batches at or past `relative_offset`.
    pub fn truncate_to_relative_offset(&self, relative_offset: u32) {
        self.file
            .truncate_while(|e| e.relative_offset < relative_offset);
    }

    pub fn seal(&self) -> io::Result<()> {
        self.file.seal()
    }

    pub fn make_writable(&self, capacity_bytes: u32) -> io::Result<()> {
        self.file.make_writable(capacity_bytes)
    }
}
