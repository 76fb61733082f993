//! One owner per directory: an advisory `flock` on a `.lock` file inside a data or
//! partition directory. A writer (a broker, `PartitionLog::open`, `weir log repair`) takes
//! it exclusive and writes its pid and command line into the file; a reader (`weir log
//! dump|verify`, `weir sql --data-dir`) takes it shared. Whoever cannot get the lock gets
//! [`LogError::Locked`] naming the holder, read from the file.
//!
//! The kernel drops a `flock` when its holder dies, `kill -9` included, so a crashed
//! broker never leaves a directory locked; the stale pid it wrote stays in the file until
//! the next writer replaces it, and is only ever shown while somebody holds the lock.
//!
//! A reader creates nothing: a fresh directory has no `.lock` yet, and a reader may not own
//! the directory at all (a copy, a read-only crash image; Kafka's tools write nothing into
//! a log directory either). So the directory itself is locked too: a writer takes its
//! `flock` exclusive after `.lock`'s, and a reader takes it shared, plus `.lock` shared when
//! that exists (a writer of an older build locks only `.lock`). Any reader then holds at
//! least one of the two locks a writer needs, even in a directory without `.lock`.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, Write};
use std::path::Path;

use crate::LogError;

/// Name of the lock file in a data or partition directory.
pub const LOCK_FILE: &str = ".lock";

/// How a directory is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// The one writer: nobody else may hold the directory.
    Exclusive,
    /// One of many readers: no writer may hold it meanwhile.
    Shared,
}

/// How long a lock found taken is tried again before the holder is named. A process that
/// forks (to spawn a child) shares its open files with the child until the child's `exec`
/// closes them, so a lock just released can look held for that instant; a real owner holds
/// it far longer than this.
const LOCK_RETRY_MS: u64 = 500;

/// Takes the lock, trying again for [`LOCK_RETRY_MS`] while another file holds it.
fn try_lock_briefly(file: &File, mode: LockMode) -> Result<(), TryLockError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(LOCK_RETRY_MS);
    loop {
        let taken = match mode {
            LockMode::Exclusive => file.try_lock(),
            LockMode::Shared => file.try_lock_shared(),
        };
        match taken {
            Err(TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

/// A held lock on a directory; dropping it releases the lock.
#[derive(Debug)]
pub struct DirLock {
    /// `.lock`, when held (a reader of a directory without one holds only `dir`).
    file: Option<File>,
    /// The directory, opened read-only and locked in the same mode.
    _dir: File,
    mode: LockMode,
}

/// The holder named when only the directory's own lock is taken: only readers take it
/// without `.lock`.
const READER: &str = "another process reading it";

/// Errors of `flock` that mean the file system cannot lock at all (some network and FUSE
/// mounts), as opposed to a lock held by somebody else.
fn unsupported(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::ENOLCK | libc::EOPNOTSUPP | libc::ENOSYS)
    ) || error.kind() == io::ErrorKind::Unsupported
}

impl DirLock {
    /// Takes the lock on `dir` (which must exist) without waiting. Exclusive creates the
    /// lock file and writes this process into it; shared creates nothing.
    pub fn acquire(dir: &Path, mode: LockMode) -> Result<DirLock, LogError> {
        match mode {
            LockMode::Exclusive => Self::acquire_exclusive(dir),
            LockMode::Shared => Self::acquire_shared(dir),
        }
    }

    /// Like [`DirLock::acquire`] with [`LockMode::Shared`], for tools that only read: None
    /// when the file system cannot lock at all (the directory is then read unlocked).
    pub fn acquire_shared_if_present(dir: &Path) -> Result<Option<DirLock>, LogError> {
        match Self::acquire_shared(dir) {
            Ok(lock) => Ok(Some(lock)),
            Err(LogError::Io { source, .. }) if unsupported(&source) => Ok(None),
            Err(other) => Err(other),
        }
    }

    fn acquire_exclusive(dir: &Path) -> Result<DirLock, LogError> {
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_error("open lock file", &path))?;
        take(&file, LockMode::Exclusive, dir, || holder(&path))?;
        let dir_file = open_dir(dir)?;
        // `.lock` is ours, so whoever holds the directory is a reader that found no
        // `.lock` (or took it after us); it goes when the reader does.
        take(&dir_file, LockMode::Exclusive, dir, || READER.to_string())?;
        let mut lock = DirLock {
            file: Some(file),
            _dir: dir_file,
            mode: LockMode::Exclusive,
        };
        lock.write_holder()
            .map_err(io_error("write lock file", &path))?;
        Ok(lock)
    }

    fn acquire_shared(dir: &Path) -> Result<DirLock, LogError> {
        let path = dir.join(LOCK_FILE);
        let dir_file = open_dir(dir)?;
        take(&dir_file, LockMode::Shared, dir, || holder(&path))?;
        let file = match File::open(&path) {
            Ok(file) => Some(file),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(source) => return Err(io_error("open lock file", &path)(source)),
        };
        if let Some(file) = &file {
            take(file, LockMode::Shared, dir, || holder(&path))?;
        }
        Ok(DirLock {
            file,
            _dir: dir_file,
            mode: LockMode::Shared,
        })
    }

    pub fn mode(&self) -> LockMode {
        self.mode
    }

    fn write_holder(&mut self) -> io::Result<()> {
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        let line = format!("pid {} ({})\n", std::process::id(), command_line());
        file.set_len(0)?;
        file.rewind()?;
        file.write_all(line.as_bytes())
    }
}

fn io_error(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> LogError {
    let path = path.to_path_buf();
    move |source| LogError::Io { op, path, source }
}

fn open_dir(dir: &Path) -> Result<File, LogError> {
    File::open(dir).map_err(io_error("open directory to lock it", dir))
}

/// Takes `file`'s lock in `mode`, naming `holder()` if somebody else keeps it.
fn take(
    file: &File,
    mode: LockMode,
    dir: &Path,
    holder: impl FnOnce() -> String,
) -> Result<(), LogError> {
    match try_lock_briefly(file, mode) {
        Ok(()) => Ok(()),
        Err(TryLockError::WouldBlock) => Err(LogError::Locked {
            dir: dir.to_path_buf(),
            holder: holder(),
        }),
        Err(TryLockError::Error(source)) => Err(io_error("lock", dir)(source)),
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        if let (LockMode::Exclusive, Some(file)) = (self.mode, &self.file) {
            // Best effort: an empty file tells the next refused caller that only readers
            // can be holding it. The lock itself goes with the file descriptor.
            let _ = file.set_len(0);
        }
    }
}

/// Who holds the lock file at `path`, as its writer recorded it.
fn holder(path: &Path) -> String {
    let mut text = String::new();
    let read = File::open(path).and_then(|mut f| f.read_to_string(&mut text));
    match read.ok().map(|_| text.trim()) {
        Some(line) if !line.is_empty() => line.to_string(),
        _ => READER.to_string(),
    }
}

/// This process's command line, arguments joined by spaces.
fn command_line() -> String {
    let args: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if args.is_empty() {
        "unknown command".to_string()
    } else {
        args.join(" ")
    }
}
