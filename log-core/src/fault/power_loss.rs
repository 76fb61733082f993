//! Power-loss simulation (feature `fault-injection`, tests only). While armed for a
//! partition directory it follows every creation, write, `set_len`, fsync, msync, rename,
//! removal and directory fsync the engine makes there (all of them go through `file_io`),
//! and can write a *crash image*: what the disk could hold had the power gone at that
//! moment. Opening the image is opening the partition after a power cut.
//!
//! The model is what POSIX promises, no more:
//! - a file's content as of its last fsync, fdatasync or msync is durable: always in the image;
//! - each write since then is, independently of the others, lost, kept or torn — a prefix
//!   ending at a 512-byte sector boundary, the rest absent, or zeros when the new size
//!   reached the disk but the data did not. Independent choices let a later write survive an
//!   earlier lost one (the disk reordered them);
//! - a `set_len` since the file's last fsync is kept or lost;
//! - memory-mapped index pages change without any call: an index file's content since its
//!   last msync is pending as a whole (kept, lost, or kept up to a sector with the tail as
//!   it was durable), read from the file at the moment of the crash;
//! - creations, renames and removals since the last directory fsync survive as a prefix, in
//!   the order they were made (ext4 and XFS commit metadata to their journal in order); the
//!   rest are undone, so a created file may be missing and a removed or replaced one back.
//!
//! What the directory holds when it is armed counts as durable: arm an empty directory, or
//! one closed cleanly. An image is a function of the seed and the recorded history, so a
//! failing case replays from its seed; [`PowerLossGuard::history`] lists the events.
//!
//! The image fails (rather than lie) when a file appeared, or a file other than an index
//! changed, without `file_io` seeing it: every write the engine makes must be routed.
//!
//! This file records (the `on_*` hooks `file_io` calls, the guard); `image.rs` builds images.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// The unit a disk writes atomically.
pub const SECTOR_BYTES: u64 = 512;

/// Arms the simulator for `dir` (created if missing) until the guard drops. The directory's
/// current files count as durable.
pub fn arm(dir: &Path) -> io::Result<PowerLossGuard> {
    arm_inner(dir, false)
}

/// As [`arm`], for a directory that also holds files written by code outside this crate
/// (a broker's producer snapshot): those are not modelled but copied into images as they
/// are at the crash. Everything written through `file_io` is modelled as with [`arm`].
pub fn arm_copying_foreign_files(dir: &Path) -> io::Result<PowerLossGuard> {
    arm_inner(dir, true)
}

fn arm_inner(dir: &Path, copy_foreign: bool) -> io::Result<PowerLossGuard> {
    fs::create_dir_all(dir)?;
    let mut tracker = Tracker {
        inodes: Vec::new(),
        names: BTreeMap::new(),
        durable_names: BTreeMap::new(),
        dir_ops: Vec::new(),
        history: Vec::new(),
        problems: Vec::new(),
        scheduled: None,
        crashed: None,
        copy_foreign,
    };
    let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(fs::DirEntry::file_name);
    for entry in entries {
        if !entry.file_type()?.is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let id = tracker.inodes.len();
        tracker.inodes.push(Inode {
            durable: fs::read(entry.path())?,
            pending: Vec::new(),
        });
        tracker.names.insert(name.clone(), id);
        tracker.durable_names.insert(name, id);
    }
    let armed = Arc::new(Armed {
        dir: dir.to_path_buf(),
        tracker: Mutex::new(tracker),
    });
    lock(&ARMED).push(Arc::clone(&armed));
    Ok(PowerLossGuard { armed })
}

/// Keeps the simulator armed for one directory; dropping it disarms.
pub struct PowerLossGuard {
    armed: Arc<Armed>,
}

impl PowerLossGuard {
    /// Writes into `dest` (created if missing) what the disk could hold after a power cut
    /// now, with every choice drawn from `seed`.
    pub fn crash_image(&self, seed: u64, dest: &Path) -> io::Result<CrashImage> {
        let tracker = lock(&self.armed.tracker);
        tracker
            .crash_image(&self.armed.dir, seed, dest)
            .map_err(io::Error::other)
    }

    /// Takes the crash image (as [`Self::crash_image`]) right after event number `event`
    /// (1 is the first call seen after arming; 0 or a past event means now). The engine
    /// carries on; [`Self::take_crashed`] tells whether and how the image was taken.
    pub fn crash_after_event(&self, event: u64, seed: u64, dest: &Path) {
        let mut tracker = lock(&self.armed.tracker);
        tracker.scheduled = Some(Scheduled {
            event,
            seed,
            dest: dest.to_path_buf(),
        });
        if event <= tracker.history.len() as u64 {
            tracker.take_scheduled(&self.armed.dir);
        }
    }

    /// The scheduled crash image once taken (its choices, or why it could not be
    /// written), handed out once.
    pub fn take_crashed(&self) -> Option<Result<CrashImage, String>> {
        lock(&self.armed.tracker).crashed.take()
    }

    /// Calls seen since arming.
    pub fn events(&self) -> u64 {
        lock(&self.armed.tracker).history.len() as u64
    }

    /// The number of the first event after event `after` described exactly as `what`
    /// (as [`Self::history`] prints it, e.g. `fdatasync 00000000000000000000.log`).
    pub fn find_event(&self, after: u64, what: &str) -> Option<u64> {
        let tracker = lock(&self.armed.tracker);
        let skip = usize::try_from(after).unwrap_or(usize::MAX);
        let found = tracker.history.iter().skip(skip).position(|e| e == what)?;
        Some(after + found as u64 + 1)
    }

    /// The events seen since arming, numbered from 1, one per line (the last `max_lines`).
    pub fn history(&self, max_lines: usize) -> String {
        let tracker = lock(&self.armed.tracker);
        let skip = tracker.history.len().saturating_sub(max_lines);
        let mut out = String::new();
        if skip > 0 {
            out.push_str(&format!("  ({skip} earlier events)\n"));
        }
        for (i, event) in tracker.history.iter().enumerate().skip(skip) {
            out.push_str(&format!("  #{} {event}\n", i + 1));
        }
        out
    }
}

impl Drop for PowerLossGuard {
    fn drop(&mut self) {
        lock(&ARMED).retain(|a| !Arc::ptr_eq(a, &self.armed));
    }
}

/// How one crash image was drawn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrashImage {
    pub seed: u64,
    /// Events seen when the power went.
    pub after_events: u64,
    /// What happened to each pending change, for the failure message.
    pub choices: Vec<String>,
}

impl fmt::Display for CrashImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "crash image of seed {:#x} after event #{}:",
            self.seed, self.after_events
        )?;
        for choice in &self.choices {
            write!(f, "\n  {choice}")?;
        }
        Ok(())
    }
}

struct Armed {
    dir: PathBuf,
    tracker: Mutex<Tracker>,
}

static ARMED: Mutex<Vec<Arc<Armed>>> = Mutex::new(Vec::new());

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A test that panicked mid-event leaves at worst one event unrecorded.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// A file, followed across renames.
struct Inode {
    /// Content as of the last fsync.
    durable: Vec<u8>,
    /// Changes since then, in order.
    pending: Vec<FileOp>,
}

enum FileOp {
    Write { offset: u64, bytes: Vec<u8> },
    SetLen(u64),
}

/// A change of the directory since its last fsync.
enum DirOp {
    Link { name: String, inode: usize },
    Unlink { name: String },
    Rename { from: String, to: String },
}

struct Scheduled {
    event: u64,
    seed: u64,
    dest: PathBuf,
}

struct Tracker {
    inodes: Vec<Inode>,
    /// The directory as the running process sees it.
    names: BTreeMap<String, usize>,
    /// The directory as of its last fsync.
    durable_names: BTreeMap<String, usize>,
    dir_ops: Vec<DirOp>,
    history: Vec<String>,
    /// Calls this model cannot follow (a file it does not know); they fail every image.
    problems: Vec<String>,
    scheduled: Option<Scheduled>,
    crashed: Option<Result<CrashImage, String>>,
    /// Files created outside `file_io` are copied as they are instead of failing the image.
    copy_foreign: bool,
}

impl Tracker {
    fn event(&mut self, dir: &Path, what: String) {
        self.history.push(what);
        let due = self
            .scheduled
            .as_ref()
            .is_some_and(|s| s.event == self.history.len() as u64);
        if due {
            self.take_scheduled(dir);
        }
    }

    fn take_scheduled(&mut self, dir: &Path) {
        if let Some(s) = self.scheduled.take() {
            self.crashed = Some(self.crash_image(dir, s.seed, &s.dest));
        }
    }

    fn inode_of(&mut self, name: &str, call: &str) -> Option<usize> {
        let id = self.names.get(name).copied();
        if id.is_none() {
            self.problems.push(format!(
                "{call} on {name}, a file created without file_io::create"
            ));
        }
        id
    }
}

/// Runs `record` on the tracker armed for the directory holding `path`, with `path`'s name
/// in it ("" for the directory itself).
fn record(path: &Path, record: impl FnOnce(&mut Tracker, &str) -> Option<String>) {
    let armed = {
        let all = lock(&ARMED);
        all.iter().find(|a| path.starts_with(&a.dir)).cloned()
    };
    let Some(armed) = armed else { return };
    let Ok(name) = path.strip_prefix(&armed.dir) else {
        return;
    };
    let name = name.to_string_lossy().into_owned();
    let mut tracker = lock(&armed.tracker);
    if let Some(what) = record(&mut tracker, &name) {
        tracker.event(&armed.dir, what);
    }
}

/// A file was created, or opened with truncation.
pub(crate) fn on_create(path: &Path) {
    record(path, |t, name| match t.names.get(name) {
        Some(&id) => {
            t.inodes[id].pending.push(FileOp::SetLen(0));
            Some(format!("truncate {name} on open"))
        }
        None => {
            let id = t.inodes.len();
            t.inodes.push(Inode {
                durable: Vec::new(),
                pending: Vec::new(),
            });
            t.names.insert(name.to_string(), id);
            t.dir_ops.push(DirOp::Link {
                name: name.to_string(),
                inode: id,
            });
            Some(format!("create {name}"))
        }
    });
}

/// `bytes` landed at `offset` (all of a write, or the prefix a failing one left).
pub(crate) fn on_write(path: &Path, offset: u64, bytes: &[u8]) {
    record(path, |t, name| {
        let id = t.inode_of(name, "write")?;
        t.inodes[id].pending.push(FileOp::Write {
            offset,
            bytes: bytes.to_vec(),
        });
        Some(format!("write {name} @{offset} +{}", bytes.len()))
    });
}

pub(crate) fn on_set_len(path: &Path, len_bytes: u64) {
    record(path, |t, name| {
        let id = t.inode_of(name, "set_len")?;
        t.inodes[id].pending.push(FileOp::SetLen(len_bytes));
        Some(format!("set_len {name} {len_bytes}"))
    });
}

/// An fsync, fdatasync or msync of `path` returned: its current content is durable.
pub(crate) fn on_sync(path: &Path, call: &str) {
    record(path, |t, name| {
        let id = t.inode_of(name, call)?;
        match fs::read(path) {
            Ok(content) => {
                let inode = &mut t.inodes[id];
                inode.durable = content;
                inode.pending.clear();
            }
            Err(e) => t
                .problems
                .push(format!("{call} {name}: cannot read it back: {e}")),
        }
        Some(format!("{call} {name}"))
    });
}

pub(crate) fn on_sync_dir(dir: &Path) {
    record(dir, |t, name| {
        if !name.is_empty() {
            return None;
        }
        t.durable_names = t.names.clone();
        t.dir_ops.clear();
        Some("fsync directory".to_string())
    });
}

pub(crate) fn on_rename(from: &Path, to: &Path) {
    record(to, |t, to_name| {
        let from_name = from.file_name()?.to_string_lossy().into_owned();
        let id = t.inode_of(&from_name, "rename")?;
        t.names.remove(&from_name);
        t.names.insert(to_name.to_string(), id);
        t.dir_ops.push(DirOp::Rename {
            from: from_name.clone(),
            to: to_name.to_string(),
        });
        Some(format!("rename {from_name} -> {to_name}"))
    });
}

pub(crate) fn on_remove(path: &Path) {
    record(path, |t, name| {
        t.names.remove(name)?;
        t.dir_ops.push(DirOp::Unlink {
            name: name.to_string(),
        });
        Some(format!("remove {name}"))
    });
}

mod image;

#[cfg(test)]
mod tests;
