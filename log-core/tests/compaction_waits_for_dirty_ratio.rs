//! A pass runs only when the not yet cleaned share of the cleanable bytes reaches
//! `min.cleanable.dirty.ratio` (and leaves every file as it is otherwise); records younger
//! than `min.compaction.lag.ms` stay uncompacted.

mod compaction_support;
mod log_support;

use std::collections::BTreeMap;
use std::path::Path;

use compaction_support::*;
use weir_log::{LogConfig, PartitionLog};

/// Every file of the directory and its bytes.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(p).unwrap(),
            )
        })
        .collect()
}

#[test]
fn below_the_dirty_ratio_a_pass_does_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        min_cleanable_dirty_ratio_ppm: 500_000,
        ..compact_config()
    };
    let log = PartitionLog::open(dir.path(), config).unwrap();
    let mut model = Model::new();
    // Every record has its own key: cleaning removes nothing, so the clean part stays big.
    fill(&log, &mut model, 0, 100, 1_000);
    log.set_high_watermark(log.log_end_offset());
    let first = log.compact(1_000).unwrap();
    assert!(first.ran, "all dirty: {first:?}");
    assert_eq!(first.dirty_ratio_ppm, 1_000_000);

    // A little more: well under half of the cleanable bytes are dirty.
    fill(&log, &mut model, 100, 20, 1_000);
    fill(&log, &mut model, 120, 20, 3);
    log.set_high_watermark(log.log_end_offset());
    let before = files(dir.path());
    let report = log.compact(2_000).unwrap();
    assert!(!report.ran, "{report:?}");
    assert!(
        report.dirty_ratio_ppm > 0 && report.dirty_ratio_ppm < 500_000,
        "{report:?}"
    );
    assert_eq!(
        files(dir.path()),
        before,
        "a pass below the ratio changed files"
    );
    assert_eq!(records(&log), model);

    // Enough dirty bytes: the pass runs and removes the superseded records.
    fill(&log, &mut model, 140, 200, 3);
    log.set_high_watermark(log.log_end_offset());
    let report = log.compact(3_000).unwrap();
    assert!(
        report.ran && report.dirty_ratio_ppm >= 500_000,
        "{report:?}"
    );
    assert!(report.records_removed > 0, "{report:?}");
    let bound = cleaned_bound(dir.path(), log.log_end_offset());
    assert_eq!(records(&log), expected(&model, bound));
}

#[test]
fn records_younger_than_the_compaction_lag_stay() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        min_compaction_lag_ms: 1_000,
        ..compact_config()
    };
    let log = PartitionLog::open(dir.path(), config).unwrap();
    let mut model = Model::new();
    // Record i has timestamp i.
    fill(&log, &mut model, 0, 200, 4);
    log.set_high_watermark(log.log_end_offset());
    // At 100 every record is younger than the lag.
    let report = log.compact(100).unwrap();
    assert_eq!(report.records_removed, 0, "{report:?}");
    assert_eq!(records(&log), model);
    // At 1_100 records up to timestamp 100 are old enough: the first segment holding a
    // younger record ends the cleanable range.
    let report = log.compact(1_100).unwrap();
    assert!(report.records_removed > 0, "{report:?}");
    let kept = records(&log);
    let bound = report.clean_offset;
    assert!(bound > 0 && bound <= 101, "cleaned up to {bound}");
    assert_eq!(kept, expected(&model, bound));
}
