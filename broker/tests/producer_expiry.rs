//! Idle idempotent producers are forgotten after `producer.id.expiration.ms`,
//! measured from the largest timestamp they wrote; the expiry survives a
//! restart (the snapshot keeps each producer's age).

mod common;

use weir_broker::{Partition, PRODUCER_ID_EXPIRATION_MS_DEFAULT};
use weir_log::LogConfig;

const DAY_MS: i64 = 86_400_000;

#[test]
fn idle_producers_expire_on_clean_and_stay_expired_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let open = || Partition::open(dir.path(), "t", 0, LogConfig::default(), 0).unwrap();
    let partition = open();
    // `sequenced_batch` stamps records at 1 000 ms: producer 7 is old. Producer 8
    // writes "now" (a day later).
    let mut old = common::sequenced_batch(7, 0, 0, &["a", "b"]).to_vec();
    partition.append(&mut old).unwrap();
    let mut recent = {
        let mut builder = weir_log::batch::BatchBuilder::new(weir_log::batch::Compression::None)
            .with_producer(8, 0, 0);
        builder.push(DAY_MS, None, Some(b"c"), &[]);
        builder.build().unwrap().to_vec()
    };
    partition.append(&mut recent).unwrap();
    assert_eq!(partition.producer_count().unwrap(), 2);

    let expiration = PRODUCER_ID_EXPIRATION_MS_DEFAULT;
    let cleaned = partition.clean(DAY_MS + 1_000, expiration).unwrap();
    assert_eq!(cleaned.producers_expired, 0, "exactly one day idle stays");
    let cleaned = partition.clean(DAY_MS + 1_001, expiration).unwrap();
    assert_eq!(cleaned.producers_expired, 1);
    assert_eq!(partition.producer_count().unwrap(), 1);

    // Producer 7 is forgotten: a retry of its first batch is appended again,
    // where producer 8's retry is still recognised.
    let mut retry = common::sequenced_batch(7, 0, 0, &["a", "b"]).to_vec();
    assert!(!partition.append(&mut retry).unwrap().duplicate);
    let mut retry = {
        let mut builder = weir_log::batch::BatchBuilder::new(weir_log::batch::Compression::None)
            .with_producer(8, 0, 0);
        builder.push(DAY_MS, None, Some(b"c"), &[]);
        builder.build().unwrap().to_vec()
    };
    assert!(partition.append(&mut retry).unwrap().duplicate);

    // The snapshot written at close keeps each producer's age: after a restart
    // producer 8 (last write a day in) expires on the same schedule.
    partition.close().unwrap();
    let partition = open();
    assert_eq!(partition.producer_count().unwrap(), 2);
    let cleaned = partition.clean(2 * DAY_MS + 1, expiration).unwrap();
    assert_eq!(cleaned.producers_expired, 2);
    assert_eq!(partition.producer_count().unwrap(), 0);
    partition.close().unwrap();
}
