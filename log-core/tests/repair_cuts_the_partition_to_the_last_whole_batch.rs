//! `Repair` (behind `weir log repair`): under the exclusive directory lock it finds the
//! first batch that does not check, says what cutting there drops (first and last offset,
//! bytes, segment files), changes nothing until applied, and once applied the partition
//! opens again, ending at that offset and taking appends.

mod log_support;

use std::fs::{self, OpenOptions};

use log_support::*;
use weir_log::{LogError, PartitionLog, Repair};

#[test]
fn a_partition_damaged_below_the_recovery_point_opens_again_after_repair() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), tiny_config()).unwrap();
    let mut appended = Vec::new();
    for i in 0..30u64 {
        let mut b = batch_of(i, 2, 60, 1000 + i as i64);
        let info = log.append(&mut b, 1).unwrap();
        appended.push((info.base_offset, b));
    }
    let log_end = log.log_end_offset();
    log.close().unwrap();
    let logs = segment_logs(dir.path());
    assert!(logs.len() >= 4);
    // The last batch of the second segment loses its last bytes.
    let sealed = &logs[1];
    let sealed_len = fs::metadata(sealed).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(sealed)
        .unwrap()
        .set_len(sealed_len - 7)
        .unwrap();
    let next_base =
        weir_log::inspect::parse_segment_file_name(logs[2].file_name().unwrap().to_str().unwrap())
            .unwrap()
            .0;
    let damaged_batch = appended.iter().rposition(|(o, _)| *o < next_base).unwrap();
    let first_lost = appended[damaged_batch].0;
    let total_bytes: u64 = logs.iter().map(|l| fs::metadata(l).unwrap().len()).sum();
    let kept_bytes: u64 = appended[..damaged_batch]
        .iter()
        .map(|(_, b)| b.len() as u64)
        .sum();

    let plan = Repair::plan(dir.path()).unwrap();
    let cut = plan.cut().expect("damage found").clone();
    assert_eq!(&cut.segment, sealed);
    assert_eq!(
        cut.position,
        sealed_len - appended[damaged_batch].1.len() as u64
    );
    assert_eq!(cut.first_offset, first_lost);
    assert_eq!(cut.last_offset, Some(log_end - 1));
    assert_eq!(cut.bytes, total_bytes - kept_bytes);
    assert_eq!(cut.deleted_segments, logs[2..].to_vec());
    // While planned, the directory is held: the log cannot open.
    assert!(matches!(
        PartitionLog::open(dir.path(), tiny_config()),
        Err(LogError::Locked { .. })
    ));
    // A plan dropped unapplied (`--dry-run`) changes nothing.
    drop(plan);
    assert_eq!(segment_logs(dir.path()), logs);
    assert!(matches!(
        PartitionLog::open(dir.path(), tiny_config()),
        Err(LogError::DamagedBelowRecoveryPoint { .. })
    ));

    let applied = Repair::plan(dir.path()).unwrap().apply().unwrap();
    assert_eq!(applied, Some(cut));
    let log = PartitionLog::open(dir.path(), tiny_config()).unwrap();
    assert_eq!(log.log_end_offset(), first_lost);
    let kept: Vec<Vec<u8>> = appended[..damaged_batch]
        .iter()
        .map(|(_, b)| b.clone())
        .collect();
    assert_eq!(read_all_batches(&log), kept);
    let mut more = batch_of(99, 1, 10, 5);
    assert_eq!(log.append(&mut more, 1).unwrap().base_offset, first_lost);
    drop(log);
    // Nothing left to repair.
    assert!(Repair::plan(dir.path()).unwrap().cut().is_none());
}
