//! Writes a partition's periodic producer-state snapshot on a thread of its
//! own, off the append path.
//!
//! An append that crosses the snapshot interval encodes the state under the
//! producer lock (so it matches the log end exactly) and hands the bytes
//! here. Creating the temporary file and renaming it over the old snapshot
//! cost a millisecond or more on ext4 (the rename over an existing file
//! starts writeback of the new one), which one append in every 64 MB used to
//! wait for inside the lock: a third of the slowest 1 % of 1 MB produces.
//!
//! The snapshot only bounds how much of the log an open replays, so a late
//! or skipped periodic write costs replay time, never correctness. What must
//! not happen is a periodic write landing after a snapshot that replaces it
//! for a reason (a truncation's, a close's) or inside a directory being
//! removed: those callers take [`SnapshotWriter::supersede`] first, which
//! waits for a write in progress and cancels the ones not yet started.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::producer_snapshot;

#[derive(Debug, Default)]
struct WriterState {
    /// Bumped by every `supersede`: a periodic write encoded before it is
    /// dropped.
    generation: u64,
    /// The offset of the newest periodic snapshot written since the last
    /// `supersede`: an older one finishing late is dropped.
    written_offset: Option<u64>,
}

/// One partition's background snapshot writes.
#[derive(Debug, Default)]
pub(crate) struct SnapshotWriter {
    state: Arc<Mutex<WriterState>>,
}

/// Held while a caller writes a snapshot of its own or removes the
/// directory: no periodic write runs meanwhile, and none encoded before it
/// runs after.
pub(crate) struct Superseded<'a> {
    _state: MutexGuard<'a, WriterState>,
}

impl SnapshotWriter {
    /// Writes `bytes`, the state as of log offset `offset`, into `dir` on a
    /// thread of its own. Failures are logged, and a thread that cannot
    /// start skips this snapshot: the next open replays from an older one.
    pub(crate) fn write_later(&self, dir: &Path, bytes: Vec<u8>, offset: u64) {
        let generation = lock(&self.state).generation;
        let state = Arc::clone(&self.state);
        let dir = dir.to_path_buf();
        let spawned = std::thread::Builder::new()
            .name("weir-producer-snapshot".into())
            .spawn(move || write_if_current(&state, &dir, &bytes, offset, generation));
        if let Err(error) = spawned {
            tracing::warn!(%error, "no thread for the producer-state snapshot; skipped");
        }
    }

    /// Waits for a periodic write in progress and cancels those not started.
    pub(crate) fn supersede(&self) -> Superseded<'_> {
        let mut state = lock(&self.state);
        state.generation = state.generation.wrapping_add(1);
        state.written_offset = None;
        Superseded { _state: state }
    }
}

fn write_if_current(
    state: &Mutex<WriterState>,
    dir: &Path,
    bytes: &[u8],
    offset: u64,
    generation: u64,
) {
    // Held across the write: a `supersede` waits for it to finish.
    let mut state = lock(state);
    if state.generation != generation || state.written_offset.is_some_and(|w| w >= offset) {
        return;
    }
    match producer_snapshot::write_encoded(dir, bytes, false) {
        Ok(()) => state.written_offset = Some(offset),
        Err(error) => tracing::warn!(
            dir = %dir.display(), %error,
            "cannot write the producer-state snapshot; the next open replays more of the log"
        ),
    }
}

/// The state is two counters, consistent after any panic.
fn lock(state: &Mutex<WriterState>) -> MutexGuard<'_, WriterState> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::producer_state::ProducerStates;

    fn offset_on_disk(dir: &Path) -> Option<u64> {
        producer_snapshot::read(dir, 0)
            .unwrap()
            .map(|snapshot| snapshot.offset)
    }

    fn wait_for_offset(dir: &Path, offset: u64) {
        for _ in 0..500 {
            if offset_on_disk(dir) == Some(offset) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("no snapshot at offset {offset}: {:?}", offset_on_disk(dir));
    }

    #[test]
    fn a_periodic_snapshot_is_written_in_the_background() {
        let dir = tempfile::tempdir().unwrap();
        let writer = SnapshotWriter::default();
        let bytes = producer_snapshot::encode(&ProducerStates::default(), 42);
        writer.write_later(dir.path(), bytes, 42);
        wait_for_offset(dir.path(), 42);
    }

    #[test]
    fn an_older_periodic_snapshot_does_not_replace_a_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let writer = SnapshotWriter::default();
        let newer = producer_snapshot::encode(&ProducerStates::default(), 20);
        writer.write_later(dir.path(), newer, 20);
        wait_for_offset(dir.path(), 20);
        let older = producer_snapshot::encode(&ProducerStates::default(), 10);
        let generation = lock(&writer.state).generation;
        write_if_current(&writer.state, dir.path(), &older, 10, generation);
        assert_eq!(offset_on_disk(dir.path()), Some(20));
    }

    #[test]
    fn a_periodic_snapshot_encoded_before_a_supersede_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let writer = SnapshotWriter::default();
        let generation = lock(&writer.state).generation;
        {
            let _superseded = writer.supersede();
            producer_snapshot::write(dir.path(), &ProducerStates::default(), 5, true).unwrap();
        }
        // A periodic write of a state from before the supersede (here above
        // the offset the superseding snapshot has: a cut log) finishes late.
        let stale = producer_snapshot::encode(&ProducerStates::default(), 90);
        write_if_current(&writer.state, dir.path(), &stale, 90, generation);
        assert_eq!(offset_on_disk(dir.path()), Some(5));
    }
}
