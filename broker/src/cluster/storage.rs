//! `LogStorage`: what the Raft core reads of the persisted log (raft-rs
//! `Storage`), kept in memory as a copy of what `RaftFile` holds on disk: the
//! last snapshot (with its data, which a leader sends to a follower that needs
//! compacted entries), the entries after it, the hard state and the voters.
//!
//! It changes only after the disk did: entries are appended here once
//! written, a snapshot is set here once its file is installed.

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};

pub(super) struct LogStorage {
    hard_state: HardState,
    conf_state: ConfState,
    /// The last snapshot taken or received; index 0 (and no data) when none.
    snapshot: Snapshot,
    /// The entries after the snapshot's index, contiguous.
    entries: Vec<Entry>,
}

impl LogStorage {
    pub fn new(conf_state: ConfState) -> LogStorage {
        LogStorage {
            hard_state: HardState::default(),
            conf_state,
            snapshot: Snapshot::default(),
            entries: Vec::new(),
        }
    }

    pub fn snapshot_index(&self) -> u64 {
        self.snapshot.get_metadata().index
    }

    fn first(&self) -> u64 {
        self.snapshot_index() + 1
    }

    fn last(&self) -> u64 {
        self.entries
            .last()
            .map_or(self.snapshot_index(), |e| e.index)
    }

    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    pub fn set_hard_state(&mut self, hard_state: HardState) {
        self.hard_state = hard_state;
    }

    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    pub fn set_conf_state(&mut self, conf_state: ConfState) {
        self.conf_state = conf_state;
    }

    /// The entries after `index`, which must not be before the snapshot.
    pub fn entries_after(&self, index: u64) -> &[Entry] {
        debug_assert!(index >= self.snapshot_index());
        let skip = (index - self.snapshot_index()) as usize;
        &self.entries[skip.min(self.entries.len())..]
    }

    /// Appends entries written to the log, replacing those from the first
    /// one's index on (Raft overwriting a follower's conflicting suffix).
    pub fn append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else {
            return;
        };
        debug_assert!(
            first.index > self.snapshot_index() && first.index <= self.last() + 1,
            "entries from {} do not follow the log ({}..={})",
            first.index,
            self.first(),
            self.last()
        );
        let keep = first.index.saturating_sub(self.first()) as usize;
        self.entries.truncate(keep);
        self.entries.extend_from_slice(entries);
    }

    /// This member's own snapshot: the entries up to its index are gone, the
    /// ones after it stay.
    pub fn compact(&mut self, snapshot: Snapshot) {
        let index = snapshot.get_metadata().index;
        debug_assert!(index >= self.snapshot_index() && index <= self.last());
        let drop = (index - self.snapshot_index()) as usize;
        self.entries.drain(..drop.min(self.entries.len()));
        self.snapshot = snapshot;
    }

    /// A snapshot from the leader replaces the whole log: Raft installs one
    /// only when this member's log does not hold the entry at its index.
    pub fn apply_snapshot(&mut self, snapshot: Snapshot) {
        let meta = snapshot.get_metadata();
        self.hard_state.commit = self.hard_state.commit.max(meta.index);
        self.hard_state.term = self.hard_state.term.max(meta.term);
        self.conf_state = meta.get_conf_state().clone();
        self.entries.clear();
        self.snapshot = snapshot;
    }
}

impl Storage for LogStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low < self.first() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last() + 1 || low > high {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let from = (low - self.first()) as usize;
        let to = (high - self.first()) as usize;
        let mut entries = self.entries[from..to].to_vec();
        raft::util::limit_size(&mut entries, max_size.into());
        Ok(entries)
    }

    fn term(&self, index: u64) -> raft::Result<u64> {
        // The snapshot's entry is gone, but its term stays known: Raft
        // matches a follower's log against it.
        if index == self.snapshot_index() {
            return Ok(self.snapshot.get_metadata().term);
        }
        if index < self.first() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if index > self.last() {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        Ok(self.entries[(index - self.first()) as usize].term)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        // Raft asks only when a follower needs entries this member compacted,
        // which its snapshot covers; a follower asking for a newer one (raft-rs
        // `request_snapshot`, never called here) waits for the next.
        if self.snapshot_index() == 0 || self.snapshot_index() < request_index {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(self.snapshot.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            ..Default::default()
        }
    }

    fn snapshot(index: u64, term: u64) -> Snapshot {
        let mut snapshot = Snapshot::default();
        snapshot.mut_metadata().index = index;
        snapshot.mut_metadata().term = term;
        snapshot
    }

    #[test]
    fn compaction_keeps_the_snapshot_term_and_the_later_entries() {
        let mut storage = LogStorage::new(ConfState::from((vec![1, 2, 3], vec![])));
        storage.append(&[entry(1, 1), entry(2, 1), entry(3, 2), entry(4, 2)]);
        storage.compact(snapshot(2, 1));
        assert_eq!(storage.first_index().unwrap(), 3);
        assert_eq!(storage.last_index().unwrap(), 4);
        assert_eq!(storage.term(2).unwrap(), 1);
        assert_eq!(storage.term(4).unwrap(), 2);
        assert_eq!(
            storage.term(1),
            Err(raft::Error::Store(StorageError::Compacted))
        );
        assert_eq!(
            storage.entries(2, 4, None, GetEntriesContext::empty(false)),
            Err(raft::Error::Store(StorageError::Compacted))
        );
        let got = storage
            .entries(3, 5, None, GetEntriesContext::empty(false))
            .unwrap();
        assert_eq!(got, vec![entry(3, 2), entry(4, 2)]);
        assert_eq!(storage.snapshot(0, 2).unwrap().get_metadata().index, 2);
        // Overwriting after the snapshot replaces the suffix.
        storage.append(&[entry(4, 3), entry(5, 3)]);
        assert_eq!(storage.entries_after(2).len(), 3);
        assert_eq!(storage.term(4).unwrap(), 3);
    }

    #[test]
    fn a_received_snapshot_replaces_the_log_and_raises_the_commit() {
        let mut storage = LogStorage::new(ConfState::from((vec![1, 2, 3], vec![])));
        assert_eq!(
            storage.snapshot(0, 2),
            Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable
            ))
        );
        storage.append(&[entry(1, 1), entry(2, 1)]);
        storage.apply_snapshot(snapshot(10, 4));
        assert_eq!(storage.first_index().unwrap(), 11);
        assert_eq!(storage.last_index().unwrap(), 10);
        assert_eq!(storage.term(10).unwrap(), 4);
        assert_eq!(
            (storage.hard_state().commit, storage.hard_state().term),
            (10, 4)
        );
        storage.append(&[entry(11, 4)]);
        assert_eq!(storage.last_index().unwrap(), 11);
    }
}
