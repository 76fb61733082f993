//! Stored batches as memory-mapped `Bytes`, for Kafka fetches: the
//! response encoder needs the batches as a byte slice to frame them, but
//! never reads a registered one (`kafka::frame::Chunks` passes it on by
//! address), and the connection sends the file range with `sendfile`. The
//! pages are therefore never faulted into the broker; a read of the bytes
//! (the copy fallback) still sees the stored data.
//!
//! A mapping outlives its segment being deleted by retention or replaced by
//! compaction (both unlink or rename; the inode stays). Truncation below a
//! mapped range, which only replication does, would make a read of it fault;
//! nothing in the broker reads it.

use std::io;

use bytes::Bytes;
use memmap2::{Mmap, MmapOptions};
use weir_log::FileSlice;

/// A mapped range and where the batches start in it (mappings start on a
/// page boundary).
struct Mapped {
    map: Mmap,
    start: usize,
    len: usize,
}

impl AsRef<[u8]> for Mapped {
    fn as_ref(&self) -> &[u8] {
        self.map
            .get(self.start..self.start + self.len)
            .unwrap_or_default()
    }
}

/// The slice's bytes, mapped read-only; empty for an empty slice.
pub fn map(slice: &FileSlice) -> io::Result<Bytes> {
    if slice.is_empty() {
        return Ok(Bytes::new());
    }
    let page = page_bytes();
    let aligned = slice.position() - slice.position() % page;
    let start = usize::try_from(slice.position() - aligned)
        .map_err(|_| io::Error::other("a page offset above usize"))?;
    // SAFETY: the mapping is read-only and the broker never writes below a
    // segment's published end; see the module doc for truncation.
    let map = unsafe {
        MmapOptions::new()
            .offset(aligned)
            .len(start + slice.len())
            .map(slice.file())?
    };
    debug_assert!(map.len() >= start + slice.len());
    Ok(Bytes::from_owner(Mapped {
        map,
        start,
        len: slice.len(),
    }))
}

fn page_bytes() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(page).ok().filter(|p| *p > 0).unwrap_or(4096)
}
