//! Compaction leaves gaps in the offsets; a truncation to an offset inside a gap ends the
//! log where its last kept batch ends (not at the target), so the log end offset is where
//! a recovery would find it. Otherwise a clean close would record a recovery point past
//! the last byte, and the next unclean open would refuse the log as fsynced batches gone
//! missing (`DamagedBelowRecoveryPoint`). Found by the compaction power-loss model.

mod compaction_support;
mod log_support;

use compaction_support::*;
use weir_log::PartitionLog;

#[test]
fn a_truncation_into_a_gap_ends_the_log_at_its_last_batch_and_survives_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), compact_config()).unwrap();
    let mut model = Model::new();
    // One key overwritten again and again: compaction empties the older segments.
    fill(&log, &mut model, 0, 60, 1);
    log.set_high_watermark(log.log_end_offset());
    let report = log.compact(1_000).unwrap();
    assert!(report.segments_rewritten > 0, "{report:?}");
    let left = records(&log);
    let first_kept = *left.keys().next().unwrap();
    assert!(first_kept > 3, "the first segment was emptied: {left:?}");

    // Offset 2 lies in the gap: nothing below it is left.
    log.truncate_to(2).unwrap();
    assert_eq!(log.log_end_offset(), 0);
    assert!(records(&log).is_empty());
    log.close().unwrap();

    // A clean open, then the process dies before anything is written: the next open
    // recovers from the recovery point the close wrote.
    drop(PartitionLog::open(dir.path(), compact_config()).unwrap());
    let recovered = PartitionLog::open(dir.path(), compact_config()).unwrap();
    assert_eq!(recovered.log_end_offset(), 0);
    let mut model = Model::new();
    fill(&recovered, &mut model, 100, 3, 3);
    assert_eq!(records(&recovered), model);
}
