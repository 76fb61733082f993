//! A memory-mapped file of fixed-size little-endian entries: the storage shared by the
//! offset index and the time index.
//!
//! While a segment is active its index file is preallocated (disk blocks reserved, not
//! sparse) and mapped writable; sealing
//! trims it to the entries written and maps it read-only. Readers only ever look at the
//! first `entries` entries, read under a read lock; the writer appends under the write lock
//! (a few bytes, so readers wait nanoseconds). The file length only changes with the map
//! dropped and the write lock held, so no access can fall past the end of the file.

use std::fs::{File, OpenOptions};
use std::io;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use memmap2::{Mmap, MmapMut, MmapOptions};

use crate::file_io;

/// One fixed-size entry of an index file.
pub(crate) trait IndexEntry: Copy {
    const BYTES: usize;
    /// Decodes `BYTES` bytes; `bytes` always holds exactly `BYTES`.
    fn decode(bytes: &[u8]) -> Self;
    fn encode(&self, out: &mut [u8]);
}

enum Mapping {
    Writable(MmapMut),
    ReadOnly(Mmap),
    Empty,
}

impl Mapping {
    fn bytes(&self) -> &[u8] {
        match self {
            Mapping::Writable(m) => m,
            Mapping::ReadOnly(m) => m,
            Mapping::Empty => &[],
        }
    }
}

struct State {
    mapping: Mapping,
    /// Entries written; the only ones anybody reads.
    entries: usize,
    /// Entries the mapping has room for.
    capacity: usize,
}

/// A memory-mapped index file of entries `E`.
pub(crate) struct IndexFile<E> {
    path: PathBuf,
    state: RwLock<State>,
    _entry: PhantomData<E>,
}

impl<E: IndexEntry> IndexFile<E> {
    /// Creates (or empties) the file, preallocated to `capacity_bytes`, mapped writable.
    pub fn create(path: &Path, capacity_bytes: u32) -> io::Result<Self> {
        let file = file_io::create(path)?;
        let state = map_writable::<E>(&file, path, capacity_bytes, 0)?;
        Ok(Self::from_state(path, state))
    }

    /// Maps an existing file read-only and keeps the prefix of entries that `valid_prefix`
    /// accepts; `valid_prefix` returns Err when the file is damaged beyond a clean prefix.
    pub fn open_existing(
        path: &Path,
        valid_prefix: impl FnOnce(&mut dyn Iterator<Item = E>) -> Result<usize, String>,
    ) -> io::Result<Result<Self, String>> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let len_bytes = file.metadata()?.len();
        if len_bytes % E::BYTES as u64 != 0 {
            return Ok(Err(format!(
                "its size {len_bytes} is not a multiple of the {}-byte entry",
                E::BYTES
            )));
        }
        let mapping = if len_bytes == 0 {
            Mapping::Empty
        } else {
            // SAFETY: index files belong to this partition directory and only this process
            // changes them; their length only changes while no map of them exists.
            Mapping::ReadOnly(unsafe { MmapOptions::new().map(&file)? })
        };
        let capacity = mapping.bytes().len() / E::BYTES;
        let mut iter = mapping
            .bytes()
            .chunks_exact(E::BYTES)
            .map(|chunk| E::decode(chunk));
        let entries = match valid_prefix(&mut iter) {
            Ok(n) => n.min(capacity),
            Err(reason) => return Ok(Err(reason)),
        };
        let state = State {
            mapping,
            entries,
            capacity,
        };
        Ok(Ok(Self::from_state(path, state)))
    }

    fn from_state(path: &Path, state: State) -> Self {
        IndexFile {
            path: path.to_path_buf(),
            state: RwLock::new(state),
            _entry: PhantomData,
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        // A panic while holding the lock cannot leave the state inconsistent beyond a
        // partially written entry past `entries`, which nobody reads.
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Free entries left in a writable index.
    pub fn free_entries(&self) -> usize {
        let s = self.read();
        match s.mapping {
            Mapping::Writable(_) => s.capacity - s.entries,
            _ => 0,
        }
    }

    pub fn last(&self) -> Option<E> {
        let s = self.read();
        entry_at::<E>(&s, s.entries.checked_sub(1)?)
    }

    /// The last entry for which `is_before` holds, given that `is_before` is true on a
    /// prefix of the entries and false after it (binary search).
    pub fn last_where(&self, is_before: impl Fn(&E) -> bool) -> Option<E> {
        let s = self.read();
        let (mut lo, mut hi) = (0usize, s.entries);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match entry_at::<E>(&s, mid) {
                Some(e) if is_before(&e) => lo = mid + 1,
                _ => hi = mid,
            }
        }
        entry_at::<E>(&s, lo.checked_sub(1)?)
    }

    /// Appends an entry; returns false (and writes nothing) when the index is full or sealed.
    pub fn append(&self, entry: E) -> bool {
        let mut s = self.write();
        let at = s.entries;
        if at >= s.capacity {
            return false;
        }
        let Mapping::Writable(map) = &mut s.mapping else {
            return false;
        };
        let Some(slot) = map.get_mut(at * E::BYTES..(at + 1) * E::BYTES) else {
            return false;
        };
        entry.encode(slot);
        s.entries = at + 1;
        true
    }

    /// Keeps the longest prefix of entries for which `keep` holds.
    pub fn truncate_while(&self, keep: impl Fn(&E) -> bool) {
        let mut s = self.write();
        let mut n = 0;
        while n < s.entries {
            match entry_at::<E>(&s, n) {
                Some(e) if keep(&e) => n += 1,
                _ => break,
            }
        }
        // Zero the dropped entries so a crash cannot leave stale ones behind the count.
        let from = n * E::BYTES;
        let to = s.entries * E::BYTES;
        if let Mapping::Writable(map) = &mut s.mapping {
            if let Some(dropped) = map.get_mut(from..to) {
                dropped.fill(0);
            }
        }
        s.entries = n;
    }

    /// Trims the file to the entries written, flushes it, and maps it read-only.
    pub fn seal(&self) -> io::Result<()> {
        let mut s = self.write();
        match &s.mapping {
            Mapping::Writable(map) => file_io::flush_map(map, &self.path)?,
            // Already trimmed: nothing to do.
            _ if s.capacity == s.entries => return Ok(()),
            _ => {}
        }
        s.mapping = Mapping::Empty;
        let file = OpenOptions::new().read(true).write(true).open(&self.path)?;
        let len_bytes = (s.entries * E::BYTES) as u64;
        file_io::set_len(&file, len_bytes, &self.path)?;
        file_io::sync_all(&file, &self.path)?;
        s.capacity = s.entries;
        if len_bytes > 0 {
            // SAFETY: see `open_existing`.
            s.mapping = Mapping::ReadOnly(unsafe { MmapOptions::new().map(&file)? });
        }
        Ok(())
    }

    /// Preallocates the file to `capacity_bytes` again and maps it writable (a sealed
    /// segment that becomes active after a truncation, or an active one after reopen).
    pub fn make_writable(&self, capacity_bytes: u32) -> io::Result<()> {
        let mut s = self.write();
        let entries = s.entries;
        s.mapping = Mapping::Empty;
        let file = OpenOptions::new().read(true).write(true).open(&self.path)?;
        *s = map_writable::<E>(&file, &self.path, capacity_bytes, entries)?;
        Ok(())
    }
}

fn entry_at<E: IndexEntry>(s: &State, index: usize) -> Option<E> {
    if index >= s.entries {
        return None;
    }
    s.mapping
        .bytes()
        .get(index * E::BYTES..(index + 1) * E::BYTES)
        .map(E::decode)
}

/// Reserves disk blocks for the whole file. `set_len` alone leaves it sparse: on a full
/// disk the first store into a new page of the writable map would then fail with SIGBUS
/// instead of this call failing with ENOSPC, which the roll or the open reports.
fn allocate(file: &File, len_bytes: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let len = libc::off_t::try_from(len_bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "index file too large"))?;
    if len == 0 {
        return Ok(());
    }
    // SAFETY: the descriptor is open for writing for the duration of the call.
    let code = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
    if code == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(code))
    }
}

fn map_writable<E: IndexEntry>(
    file: &File,
    path: &Path,
    capacity_bytes: u32,
    entries: usize,
) -> io::Result<State> {
    let written_bytes = (entries * E::BYTES) as u64;
    // Never cut written entries, even if the configured capacity shrank.
    let len_bytes = u64::from(capacity_bytes)
        .max(written_bytes)
        .max(E::BYTES as u64);
    let len_bytes = len_bytes - len_bytes % E::BYTES as u64;
    file_io::set_len(file, len_bytes, path)?;
    allocate(file, len_bytes)?;
    // SAFETY: see `IndexFile::open_existing`.
    let map = unsafe { MmapOptions::new().map_mut(file)? };
    Ok(State {
        capacity: map.len() / E::BYTES,
        entries,
        mapping: Mapping::Writable(map),
    })
}
