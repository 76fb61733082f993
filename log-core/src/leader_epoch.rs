//! The leader-epoch cache of a partition (Kafka's `LeaderEpochFileCache`, KIP-101 and
//! KIP-279): for each leader epoch that wrote batches to this log, the offset of its first
//! batch. A follower that comes back after a leader change asks the leader where its own
//! latest epoch ended ([`LeaderEpochCache::end_offset_for`], the answer to Kafka's
//! OffsetsForLeaderEpoch) and truncates there before it fetches, so the two logs never
//! diverge, which truncating to the high watermark alone cannot promise.
//!
//! Invariants, kept by every method that changes the entries (`debug_assert!`ed there):
//! epochs are at least 0 and strictly increase; start offsets strictly increase (Kafka's
//! rule: a new epoch replaces an entry starting at or above its own start, so two epochs
//! never share a start offset). Within a log, every entry starts at or above the log start,
//! and all but the latest below the log end; the latest may start at the log end, with no
//! batch yet (a leader's epoch assigned at election, or a log retention emptied), as in
//! Kafka. Open drops an entry stored at the log end.
//!
//! This type is the bookkeeping only; `partition_epochs.rs` keeps it in step with a log and
//! `leader_epoch_checkpoint.rs` stores it.

/// One leader epoch and the offset of its first batch in this log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: u64,
}

/// What [`LeaderEpochCache::assign`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assigned {
    /// The epoch is already the latest, at or below that offset.
    Unchanged,
    /// A new latest entry, replacing at most an entry of no batch at the same start.
    Added,
    /// A new latest entry that removed entries of batches already stored: an epoch lower
    /// than the latest, or a start offset below the latest's. Kafka accepts it and warns.
    Conflicted { removed: Vec<EpochEntry> },
}

/// The epochs of one log, oldest first; see the module docs for the invariants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaderEpochCache {
    entries: Vec<EpochEntry>,
}

impl LeaderEpochCache {
    pub fn new() -> LeaderEpochCache {
        LeaderEpochCache::default()
    }

    /// A cache of `entries`; Err says which invariant they break.
    pub fn from_entries(entries: Vec<EpochEntry>) -> Result<LeaderEpochCache, String> {
        if let Some(bad) = entries.iter().find(|e| e.epoch < 0) {
            return Err(format!("epoch {} is negative", bad.epoch));
        }
        for pair in entries.windows(2) {
            let [before, after] = pair else { continue };
            if after.epoch <= before.epoch {
                return Err(format!(
                    "epoch {} follows epoch {}: epochs must increase",
                    after.epoch, before.epoch
                ));
            }
            if after.start_offset <= before.start_offset {
                return Err(format!(
                    "epoch {} starts at offset {}, not after epoch {} at {}",
                    after.epoch, after.start_offset, before.epoch, before.start_offset
                ));
            }
        }
        Ok(LeaderEpochCache { entries })
    }

    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn latest(&self) -> Option<EpochEntry> {
        self.entries.last().copied()
    }

    /// The epoch of the newest batch-bearing entry.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.epoch)
    }

    fn is_ordered(&self) -> bool {
        self.entries.iter().all(|e| e.epoch >= 0)
            && self.entries.windows(2).all(|pair| match pair {
                [a, b] => a.epoch < b.epoch && a.start_offset < b.start_offset,
                _ => true,
            })
    }

    /// Records that a batch of `epoch` starts at `start_offset`, as an append does for every
    /// batch whose epoch differs from the latest. A negative epoch (a batch written without
    /// one, as before KIP-101) is not recorded. As Kafka's `assign`: entries at or above the
    /// new epoch, or starting at or after `start_offset`, are removed first, so the
    /// invariants hold whatever the caller passes; the result says whether that removed
    /// entries of stored batches (Kafka logs a warning for it).
    pub fn assign(&mut self, epoch: i32, start_offset: u64) -> Assigned {
        if epoch < 0 {
            return Assigned::Unchanged;
        }
        if let Some(latest) = self.latest() {
            if latest.epoch == epoch && latest.start_offset <= start_offset {
                return Assigned::Unchanged;
            }
        }
        let keep = self
            .entries
            .iter()
            .rposition(|e| e.epoch < epoch && e.start_offset < start_offset)
            .map_or(0, |i| i + 1);
        let removed: Vec<EpochEntry> = self.entries.drain(keep..).collect();
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        debug_assert!(self.is_ordered(), "{self:?}");
        // Replacing the latest entry at the same start is expected: no batch was stored
        // under it (an append whose write failed after the epoch was recorded).
        let trivial = match removed.as_slice() {
            [] => true,
            [only] => only.start_offset == start_offset,
            _ => false,
        };
        if trivial {
            Assigned::Added
        } else {
            Assigned::Conflicted { removed }
        }
    }

    /// Removes every entry starting at or after `end_offset` (the log was cut there:
    /// truncation, or recovery cutting a torn tail). True when something was removed.
    pub fn truncate_from_end(&mut self, end_offset: u64) -> bool {
        let keep = self
            .entries
            .partition_point(|e| e.start_offset < end_offset);
        let changed = keep < self.entries.len();
        self.entries.truncate(keep);
        debug_assert!(self.is_ordered(), "{self:?}");
        changed
    }

    /// The log now starts at `start_offset` (retention): entries wholly below it go, and
    /// the epoch that holds it starts there, as in Kafka (exclusive: an entry starting
    /// exactly there stays as it is). True when something changed.
    pub fn truncate_from_start(&mut self, start_offset: u64) -> bool {
        let covering = self
            .entries
            .partition_point(|e| e.start_offset <= start_offset);
        let Some(holder) = covering.checked_sub(1) else {
            return false;
        };
        let changed = holder > 0
            || self
                .entries
                .first()
                .is_some_and(|e| e.start_offset != start_offset);
        self.entries.drain(..holder);
        if let Some(first) = self.entries.first_mut() {
            first.start_offset = start_offset;
        }
        debug_assert!(self.is_ordered(), "{self:?}");
        changed
    }

    /// Removes every entry (the log was emptied).
    pub fn clear(&mut self) -> bool {
        let changed = !self.entries.is_empty();
        self.entries.clear();
        changed
    }

    /// Kafka's answer to OffsetsForLeaderEpoch for `requested_epoch`, on a log that ends at
    /// `log_end_offset`: `(epoch, end offset)` where epoch is the largest epoch at or below
    /// the requested one and end offset is where it ended — the start offset of the next
    /// higher epoch, or the log end offset for the latest epoch. Edges, as Kafka:
    ///
    /// - the latest epoch: `(latest, log_end_offset)`;
    /// - an epoch between two cached ones (a gap in the epochs, an epoch this log never
    ///   saw): the one below it, ending where the one above starts;
    /// - below the earliest cached epoch (its batches went to retention, or never came
    ///   here): `(requested_epoch, start of the earliest)`, so a follower keeps nothing
    ///   below where this log's known history starts;
    /// - above the latest, a negative epoch, or an empty cache: None (Kafka's
    ///   UNDEFINED_EPOCH_OFFSET: the follower falls back to its high watermark).
    pub fn end_offset_for(&self, requested_epoch: i32, log_end_offset: u64) -> Option<(i32, u64)> {
        if requested_epoch < 0 {
            return None;
        }
        let latest = self.entries.last()?;
        if latest.epoch == requested_epoch {
            return Some((requested_epoch, log_end_offset));
        }
        let higher_at = self.entries.partition_point(|e| e.epoch <= requested_epoch);
        let higher = self.entries.get(higher_at)?;
        match higher_at.checked_sub(1).and_then(|i| self.entries.get(i)) {
            Some(floor) => Some((floor.epoch, higher.start_offset)),
            None => Some((requested_epoch, higher.start_offset)),
        }
    }

    /// The epoch of the batch at `offset`: the entry with the largest start at or below
    /// it; None below the earliest entry. Offsets past the log end get the latest epoch:
    /// the caller checks the range.
    pub fn epoch_for_offset(&self, offset: u64) -> Option<i32> {
        let after = self.entries.partition_point(|e| e.start_offset <= offset);
        after
            .checked_sub(1)
            .and_then(|i| self.entries.get(i))
            .map(|e| e.epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, u64)]) -> LeaderEpochCache {
        LeaderEpochCache::from_entries(
            entries
                .iter()
                .map(|&(epoch, start_offset)| EpochEntry {
                    epoch,
                    start_offset,
                })
                .collect(),
        )
        .expect("ordered entries")
    }

    fn pairs(cache: &LeaderEpochCache) -> Vec<(i32, u64)> {
        cache
            .entries()
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .collect()
    }

    #[test]
    fn assign_records_only_epoch_changes() {
        let mut c = LeaderEpochCache::new();
        assert_eq!(c.assign(1, 0), Assigned::Added);
        assert_eq!(c.assign(1, 5), Assigned::Unchanged);
        assert_eq!(c.assign(3, 10), Assigned::Added);
        assert_eq!(c.assign(3, 12), Assigned::Unchanged);
        assert_eq!(
            c.assign(-1, 20),
            Assigned::Unchanged,
            "no epoch: not recorded"
        );
        assert_eq!(pairs(&c), vec![(1, 0), (3, 10)]);
    }

    #[test]
    fn a_new_epoch_at_the_same_start_replaces_an_empty_one_quietly() {
        let mut c = cache(&[(1, 0), (3, 10)]);
        assert_eq!(c.assign(4, 10), Assigned::Added);
        assert_eq!(pairs(&c), vec![(1, 0), (4, 10)]);
    }

    #[test]
    fn a_lower_epoch_removes_the_conflicting_entries_as_kafka_does() {
        let mut c = cache(&[(1, 0), (3, 10), (5, 20)]);
        let removed = vec![
            EpochEntry {
                epoch: 3,
                start_offset: 10,
            },
            EpochEntry {
                epoch: 5,
                start_offset: 20,
            },
        ];
        assert_eq!(c.assign(2, 30), Assigned::Conflicted { removed });
        assert_eq!(pairs(&c), vec![(1, 0), (2, 30)]);
    }

    #[test]
    fn end_offset_for_every_epoch_with_gaps_and_edges() {
        let c = cache(&[(1, 0), (3, 40), (7, 90)]);
        let log_end = 120;
        let answers: Vec<Option<(i32, u64)>> =
            (-1..10).map(|e| c.end_offset_for(e, log_end)).collect();
        assert_eq!(
            answers,
            vec![
                None,          // -1: undefined
                Some((0, 0)),  // 0: below the earliest, ends where it starts
                Some((1, 40)), // 1
                Some((1, 40)), // 2: a gap, answered by 1
                Some((3, 90)), // 3
                Some((3, 90)), // 4..6: a gap, answered by 3
                Some((3, 90)),
                Some((3, 90)),
                Some((7, 120)), // 7: the latest ends at the log end
                None,           // 8, 9: above the latest
                None,
            ]
        );
        assert_eq!(LeaderEpochCache::new().end_offset_for(0, 0), None);
    }

    #[test]
    fn truncate_from_end_drops_entries_at_or_after_the_cut() {
        let mut c = cache(&[(1, 0), (3, 40), (7, 90)]);
        assert!(!c.truncate_from_end(91));
        assert!(c.truncate_from_end(90));
        assert_eq!(pairs(&c), vec![(1, 0), (3, 40)]);
        assert!(!c.truncate_from_end(41));
        assert_eq!(
            pairs(&c),
            vec![(1, 0), (3, 40)],
            "41 keeps epoch 3's batch at 40"
        );
        assert!(c.truncate_from_end(0));
        assert!(c.is_empty());
    }

    #[test]
    fn truncate_from_start_moves_the_holding_epoch_up() {
        let mut c = cache(&[(1, 0), (3, 40), (7, 90)]);
        assert!(!c.truncate_from_start(0));
        assert!(c.truncate_from_start(50));
        assert_eq!(pairs(&c), vec![(3, 50), (7, 90)]);
        assert!(c.truncate_from_start(90));
        assert_eq!(pairs(&c), vec![(7, 90)]);
        assert!(!c.truncate_from_start(90));
        assert!(c.truncate_from_start(95));
        assert_eq!(pairs(&c), vec![(7, 95)]);
    }

    #[test]
    fn epoch_for_offset_finds_the_entry_at_or_below() {
        let c = cache(&[(1, 10), (3, 40)]);
        assert_eq!(c.epoch_for_offset(9), None);
        assert_eq!(c.epoch_for_offset(10), Some(1));
        assert_eq!(c.epoch_for_offset(39), Some(1));
        assert_eq!(c.epoch_for_offset(40), Some(3));
        assert_eq!(c.epoch_for_offset(1000), Some(3));
    }

    #[test]
    fn from_entries_refuses_disorder() {
        let entry = |epoch, start_offset| EpochEntry {
            epoch,
            start_offset,
        };
        assert!(LeaderEpochCache::from_entries(vec![entry(2, 0), entry(2, 5)]).is_err());
        assert!(LeaderEpochCache::from_entries(vec![entry(2, 5), entry(3, 5)]).is_err());
        assert!(LeaderEpochCache::from_entries(vec![entry(-1, 0)]).is_err());
        assert!(LeaderEpochCache::from_entries(vec![entry(0, 0), entry(3, 5)]).is_ok());
    }
}
