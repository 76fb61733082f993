//! A crash between a roll and the fsync of the old segment (`fsync = never`, or a power
//! loss before the recovery-point file moved) leaves a sealed segment above the recovery
//! point. As in Kafka, recovery cuts it at its first bad batch and deletes every later
//! segment: none of those bytes was promised durable, and the broker must start.

mod log_support;

use std::fs::{self, OpenOptions};
use std::path::Path;

use log_support::*;
use weir_log::inspect::parse_segment_file_name;
use weir_log::PartitionLog;

fn base_of(log: &Path) -> u64 {
    parse_segment_file_name(log.file_name().unwrap().to_str().unwrap())
        .unwrap()
        .0
}

#[test]
fn a_cut_sealed_segment_above_the_recovery_point_ends_the_log_and_later_segments_go() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), tiny_config()).unwrap();
    // The recovery point as the first open recorded it: offset 0.
    let stale_recovery_point = fs::read(dir.path().join("recovery-point")).unwrap();
    let mut appended = Vec::new();
    for i in 0..30u64 {
        let mut b = batch_of(i, 2, 60, 1000 + i as i64);
        let info = log.append(&mut b, 1).unwrap();
        appended.push((info.base_offset, b));
    }
    drop(log);
    let logs = segment_logs(dir.path());
    assert!(logs.len() >= 4, "several segments: {}", logs.len());
    // The power loss: the recovery-point file never moved, and the second segment lost
    // the last bytes of its last batch.
    fs::write(dir.path().join("recovery-point"), &stale_recovery_point).unwrap();
    let sealed = &logs[1];
    let len = fs::metadata(sealed).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(sealed)
        .unwrap()
        .set_len(len - 7)
        .unwrap();
    let next_base = base_of(&logs[2]);
    // The torn batch: the last one of the second segment.
    let (last_whole, _) = appended.iter().rfind(|(o, _)| *o < next_base).unwrap();
    let last_whole = *last_whole;

    let log = PartitionLog::open(dir.path(), tiny_config()).unwrap();
    // The log ends where the torn batch began; everything before it reads back.
    assert_eq!(log.log_end_offset(), last_whole);
    let kept: Vec<Vec<u8>> = appended
        .iter()
        .filter(|(offset, _)| *offset < last_whole)
        .map(|(_, b)| b.clone())
        .collect();
    assert_eq!(read_all_batches(&log), kept);
    // The later segments are gone, files and all.
    let left = segment_logs(dir.path());
    assert_eq!(left, logs[..2].to_vec());
    for later in &logs[2..] {
        assert!(!later.with_extension("index").exists());
        assert!(!later.with_extension("timeindex").exists());
    }
    // The log takes appends right after the cut.
    let mut more = batch_of(99, 1, 10, 5);
    assert_eq!(log.append(&mut more, 1).unwrap().base_offset, last_whole);
}
