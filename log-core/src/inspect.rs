//! Read-only decoding of a partition directory's own files, for tools that look at them
//! without opening the partition (`weir log dump`, `weir log verify`, crash forensics):
//! segment file names and the fixed-size little-endian entries of `.index` and
//! `.timeindex` files. Layouts are in FORMAT.md. Nothing here writes or locks anything.
//!
//! ```
//! use weir_log::inspect::{offset_index_entries, parse_segment_file_name, SegmentFileKind};
//!
//! assert_eq!(
//!     parse_segment_file_name("00000000000000004711.index"),
//!     Some((4711, SegmentFileKind::OffsetIndex))
//! );
//! // Entry (relative offset 3, position 4096), then preallocated zeros.
//! let mut bytes = vec![0u8; 24];
//! bytes[0..4].copy_from_slice(&3u32.to_le_bytes());
//! bytes[4..8].copy_from_slice(&4096u32.to_le_bytes());
//! let entries = offset_index_entries(&bytes).unwrap();
//! assert_eq!(entries.len(), 1);
//! assert_eq!((entries[0].relative_offset, entries[0].position), (3, 4096));
//! ```

use crate::index_file::IndexEntry;

pub use crate::file_name::{parse_segment_file_name, segment_file_name, SegmentFileKind};
pub use crate::offset_index::{OffsetEntry, OFFSET_INDEX_ENTRY_BYTES};
pub use crate::time_index::{TimeEntry, TIME_INDEX_ENTRY_BYTES};

/// The bytes of an index file are not whole entries followed only by zeros.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("index bytes are damaged at byte {position_bytes}: {reason}")]
pub struct IndexLayoutError {
    /// Byte of the file where the problem starts.
    pub position_bytes: u64,
    pub reason: String,
}

/// The written entries of an offset index file's bytes.
///
/// An active segment's index is preallocated, so the written entries end at the first
/// all-zero entry (the engine never writes one: no entry is kept for position 0). Errors
/// when the size is not a multiple of 8 bytes or a non-zero byte follows that end. Does
/// not check that entries increase or point at batches: that needs the log.
pub fn offset_index_entries(bytes: &[u8]) -> Result<Vec<OffsetEntry>, IndexLayoutError> {
    written_entries(bytes, |e: &OffsetEntry| {
        e.relative_offset == 0 && e.position == 0
    })
}

/// The written entries of a time index file's bytes; as [`offset_index_entries`], with
/// 12-byte entries. (A seal entry of timestamp 0 at relative offset 0 is all zero and so
/// reads as the end: it is only ever the last entry, and only a hint.)
pub fn time_index_entries(bytes: &[u8]) -> Result<Vec<TimeEntry>, IndexLayoutError> {
    written_entries(bytes, |e: &TimeEntry| {
        e.timestamp == 0 && e.relative_offset == 0
    })
}

fn written_entries<E: IndexEntry>(
    bytes: &[u8],
    is_end: impl Fn(&E) -> bool,
) -> Result<Vec<E>, IndexLayoutError> {
    if !bytes.len().is_multiple_of(E::BYTES) {
        return Err(IndexLayoutError {
            position_bytes: (bytes.len() - bytes.len() % E::BYTES) as u64,
            reason: format!(
                "the size {} is not a multiple of the {}-byte entry",
                bytes.len(),
                E::BYTES
            ),
        });
    }
    let mut entries = Vec::with_capacity(bytes.len() / E::BYTES);
    let mut chunks = bytes.chunks_exact(E::BYTES).enumerate();
    for (_, chunk) in &mut chunks {
        let entry = E::decode(chunk);
        if is_end(&entry) {
            break;
        }
        entries.push(entry);
    }
    for (index, chunk) in chunks {
        if chunk.iter().any(|&b| b != 0) {
            return Err(IndexLayoutError {
                position_bytes: (index * E::BYTES) as u64,
                reason: "an entry follows the all-zero end of the written entries".to_string(),
            });
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_written_entries_and_rejects_bad_layouts() {
        let mut bytes = Vec::new();
        for (t, r) in [(10i64, 0u32), (20, 5)] {
            bytes.extend_from_slice(&t.to_le_bytes());
            bytes.extend_from_slice(&r.to_le_bytes());
        }
        bytes.extend_from_slice(&[0u8; 24]);
        let entries = time_index_entries(&bytes).unwrap();
        assert_eq!(
            entries,
            [
                TimeEntry {
                    timestamp: 10,
                    relative_offset: 0
                },
                TimeEntry {
                    timestamp: 20,
                    relative_offset: 5
                }
            ]
        );
        let short = time_index_entries(&bytes[..30]).unwrap_err();
        assert_eq!(short.position_bytes, 24);
        let mut trailing = bytes.clone();
        trailing[40] = 1;
        assert_eq!(
            time_index_entries(&trailing).unwrap_err().position_bytes,
            36
        );
        assert_eq!(offset_index_entries(&[]).unwrap(), []);
    }
}
