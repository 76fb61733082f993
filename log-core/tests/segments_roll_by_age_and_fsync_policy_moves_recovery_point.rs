//! The active segment rolls once it is `segment.ms` old; `FsyncPolicy::Always` makes every
//! acknowledged append durable (the recovery point follows the log end), `flush` does the
//! same on demand, and `Never` leaves the active segment's tail to a later flush.

mod log_support;

use std::time::Duration;

use log_support::*;
use weir_log::{FsyncPolicy, PartitionLog};

#[test]
fn the_active_segment_rolls_by_age() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = tiny_config();
    config.segment_bytes = 1 << 20;
    config.segment_ms = 1;
    let log = PartitionLog::open(dir.path(), config).unwrap();
    log.append(&mut batch_of(0, 1, 10, 0), 0).unwrap();
    std::thread::sleep(Duration::from_millis(5));
    log.append(&mut batch_of(1, 1, 10, 0), 0).unwrap();
    assert_eq!(log.segment_count(), 2);
    assert_eq!(segment_logs(dir.path()).len(), 2);
}

#[test]
fn fsync_always_moves_the_recovery_point_with_every_append() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = tiny_config();
    config.fsync = FsyncPolicy::Always;
    let log = PartitionLog::open(dir.path(), config).unwrap();
    for i in 0..10 {
        log.append(&mut batch_of(i, 2, 50, 0), 0).unwrap();
        assert_eq!(log.recovery_point(), log.log_end_offset());
    }
}

#[test]
fn fsync_never_leaves_the_tail_to_flush() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = tiny_config();
    config.segment_bytes = 1 << 20;
    let log = PartitionLog::open(dir.path(), config).unwrap();
    for i in 0..10 {
        log.append(&mut batch_of(i, 2, 50, 0), 0).unwrap();
    }
    assert_eq!(log.recovery_point(), 0);
    log.flush().unwrap();
    assert_eq!(log.recovery_point(), 20);
}
