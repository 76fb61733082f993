//! Offsets at or above the high watermark may still be truncated away (a follower catching
//! up to a new leader), so compaction neither reads them into its key map nor rewrites
//! them: a pass cleans only whole sealed segments below the high watermark, and records
//! above it neither supersede older ones nor change.

mod compaction_support;
mod log_support;

use compaction_support::*;
use weir_log::PartitionLog;

#[test]
fn a_pass_stops_at_the_segment_holding_the_high_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), compact_config()).unwrap();
    let mut model = Model::new();
    fill(&log, &mut model, 0, 200, 5);
    let bases = segment_bases(dir.path());
    assert!(bases.len() > 6);
    // In the middle of a sealed segment.
    let high_watermark = bases[bases.len() / 2] + 3;
    log.set_high_watermark(high_watermark);
    let bound = cleaned_bound(dir.path(), high_watermark);
    assert!(bound < high_watermark);
    let before = batches_by_base(&log);

    let report = log.compact(1_000).unwrap();
    assert!(report.records_removed > 0, "{report:?}");
    assert_eq!(report.clean_offset, bound);
    let after = batches_by_base(&log);
    // From the bound on (so every offset at or above the high watermark) nothing changed,
    // and the newest records there did not make compaction remove older ones below.
    assert_eq!(
        after.range(bound..).collect::<Vec<_>>(),
        before.range(bound..).collect::<Vec<_>>()
    );
    assert_eq!(records(&log), expected(&model, bound));

    // Once the high watermark moves on, so does compaction.
    log.set_high_watermark(log.log_end_offset());
    let report = log.compact(2_000).unwrap();
    assert!(report.records_removed > 0, "{report:?}");
    let bound = cleaned_bound(dir.path(), log.log_end_offset());
    assert_eq!(records(&log), expected(&model, bound));
}

#[test]
fn a_high_watermark_in_the_first_segment_cleans_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), compact_config()).unwrap();
    let mut model = Model::new();
    fill(&log, &mut model, 0, 100, 5);
    log.set_high_watermark(2);
    let before = batches_by_base(&log);
    let report = log.compact(1_000).unwrap();
    assert!(!report.ran, "{report:?}");
    assert_eq!(batches_by_base(&log), before);
}
