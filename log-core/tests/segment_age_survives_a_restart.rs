//! `segment.ms` counts from the active segment's first batch (its timestamp, as in Kafka),
//! not from when the log was opened: a restart does not make an old segment young again.

mod log_support;

use std::time::{SystemTime, UNIX_EPOCH};

use log_support::*;
use weir_log::PartitionLog;

const HOUR_MS: i64 = 3_600_000;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn config() -> weir_log::LogConfig {
    let mut config = tiny_config();
    config.segment_bytes = 1 << 20;
    config.index_bytes_max = 64 * 1024;
    config.segment_ms = HOUR_MS as u64;
    config
}

#[test]
fn an_active_segment_older_than_segment_ms_rolls_at_the_first_append_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), config()).unwrap();
    log.append(&mut batch_of(0, 1, 10, now_ms() - 2 * HOUR_MS), 0)
        .unwrap();
    log.close().unwrap();

    let log = PartitionLog::open(dir.path(), config()).unwrap();
    log.append(&mut batch_of(1, 1, 10, now_ms()), 0).unwrap();
    assert_eq!(log.segment_count(), 2);
}

#[test]
fn a_young_active_segment_does_not_roll_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), config()).unwrap();
    log.append(&mut batch_of(0, 1, 10, now_ms()), 0).unwrap();
    drop(log);

    let log = PartitionLog::open(dir.path(), config()).unwrap();
    log.append(&mut batch_of(1, 1, 10, now_ms()), 0).unwrap();
    assert_eq!(log.segment_count(), 1);
}
