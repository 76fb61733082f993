//! A sealed segment below the recovery point was fsynced (a roll fsyncs it before the next
//! segment takes a byte), so a cut tail there is damage, not a torn write: the open fails
//! with `DamagedBelowRecoveryPoint` naming the segment file, byte and first lost offset,
//! and changes nothing, so the same open fails the same way until `Repair` cuts it.

mod log_support;

use std::fs::{self, OpenOptions};

use log_support::*;
use weir_log::{LogError, PartitionLog};

#[test]
fn a_cut_tail_of_a_sealed_segment_below_the_recovery_point_fails_the_open() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), tiny_config()).unwrap();
    let mut appended = Vec::new();
    for i in 0..30u64 {
        let mut b = batch_of(i, 2, 60, 1000 + i as i64);
        let info = log.append(&mut b, 1).unwrap();
        appended.push((info.base_offset, b));
    }
    let recovery_point = log.recovery_point();
    drop(log);
    let logs = segment_logs(dir.path());
    assert!(logs.len() >= 4, "several segments: {}", logs.len());
    let sealed = &logs[1];
    let len = fs::metadata(sealed).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(sealed)
        .unwrap()
        .set_len(len - 7)
        .unwrap();
    let files_before: Vec<_> = segment_logs(dir.path())
        .iter()
        .map(|p| (p.clone(), fs::metadata(p).unwrap().len()))
        .collect();

    for _ in 0..2 {
        let error = PartitionLog::open(dir.path(), tiny_config())
            .err()
            .expect("the open refuses");
        match &error {
            LogError::DamagedBelowRecoveryPoint {
                segment,
                position,
                offset,
                recovery_point: named_point,
                ..
            } => {
                assert_eq!(segment, sealed);
                // The batch the cut tore: the last one starting at or before the offset.
                let (torn_offset, torn) = appended.iter().rfind(|(o, _)| o <= offset).unwrap();
                assert_eq!(torn_offset, offset, "names the first lost offset");
                assert_eq!(*position + torn.len() as u64, len, "names the torn batch");
                assert!(*named_point <= recovery_point && *named_point > *offset);
            }
            other => panic!("expected DamagedBelowRecoveryPoint, got {other:?}"),
        }
        let message = error.to_string();
        assert!(message.contains(&sealed.display().to_string()), "{message}");
        assert!(message.contains("weir log repair"), "{message}");
        // Nothing was cut or deleted.
        let files_now: Vec<_> = segment_logs(dir.path())
            .iter()
            .map(|p| (p.clone(), fs::metadata(p).unwrap().len()))
            .collect();
        assert_eq!(files_now, files_before);
    }
}
