//! A truncation below the cleaner checkpoint moves the checkpoint down with it: records
//! appended later at the reused offsets are dirty, and the next pass deduplicates them.

mod compaction_support;
mod log_support;

use compaction_support::*;
use weir_log::batch::Compression;
use weir_log::PartitionLog;

#[test]
fn offsets_reused_after_a_truncation_are_cleaned_again() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), compact_config()).unwrap();
    let mut model = Model::new();
    fill(&log, &mut model, 0, 150, 5);
    log.set_high_watermark(log.log_end_offset());
    let clean = log.compact(1_000).unwrap().clean_offset;
    assert!(clean > 60, "cleaned up to {clean}");

    let cut = clean / 2;
    log.truncate_to(cut).unwrap();
    let mut model: Model = records(&log);
    assert!(model.keys().all(|o| *o < cut));
    // At the reused offsets, several versions of keys that nothing later supersedes; past
    // them, new versions of the old keys.
    for i in cut..clean {
        let record = (format!("z{}", i % 3), Some(format!("z{i}")));
        let mut b = keyed(Compression::None, None, std::slice::from_ref(&record), 0);
        model.insert(log.append(&mut b, 0).unwrap().base_offset, record);
    }
    fill(&log, &mut model, 1_000, 300, 5);
    log.set_high_watermark(log.log_end_offset());
    let report = log.compact(2_000).unwrap();
    assert!(report.ran && report.records_removed > 0, "{report:?}");
    let bound = cleaned_bound(dir.path(), log.log_end_offset());
    assert_eq!(report.clean_offset, bound);
    assert_eq!(records(&log), expected(&model, bound));
}
