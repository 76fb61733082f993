//! A batch that fails its CRC in a sealed segment neither fails the pass nor later ones:
//! compaction leaves that segment exactly as it is (never copying the damaged batch),
//! names it with its offset, cleans the other segments, and retention still deletes whole
//! old segments, the damaged one included.

mod compaction_support;
mod log_support;

use std::os::unix::fs::FileExt;

use compaction_support::*;
use weir_log::batch::{self, BatchHeader};
use weir_log::{CleanupPolicy, LogConfig, PartitionLog};

/// Records of every batch that passes its checks, and how many did not.
fn readable(log: &PartitionLog) -> (Model, usize) {
    let mut model = Model::new();
    let mut damaged = 0;
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let slice = log.read(offset, 4096, u64::MAX).unwrap();
        let bytes = slice.to_bytes().unwrap();
        for item in batch::batches(&bytes) {
            let (_, b) = item.unwrap();
            match batch::decode_records(b) {
                Ok(records) => {
                    for r in records {
                        let key = String::from_utf8(r.key.unwrap().to_vec()).unwrap();
                        let value = r.value.map(|v| String::from_utf8(v.to_vec()).unwrap());
                        model.insert(r.offset as u64, (key, value));
                    }
                }
                Err(_) => damaged += 1,
            }
        }
        offset = slice.next_offset();
    }
    (model, damaged)
}

#[test]
fn a_damaged_segment_is_skipped_and_retention_still_deletes_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        cleanup_policy: CleanupPolicy::CompactDelete,
        retention_ms: Some(1_000_000),
        ..compact_config()
    };
    let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    let mut model = Model::new();
    fill(&log, &mut model, 0, 200, 5);
    log.set_high_watermark(log.log_end_offset());
    let bound = cleaned_bound(dir.path(), log.log_end_offset());

    // Flip a byte inside the records of the first batch of the second segment.
    let damaged_log = log_support::segment_logs(dir.path())[1].clone();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&damaged_log)
        .unwrap();
    let mut header = [0u8; 61];
    file.read_exact_at(&mut header, 0).unwrap();
    let damaged_offset = BatchHeader::parse(&header).unwrap().base_offset;
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, 70).unwrap();
    file.write_all_at(&[byte[0] ^ 0x55], 70).unwrap();
    drop(file);
    let damaged_bytes = std::fs::read(&damaged_log).unwrap();
    let damaged_base = damaged_offset as u64;

    let report = log.compact(1_000).unwrap();
    assert_eq!(report.skipped.len(), 1, "{report:?}");
    let skipped = &report.skipped[0];
    assert_eq!(
        (&skipped.segment, skipped.offset),
        (&damaged_log, damaged_offset)
    );
    assert!(
        skipped.reason.contains("CRC") || skipped.reason.contains("crc"),
        "{skipped:?}"
    );
    assert!(
        report.segments_rewritten > 0 && report.records_removed > 0,
        "{report:?}"
    );
    assert_eq!(
        std::fs::read(&damaged_log).unwrap(),
        damaged_bytes,
        "the damaged segment is as it was"
    );

    // Every other segment is clean; the damaged one's intact batches stay as they were.
    let (kept, damaged) = readable(&log);
    assert_eq!(damaged, 1);
    let next_base = segment_bases(dir.path())[2];
    let want: Model = expected(&model, bound)
        .into_iter()
        .filter(|(o, _)| !(damaged_base..next_base).contains(o))
        .chain(
            model
                .range(damaged_base + 1..next_base)
                .map(|(o, r)| (*o, r.clone())),
        )
        .collect();
    assert_eq!(kept, want);

    // A later pass over more dirty data skips it again and goes on.
    fill(&log, &mut model, 200, 300, 5);
    log.set_high_watermark(log.log_end_offset());
    let report = log.compact(2_000).unwrap();
    assert!(report.ran && report.records_removed > 0, "{report:?}");
    assert_eq!(report.skipped.len(), 1, "{report:?}");

    // Retention deletes old whole segments, the damaged one too.
    log.set_config(LogConfig {
        retention_ms: Some(10),
        ..config
    });
    let retained = log.enforce_retention(i64::MAX / 2).unwrap();
    assert!(retained.segments_deleted >= 2, "{retained:?}");
    assert!(!damaged_log.exists());
    assert_eq!(readable(&log).1, 0);
}
