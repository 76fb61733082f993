//! Appended batches read back byte for byte (offsets assigned, epoch stamped), across
//! segment rolls, with slices of whole batches honouring max_bytes and the upper bound.

mod log_support;

use log_support::*;
use weir_log::{LogError, PartitionLog};

#[test]
fn appends_read_back_identically_across_rolls() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), tiny_config()).unwrap();
    let mut expected = Vec::new();
    for i in 0..40u64 {
        let mut b = batch_of(i, 1 + (i % 3) as usize, 40, 1000 + i as i64);
        let info = log.append(&mut b, 7).unwrap();
        assert_eq!(
            info.base_offset,
            expected.iter().map(|(_, n)| *n).sum::<u64>()
        );
        let n = info.last_offset - info.base_offset + 1;
        expected.push((b, n));
    }
    assert!(log.segment_count() > 3, "tiny segments roll");
    let batches = read_all_batches(&log);
    let expected: Vec<Vec<u8>> = expected.into_iter().map(|(b, _)| b).collect();
    assert_eq!(batches, expected);
}

#[test]
fn read_at_log_end_is_empty_and_past_it_is_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), tiny_config()).unwrap();
    let mut b = batch_of(1, 3, 10, 5);
    log.append(&mut b, 0).unwrap();
    let slice = log.read(3, 1 << 20, u64::MAX).unwrap();
    assert!(slice.is_empty());
    assert_eq!(slice.next_offset(), 3);
    let err = log.read(4, 1 << 20, u64::MAX).unwrap_err();
    assert!(
        matches!(
            err,
            LogError::OffsetOutOfRange {
                offset: 4,
                log_start: 0,
                log_end: 3
            }
        ),
        "{err}"
    );
}

#[test]
fn read_returns_at_least_one_whole_batch_and_stops_at_upper_bound() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), tiny_config()).unwrap();
    for i in 0..4 {
        let mut b = batch_of(i, 2, 100, 0);
        log.append(&mut b, 0).unwrap();
    }
    // Offset inside the first batch, max_bytes smaller than a batch: one whole batch.
    let slice = log.read(1, 1, u64::MAX).unwrap();
    assert_eq!(slice.next_offset(), 2);
    assert_eq!(slice.position(), 0);
    let bytes = slice.to_bytes().unwrap();
    assert_eq!(weir_log::batch::batches(&bytes).count(), 1);
    // Upper bound at offset 4 excludes the batches holding offsets >= 4.
    let slice = log.read(0, 1 << 20, 4).unwrap();
    assert_eq!(slice.next_offset(), 4);
    // Upper bound inside the first batch: nothing readable yet.
    let slice = log.read(0, 1 << 20, 1).unwrap();
    assert!(slice.is_empty());
}

#[test]
fn clean_reopen_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), tiny_config()).unwrap();
    for i in 0..30 {
        let mut b = batch_of(i, 2, 30, i as i64);
        log.append(&mut b, 1).unwrap();
    }
    log.set_high_watermark(50);
    let before = read_all_batches(&log);
    log.close().unwrap();
    let log = PartitionLog::open(dir.path(), tiny_config()).unwrap();
    assert_eq!(log.log_end_offset(), 60);
    assert_eq!(log.high_watermark(), 50);
    assert_eq!(read_all_batches(&log), before);
    let mut b = batch_of(99, 1, 10, 0);
    assert_eq!(log.append(&mut b, 1).unwrap().base_offset, 60);
}
