//! `leader-epoch-checkpoint` holds the cache across restarts in Kafka's text format, is
//! written only when an epoch starts or a cut changes it (never per append), and is
//! rebuilt from the batch headers when it is missing (a directory from before it existed)
//! or damaged; open drops entries at or past the recovered log end, so a torn tail cut by
//! recovery takes its epoch with it. A failed checkpoint write is a failed fsync: the log
//! is poisoned before any byte of the new epoch is written.

mod epoch_support;
mod log_support;

use std::path::Path;

use epoch_support::*;
use log_support::*;
use weir_log::fault::{inject, power_loss, FaultPlan, IoCall};
use weir_log::{LogError, PartitionLog};

const FILE: &str = "leader-epoch-checkpoint";

/// Epoch 1 from 0, 3 from 12, 7 from 30, over several segments; log end 36.
fn three_epochs(dir: &Path) -> PartitionLog {
    let log = PartitionLog::open(dir, tiny_config()).unwrap();
    for i in 0..12u64 {
        let epoch = [1, 1, 1, 1, 3, 3, 3, 3, 3, 3, 7, 7][i as usize];
        append_at(&log, i, 3, epoch);
    }
    assert!(log.segment_count() > 2, "{}", log.segment_count());
    assert_eq!(epochs(&log), expected());
    log
}

fn expected() -> Vec<(i32, u64)> {
    vec![(1, 0), (3, 12), (7, 30)]
}

fn file_text(dir: &Path) -> String {
    std::fs::read_to_string(dir.join(FILE)).expect("the checkpoint exists")
}

#[test]
fn survives_a_clean_close_and_a_crash_in_kafkas_format() {
    let dir = tempfile::tempdir().unwrap();
    three_epochs(dir.path()).close().unwrap();
    assert_eq!(file_text(dir.path()), "0\n3\n1 0\n3 12\n7 30\n");
    let log = PartitionLog::open(dir.path(), tiny_config()).unwrap();
    assert_eq!(epochs(&log), expected());
    append_at(&log, 50, 2, 8);
    drop(log); // no close: the process died
    let log = PartitionLog::open(dir.path(), tiny_config()).unwrap();
    assert_eq!(epochs(&log), vec![(1, 0), (3, 12), (7, 30), (8, 36)]);
    assert_eq!(log.leader_epoch_end_offset(7), Some((7, 36)));
}

#[test]
fn is_rebuilt_from_the_batch_headers_when_missing() {
    let dir = tempfile::tempdir().unwrap();
    three_epochs(dir.path()).close().unwrap();
    std::fs::remove_file(dir.path().join(FILE)).unwrap();
    let log = PartitionLog::open(dir.path(), tiny_config()).unwrap();
    assert_eq!(epochs(&log), expected());
    assert_eq!(
        file_text(dir.path()),
        "0\n3\n1 0\n3 12\n7 30\n",
        "written back"
    );
    // After retention too: the rebuilt cache starts at the log start.
    let mut config = tiny_config();
    config.retention_bytes = Some(log.size_bytes() / 2);
    log.set_config(config);
    let start = log.enforce_retention(0).unwrap().log_start_offset;
    assert!(start > 0);
    drop(log);
    std::fs::remove_file(dir.path().join(FILE)).unwrap();
    let log = PartitionLog::open(dir.path(), tiny_config()).unwrap();
    assert_eq!(epochs(&log).first().map(|e| e.1), Some(start));
    assert_eq!(epochs(&log), epochs_of_batches(&log));
}

#[test]
fn is_rebuilt_when_damaged() {
    for garbage in [
        "garbage\n",
        "",
        "0\n3\n1 0\n3 12\n",             // fewer entries than counted
        "0\n2\n7 0\n3 12\n",             // epochs out of order
        "1\n3\n1 0\n3 12\n7 30\n",       // a version Kafka never wrote
        "0\n3\n1 0\n3 twelve\n7 30\n",   // not a number
        "0\n3\n1 0\n3 12\n7 30\n9 40\n", // more entries than counted
    ] {
        let dir = tempfile::tempdir().unwrap();
        three_epochs(dir.path()).close().unwrap();
        std::fs::write(dir.path().join(FILE), garbage).unwrap();
        let log = PartitionLog::open(dir.path(), tiny_config()).unwrap();
        assert_eq!(epochs(&log), expected(), "{garbage:?}");
        assert_eq!(
            file_text(dir.path()),
            "0\n3\n1 0\n3 12\n7 30\n",
            "{garbage:?}"
        );
    }
}

#[test]
fn an_entry_at_or_past_the_recovered_log_end_is_dropped_on_open() {
    let dir = tempfile::tempdir().unwrap();
    three_epochs(dir.path()).close().unwrap();
    // What a crash after the checkpoint of a new epoch and before its batches leaves.
    std::fs::write(dir.path().join(FILE), "0\n5\n1 0\n3 12\n7 30\n8 36\n9 50\n").unwrap();
    let log = PartitionLog::open(dir.path(), tiny_config()).unwrap();
    assert_eq!(epochs(&log), expected());
    assert_eq!(log.latest_leader_epoch(), Some(7));
    assert_eq!(
        file_text(dir.path()),
        "0\n3\n1 0\n3 12\n7 30\n",
        "written back"
    );
}

#[test]
fn a_torn_tail_cut_by_recovery_takes_its_epoch_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = three_epochs(dir.path());
    let base = append_at(&log, 60, 3, 9);
    assert_eq!(epochs(&log).last(), Some(&(9, base)));
    drop(log);
    // The power went while the epoch-9 batch was reaching the disk.
    let last = segment_logs(dir.path()).pop().unwrap();
    let len = std::fs::metadata(&last).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&last).unwrap();
    file.set_len(len - 10).unwrap();
    let log = PartitionLog::open(dir.path(), tiny_config()).unwrap();
    assert_eq!(log.log_end_offset(), base);
    assert_eq!(epochs(&log), expected());
    assert_eq!(file_text(dir.path()), "0\n3\n1 0\n3 12\n7 30\n");
}

/// How many calls the engine made on the checkpoint file (and its temp file) so far.
fn checkpoint_calls(guard: &power_loss::PowerLossGuard) -> usize {
    guard
        .history(usize::MAX)
        .lines()
        .filter(|line| line.contains(FILE))
        .count()
}

#[test]
fn is_written_only_when_an_epoch_starts_never_per_append() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("partition");
    let guard = power_loss::arm(&dir).unwrap();
    let log = PartitionLog::open(&dir, tiny_config()).unwrap();
    let at_open = checkpoint_calls(&guard);
    assert!(at_open > 0, "a new directory gets its (empty) checkpoint");
    append_at(&log, 0, 1, 4);
    let first_epoch = checkpoint_calls(&guard);
    assert!(first_epoch > at_open, "epoch 4 started");
    for i in 1..40 {
        append_at(&log, i, 1, 4);
    }
    let replicated = leader_batch(99, 2, log.log_end_offset(), 4);
    log.append_replicated(&replicated).unwrap();
    assert!(log.segment_count() > 1, "rolls happened too");
    assert_eq!(checkpoint_calls(&guard), first_epoch, "appends in epoch 4");
    append_at(&log, 100, 1, 5);
    assert!(checkpoint_calls(&guard) > first_epoch, "epoch 5 started");
    let before_cut = checkpoint_calls(&guard);
    log.truncate_to(log.log_end_offset() - 1).unwrap();
    assert!(
        checkpoint_calls(&guard) > before_cut,
        "the cut removed epoch 5"
    );
    let before_noop_cut = checkpoint_calls(&guard);
    log.truncate_to(log.log_end_offset() - 1).unwrap();
    assert_eq!(
        checkpoint_calls(&guard),
        before_noop_cut,
        "a cut inside epoch 4 changes nothing"
    );
}

#[test]
fn a_failed_checkpoint_write_poisons_the_log_before_the_new_epoch_writes_a_byte() {
    let dir = tempfile::tempdir().unwrap();
    let log = three_epochs(dir.path());
    let end = log.log_end_offset();
    // Under `fsync = never` the only fsync of this append is the checkpoint's.
    let fault = inject(dir.path(), FaultPlan::new(&[IoCall::Fsync]));
    let mut b = batch_of(70, 2, 40, 70);
    let error = log.append(&mut b, 8).unwrap_err();
    let (failed_call, failed_path) = fault.first_failure().expect("the fsync failed");
    assert_eq!(failed_call, IoCall::Fsync);
    assert!(
        failed_path.to_string_lossy().contains(FILE),
        "{}",
        failed_path.display()
    );
    drop(fault);
    assert!(matches!(error, LogError::Poisoned { .. }), "{error}");
    assert_eq!(log.log_end_offset(), end, "nothing of epoch 8 was written");
    assert_eq!(epochs(&log), expected());
    assert_eq!(log.latest_leader_epoch(), Some(7));
    drop(log);
    let log = PartitionLog::open(dir.path(), tiny_config()).unwrap();
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(epochs(&log), expected());
    assert_eq!(append_at(&log, 71, 1, 8), end);
    assert_eq!(epochs(&log).last(), Some(&(8, end)));
}
