//! Pause points inside the engine (feature `fault-injection`, tests only): a test registers
//! one for a partition directory, waits until the engine stands there, does what it wants
//! meanwhile (appends, reads, truncations), then releases it. Lets tests show what does
//! and does not wait for what by the order of events, without relying on timing.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Where the engine stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PausePoint {
    /// A compaction pass has written a cleaned segment (and holds no lock of the log) and
    /// is about to swap it in; the first such moment of the pass.
    BeforeSwap,
    /// An append that rolled has released the writer lock and is about to fsync the
    /// sealed segment(s) and move the recovery point past them.
    BeforeSealedFsync,
    /// A produced append has validated its batches, holds no lock of the log, and is
    /// about to be written (its caller takes its own locks first).
    AfterValidation,
}

#[derive(Debug, Default)]
struct State {
    reached: bool,
    released: bool,
}

#[derive(Debug, Default)]
struct Pause {
    state: Mutex<State>,
    changed: Condvar,
}

type Registered = (PathBuf, PausePoint, Arc<Pause>);

static PAUSES: Mutex<Vec<Registered>> = Mutex::new(Vec::new());

/// Makes the engine stop at `point` on `dir` until released (once: later visits pass).
pub fn pause_at(dir: &Path, point: PausePoint) -> PauseGuard {
    let pause = Arc::new(Pause::default());
    PAUSES.lock().unwrap_or_else(|p| p.into_inner()).push((
        dir.to_path_buf(),
        point,
        Arc::clone(&pause),
    ));
    PauseGuard {
        dir: dir.to_path_buf(),
        pause,
    }
}

/// Makes the next compaction pass on `dir` stop before its first swap until released.
pub fn pause_before_swap(dir: &Path) -> PauseGuard {
    pause_at(dir, PausePoint::BeforeSwap)
}

/// Keeps the pause registered; dropping it releases the engine and unregisters.
#[derive(Debug)]
pub struct PauseGuard {
    dir: PathBuf,
    pause: Arc<Pause>,
}

impl PauseGuard {
    /// Waits (at most `timeout`) until the engine stands at the pause; true if it does.
    pub fn wait_reached(&self, timeout: Duration) -> bool {
        let state = self.pause.state.lock().unwrap_or_else(|p| p.into_inner());
        let (state, _) = self
            .pause
            .changed
            .wait_timeout_while(state, timeout, |s| !s.reached)
            .unwrap_or_else(|p| p.into_inner());
        state.reached
    }

    /// Lets the engine go on.
    pub fn release(&self) {
        let mut state = self.pause.state.lock().unwrap_or_else(|p| p.into_inner());
        state.released = true;
        self.pause.changed.notify_all();
    }
}

impl Drop for PauseGuard {
    fn drop(&mut self) {
        self.release();
        PAUSES
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(dir, _, pause)| !(dir == &self.dir && Arc::ptr_eq(pause, &self.pause)));
    }
}

/// Called by the engine at `point`: blocks while a registered pause not yet reached holds
/// it there (each pause holds one visit).
pub(crate) fn reached(dir: &Path, point: PausePoint) {
    let pause = {
        let pauses = PAUSES.lock().unwrap_or_else(|p| p.into_inner());
        pauses
            .iter()
            .find(|(d, p, pause)| {
                d == dir
                    && *p == point
                    && !pause
                        .state
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .reached
            })
            .map(|(_, _, p)| Arc::clone(p))
    };
    let Some(pause) = pause else { return };
    let mut state = pause.state.lock().unwrap_or_else(|p| p.into_inner());
    state.reached = true;
    pause.changed.notify_all();
    while !state.released {
        state = pause.changed.wait(state).unwrap_or_else(|p| p.into_inner());
    }
}
