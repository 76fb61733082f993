//! Idle idempotent producers are forgotten after `producer.id.expiration.ms`,
//! measured from the broker's clock at their last append, not from the
//! timestamps of their records (which the client chose). The age survives a
//! restart through the snapshot; a producer replayed from the log is dated
//! to the open.

mod common;

use std::sync::Arc;

use weir_broker::{Clock, ManualClock, Partition, PRODUCER_ID_EXPIRATION_MS_DEFAULT};
use weir_log::LogConfig;

const DAY_MS: i64 = 86_400_000;
const EXPIRATION_MS: u64 = PRODUCER_ID_EXPIRATION_MS_DEFAULT;

fn open(dir: &std::path::Path, clock: &Arc<ManualClock>) -> Partition {
    let clock: weir_broker::SharedClock = clock.clone();
    Partition::open_with_clock(dir, "t", 0, LogConfig::default(), 0, clock).unwrap()
}

#[test]
fn a_producer_writing_old_timestamps_stays_while_it_appends_and_goes_when_idle() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(100 * DAY_MS));
    let partition = open(dir.path(), &clock);
    // `sequenced_batch` stamps records at 1 000 ms, a hundred days before the
    // broker's clock: by record timestamps both producers are long expired.
    partition
        .append(&mut common::sequenced_batch(7, 0, 0, &["a"]).to_vec())
        .unwrap();
    partition
        .append(&mut common::sequenced_batch(8, 0, 0, &["b"]).to_vec())
        .unwrap();
    for sequence in 1..4 {
        clock.advance(DAY_MS / 2);
        partition
            .append(&mut common::sequenced_batch(7, 0, sequence, &["a"]).to_vec())
            .unwrap();
        let cleaned = partition.clean(clock.now_ms(), EXPIRATION_MS).unwrap();
        // Producer 8 has been idle half a day, a day, a day and a half.
        assert_eq!(
            cleaned.producers_expired,
            usize::from(sequence == 3),
            "after {sequence} half days only the idle producer 8 may go"
        );
    }
    assert_eq!(partition.producer_count().unwrap(), 1);
    // Producer 7 is still known: a retry of its last batch is a duplicate.
    let mut retry = common::sequenced_batch(7, 0, 3, &["a"]).to_vec();
    assert!(partition.append(&mut retry).unwrap().duplicate);
    // Producer 8 is forgotten: its retry is appended again.
    let mut retry = common::sequenced_batch(8, 0, 0, &["b"]).to_vec();
    assert!(!partition.append(&mut retry).unwrap().duplicate);

    clock.advance(DAY_MS);
    assert_eq!(
        partition
            .clean(clock.now_ms(), EXPIRATION_MS)
            .unwrap()
            .producers_expired,
        0,
        "exactly one day idle stays"
    );
    clock.advance(1);
    assert_eq!(
        partition
            .clean(clock.now_ms(), EXPIRATION_MS)
            .unwrap()
            .producers_expired,
        2
    );
    partition.close().unwrap();
}

#[test]
fn the_last_append_time_survives_a_restart_and_replayed_producers_date_from_the_open() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(100 * DAY_MS));
    let partition = open(dir.path(), &clock);
    partition
        .append(&mut common::sequenced_batch(7, 0, 0, &["a"]).to_vec())
        .unwrap();
    partition.close().unwrap();

    // From the snapshot written at close: still dated to its append.
    clock.advance(DAY_MS / 2);
    let partition = open(dir.path(), &clock);
    assert_eq!(partition.producer_count().unwrap(), 1);
    clock.advance(DAY_MS / 2 + 1);
    let cleaned = partition.clean(clock.now_ms(), EXPIRATION_MS).unwrap();
    assert_eq!(
        cleaned.producers_expired, 1,
        "a day and 1 ms after its append"
    );
    partition.close().unwrap();

    // Without a snapshot the log is replayed: the producer is dated to the open.
    std::fs::remove_file(dir.path().join("producer-state")).unwrap();
    let opened_ms = clock.now_ms();
    let partition = open(dir.path(), &clock);
    assert_eq!(partition.producer_count().unwrap(), 1);
    clock.set(opened_ms + DAY_MS);
    let cleaned = partition.clean(clock.now_ms(), EXPIRATION_MS).unwrap();
    assert_eq!(cleaned.producers_expired, 0);
    clock.advance(1);
    let cleaned = partition.clean(clock.now_ms(), EXPIRATION_MS).unwrap();
    assert_eq!(cleaned.producers_expired, 1);
    partition.close().unwrap();
}
