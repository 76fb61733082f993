//! Under `fsync = always` an append returns once everything before it is durable, so a roll
//! makes the old segment durable (indexes sealed and fsynced, log fsynced) before the new
//! segment takes a byte. With the fsyncs of the rolling append failing one after another:
//! whichever of the old segment's fails, the append fails, poisons the log, and the new
//! segment holds no byte of it. (Under the other policies the sealed segment's fsync
//! follows the append, outside the writer lock: see
//! `roll_fsyncs_the_sealed_segment_outside_the_writer_lock`.)

mod log_support;

use log_support::*;
use weir_log::fault::{inject, FaultPlan, IoCall};
use weir_log::{FsyncPolicy, LogConfig, LogError, PartitionLog};

fn always_config() -> LogConfig {
    let mut config = tiny_config();
    config.fsync = FsyncPolicy::Always;
    config
}

/// Appends before the first roll, counted on a log of its own.
fn appends_before_roll() -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), always_config()).unwrap();
    let mut count = 0;
    while log.segment_count() == 1 {
        log.append(&mut batch_of(count, 2, 60, 0), 0).unwrap();
        count += 1;
    }
    count - 1
}

#[test]
fn a_failed_fsync_of_the_old_segment_leaves_the_new_segment_empty() {
    let before_roll = appends_before_roll();
    let mut old_segment_failures = 0;
    for fsyncs_before_failure in 0..8u64 {
        let dir = tempfile::tempdir().unwrap();
        let log = PartitionLog::open(dir.path(), always_config()).unwrap();
        for i in 0..before_roll {
            log.append(&mut batch_of(i, 2, 60, 0), 0).unwrap();
        }
        assert_eq!(log.segment_count(), 1);
        let fault = inject(
            dir.path(),
            FaultPlan::new(&[IoCall::Fsync]).after(fsyncs_before_failure),
        );
        let end_before = log.log_end_offset();
        let error = match log.append(&mut batch_of(before_roll, 2, 60, 0), 0) {
            Ok(_) => {
                assert_eq!(log.segment_count(), 2, "this append rolls");
                continue;
            }
            Err(error) => error,
        };
        assert!(matches!(error, LogError::Poisoned { .. }), "{error:?}");
        let (_, failed) = fault.first_failure().unwrap();
        let logs = segment_logs(dir.path());
        if failed.with_extension("") != logs[0].with_extension("") {
            // The new segment's own fsync, or the recovery-point file's: after the write.
            continue;
        }
        old_segment_failures += 1;
        assert_eq!(log.log_end_offset(), end_before);
        if let Some(newest) = logs.get(1) {
            assert_eq!(
                std::fs::metadata(newest).unwrap().len(),
                0,
                "fsync {fsyncs_before_failure} of {} failed, yet the new segment took bytes",
                failed.display()
            );
        }
    }
    // Both indexes and the log of the old segment.
    assert!(old_segment_failures >= 3, "{old_segment_failures}");
}
