//! One owner per directory: an advisory `flock` on a `.lock` file inside a data or
//! partition directory. A writer (a broker, `PartitionLog::open`, `weir log repair`) takes
//! it exclusive and writes its pid and command line into the file; a reader (`weir log
//! dump|verify`, `weir sql --data-dir`) takes it shared. Whoever cannot get the lock gets
//! [`LogError::Locked`] naming the holder, read from the file.
//!
//! The kernel drops a `flock` when its holder dies, `kill -9` included, so a crashed
//! broker never leaves a directory locked; the stale pid it wrote stays in the file until
//! the next writer replaces it, and is only ever shown while somebody holds the lock.

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
    file: File,
    mode: LockMode,
}

impl DirLock {
    /// Takes the lock on `dir` (which must exist) without waiting; creates the lock file.
    pub fn acquire(dir: &Path, mode: LockMode) -> Result<DirLock, LogError> {
        let path = dir.join(LOCK_FILE);
        let io = |op: &'static str| {
            let path = path.clone();
            move |source| LogError::Io { op, path, source }
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io("open lock file"))?;
        match try_lock_briefly(&file, mode) {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(LogError::Locked {
                    dir: dir.to_path_buf(),
                    holder: holder(&path),
                })
            }
            Err(TryLockError::Error(source)) => return Err(io("lock")(source)),
        }
        let mut lock = DirLock { file, mode };
        if mode == LockMode::Exclusive {
            lock.write_holder().map_err(io("write lock file"))?;
        }
        Ok(lock)
    }

    /// Like [`DirLock::acquire`] with [`LockMode::Shared`], for tools that only read: a
    /// directory without a lock file (a copy, a read-only crash image) is read unlocked.
    pub fn acquire_shared_if_present(dir: &Path) -> Result<Option<DirLock>, LogError> {
        let path = dir.join(LOCK_FILE);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(LogError::Io {
                    op: "open lock file",
                    path,
                    source,
                })
            }
        };
        match try_lock_briefly(&file, LockMode::Shared) {
            Ok(()) => Ok(Some(DirLock {
                file,
                mode: LockMode::Shared,
            })),
            Err(TryLockError::WouldBlock) => Err(LogError::Locked {
                dir: dir.to_path_buf(),
                holder: holder(&path),
            }),
            Err(TryLockError::Error(source)) => Err(LogError::Io {
                op: "lock",
                path,
                source,
            }),
        }
    }

    pub fn mode(&self) -> LockMode {
        self.mode
    }

    fn write_holder(&mut self) -> io::Result<()> {
        let line = format!("pid {} ({})\n", std::process::id(), command_line());
        self.file.set_len(0)?;
        self.file.rewind()?;
        self.file.write_all(line.as_bytes())
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        if self.mode == LockMode::Exclusive {
            // Best effort: an empty file tells the next refused caller that only readers
            // can be holding it. The lock itself goes with the file descriptor.
            let _ = self.file.set_len(0);
        }
    }
}

/// Who holds the lock file at `path`, as its writer recorded it.
fn holder(path: &Path) -> String {
    let mut text = String::new();
    let read = File::open(path).and_then(|mut f| f.read_to_string(&mut text));
    match read.ok().map(|_| text.trim()) {
        Some(line) if !line.is_empty() => line.to_string(),
        _ => "another process reading it".to_string(),
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
