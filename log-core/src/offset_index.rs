//! The sparse offset index of a segment: relative offset (u32 LE) -> file position (u32 LE),
//! one entry about every `index_interval_bytes` of log.
//!
//! An entry (r, p) says the batch at position p has base offset `segment base + r`, so every
//! batch before p ends below that offset: a lookup starts its scan of batch headers at the
//! last entry with r <= target. No entry is needed for position 0.

use std::io;
use std::path::Path;

use crate::index_file::{IndexEntry, IndexFile};

/// Bytes of one offset index entry.
pub const OFFSET_INDEX_ENTRY_BYTES: usize = 8;

/// One offset index entry: the batch at byte `position` of the `.log` has base offset
/// `segment base + relative_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetEntry {
    pub relative_offset: u32,
    pub position: u32,
}

impl IndexEntry for OffsetEntry {
    const BYTES: usize = OFFSET_INDEX_ENTRY_BYTES;

    fn decode(bytes: &[u8]) -> Self {
        let mut r = [0u8; 4];
        let mut p = [0u8; 4];
        r.copy_from_slice(&bytes[0..4]);
        p.copy_from_slice(&bytes[4..8]);
        OffsetEntry {
            relative_offset: u32::from_le_bytes(r),
            position: u32::from_le_bytes(p),
        }
    }

    fn encode(&self, out: &mut [u8]) {
        out[0..4].copy_from_slice(&self.relative_offset.to_le_bytes());
        out[4..8].copy_from_slice(&self.position.to_le_bytes());
    }
}

pub(crate) struct OffsetIndex {
    file: IndexFile<OffsetEntry>,
}

impl OffsetIndex {
    pub fn create(path: &Path, capacity_bytes: u32) -> io::Result<Self> {
        Ok(OffsetIndex {
            file: IndexFile::create(path, capacity_bytes)?,
        })
    }

    /// Opens an existing index of a segment whose log holds `log_size_bytes`. Returns the
    /// reason when the entries are damaged (not strictly increasing, or pointing past the log);
    /// trailing all-zero entries (preallocated space) are not counted.
    pub fn open(path: &Path, log_size_bytes: u64) -> io::Result<Result<Self, String>> {
        let opened =
            IndexFile::open_existing(path, |entries: &mut dyn Iterator<Item = OffsetEntry>| {
                let mut count = 0usize;
                let mut previous: Option<OffsetEntry> = None;
                for entry in entries {
                    let zero = entry.relative_offset == 0 && entry.position == 0;
                    if let Some(prev) = previous {
                        if zero {
                            break;
                        }
                        if entry.relative_offset <= prev.relative_offset
                            || entry.position <= prev.position
                        {
                            return Err(format!("entry {count} does not increase"));
                        }
                    }
                    if u64::from(entry.position) >= log_size_bytes.max(1) {
                        return Err(format!(
                            "entry {count} points to byte {} past the log's {log_size_bytes} bytes",
                            entry.position
                        ));
                    }
                    previous = Some(entry);
                    count += 1;
                }
                Ok(count)
            })?;
        Ok(opened.map(|file| OffsetIndex { file }))
    }

    /// The entry to start a scan for `relative_offset` from: the last one at or below it,
    /// or the start of the segment.
    pub fn lookup(&self, relative_offset: u32) -> OffsetEntry {
        self.file
            .last_where(|e| e.relative_offset <= relative_offset)
            .unwrap_or(OffsetEntry {
                relative_offset: 0,
                position: 0,
            })
    }

    /// The last entry for which `is_before` holds; `is_before` must hold on a prefix.
    pub fn last_where(&self, is_before: impl Fn(&OffsetEntry) -> bool) -> Option<OffsetEntry> {
        self.file.last_where(is_before)
    }

    pub fn last(&self) -> Option<OffsetEntry> {
        self.file.last()
    }

    pub fn free_entries(&self) -> usize {
        self.file.free_entries()
    }

    /// Appends an entry; false when the index is full (the entry is then simply skipped:
    /// the index is sparse and a lookup scans a little further).
    pub fn append(&self, relative_offset: u32, position: u32) -> bool {
        if let Some(last) = self.file.last() {
            debug_assert!(last.relative_offset < relative_offset && last.position < position);
            if last.relative_offset >= relative_offset || last.position >= position {
                return false;
            }
        }
        self.file.append(OffsetEntry {
            relative_offset,
            position,
        })
    }

    /// Drops the entries at or past `position`.
    pub fn truncate_to_position(&self, position: u64) {
        self.file
            .truncate_while(|e| u64::from(e.position) < position);
    }

    pub fn seal(&self) -> io::Result<()> {
        self.file.seal()
    }

    pub fn make_writable(&self, capacity_bytes: u32) -> io::Result<()> {
        self.file.make_writable(capacity_bytes)
    }
}
