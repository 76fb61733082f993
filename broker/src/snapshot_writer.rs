//! Writes a partition's periodic producer-state snapshot on a thread of its
//! own, off the append path.
//!
//! An append that crosses the snapshot interval encodes the state under the
//! producer lock (so it matches the log end exactly) and hands the bytes
//! here. Creating the temporary file and renaming it over the old snapshot
//! took about half a millisecond for the rename alone on ext4 (`strace -T`;
//! a rename over an existing file starts writeback of the new one), which
//! one append in every 64 MiB used to wait for inside the lock: 16 in each
//! GB of 1 MB produces, more than the 1 % a p99 looks at.
//!
//! The snapshot only bounds how much of the log an open replays, so a late
//! or skipped periodic write costs replay time, never correctness. What must
//! not happen is a periodic write landing after a snapshot that replaces it
//! for a reason (a truncation's, a close's) or inside a directory being
//! removed: those callers take [`SnapshotWriter::supersede`] first, which
//! waits for a write in progress and drops the one waiting.
//!
//! At most one thread per partition writes, and an append never waits for
//! it: a snapshot handed over while one is being written replaces any other
//! still waiting, so a slow disk delays snapshots, not appends.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::producer_snapshot;

/// A snapshot waiting to be written.
#[derive(Debug)]
struct Job {
    dir: PathBuf,
    bytes: Vec<u8>,
    offset: u64,
    generation: u64,
}

#[derive(Debug, Default)]
struct WriterState {
    /// Bumped by every `supersede`: a periodic snapshot encoded before it is
    /// dropped.
    generation: u64,
    /// The offset of the newest periodic snapshot written since the last
    /// `supersede`: an older one is dropped.
    written_offset: Option<u64>,
    /// The newest snapshot handed over and not yet taken by the writer.
    waiting: Option<Job>,
    /// A writer thread is running and will take `waiting`.
    writing: bool,
}

#[derive(Debug, Default)]
struct Shared {
    /// Never held across file I/O: appends take it.
    state: Mutex<WriterState>,
    /// Held across every write of the file, periodic or superseding.
    io: Mutex<()>,
}

/// One partition's background snapshot writes.
#[derive(Debug, Default)]
pub(crate) struct SnapshotWriter {
    shared: Arc<Shared>,
}

/// Held while a caller writes a snapshot of its own or removes the
/// directory: no periodic write runs meanwhile, and none encoded before it
/// runs after.
pub(crate) struct Superseded<'a> {
    _io: MutexGuard<'a, ()>,
}

impl SnapshotWriter {
    /// Hands over `bytes`, the state as of log offset `offset`, to be written
    /// into `dir` by this partition's writer thread (started if none runs).
    /// Failures are logged: the next open replays from an older snapshot.
    pub(crate) fn write_later(&self, dir: &Path, bytes: Vec<u8>, offset: u64) {
        let mut state = lock(&self.shared.state);
        state.waiting = Some(Job {
            dir: dir.to_path_buf(),
            bytes,
            offset,
            generation: state.generation,
        });
        if state.writing {
            return;
        }
        let shared = Arc::clone(&self.shared);
        let spawned = std::thread::Builder::new()
            .name("weir-producer-snapshot".into())
            .spawn(move || write_waiting(&shared));
        match spawned {
            Ok(_) => state.writing = true,
            // Kept waiting: the next interval tries to start a thread again.
            Err(error) => tracing::warn!(%error, "no thread for the producer-state snapshot"),
        }
    }

    /// Waits for a periodic write in progress and drops the one waiting.
    pub(crate) fn supersede(&self) -> Superseded<'_> {
        let io = lock(&self.shared.io);
        let mut state = lock(&self.shared.state);
        state.generation = state.generation.wrapping_add(1);
        state.written_offset = None;
        state.waiting = None;
        Superseded { _io: io }
    }
}

/// The writer thread: writes the waiting snapshot until none is left.
fn write_waiting(shared: &Shared) {
    loop {
        let job = {
            let mut state = lock(&shared.state);
            match state.waiting.take() {
                Some(job) => job,
                None => {
                    state.writing = false;
                    return;
                }
            }
        };
        write_if_current(shared, &job);
    }
}

fn write_if_current(shared: &Shared, job: &Job) {
    // A `supersede` takes `io` before it moves the generation, so the check
    // below still holds when the file is written.
    let _io = lock(&shared.io);
    {
        let state = lock(&shared.state);
        if state.generation != job.generation
            || state.written_offset.is_some_and(|w| w >= job.offset)
        {
            return;
        }
    }
    match producer_snapshot::write_encoded(&job.dir, &job.bytes, false) {
        Ok(()) => lock(&shared.state).written_offset = Some(job.offset),
        Err(error) => tracing::warn!(
            dir = %job.dir.display(), %error,
            "cannot write the producer-state snapshot; the next open replays more of the log"
        ),
    }
}

/// The state stays consistent after any panic (plain fields, set whole).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
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
        let older = job(dir.path(), 10, lock(&writer.shared.state).generation);
        write_if_current(&writer.shared, &older);
        assert_eq!(offset_on_disk(dir.path()), Some(20));
    }

    #[test]
    fn a_periodic_snapshot_encoded_before_a_supersede_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let writer = SnapshotWriter::default();
        let generation = lock(&writer.shared.state).generation;
        {
            let _superseded = writer.supersede();
            producer_snapshot::write(dir.path(), &ProducerStates::default(), 5, true).unwrap();
        }
        // A periodic write of a state from before the supersede (here above
        // the offset the superseding snapshot has: a cut log) finishes late.
        write_if_current(&writer.shared, &job(dir.path(), 90, generation));
        assert_eq!(offset_on_disk(dir.path()), Some(5));
    }

    #[test]
    fn a_supersede_drops_the_snapshot_waiting_and_waits_for_the_one_being_written() {
        let dir = tempfile::tempdir().unwrap();
        let writer = SnapshotWriter::default();
        // A write in progress holds `io`: what is handed over meanwhile waits,
        // and the append handing it over does not.
        let writing = lock(&writer.shared.io);
        let bytes = producer_snapshot::encode(&ProducerStates::default(), 30);
        writer.write_later(dir.path(), bytes, 30);
        let later = producer_snapshot::encode(&ProducerStates::default(), 40);
        writer.write_later(dir.path(), later, 40);
        assert_eq!(
            lock(&writer.shared.state)
                .waiting
                .as_ref()
                .map(|j| j.offset),
            Some(40)
        );
        drop(writing);
        let superseded = writer.supersede();
        producer_snapshot::write(dir.path(), &ProducerStates::default(), 3, true).unwrap();
        drop(superseded);
        // The writer thread ends with nothing left to write.
        for _ in 0..500 {
            if !lock(&writer.shared.state).writing {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(!lock(&writer.shared.state).writing);
        assert_eq!(offset_on_disk(dir.path()), Some(3));
    }

    fn job(dir: &Path, offset: u64, generation: u64) -> Job {
        Job {
            dir: dir.to_path_buf(),
            bytes: producer_snapshot::encode(&ProducerStates::default(), offset),
            offset,
            generation,
        }
    }
}
