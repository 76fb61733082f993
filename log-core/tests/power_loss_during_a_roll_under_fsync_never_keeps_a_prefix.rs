//! Under `fsync = never`, a power cut while an append rolls the segment must still leave a
//! log that opens to a whole-batch prefix. Today it may not: the roll writes the append into
//! the new segment before the segment it sealed is fsynced (that happens after the append),
//! so the disk can keep the new segment's bytes and lose or tear the sealed one's tail. Open
//! then refuses a torn tail ("a bad batch is followed by segment …"), or, when whole
//! batches were lost, serves a log with a hole before the new segment. The other
//! power-loss tests skip images taken between that write and that fsync for that reason;
//! this one checks them all.

mod crash_model;
mod log_support;

use weir_log::FsyncPolicy;

#[test]
#[ignore = "known bug: a roll does not fsync the sealed segment before writing the new one, so a power cut can lose the sealed tail under later data (open refuses, or serves a hole); being fixed with the recovery changes"]
fn power_loss_during_a_roll_under_fsync_never_keeps_a_prefix() {
    let scenario = crash_model::Scenario {
        fsync: &[FsyncPolicy::Never, FsyncPolicy::IntervalMs(1)],
        compact: false,
        segment_bytes: &[1024, 2048],
        check_rolling_appends: true,
    };
    crash_model::run_cases(
        "power_loss_during_a_roll_under_fsync_never_keeps_a_prefix",
        200,
        &scenario,
    );
}
