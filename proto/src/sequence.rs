//! Idempotent-producer sequence numbers, as the producer assigns them and the
//! broker checks them.

/// Batches a broker remembers per producer and partition, and so the most a
/// producer may have in flight to one partition (Kafka's five): any retry the
/// producer sends is then still recognised as a duplicate.
pub const BATCHES_REMEMBERED: usize = 5;

/// `sequence + increment`, wrapping past `i32::MAX` to 0 as Kafka's
/// sequence numbers do.
pub fn increment_sequence(sequence: i32, increment: i32) -> i32 {
    debug_assert!(sequence >= 0 && increment >= 0);
    if sequence > i32::MAX - increment {
        increment - (i32::MAX - sequence) - 1
    } else {
        sequence + increment
    }
}
