//! The engine's mutating I/O calls on a partition directory — creations, writes, fsyncs,
//! msyncs, `set_len`, renames, removals — in one place, so that a build with the
//! `fault-injection` feature can make any of them fail (see `crate::fault`) and follow them
//! to simulate a power loss (see `crate::fault::power_loss`). In a normal build each is the
//! plain call, inlined. Every fsync, fdatasync and msync is also timed for the process's
//! fsync observer, if one is set ([`set_fsync_observer`]).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

#[cfg(feature = "fault-injection")]
use crate::fault::{fire, power_loss, IoCall};

/// Told how long each fsync-like call took, succeeded or not. A plain `fn` in a `OnceLock`:
/// reading it is one atomic load, and calling it allocates and locks nothing of ours, so a
/// process that sets none pays only that load per fsync.
static FSYNC_OBSERVER: OnceLock<fn(Duration)> = OnceLock::new();

/// Sets the function told the duration of every fsync, fdatasync and msync (segments,
/// indexes, checkpoints, directories) of every log in the process, so a server can
/// measure them without this crate knowing its metrics. It must not block. The first
/// call wins for the life of the process; returns whether this one did.
pub fn set_fsync_observer(observer: fn(Duration)) -> bool {
    FSYNC_OBSERVER.set(observer).is_ok()
}

/// Runs an fsync-like call, timed for the observer when there is one.
#[inline]
fn timed(call: impl FnOnce() -> io::Result<()>) -> io::Result<()> {
    let Some(observe) = FSYNC_OBSERVER.get() else {
        return call();
    };
    let started = Instant::now();
    let result = call();
    observe(started.elapsed());
    result
}

/// Fails the call when a fault plan says so.
macro_rules! injected {
    ($call:ident, $path:expr) => {
        #[cfg(feature = "fault-injection")]
        if let Some(fault) = fire(IoCall::$call, $path) {
            return Err(fault.error($path));
        }
    };
}

/// Tells the power-loss simulator about a call that succeeded.
macro_rules! observed {
    ($hook:ident ( $($arg:expr),* )) => {
        #[cfg(feature = "fault-injection")]
        power_loss::$hook($($arg),*);
    };
}

/// Creates `path` for reading and writing, emptying it if it exists.
#[inline]
pub(crate) fn create(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    observed!(on_create(path));
    Ok(file)
}

/// Positioned write of all of `buf`. An injected failure may land a prefix first.
#[inline]
pub(crate) fn write_all_at(file: &File, buf: &[u8], offset: u64, path: &Path) -> io::Result<()> {
    #[cfg(feature = "fault-injection")]
    if let Some(fault) = fire(IoCall::Write, path) {
        let torn = buf.get(..fault.torn_len(buf.len())).unwrap_or_default();
        // The torn prefix is what a short write followed by an error leaves.
        if file.write_all_at(torn, offset).is_ok() {
            power_loss::on_write(path, offset, torn);
        }
        return Err(fault.error(path));
    }
    let _ = path;
    file.write_all_at(buf, offset)?;
    observed!(on_write(path, offset, buf));
    Ok(())
}

/// Sequential write of all of `buf` (checkpoints, compacted segments).
#[inline]
pub(crate) fn write_all(file: &mut File, buf: &[u8], path: &Path) -> io::Result<()> {
    #[cfg(feature = "fault-injection")]
    let offset = io::Seek::stream_position(file)?;
    #[cfg(feature = "fault-injection")]
    if let Some(fault) = fire(IoCall::Write, path) {
        let torn = buf.get(..fault.torn_len(buf.len())).unwrap_or_default();
        if file.write_all(torn).is_ok() {
            power_loss::on_write(path, offset, torn);
        }
        return Err(fault.error(path));
    }
    let _ = path;
    file.write_all(buf)?;
    observed!(on_write(path, offset, buf));
    Ok(())
}

/// `fdatasync`: the file's data (and the size that reaches it) is durable.
#[inline]
pub(crate) fn sync_data(file: &File, path: &Path) -> io::Result<()> {
    injected!(Fsync, path);
    let _ = path;
    timed(|| file.sync_data())?;
    observed!(on_sync(path, "fdatasync"));
    Ok(())
}

/// `fsync`: data and metadata are durable.
#[inline]
pub(crate) fn sync_all(file: &File, path: &Path) -> io::Result<()> {
    injected!(Fsync, path);
    let _ = path;
    timed(|| file.sync_all())?;
    observed!(on_sync(path, "fsync"));
    Ok(())
}

/// Flushing a writable index mapping (`msync`) counts as an fsync.
#[inline]
pub(crate) fn flush_map(map: &memmap2::MmapMut, path: &Path) -> io::Result<()> {
    injected!(Fsync, path);
    let _ = path;
    timed(|| map.flush())?;
    observed!(on_sync(path, "msync"));
    Ok(())
}

/// Makes creations, renames and deletions in `dir` durable.
#[inline]
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    injected!(SyncDir, dir);
    let dir_file = File::open(dir)?;
    timed(|| dir_file.sync_all())?;
    observed!(on_sync_dir(dir));
    Ok(())
}

#[inline]
pub(crate) fn set_len(file: &File, len_bytes: u64, path: &Path) -> io::Result<()> {
    injected!(SetLen, path);
    let _ = path;
    file.set_len(len_bytes)?;
    observed!(on_set_len(path, len_bytes));
    Ok(())
}

#[inline]
pub(crate) fn rename(from: &Path, to: &Path) -> io::Result<()> {
    injected!(Rename, to);
    std::fs::rename(from, to)?;
    observed!(on_rename(from, to));
    Ok(())
}

/// Removes a file; a file already gone is not an error.
#[inline]
pub(crate) fn remove_if_exists(path: &Path) -> io::Result<()> {
    injected!(Remove, path);
    match std::fs::remove_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(()) => {
            observed!(on_remove(path));
            Ok(())
        }
    }
}
