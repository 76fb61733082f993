//! Bytes below the recovery point were fsynced: a segment that ends short of it has lost
//! them, even when it happens to end exactly between two batches (no torn batch to see).
//! The open refuses it with `DamagedBelowRecoveryPoint`, naming the segment, the byte and
//! offset where it ends and the recovery point, and changes nothing; `Repair` brings the
//! recovery point down to what is there, after which the log opens.

mod log_support;

use std::fs::{self, OpenOptions};
use std::path::Path;

use log_support::*;
use weir_log::{LogConfig, LogError, PartitionLog, Repair};

fn one_segment_config() -> LogConfig {
    let mut config = tiny_config();
    config.segment_bytes = 1 << 20;
    config.index_bytes_max = 4096;
    config
}

fn cut(path: &Path, len: u64) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

fn assert_damaged_at(error: LogError, segment: &Path, position: u64, offset: u64, point: u64) {
    match &error {
        LogError::DamagedBelowRecoveryPoint {
            segment: named,
            position: named_position,
            offset: named_offset,
            recovery_point,
            ..
        } => {
            assert_eq!(named, segment);
            assert_eq!(*named_position, position);
            assert_eq!(*named_offset, offset);
            assert_eq!(*recovery_point, point);
        }
        other => panic!("expected DamagedBelowRecoveryPoint, got {other:?}"),
    }
    assert!(error.to_string().contains("weir log repair"), "{error}");
}

#[test]
fn a_log_cut_between_batches_below_the_recovery_point_fails_the_open() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), one_segment_config()).unwrap();
    let mut ends = Vec::new();
    for i in 0..6u64 {
        log.append(&mut batch_of(i, 2, 60, 1000), 0).unwrap();
        ends.push(log.size_bytes());
    }
    // Everything is fsynced and the recovery point is the log end, 12.
    log.close().unwrap();
    let segment = segment_logs(dir.path()).remove(0);
    cut(&segment, ends[2]);

    for _ in 0..2 {
        let error = PartitionLog::open(dir.path(), one_segment_config())
            .err()
            .expect("the open refuses");
        assert_damaged_at(error, &segment, ends[2], 6, 12);
        assert_eq!(
            fs::metadata(&segment).unwrap().len(),
            ends[2],
            "nothing cut"
        );
    }

    let repair = Repair::plan(dir.path()).unwrap();
    let planned = repair.cut().expect("repair has something to do").clone();
    assert_eq!((planned.first_offset, planned.bytes), (6, 0));
    repair.apply().unwrap();
    let log = PartitionLog::open(dir.path(), one_segment_config()).unwrap();
    assert_eq!(log.log_end_offset(), 6);
    assert_eq!(read_all_batches(&log).len(), 3);
}

#[test]
fn a_segment_holding_the_recovery_point_cut_between_batches_fails_the_open() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), tiny_config()).unwrap();
    let mut ends = Vec::new();
    for i in 0..3u64 {
        log.append(&mut batch_of(i, 2, 60, 1000), 0).unwrap();
        ends.push(log.size_bytes());
    }
    log.close().unwrap();
    // The recovery point the close wrote: offset 6, inside the first segment.
    let point_file = dir.path().join("recovery-point");
    let point_at_close = fs::read(&point_file).unwrap();
    let log = PartitionLog::open(dir.path(), tiny_config()).unwrap();
    while log.segment_count() < 3 {
        log.append(&mut batch_of(7, 2, 60, 1000), 0).unwrap();
    }
    drop(log);
    // As a power cut between a roll and the fsync that moves the recovery point leaves it
    // (`fsync = never`): the file still names offset 6 of the first segment.
    fs::write(&point_file, &point_at_close).unwrap();
    let segments = segment_logs(dir.path());
    cut(&segments[0], ends[1]);
    let files_before: Vec<_> = segment_logs(dir.path())
        .iter()
        .map(|p| (p.clone(), fs::metadata(p).unwrap().len()))
        .collect();

    let error = PartitionLog::open(dir.path(), tiny_config())
        .err()
        .expect("the open refuses");
    assert_damaged_at(error, &segments[0], ends[1], 4, 6);
    let files_after: Vec<_> = segment_logs(dir.path())
        .iter()
        .map(|p| (p.clone(), fs::metadata(p).unwrap().len()))
        .collect();
    assert_eq!(files_after, files_before, "no later segment was deleted");

    let repair = Repair::plan(dir.path()).unwrap();
    let planned = repair.cut().expect("repair has something to do").clone();
    assert_eq!(planned.first_offset, 4);
    assert_eq!(planned.deleted_segments, segments[1..].to_vec());
    repair.apply().unwrap();
    let log = PartitionLog::open(dir.path(), tiny_config()).unwrap();
    assert_eq!(log.log_end_offset(), 4);
}
