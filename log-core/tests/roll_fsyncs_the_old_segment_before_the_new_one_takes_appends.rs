//! A roll makes the old segment durable (indexes sealed and fsynced, log fsynced) before
//! the new segment takes a byte, so a sealed segment is never less durable than anything
//! after it. With the fsyncs of the roll failing one after another: whichever fails, the
//! append that rolled fails, poisons the log, and the new segment holds no byte of it.

mod log_support;

use log_support::*;
use weir_log::fault::{inject, FaultPlan, IoCall};
use weir_log::{FsyncPolicy, LogError, PartitionLog};

#[test]
fn a_failed_fsync_of_the_old_segment_leaves_the_new_segment_empty() {
    for fsyncs_before_failure in 0..8u64 {
        let dir = tempfile::tempdir().unwrap();
        let mut config = tiny_config();
        // No fsync but the roll's.
        config.fsync = FsyncPolicy::IntervalMs(u64::MAX / 2);
        let log = PartitionLog::open(dir.path(), config).unwrap();
        let fault = inject(
            dir.path(),
            FaultPlan::new(&[IoCall::Fsync]).after(fsyncs_before_failure),
        );
        let mut rolled_ok = false;
        for i in 0..100u64 {
            let end_before = log.log_end_offset();
            let segments_before = log.segment_count();
            match log.append(&mut batch_of(i, 2, 60, 0), 0) {
                Ok(_) if log.segment_count() > segments_before => {
                    rolled_ok = true;
                    break;
                }
                Ok(_) => {}
                Err(error) => {
                    assert!(matches!(error, LogError::Poisoned { .. }), "{error:?}");
                    let (_, failed) = fault.first_failure().unwrap();
                    let logs = segment_logs(dir.path());
                    let old = &logs[segments_before - 1];
                    // A failed fsync of the old segment's files is the roll's: the new
                    // segment must not have taken the append. (A later failure, of the
                    // recovery-point file, comes after the append and is not this test's.)
                    if failed.with_extension("") == old.with_extension("") {
                        assert_eq!(log.log_end_offset(), end_before);
                        if let Some(newest) = logs.get(segments_before) {
                            assert_eq!(
                                std::fs::metadata(newest).unwrap().len(),
                                0,
                                "fsync {fsyncs_before_failure} of {} failed, yet the new segment took bytes",
                                failed.display()
                            );
                        }
                    }
                    break;
                }
            }
        }
        assert!(
            rolled_ok || fault.failures() == 1,
            "the roll reached fsync {fsyncs_before_failure}"
        );
    }
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
    let active = segment_logs(dir.path()).pop().unwrap();
    let active_base =
        weir_log::inspect::parse_segment_file_name(active.file_name().unwrap().to_str().unwrap())
            .unwrap()
            .0;
    assert_eq!(log.recovery_point(), active_base);
}
