//! A failed fsync is final. With I/O faults injected into the engine (feature
//! `fault-injection`): a failed fsync poisons the log — every later write returns
//! `LogError::Poisoned` naming the directory and the first cause, even once the disk works
//! again — while reads of acknowledged data keep working; a failed write mid-append is
//! never visible to readers and is either undone or cut by the next open; a failure
//! anywhere in `close` leaves no clean-shutdown checkpoint, so the next open recovers.

mod log_support;

use std::path::Path;

use log_support::*;
use weir_log::batch::{self, BatchHeader};
use weir_log::fault::{inject, FaultPlan, IoCall};
use weir_log::{FsyncPolicy, LogConfig, LogError, PartitionLog};

fn config(fsync: FsyncPolicy) -> LogConfig {
    let mut config = tiny_config();
    config.segment_bytes = 4096;
    config.fsync = fsync;
    config
}

/// Appends `count` batches and returns them as stored.
fn append_some(log: &PartitionLog, count: u64, seed: u64) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| {
            let mut b = batch_of(seed + i, 3, 40, (seed + i) as i64);
            log.append(&mut b, 2).unwrap();
            b
        })
        .collect()
}

/// Asserts `error` is `Poisoned` for `dir` with an injected I/O failure as its cause.
fn assert_poisoned(error: &LogError, dir: &Path) {
    let LogError::Poisoned { dir: named, cause } = error else {
        panic!("expected Poisoned, got {error:?}");
    };
    assert_eq!(named, dir);
    assert!(
        matches!(cause.as_ref(), LogError::Io { .. }),
        "cause: {cause:?}"
    );
    let message = error.to_string();
    assert!(message.contains(&dir.display().to_string()), "{message}");
    assert!(message.contains("injected"), "{message}");
}

#[test]
fn a_failed_fsync_poisons_the_log_for_good_and_reads_still_work() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), config(FsyncPolicy::Always)).unwrap();
    let acked = append_some(&log, 4, 0);

    // One failure only: the disk "recovers" at once, the log must not.
    let fault = inject(dir.path(), FaultPlan::new(&[IoCall::Fsync]));
    let mut doomed = batch_of(99, 2, 40, 99);
    let error = log.append(&mut doomed, 2).unwrap_err();
    assert_poisoned(&error, dir.path());
    assert!(log.is_poisoned());
    assert_eq!(fault.failures(), 1);
    drop(fault);

    let mut next = batch_of(100, 2, 40, 100);
    assert_poisoned(&log.append(&mut next, 2).unwrap_err(), dir.path());
    assert_poisoned(&log.append_replicated(&acked[0]).unwrap_err(), dir.path());
    assert_poisoned(&log.flush().unwrap_err(), dir.path());
    assert_poisoned(&log.truncate_to(1).unwrap_err(), dir.path());
    assert_poisoned(&log.enforce_retention(i64::MAX).unwrap_err(), dir.path());
    assert_poisoned(&log.compact(0).unwrap_err(), dir.path());

    // The unacknowledged batch was never published; the acknowledged ones read back.
    assert_eq!(log.log_end_offset(), 12);
    assert_eq!(read_all_batches(&log), acked);

    // Close refuses too and leaves no clean-shutdown checkpoint.
    assert_poisoned(&log.close().unwrap_err(), dir.path());
    assert!(!dir.path().join("clean-shutdown").exists());

    // Reopen recovers from the files: the acknowledged batches, then at most the whole
    // batch whose fsync failed (it was written, never acknowledged).
    let log = PartitionLog::open(dir.path(), config(FsyncPolicy::Always)).unwrap();
    let after = read_all_batches(&log);
    assert_eq!(after[..acked.len()], acked[..]);
    assert!(after.len() <= acked.len() + 1);
    let mut more = batch_of(7, 1, 10, 7);
    let info = log.append(&mut more, 2).unwrap();
    assert_eq!(
        info.base_offset,
        12 + 2 * (after.len() - acked.len()) as u64
    );
}

#[test]
fn a_failed_directory_fsync_on_roll_poisons_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), config(FsyncPolicy::Never)).unwrap();
    let fault = inject(dir.path(), FaultPlan::new(&[IoCall::SyncDir]));
    let mut acked = Vec::new();
    let error = loop {
        let mut b = batch_of(acked.len() as u64, 4, 80, 1);
        match log.append(&mut b, 2) {
            Ok(_) => acked.push(b),
            Err(error) => break error,
        }
        assert!(acked.len() < 100, "no roll happened");
    };
    assert_eq!(
        fault.first_failure().map(|(call, _)| call),
        Some(IoCall::SyncDir)
    );
    assert_poisoned(&error, dir.path());
    drop(fault);
    assert_eq!(read_all_batches(&log), acked);
    drop(log);
    let log = PartitionLog::open(dir.path(), config(FsyncPolicy::Never)).unwrap();
    assert_eq!(read_all_batches(&log), acked);
}

#[test]
fn a_failed_write_is_undone_unseen_and_the_log_keeps_taking_writes() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), config(FsyncPolicy::Never)).unwrap();
    let mut acked = append_some(&log, 3, 0);
    let size_before = log.size_bytes();

    let fault = inject(
        dir.path(),
        FaultPlan::new(&[IoCall::Write]).torn_writes(600),
    );
    let mut doomed = batch_of(50, 3, 40, 50);
    let error = log.append(&mut doomed, 2).unwrap_err();
    assert!(matches!(error, LogError::Io { .. }), "{error:?}");
    assert_eq!(fault.failures(), 1);
    drop(fault);

    // The torn bytes were cut again: the file, the end offset and readers are as before.
    assert!(!log.is_poisoned());
    assert_eq!(log.size_bytes(), size_before);
    assert_eq!(log.log_end_offset(), 9);
    assert_eq!(read_all_batches(&log), acked);
    let active = segment_logs(dir.path()).pop().unwrap();
    assert_eq!(std::fs::metadata(active).unwrap().len(), size_before);

    acked.extend(append_some(&log, 2, 60));
    assert_eq!(log.log_end_offset(), 15);
    assert_eq!(read_all_batches(&log), acked);
}

#[test]
fn a_torn_write_that_cannot_be_undone_poisons_and_reopen_keeps_whole_batches() {
    for torn_per_mille in [100, 400, 500, 700, 999] {
        let dir = tempfile::tempdir().unwrap();
        let log = PartitionLog::open(dir.path(), config(FsyncPolicy::Never)).unwrap();
        let acked = append_some(&log, 3, 0);
        // Three batches in one append buffer; the write lands a prefix, the undo fails.
        let parts: Vec<Vec<u8>> = (0..3).map(|i| batch_of(70 + i, 2, 60, 70)).collect();
        let mut buffer = parts.concat();
        let plan = FaultPlan::new(&[IoCall::Write, IoCall::SetLen])
            .sticky()
            .torn_writes(torn_per_mille);
        let fault = inject(dir.path(), plan);
        assert_poisoned(&log.append(&mut buffer, 2).unwrap_err(), dir.path());
        drop(fault);
        // Readers never see any of the torn append.
        assert_eq!(log.log_end_offset(), 9);
        assert_eq!(read_all_batches(&log), acked);
        drop(log);

        // Recovery keeps exactly the whole batches that landed and cuts the torn one.
        let landed_bytes = buffer.len() * usize::from(torn_per_mille) / 1000;
        let whole: Vec<Vec<u8>> = batch::batches(&buffer)
            .map(|item| item.unwrap().1.to_vec())
            .scan(0usize, |end, b| {
                *end += b.len();
                Some((*end, b))
            })
            .take_while(|(end, _)| *end <= landed_bytes)
            .map(|(_, b)| b)
            .collect();
        let log = PartitionLog::open(dir.path(), config(FsyncPolicy::Never)).unwrap();
        let mut expected = acked.clone();
        expected.extend(whole.iter().cloned());
        assert_eq!(
            read_all_batches(&log),
            expected,
            "torn at {torn_per_mille}‰"
        );
        let end = whole
            .last()
            .map_or(9, |b| BatchHeader::parse(b).unwrap().next_offset() as u64);
        assert_eq!(log.log_end_offset(), end);
    }
}

#[test]
fn a_failure_anywhere_in_close_leaves_no_clean_shutdown_checkpoint() {
    let calls = [
        IoCall::Fsync,
        IoCall::SyncDir,
        IoCall::Rename,
        IoCall::SetLen,
    ];
    let mut countdown = 0;
    loop {
        let dir = tempfile::tempdir().unwrap();
        let log = PartitionLog::open(dir.path(), config(FsyncPolicy::Never)).unwrap();
        let acked = append_some(&log, 30, 0);
        assert!(log.segment_count() > 1);
        let fault = inject(dir.path(), FaultPlan::new(&calls).after(countdown));
        let closed = log.close();
        let failed = fault.failures() > 0;
        drop(fault);
        let checkpoint = dir.path().join("clean-shutdown");
        match closed {
            Err(error) => {
                assert!(failed);
                assert_poisoned(&error, dir.path());
                assert!(!checkpoint.exists(), "countdown {countdown}: {error}");
            }
            Ok(()) => {
                assert!(!failed, "countdown {countdown}: a failure was swallowed");
                assert!(checkpoint.exists());
            }
        }
        let log = PartitionLog::open(dir.path(), config(FsyncPolicy::Never)).unwrap();
        assert_eq!(read_all_batches(&log), acked, "countdown {countdown}");
        if !failed {
            break;
        }
        countdown += 1;
    }
    // Each fsync, directory fsync, rename and trim of close was made to fail once.
    assert!(countdown >= 5, "close made only {countdown} such calls");
}
