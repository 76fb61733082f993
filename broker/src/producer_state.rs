//! Idempotent-producer state of one partition: for each producer id, its
//! epoch and the last few batches it appended (sequence range and offsets).
//!
//! A retried batch whose sequence range matches a remembered batch is
//! acknowledged with the original offsets and not written again; a batch that
//! does not continue the sequence is refused. Five batches are remembered, as
//! Kafka does, which is what a producer with up to five requests in flight
//! needs.

use std::collections::{HashMap, VecDeque};

/// Batches remembered per producer.
pub const BATCHES_REMEMBERED: usize = 5;

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

#[derive(Debug)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<StoredRange>,
}

/// The state of every producer that wrote to one partition since the broker started.
#[derive(Debug, Default)]
pub struct ProducerStates {
    producers: HashMap<i64, ProducerEntry>,
}

/// `sequence + increment`, wrapping past `i32::MAX` to 0 as Kafka's
/// sequences do. `increment` is at least 0.
pub fn increment_sequence(sequence: i32, increment: i32) -> i32 {
    debug_assert!(sequence >= 0 && increment >= 0);
    if sequence > i32::MAX - increment {
        increment - (i32::MAX - sequence) - 1
    } else {
        sequence + increment
    }
}

impl ProducerStates {
    /// Decides whether `batch` is new, a duplicate, or refused. Does not change state.
    pub fn check(&self, batch: &SequencedBatch) -> Result<SequenceCheck, SequenceError> {
        let Some(entry) = self.producers.get(&batch.producer_id) else {
            // Unknown producer: state is kept in memory only, so after a broker
            // restart a producer continues with whatever sequence it has.
            return Ok(SequenceCheck::Append);
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

    /// Records that `batch` was stored at `base_offset..=last_offset`.
    pub fn record(&mut self, batch: &SequencedBatch, base_offset: u64, last_offset: u64) {
        debug_assert!(base_offset <= last_offset);
        let entry = self
            .producers
            .entry(batch.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: batch.producer_epoch,
                batches: VecDeque::with_capacity(BATCHES_REMEMBERED),
            });
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

    fn batch(epoch: i16, first: i32, count: i32) -> SequencedBatch {
        SequencedBatch {
            producer_id: 9,
            producer_epoch: epoch,
            first_sequence: first,
            last_sequence: first + (count - 1),
        }
    }

    #[test]
    fn retried_batch_is_a_duplicate_with_original_offsets() {
        let mut states = ProducerStates::default();
        let first = batch(0, 0, 10);
        assert_eq!(states.check(&first), Ok(SequenceCheck::Append));
        states.record(&first, 100, 109);
        let second = batch(0, 10, 5);
        assert_eq!(states.check(&second), Ok(SequenceCheck::Append));
        states.record(&second, 110, 114);
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
        states.record(&batch(0, 0, 10), 0, 9);
        assert_eq!(
            states.check(&batch(0, 11, 1)),
            Err(SequenceError::OutOfOrder { expected: 10 })
        );
    }

    #[test]
    fn old_epoch_is_fenced_and_new_epoch_restarts_at_zero() {
        let mut states = ProducerStates::default();
        states.record(&batch(2, 0, 3), 0, 2);
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
            states.record(&batch(0, i, 1), i as u64, i as u64);
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
    fn increment_wraps_like_kafka() {
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
        assert_eq!(increment_sequence(5, 0), 5);
    }

    #[test]
    fn sequence_wraps_after_i32_max() {
        let mut states = ProducerStates::default();
        states.record(&batch(0, i32::MAX, 1), 0, 0);
        assert_eq!(states.check(&batch(0, 0, 1)), Ok(SequenceCheck::Append));
    }
}
