//! A power cut during compaction (`cleanup.policy=compact`, with retention and truncation
//! mixed in) leaves each segment as it was before the pass or as the pass wrote it: every
//! batch served is one of the two, nothing overlaps, and no record the pass keeps is lost —
//! under `fsync = always` nothing acknowledged at all, under `never` nothing below the
//! recovery point. See `crash_model` for the model and `WEIR_CRASH_CASES` / `WEIR_CRASH_SEED`.

mod crash_model;
mod log_support;

use weir_log::FsyncPolicy;

#[test]
fn power_loss_during_compaction_leaves_a_state_before_or_after() {
    let scenario = crash_model::Scenario {
        fsync: &[FsyncPolicy::Always, FsyncPolicy::Never],
        compact: true,
        segment_bytes: &[1024, 2048],
    };
    crash_model::run_cases(
        "power_loss_during_compaction_leaves_a_state_before_or_after",
        48,
        &scenario,
    );
}
