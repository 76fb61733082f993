//! Retention deletes whole sealed segments by time (their max timestamp) and by size,
//! never the active one, advances the log start offset, gives the same result after a
//! restart, and a reader holding a slice of a deleted segment still reads it.

mod log_support;

use log_support::*;
use weir_log::{CleanupPolicy, LogConfig, LogError, PartitionLog};

/// 30 batches, batch i stamped 1000 * i; returns the log and its batches.
fn filled(dir: &std::path::Path, config: LogConfig) -> (PartitionLog, Vec<Vec<u8>>) {
    let log = PartitionLog::open(dir, config).unwrap();
    let mut batches = Vec::new();
    for i in 0..30 {
        let mut b = batch_of(i, 1, 150, 1000 * i as i64);
        log.append(&mut b, 0).unwrap();
        batches.push(b);
    }
    assert!(log.segment_count() >= 5);
    (log, batches)
}

#[test]
fn time_retention_deletes_segments_whose_newest_record_is_too_old() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = tiny_config();
    config.retention_ms = Some(10_000);
    let (log, batches) = filled(dir.path(), config);
    // now = 25_000: batches stamped < 15_000 are past retention; a segment goes only
    // when its newest batch is.
    let report = log.enforce_retention(25_000).unwrap();
    assert!(report.segments_deleted > 0);
    let start = log.log_start_offset();
    assert_eq!(report.log_start_offset, start);
    assert!(
        start <= 15,
        "batch 15 (stamped 15_000) is kept: start {start}"
    );
    assert!(start >= 10, "whole old segments went: start {start}");
    assert_eq!(read_all_batches(&log), batches[start as usize..]);
    let err = log.read(start - 1, 1, u64::MAX).unwrap_err();
    assert!(matches!(err, LogError::OffsetOutOfRange { .. }), "{err}");
}

#[test]
fn the_active_segment_is_never_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = tiny_config();
    config.retention_ms = Some(0);
    let (log, batches) = filled(dir.path(), config);
    log.enforce_retention(i64::MAX).unwrap();
    assert_eq!(log.segment_count(), 1);
    let start = log.log_start_offset() as usize;
    assert!(start < 30);
    assert_eq!(read_all_batches(&log), batches[start..]);
}

#[test]
fn size_retention_keeps_the_log_at_or_above_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = tiny_config();
    config.retention_bytes = Some(2000);
    let (log, _) = filled(dir.path(), config);
    let before = log.size_bytes();
    let report = log.enforce_retention(0).unwrap();
    assert!(report.segments_deleted > 0);
    assert_eq!(log.size_bytes(), before - report.bytes_deleted);
    assert!(log.size_bytes() >= 2000 || log.segment_count() == 1);
    assert!(
        log.size_bytes() < 2000 + 1024,
        "no more than a segment over the limit"
    );
}

#[test]
fn retention_gives_the_same_result_after_clean_and_unclean_restarts() {
    let mut config = tiny_config();
    config.retention_ms = Some(10_000);
    let reference = tempfile::tempdir().unwrap();
    let (log, _) = filled(reference.path(), config.clone());
    let expected = log.enforce_retention(25_000).unwrap();
    for clean in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = filled(dir.path(), config.clone());
        if clean {
            log.close().unwrap();
        } else {
            drop(log);
        }
        let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
        assert_eq!(
            log.enforce_retention(25_000).unwrap(),
            expected,
            "clean = {clean}"
        );
        drop(log);
        let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
        assert_eq!(
            log.log_start_offset(),
            expected.log_start_offset,
            "start survives restart"
        );
    }
}

#[test]
fn a_held_slice_survives_retention_deleting_its_segment() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = tiny_config();
    config.retention_ms = Some(0);
    let (log, batches) = filled(dir.path(), config);
    let slice = log.read(0, 1 << 20, u64::MAX).unwrap();
    let before = slice.to_bytes().unwrap();
    log.enforce_retention(i64::MAX).unwrap();
    assert!(log.log_start_offset() > 0);
    assert!(!dir.path().join("00000000000000000000.log").exists());
    assert_eq!(slice.to_bytes().unwrap(), before);
    assert_eq!(&before[..batches[0].len()], batches[0].as_slice());
}

#[test]
fn compact_only_policy_deletes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = tiny_config();
    config.retention_ms = Some(0);
    config.cleanup_policy = CleanupPolicy::Compact;
    let (log, _) = filled(dir.path(), config);
    let report = log.enforce_retention(i64::MAX).unwrap();
    assert_eq!(report.segments_deleted, 0);
    assert_eq!(log.log_start_offset(), 0);
}
