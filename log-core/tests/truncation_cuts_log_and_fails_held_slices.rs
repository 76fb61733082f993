//! `truncate_to` drops every offset at or after the target (deleting later segments and
//! cutting the containing one), appends continue from the new end, and slices taken before
//! the truncation fail with `SliceTruncated` instead of returning rewritten bytes.

mod log_support;

use log_support::*;
use weir_log::{LogError, PartitionLog};

fn filled(dir: &std::path::Path) -> (PartitionLog, Vec<Vec<u8>>) {
    let log = PartitionLog::open(dir, tiny_config()).unwrap();
    let mut batches = Vec::new();
    for i in 0..20 {
        let mut b = batch_of(i, 2, 100, i as i64);
        log.append(&mut b, 0).unwrap();
        batches.push(b);
    }
    (log, batches)
}

#[test]
fn truncate_drops_later_offsets_and_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    let (log, batches) = filled(dir.path());
    let segments_before = log.segment_count();
    log.set_high_watermark(40);
    // Offset 13 is inside batch 6 (offsets 12..=13): the whole batch goes.
    log.truncate_to(13).unwrap();
    assert_eq!(log.log_end_offset(), 12);
    assert_eq!(log.high_watermark(), 12);
    assert!(log.segment_count() < segments_before);
    assert_eq!(read_all_batches(&log), batches[..6]);
    let mut b = batch_of(100, 2, 100, 0);
    assert_eq!(log.append(&mut b, 1).unwrap().base_offset, 12);
    drop(log);
    let log = PartitionLog::open(dir.path(), tiny_config()).unwrap();
    let mut expected = batches[..6].to_vec();
    expected.push(b);
    assert_eq!(read_all_batches(&log), expected);
}

#[test]
fn a_held_slice_errors_after_truncation_even_when_new_bytes_replace_it() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = filled(dir.path());
    let last = log.log_end_offset() - 1;
    let slice = log.read(last, 1 << 20, u64::MAX).unwrap();
    assert!(slice.to_bytes().is_ok());
    log.truncate_to(last - 1).unwrap();
    // New bytes land where the old batch was.
    let mut b = batch_of(500, 2, 100, 0);
    log.append(&mut b, 2).unwrap();
    let err = slice.to_bytes().unwrap_err();
    assert!(matches!(err, LogError::SliceTruncated { .. }), "{err}");
    // A fresh read sees the new batch.
    let fresh = log.read(last - 1, 1 << 20, u64::MAX).unwrap();
    assert_eq!(fresh.to_bytes().unwrap().as_ref(), b.as_slice());
}

#[test]
fn a_held_slice_of_a_segment_deleted_by_truncation_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = filled(dir.path());
    let last = log.log_end_offset() - 1;
    let slice = log.read(last, 1 << 20, u64::MAX).unwrap();
    log.truncate_to(1).unwrap();
    assert_eq!(log.segment_count(), 1);
    assert!(matches!(
        slice.to_bytes(),
        Err(LogError::SliceTruncated { .. })
    ));
}

#[test]
fn truncating_to_the_log_start_empties_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = filled(dir.path());
    log.truncate_to(0).unwrap();
    assert_eq!(log.log_end_offset(), 0);
    assert_eq!(log.size_bytes(), 0);
    assert!(read_all_batches(&log).is_empty());
    let mut b = batch_of(1, 1, 1, 0);
    assert_eq!(log.append(&mut b, 0).unwrap().base_offset, 0);
}
