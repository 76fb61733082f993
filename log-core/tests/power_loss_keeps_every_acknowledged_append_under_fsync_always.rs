//! Under `fsync = always` a power cut at any moment — during an append that rolls, a
//! retention pass, a truncation, a clean close or a recovery — loses no acknowledged
//! append: the crash image opens to exactly the acknowledged batches, byte for byte at their
//! offsets (see `crash_model` for the model and `WEIR_CRASH_CASES` / `WEIR_CRASH_SEED`).

mod crash_model;
mod log_support;

use weir_log::FsyncPolicy;

#[test]
fn power_loss_keeps_every_acknowledged_append_under_fsync_always() {
    let scenario = crash_model::Scenario {
        fsync: &[FsyncPolicy::Always],
        compact: false,
        segment_bytes: &[1024, 2048, 8192],
    };
    crash_model::run_cases(
        "power_loss_keeps_every_acknowledged_append_under_fsync_always",
        48,
        &scenario,
    );
}
