//! Idempotent-producer state of one partition: for each producer id, its
//! epoch and the last few batches it appended (sequence range and offsets).
//!
//! A retried batch whose sequence range matches a remembered batch is
//! acknowledged with the original offsets and not written again; a batch that
//! does not continue the sequence is refused. Five batches are remembered, as
//! Kafka does (where a request carries one batch per partition); the client
//! keeps at most that many batches in flight per partition, however it splits
//! them into requests, so any retry it sends is still recognised.
//!
//! A producer that has not written for `producer.id.expiration.ms` (Kafka's
//! setting, default one day) is forgotten, so the state of a partition is
//! bounded by its recent producers, not by every producer it ever saw. Its
//! age is the broker's wall-clock time of its last append, not a record
//! timestamp: those are the client's choice, and a producer writing records
//! stamped in the past must not be forgotten while it writes. A forgotten
//! producer that comes back is treated as new.

use std::collections::{HashMap, VecDeque};

pub use weir_proto::sequence::{increment_sequence, BATCHES_REMEMBERED};

/// A batch as the idempotence check sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SequencedBatch {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub first_sequence: i32,
    pub last_sequence: i32,
}

/// Where a remembered batch was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredRange {
    pub first_sequence: i32,
    pub last_sequence: i32,
    pub base_offset: u64,
    pub last_offset: u64,
}

/// What to do with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// New data: append it.
    Append,
    /// Already stored: acknowledge with these offsets.
    Duplicate(StoredRange),
}

/// Why a batch was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceError {
    OutOfOrder { expected: i32 },
    Fenced { current_epoch: i16 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ProducerEntry {
    epoch: i16,
    /// The broker's wall-clock time of this producer's last append, in ms
    /// since the epoch: its age for expiry.
    last_append_ms: i64,
    /// Oldest first; at most [`BATCHES_REMEMBERED`].
    batches: VecDeque<StoredRange>,
}

/// The state of every producer that wrote to one partition: rebuilt on open
/// from the `producer-state` snapshot and the log (see `producer_recovery`),
/// then kept up to date by every append.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ProducerStates {
    producers: HashMap<i64, ProducerEntry>,
}

/// Whether `sequence` comes after `expected` (within half the sequence
/// space, so an old sequence that wrapped is not taken for a future one).
pub fn is_ahead(sequence: i32, expected: i32) -> bool {
    const SPACE: i64 = 1 << 31;
    let distance = (i64::from(sequence) - i64::from(expected)).rem_euclid(SPACE);
    distance > 0 && distance < SPACE / 2
}

impl ProducerStates {
    /// Decides whether `batch` is new, a duplicate, or refused. Does not change state.
    pub fn check(&self, batch: &SequencedBatch) -> Result<SequenceCheck, SequenceError> {
        let Some(entry) = self.producers.get(&batch.producer_id) else {
            // An unknown producer (new, expired, or older than what a restart
            // rebuilt) starts at sequence 0, as Kafka required before KIP-360
            // (UNKNOWN_PRODUCER_ID there): a batch claiming later sequences
            // would otherwise be taken without the earlier ones. The client
            // answers OUT_OF_ORDER_SEQUENCE by bumping its epoch, which starts
            // again at 0.
            return if batch.first_sequence == 0 {
                Ok(SequenceCheck::Append)
            } else {
                Err(SequenceError::OutOfOrder { expected: 0 })
            };
        };
        if batch.producer_epoch < entry.epoch {
            return Err(SequenceError::Fenced {
                current_epoch: entry.epoch,
            });
        }
        if batch.producer_epoch > entry.epoch {
            return if batch.first_sequence == 0 {
                Ok(SequenceCheck::Append)
            } else {
                Err(SequenceError::OutOfOrder { expected: 0 })
            };
        }
        if let Some(stored) = entry.batches.iter().find(|stored| {
            stored.first_sequence == batch.first_sequence
                && stored.last_sequence == batch.last_sequence
        }) {
            return Ok(SequenceCheck::Duplicate(*stored));
        }
        let expected = entry
            .batches
            .back()
            .map_or(0, |last| increment_sequence(last.last_sequence, 1));
        if batch.first_sequence == expected {
            Ok(SequenceCheck::Append)
        } else {
            Err(SequenceError::OutOfOrder { expected })
        }
    }

    /// The epoch of `producer_id`'s newest batch here, if it is known.
    pub fn epoch(&self, producer_id: i64) -> Option<i16> {
        self.producers.get(&producer_id).map(|entry| entry.epoch)
    }

    /// The number of producers known.
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    /// Every producer: id, epoch, time of its last append and its remembered
    /// batches, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = (i64, i16, i64, &VecDeque<StoredRange>)> + '_ {
        self.producers
            .iter()
            .map(|(id, entry)| (*id, entry.epoch, entry.last_append_ms, &entry.batches))
    }

    /// Sets a producer's state as read back from a snapshot. Only the last
    /// [`BATCHES_REMEMBERED`] of `batches` (oldest first) are kept.
    pub fn restore(
        &mut self,
        producer_id: i64,
        epoch: i16,
        last_append_ms: i64,
        batches: &[StoredRange],
    ) {
        let kept = batches.len().saturating_sub(BATCHES_REMEMBERED);
        self.producers.insert(
            producer_id,
            ProducerEntry {
                epoch,
                last_append_ms,
                batches: batches.iter().skip(kept).copied().collect(),
            },
        );
    }

    /// Forgets every producer whose last append is more than
    /// `expiration_ms` before `now_ms`; returns how many.
    pub fn remove_expired(&mut self, now_ms: i64, expiration_ms: u64) -> usize {
        let expiration = i64::try_from(expiration_ms).unwrap_or(i64::MAX);
        let before = self.producers.len();
        self.producers
            .retain(|_, entry| now_ms.saturating_sub(entry.last_append_ms) <= expiration);
        before - self.producers.len()
    }

    /// Adds the state built from an older stretch of the log: producers not
    /// known here are taken as they are; a known producer of the same epoch
    /// gets older batches in front of its own until it remembers
    /// [`BATCHES_REMEMBERED`]. Batches of an older epoch are dropped, as
    /// [`ProducerStates::record`] drops them when the epoch moves.
    pub fn merge_older(&mut self, older: ProducerStates) {
        for (producer_id, old) in older.producers {
            match self.producers.entry(producer_id) {
                std::collections::hash_map::Entry::Vacant(vacant) => {
                    vacant.insert(old);
                }
                std::collections::hash_map::Entry::Occupied(mut occupied) => {
                    let entry = occupied.get_mut();
                    entry.last_append_ms = entry.last_append_ms.max(old.last_append_ms);
                    if entry.epoch != old.epoch {
                        continue;
                    }
                    for stored in old.batches.into_iter().rev() {
                        if entry.batches.len() == BATCHES_REMEMBERED {
                            break;
                        }
                        entry.batches.push_front(stored);
                    }
                }
            }
        }
    }

    /// Records that `batch` was stored at `base_offset..=last_offset` at
    /// `append_ms` (the broker's wall clock).
    pub fn record(
        &mut self,
        batch: &SequencedBatch,
        base_offset: u64,
        last_offset: u64,
        append_ms: i64,
    ) {
        debug_assert!(base_offset <= last_offset);
        let entry = self
            .producers
            .entry(batch.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: batch.producer_epoch,
                last_append_ms: append_ms,
                batches: VecDeque::with_capacity(BATCHES_REMEMBERED),
            });
        // The clock may step back (NTP): the age never does.
        entry.last_append_ms = entry.last_append_ms.max(append_ms);
        if batch.producer_epoch != entry.epoch {
            entry.epoch = batch.producer_epoch;
            entry.batches.clear();
        }
        if entry.batches.len() == BATCHES_REMEMBERED {
            entry.batches.pop_front();
        }
        entry.batches.push_back(StoredRange {
            first_sequence: batch.first_sequence,
            last_sequence: batch.last_sequence,
            base_offset,
            last_offset,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ahead_is_later_within_half_the_sequence_space_and_wraps() {
        assert!(is_ahead(5, 0));
        assert!(!is_ahead(0, 0));
        assert!(!is_ahead(3, 5), "an old sequence is behind, not ahead");
        assert!(is_ahead(2, i32::MAX - 1), "wrapped past i32::MAX to 0");
        assert!(!is_ahead(i32::MAX - 1, 2));
    }

    fn batch(epoch: i16, first: i32, count: i32) -> SequencedBatch {
        SequencedBatch {
            producer_id: 9,
            producer_epoch: epoch,
            first_sequence: first,
            last_sequence: first + (count - 1),
        }
    }

    #[test]
    fn idle_producers_expire_and_come_back_as_new() {
        let mut states = ProducerStates::default();
        states.record(&batch(0, 0, 3), 0, 2, 1_000);
        let recent = SequencedBatch {
            producer_id: 10,
            ..batch(0, 0, 1)
        };
        states.record(&recent, 3, 3, 5_000);
        // Producer 9 last appended at 1 000, producer 10 at 5 000.
        assert_eq!(
            states.remove_expired(4_000, 3_000),
            0,
            "exactly at the limit stays"
        );
        assert_eq!(states.remove_expired(4_001, 3_000), 1);
        assert_eq!(states.len(), 1);
        assert_eq!(states.iter().next().map(|(id, ..)| id), Some(10));
        // Forgotten: a batch continuing its old sequence must start again at 0.
        assert_eq!(
            states.check(&batch(0, 3, 1)),
            Err(SequenceError::OutOfOrder { expected: 0 })
        );
        assert_eq!(states.check(&batch(0, 0, 1)), Ok(SequenceCheck::Append));
        assert_eq!(states.remove_expired(i64::MAX, 0), 1);
        assert_eq!(states.len(), 0);
    }

    #[test]
    fn the_age_is_the_latest_append_time() {
        let mut states = ProducerStates::default();
        states.record(&batch(0, 0, 1), 0, 0, 9_000);
        // A clock that stepped back does not make the producer older.
        states.record(&batch(0, 1, 1), 1, 1, 1_000);
        assert_eq!(states.iter().next().map(|(_, _, t, _)| t), Some(9_000));
        let mut older = ProducerStates::default();
        older.record(&batch(0, 0, 1), 0, 0, 1_000);
        let mut newer = ProducerStates::default();
        newer.record(&batch(0, 1, 1), 1, 1, 9_000);
        older.merge_older(newer);
        assert_eq!(older.iter().next().map(|(_, _, t, _)| t), Some(9_000));
    }

    #[test]
    fn retried_batch_is_a_duplicate_with_original_offsets() {
        let mut states = ProducerStates::default();
        let first = batch(0, 0, 10);
        assert_eq!(states.check(&first), Ok(SequenceCheck::Append));
        states.record(&first, 100, 109, 0);
        let second = batch(0, 10, 5);
        assert_eq!(states.check(&second), Ok(SequenceCheck::Append));
        states.record(&second, 110, 114, 0);
        assert_eq!(
            states.check(&first),
            Ok(SequenceCheck::Duplicate(StoredRange {
                first_sequence: 0,
                last_sequence: 9,
                base_offset: 100,
                last_offset: 109
            }))
        );
    }

    #[test]
    fn gap_in_sequence_is_out_of_order() {
        let mut states = ProducerStates::default();
        states.record(&batch(0, 0, 10), 0, 9, 0);
        assert_eq!(
            states.check(&batch(0, 11, 1)),
            Err(SequenceError::OutOfOrder { expected: 10 })
        );
    }

    #[test]
    fn old_epoch_is_fenced_and_new_epoch_restarts_at_zero() {
        let mut states = ProducerStates::default();
        states.record(&batch(2, 0, 3), 0, 2, 0);
        assert_eq!(
            states.check(&batch(1, 3, 1)),
            Err(SequenceError::Fenced { current_epoch: 2 })
        );
        assert_eq!(
            states.check(&batch(3, 5, 1)),
            Err(SequenceError::OutOfOrder { expected: 0 })
        );
        assert_eq!(states.check(&batch(3, 0, 1)), Ok(SequenceCheck::Append));
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let mut states = ProducerStates::default();
        for i in 0..6 {
            states.record(&batch(0, i, 1), i as u64, i as u64, 0);
        }
        assert_eq!(
            states.check(&batch(0, 0, 1)),
            Err(SequenceError::OutOfOrder { expected: 6 })
        );
        assert!(matches!(
            states.check(&batch(0, 1, 1)),
            Ok(SequenceCheck::Duplicate(_))
        ));
    }

    #[test]
    fn merging_an_older_stretch_fills_batches_and_adds_producers() {
        let mut newer = ProducerStates::default();
        for i in 3..5 {
            newer.record(&batch(0, i, 1), i as u64, i as u64, 0);
        }
        let mut older = ProducerStates::default();
        for i in 0..3 {
            older.record(&batch(0, i, 1), i as u64, i as u64, 0);
        }
        let other = SequencedBatch {
            producer_id: 10,
            ..batch(0, 0, 1)
        };
        older.record(&other, 7, 7, 0);
        newer.merge_older(older);
        assert_eq!(newer.len(), 2);
        let mut expected = ProducerStates::default();
        for i in 0..5 {
            expected.record(&batch(0, i, 1), i as u64, i as u64, 0);
        }
        expected.record(&other, 7, 7, 0);
        assert_eq!(newer, expected);
    }

    #[test]
    fn merging_keeps_only_five_and_ignores_an_older_epoch() {
        let mut newer = ProducerStates::default();
        for i in 2..6 {
            newer.record(&batch(1, i, 1), i as u64, i as u64, 0);
        }
        let mut older = ProducerStates::default();
        older.record(&batch(0, 0, 1), 0, 0, 0);
        newer.merge_older(older);
        assert_eq!(
            newer.check(&batch(1, 0, 1)),
            Err(SequenceError::OutOfOrder { expected: 6 }),
            "epoch 0 batches were not merged into epoch 1"
        );
        let mut older = ProducerStates::default();
        for i in 0..2 {
            older.record(&batch(1, i, 1), i as u64, i as u64, 0);
        }
        newer.merge_older(older);
        assert!(matches!(
            newer.check(&batch(1, 1, 1)),
            Ok(SequenceCheck::Duplicate(_))
        ));
        assert_eq!(
            newer.check(&batch(1, 0, 1)),
            Err(SequenceError::OutOfOrder { expected: 6 }),
            "only the newest five are remembered"
        );
    }

    #[test]
    fn restore_keeps_the_last_five() {
        let ranges: Vec<StoredRange> = (0..7)
            .map(|i| StoredRange {
                first_sequence: i,
                last_sequence: i,
                base_offset: i as u64,
                last_offset: i as u64,
            })
            .collect();
        let mut states = ProducerStates::default();
        states.restore(9, 0, 1_000, &ranges);
        let (_, _, _, kept) = states.iter().next().unwrap();
        assert_eq!(kept.len(), BATCHES_REMEMBERED);
        assert_eq!(kept.front().map(|r| r.first_sequence), Some(2));
        assert_eq!(states.check(&batch(0, 7, 1)), Ok(SequenceCheck::Append));
    }

    #[test]
    fn increment_wraps_like_kafka() {
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
        assert_eq!(increment_sequence(5, 0), 5);
    }

    #[test]
    fn sequence_wraps_after_i32_max() {
        let mut states = ProducerStates::default();
        states.record(&batch(0, i32::MAX, 1), 0, 0, 0);
        assert_eq!(states.check(&batch(0, 0, 1)), Ok(SequenceCheck::Append));
    }
}
