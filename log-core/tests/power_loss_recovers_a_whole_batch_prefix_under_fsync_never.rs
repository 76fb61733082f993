//! Under `fsync = never` (or every N ms) a power cut loses what was not yet synced, and
//! only that: the crash image always opens, holds a whole-batch prefix of what was appended
//! (byte for byte, offsets contiguous), and keeps everything below the recovery point the
//! log reported — an explicit flush, a roll's fsync of the sealed segment, a reopen. See
//! `crash_model` for the model and `WEIR_CRASH_CASES` / `WEIR_CRASH_SEED`.

mod crash_model;
mod log_support;

use weir_log::FsyncPolicy;

#[test]
fn power_loss_recovers_a_whole_batch_prefix_under_fsync_never() {
    let scenario = crash_model::Scenario {
        fsync: &[FsyncPolicy::Never, FsyncPolicy::IntervalMs(1)],
        compact: false,
        segment_bytes: &[1024, 2048, 8192],
    };
    crash_model::run_cases(
        "power_loss_recovers_a_whole_batch_prefix_under_fsync_never",
        48,
        &scenario,
    );
}
