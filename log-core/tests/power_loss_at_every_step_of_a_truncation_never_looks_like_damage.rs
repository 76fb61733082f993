//! A truncation cuts bytes below the recovery point the files record (a clean close
//! records the log end), so it lowers the recovery-point file before it removes or cuts
//! anything. Otherwise a power cut part-way would leave a log ending below what the file
//! says was fsynced, which the open refuses as `DamagedBelowRecoveryPoint`. Here a power
//! cut is simulated after every event of a truncation (several crash images each): every
//! image opens, to a whole-batch prefix of the old log reaching at least the truncation's
//! new end.

mod log_support;

use std::path::Path;

use log_support::*;
use weir_log::fault::power_loss;
use weir_log::{FsyncPolicy, LogConfig, PartitionLog};

const SEEDS_PER_EVENT: u64 = 4;

fn config() -> LogConfig {
    let mut config = tiny_config();
    config.fsync = FsyncPolicy::Never;
    config
}

fn scratch() -> tempfile::TempDir {
    // The simulator decides what survives; a memory file system spares real fsyncs.
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    }
}

/// Builds a closed log of several segments in `dir` and returns its batches as stored.
fn build(dir: &Path) -> Vec<Vec<u8>> {
    let log = PartitionLog::open(dir, config()).unwrap();
    for i in 0..24u64 {
        log.append(&mut batch_of(i, 2, 60, 1000 + i as i64), 0)
            .unwrap();
    }
    assert!(log.segment_count() >= 4);
    let batches = read_all_batches(&log);
    log.close().unwrap();
    batches
}

/// Runs the truncation with a crash image scheduled `event` events into it (None: no
/// image, to count the events); returns the events the truncation made.
fn truncate_with_image(root: &Path, target: u64, image: Option<(u64, u64)>) -> u64 {
    let dir = root.join("partition");
    let guard = power_loss::arm(&dir).unwrap();
    build(&dir);
    let log = PartitionLog::open(&dir, config()).unwrap();
    let start = guard.events();
    if let Some((event, seed)) = image {
        guard.crash_after_event(start + event, seed, &root.join("image"));
    }
    log.truncate_to(target).unwrap();
    let made = guard.events() - start;
    if image.is_some() {
        let taken = guard.take_crashed().expect("the image was taken");
        if let Err(why) = taken {
            panic!("{why}");
        }
    }
    made
}

#[test]
fn power_loss_at_every_step_of_a_truncation_never_looks_like_damage() {
    let root = scratch();
    let original = build(&root.path().join("original"));
    // Into the second segment, between batches: later segments go, this one is cut.
    let target = 2 * 6;
    let events = truncate_with_image(&root.path().join("count"), target, None);
    assert!(events > 5, "a truncation makes several events: {events}");
    let mut images = 0;
    for event in 1..=events {
        for s in 0..SEEDS_PER_EVENT {
            let seed = event * 1000 + s;
            let case = scratch();
            truncate_with_image(case.path(), target, Some((event, seed)));
            let image = case.path().join("image");
            let reopened = PartitionLog::open(&image, config()).unwrap_or_else(|e| {
                panic!("image after event {event} of the truncation (seed {seed}): {e}")
            });
            let end = reopened.log_end_offset();
            assert!(
                end >= target,
                "image after event {event} (seed {seed}) ends at {end}, below the cut {target}"
            );
            let served = read_all_batches(&reopened);
            assert_eq!(
                served[..],
                original[..served.len()],
                "image after event {event} (seed {seed}) is not a prefix of the old log"
            );
            images += 1;
        }
    }
    assert_eq!(images, events * SEEDS_PER_EVENT);
}
