//! Under an interval fsync policy (and `never`) a roll does not fsync the sealed segment
//! under the writer lock: the append that rolled fsyncs it after releasing the lock, and
//! only then moves the recovery point past it. Shown by order, not timing: while the
//! rolling append stands before that fsync, the power-loss simulator has seen no fsync of
//! the sealed log, another append completes, and the recovery point has not moved; once
//! released, the fsync comes first and the recovery point follows.

mod log_support;

use std::time::Duration;

use log_support::*;
use weir_log::fault::power_loss;
use weir_log::pause_point::{pause_at, PausePoint};
use weir_log::{FsyncPolicy, PartitionLog};

/// A bound on waits that only a deadlock (the bug under test) can reach.
const STUCK: Duration = Duration::from_secs(60);

#[test]
fn appends_go_on_while_the_sealed_segment_is_fsynced() {
    let dir = tempfile::tempdir().unwrap();
    let partition = dir.path().join("p");
    let guard = power_loss::arm(&partition).unwrap();
    let mut config = tiny_config();
    // No interval flush during the test: only the roll's fsync.
    config.fsync = FsyncPolicy::IntervalMs(u64::MAX / 2);
    let log = PartitionLog::open(&partition, config).unwrap();
    let pause = pause_at(&partition, PausePoint::BeforeSealedFsync);
    let sealed_fsync = "fdatasync 00000000000000000000.log";
    let (synced_while_paused, appended, point_while_paused, new_base) =
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let mut i = 0;
                while log.segment_count() == 1 {
                    log.append(&mut batch_of(i, 2, 60, 0), 0).unwrap();
                    i += 1;
                }
            });
            let reached = pause.wait_reached(STUCK);
            // Observed while the rolling append stands before the fsync; released before
            // any assertion, so a failure cannot leave the thread waiting.
            let synced = guard.find_event(0, sealed_fsync);
            let end_before = log.log_end_offset();
            let appended = reached
                && log.append(&mut batch_of(99, 2, 60, 0), 0).is_ok()
                && log.log_end_offset() == end_before + 2;
            let point = log.recovery_point();
            let new_base = base_of(segment_logs(&partition).last().unwrap());
            pause.release();
            assert!(reached, "the rolling append never paused");
            (synced, appended, point, new_base)
        });
    assert_eq!(
        synced_while_paused,
        None,
        "the sealed segment was fsynced before the writer lock was released:\n{}",
        guard.history(20)
    );
    assert!(appended, "an append waited for the sealed segment's fsync");
    assert!(new_base > 0);
    assert!(
        point_while_paused < new_base,
        "the recovery point moved past a segment not yet fsynced"
    );
    let synced = guard
        .find_event(0, sealed_fsync)
        .expect("fsynced once released");
    let moved = guard
        .find_event(synced, "rename recovery-point.tmp -> recovery-point")
        .expect("the recovery-point file moved after the fsync");
    assert!(moved > synced);
    assert!(log.recovery_point() >= new_base);
}

fn base_of(log: &std::path::Path) -> u64 {
    weir_log::inspect::parse_segment_file_name(log.file_name().unwrap().to_str().unwrap())
        .unwrap()
        .0
}

#[test]
fn a_roll_moves_the_recovery_point_to_the_new_segment() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = tiny_config();
    config.fsync = FsyncPolicy::IntervalMs(u64::MAX / 2);
    let log = PartitionLog::open(dir.path(), config).unwrap();
    while log.segment_count() < 2 {
        log.append(&mut batch_of(0, 2, 60, 0), 0).unwrap();
    }
    let active_base = base_of(&segment_logs(dir.path()).pop().unwrap());
    assert_eq!(log.recovery_point(), active_base);
}
