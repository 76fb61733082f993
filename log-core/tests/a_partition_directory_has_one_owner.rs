//! One owner per partition directory: `PartitionLog::open` holds an exclusive lock on the
//! directory's `.lock` file until the log is dropped, so a second open (here or in another
//! process) fails with `LogError::Locked` naming the holder's pid and command, and
//! `Repair` refuses while the log is open.

mod log_support;

use log_support::*;
use weir_log::{DirLock, LockMode, LogError, PartitionLog, Repair};

fn assert_locked_by_us(error: LogError, dir: &std::path::Path) {
    match &error {
        LogError::Locked { dir: named, holder } => {
            assert_eq!(named, dir);
            assert!(
                holder.contains(&format!("pid {}", std::process::id())),
                "{holder}"
            );
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    assert!(error.to_string().contains("is in use"), "{error}");
}

#[test]
fn a_second_open_of_the_same_directory_fails_until_the_first_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), tiny_config()).unwrap();
    log.append(&mut batch_of(0, 1, 10, 0), 0).unwrap();

    let second = PartitionLog::open(dir.path(), tiny_config());
    assert_locked_by_us(second.err().expect("second open refused"), dir.path());
    assert_locked_by_us(Repair::plan(dir.path()).unwrap_err(), dir.path());
    // A reader's shared lock is refused too.
    assert_locked_by_us(
        DirLock::acquire(dir.path(), LockMode::Shared).unwrap_err(),
        dir.path(),
    );
    // The refused opens changed nothing.
    assert_eq!(log.log_end_offset(), 1);

    log.close().unwrap();
    let reopened = PartitionLog::open(dir.path(), tiny_config()).unwrap();
    assert_eq!(reopened.log_end_offset(), 1);
}

#[test]
fn readers_share_the_lock_and_keep_the_writer_out() {
    let dir = tempfile::tempdir().unwrap();
    PartitionLog::open(dir.path(), tiny_config())
        .unwrap()
        .close()
        .unwrap();
    let first = DirLock::acquire_shared_if_present(dir.path()).unwrap();
    let second = DirLock::acquire_shared_if_present(dir.path()).unwrap();
    assert!(first.is_some() && second.is_some());
    match PartitionLog::open(dir.path(), tiny_config()) {
        Err(LogError::Locked { holder, .. }) => {
            assert!(holder.contains("reading"), "{holder}")
        }
        other => panic!("expected Locked, got {:?}", other.err()),
    }
    drop((first, second));
    PartitionLog::open(dir.path(), tiny_config()).unwrap();
}

#[test]
fn a_reader_of_a_directory_without_a_lock_file_keeps_the_writer_out_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let reader = DirLock::acquire_shared_if_present(dir.path())
        .unwrap()
        .expect("a directory without .lock is still locked");
    let shared = DirLock::acquire(dir.path(), LockMode::Shared).unwrap();
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "a reader created a file in a directory it does not own"
    );
    match PartitionLog::open(dir.path(), tiny_config()) {
        Err(LogError::Locked { holder, .. }) => {
            assert!(holder.contains("reading"), "{holder}")
        }
        other => panic!("expected Locked, got {:?}", other.err()),
    }
    assert!(matches!(
        Repair::plan(dir.path()),
        Err(LogError::Locked { .. })
    ));
    drop((reader, shared));
    let log = PartitionLog::open(dir.path(), tiny_config()).unwrap();
    // And the other way round: the writer keeps a reader out, named.
    assert_locked_by_us(
        DirLock::acquire_shared_if_present(dir.path()).unwrap_err(),
        dir.path(),
    );
    drop(log);
}
