//! Fault injection into the storage engine's I/O calls (feature `fault-injection`, for
//! tests only): a [`FaultPlan`] registered for a partition directory makes chosen kinds of
//! call (writes, fsyncs, truncations, renames, removals) fail after a countdown, once or
//! from then on, optionally landing part of a write first (a torn write).
//!
//! Every write, fsync, `set_len`, rename and removal the engine makes on a partition
//! directory goes through `file_io`, which asks this module first. Without the feature
//! those wrappers are the plain calls: no lookup, no dynamic dispatch on the hot path.
//!
//! Plans are keyed by directory, so tests running in parallel in one process, each on its
//! own temporary directory, do not see each other's faults.
//!
//! [`power_loss`] follows the same calls to write what a disk could hold after a power cut.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub mod power_loss;

/// A kind of I/O call the engine makes on a partition directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IoCall {
    /// `pwrite`/`write` of segment, checkpoint or compacted bytes.
    Write,
    /// `fsync`/`fdatasync` of a file, or `msync` of a mapped index.
    Fsync,
    /// `fsync` of the partition directory.
    SyncDir,
    /// `ftruncate` (cutting a segment, trimming or preallocating an index).
    SetLen,
    /// `rename` (checkpoint or compacted segment into place).
    Rename,
    /// `unlink` of a segment, index or checkpoint file.
    Remove,
}

impl IoCall {
    pub const ALL: [IoCall; 6] = [
        IoCall::Write,
        IoCall::Fsync,
        IoCall::SyncDir,
        IoCall::SetLen,
        IoCall::Rename,
        IoCall::Remove,
    ];
}

/// Which calls fail, and when.
#[derive(Debug)]
pub struct FaultPlan {
    calls: Vec<IoCall>,
    /// Matching calls still let through before the first failure.
    countdown: AtomicU64,
    /// Once fired, every later matching call fails too (a disk that went bad).
    sticky: bool,
    /// A failing write first lands this share (per mille) of its bytes.
    torn_per_mille: u16,
    failures: AtomicU64,
    first_failure: Mutex<Option<(IoCall, PathBuf)>>,
}

impl FaultPlan {
    /// Fails the first call of one of `calls`, once.
    pub fn new(calls: &[IoCall]) -> FaultPlan {
        FaultPlan {
            calls: calls.to_vec(),
            countdown: AtomicU64::new(0),
            sticky: false,
            torn_per_mille: 0,
            failures: AtomicU64::new(0),
            first_failure: Mutex::new(None),
        }
    }

    /// Lets `count` matching calls succeed before the failure.
    pub fn after(self, count: u64) -> FaultPlan {
        self.countdown.store(count, Ordering::SeqCst);
        self
    }

    /// Keeps failing every matching call once the first has failed.
    pub fn sticky(mut self) -> FaultPlan {
        self.sticky = true;
        self
    }

    /// A failing write lands `per_mille`/1000 of its bytes before it reports the error.
    pub fn torn_writes(mut self, per_mille: u16) -> FaultPlan {
        self.torn_per_mille = per_mille.min(1000);
        self
    }

    /// How many calls have been failed so far.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::SeqCst)
    }

    /// The first failed call and the path it was made on.
    pub fn first_failure(&self) -> Option<(IoCall, PathBuf)> {
        self.first_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Decides one call: None lets it through.
    fn decide(&self, call: IoCall, path: &Path) -> Option<InjectedFault> {
        if !self.calls.contains(&call) {
            return None;
        }
        if self.failures() > 0 && !self.sticky {
            return None;
        }
        let pass = self
            .countdown
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if pass {
            return None;
        }
        self.failures.fetch_add(1, Ordering::SeqCst);
        let mut first = self.first_failure.lock().unwrap_or_else(|p| p.into_inner());
        first.get_or_insert_with(|| (call, path.to_path_buf()));
        Some(InjectedFault {
            call,
            torn_per_mille: self.torn_per_mille,
        })
    }
}

/// A failure decided for one call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct InjectedFault {
    call: IoCall,
    torn_per_mille: u16,
}

impl InjectedFault {
    /// How many of `len_bytes` a failing write lands first.
    pub(crate) fn torn_len(&self, len_bytes: usize) -> usize {
        len_bytes / 1000 * usize::from(self.torn_per_mille)
            + len_bytes % 1000 * usize::from(self.torn_per_mille) / 1000
    }

    pub(crate) fn error(&self, path: &Path) -> io::Error {
        io::Error::other(format!(
            "injected {:?} failure on {}",
            self.call,
            path.display()
        ))
    }
}

/// Plans by directory.
static PLANS: Mutex<Vec<(PathBuf, Arc<FaultPlan>)>> = Mutex::new(Vec::new());

/// Registers `plan` for every file in `dir` (and `dir` itself) until the guard drops.
pub fn inject(dir: &Path, plan: FaultPlan) -> FaultGuard {
    let plan = Arc::new(plan);
    PLANS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((dir.to_path_buf(), Arc::clone(&plan)));
    FaultGuard {
        dir: dir.to_path_buf(),
        plan,
    }
}

/// Keeps a plan registered; dropping it lets every call through again.
#[derive(Debug)]
pub struct FaultGuard {
    dir: PathBuf,
    plan: Arc<FaultPlan>,
}

impl std::ops::Deref for FaultGuard {
    type Target = FaultPlan;
    fn deref(&self) -> &FaultPlan {
        &self.plan
    }
}

impl Drop for FaultGuard {
    fn drop(&mut self) {
        PLANS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(dir, plan)| !(dir == &self.dir && Arc::ptr_eq(plan, &self.plan)));
    }
}

/// Asks the plan registered for `path`'s directory whether this call fails.
pub(crate) fn fire(call: IoCall, path: &Path) -> Option<InjectedFault> {
    let plans = PLANS.lock().unwrap_or_else(|p| p.into_inner());
    let plan = plans
        .iter()
        .find(|(dir, _)| path.starts_with(dir))
        .map(|(_, plan)| Arc::clone(plan))?;
    drop(plans);
    plan.decide(call, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_down_then_fails_once_or_for_good() {
        let dir = Path::new("/fault-test/once");
        let guard = inject(dir, FaultPlan::new(&[IoCall::Fsync]).after(2));
        let file = dir.join("a.log");
        assert!(fire(IoCall::Write, &file).is_none());
        assert!(fire(IoCall::Fsync, &file).is_none());
        assert!(fire(IoCall::Fsync, &file).is_none());
        assert!(fire(IoCall::Fsync, &file).is_some());
        assert!(fire(IoCall::Fsync, &file).is_none());
        assert_eq!(guard.failures(), 1);
        assert_eq!(guard.first_failure(), Some((IoCall::Fsync, file.clone())));
        drop(guard);

        let sticky = inject(dir, FaultPlan::new(&IoCall::ALL).sticky());
        assert!(fire(IoCall::Write, &file).is_some());
        assert!(fire(IoCall::Remove, &file).is_some());
        assert!(fire(IoCall::Write, Path::new("/elsewhere/a.log")).is_none());
        drop(sticky);
        assert!(fire(IoCall::Write, &file).is_none());
    }

    #[test]
    fn torn_length_is_a_share_of_the_write() {
        let fault = InjectedFault {
            call: IoCall::Write,
            torn_per_mille: 500,
        };
        assert_eq!(fault.torn_len(3001), 1500);
        assert_eq!(fault.torn_len(0), 0);
        let whole = InjectedFault {
            call: IoCall::Write,
            torn_per_mille: 1000,
        };
        assert_eq!(whole.torn_len(77), 77);
    }
}
