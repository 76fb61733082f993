//! A pause point inside a compaction pass (feature `fault-injection`, tests only): a test
//! registers it for a partition directory, waits until a pass has written its cleaned
//! files and stands before the swap, does what it wants meanwhile (appends, reads), then
//! releases the pass. Lets tests show that appends never wait for a pass without relying
//! on timing.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

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

static PAUSES: Mutex<Vec<(PathBuf, Arc<Pause>)>> = Mutex::new(Vec::new());

/// Makes the next compaction pass on `dir` stop before its first swap until released.
pub fn pause_before_swap(dir: &Path) -> PauseGuard {
    let pause = Arc::new(Pause::default());
    PAUSES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((dir.to_path_buf(), Arc::clone(&pause)));
    PauseGuard {
        dir: dir.to_path_buf(),
        pause,
    }
}

/// Keeps the pause registered; dropping it releases the pass and unregisters.
#[derive(Debug)]
pub struct PauseGuard {
    dir: PathBuf,
    pause: Arc<Pause>,
}

impl PauseGuard {
    /// Waits (at most `timeout`) until a pass stands at the pause; true if one does.
    pub fn wait_reached(&self, timeout: Duration) -> bool {
        let state = self.pause.state.lock().unwrap_or_else(|p| p.into_inner());
        let (state, _) = self
            .pause
            .changed
            .wait_timeout_while(state, timeout, |s| !s.reached)
            .unwrap_or_else(|p| p.into_inner());
        state.reached
    }

    /// Lets the pass go on.
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
            .retain(|(dir, pause)| !(dir == &self.dir && Arc::ptr_eq(pause, &self.pause)));
    }
}

/// Called by a pass before its first swap: blocks while a registered pause holds it.
pub(crate) fn before_swap(dir: &Path) {
    let pause = {
        let pauses = PAUSES.lock().unwrap_or_else(|p| p.into_inner());
        pauses
            .iter()
            .find(|(d, _)| d == dir)
            .map(|(_, p)| Arc::clone(p))
    };
    let Some(pause) = pause else { return };
    let mut state = pause.state.lock().unwrap_or_else(|p| p.into_inner());
    state.reached = true;
    pause.changed.notify_all();
    while !state.released {
        state = pause.changed.wait(state).unwrap_or_else(|p| p.into_inner());
    }
}
