//! Under `fsync = never`, a power cut while an append rolls the segment must still leave a
//! log that opens to a whole-batch prefix. The roll fsyncs the sealed segment only after the
//! append (as Kafka flushes it in the background), so the disk can keep the new segment's
//! bytes and lose or tear the sealed one's tail: recovery cuts the torn tail, or sees the
//! sealed segment end short of the next one, and drops the later segments either way. This
//! case runs many small segments so that most images fall inside a roll.

mod crash_model;
mod log_support;

use weir_log::FsyncPolicy;

#[test]
fn power_loss_during_a_roll_under_fsync_never_keeps_a_prefix() {
    let scenario = crash_model::Scenario {
        fsync: &[FsyncPolicy::Never, FsyncPolicy::IntervalMs(1)],
        compact: false,
        segment_bytes: &[1024, 2048],
    };
    crash_model::run_cases(
        "power_loss_during_a_roll_under_fsync_never_keeps_a_prefix",
        200,
        &scenario,
    );
}
