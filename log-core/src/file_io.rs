//! The engine's mutating I/O calls on a partition directory — writes, fsyncs, `set_len`,
//! renames, removals — in one place, so that a build with the `fault-injection` feature
//! can make any of them fail (see `crate::fault`). In a normal build each is the plain
//! call, inlined.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

#[cfg(feature = "fault-injection")]
use crate::fault::{fire, IoCall};

/// Fails the call when a fault plan says so.
macro_rules! injected {
    ($call:ident, $path:expr) => {
        #[cfg(feature = "fault-injection")]
        if let Some(fault) = fire(IoCall::$call, $path) {
            return Err(fault.error($path));
        }
    };
}

/// Positioned write of all of `buf`. An injected failure may land a prefix first.
#[inline]
pub(crate) fn write_all_at(file: &File, buf: &[u8], offset: u64, path: &Path) -> io::Result<()> {
    #[cfg(feature = "fault-injection")]
    if let Some(fault) = fire(IoCall::Write, path) {
        let torn = buf.get(..fault.torn_len(buf.len())).unwrap_or_default();
        // The torn prefix is what a short write followed by an error leaves.
        let _ = file.write_all_at(torn, offset);
        return Err(fault.error(path));
    }
    let _ = path;
    file.write_all_at(buf, offset)
}

/// Sequential write of all of `buf` (checkpoints, compacted segments).
#[inline]
pub(crate) fn write_all(file: &mut File, buf: &[u8], path: &Path) -> io::Result<()> {
    #[cfg(feature = "fault-injection")]
    if let Some(fault) = fire(IoCall::Write, path) {
        let torn = buf.get(..fault.torn_len(buf.len())).unwrap_or_default();
        let _ = file.write_all(torn);
        return Err(fault.error(path));
    }
    let _ = path;
    file.write_all(buf)
}

/// `fdatasync`: the file's data (and the size that reaches it) is durable.
#[inline]
pub(crate) fn sync_data(file: &File, path: &Path) -> io::Result<()> {
    injected!(Fsync, path);
    let _ = path;
    file.sync_data()
}

/// `fsync`: data and metadata are durable.
#[inline]
pub(crate) fn sync_all(file: &File, path: &Path) -> io::Result<()> {
    injected!(Fsync, path);
    let _ = path;
    file.sync_all()
}

/// Flushing a writable index mapping (`msync`) counts as an fsync.
#[inline]
pub(crate) fn flush_map(map: &memmap2::MmapMut, path: &Path) -> io::Result<()> {
    injected!(Fsync, path);
    let _ = path;
    map.flush()
}

/// Makes creations, renames and deletions in `dir` durable.
#[inline]
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    injected!(SyncDir, dir);
    File::open(dir)?.sync_all()
}

#[inline]
pub(crate) fn set_len(file: &File, len_bytes: u64, path: &Path) -> io::Result<()> {
    injected!(SetLen, path);
    let _ = path;
    file.set_len(len_bytes)
}

#[inline]
pub(crate) fn rename(from: &Path, to: &Path) -> io::Result<()> {
    injected!(Rename, to);
    std::fs::rename(from, to)
}

/// Removes a file; a file already gone is not an error.
#[inline]
pub(crate) fn remove_if_exists(path: &Path) -> io::Result<()> {
    injected!(Remove, path);
    match std::fs::remove_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}
