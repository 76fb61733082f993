//! A pass stopped at any I/O call — every write, fsync, rename, removal and directory
//! fsync of it in turn fails, and so does everything after it, as if the process died
//! there — leaves a directory that opens without error and holds, for every segment, the
//! old log or the new one: never a mix, never a damaged batch, never a lost record that
//! compaction had to keep. A pass on the reopened log then finishes the job.

mod compaction_support;
mod log_support;

use std::path::Path;

use compaction_support::*;
use weir_log::fault::{inject, FaultPlan, IoCall};
use weir_log::PartitionLog;

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
    }
}

#[test]
fn every_stopping_point_reopens_to_the_old_or_the_new_segments() {
    let original = tempfile::tempdir().unwrap();
    let mut model = Model::new();
    let bound = {
        let log = PartitionLog::open(original.path(), compact_config()).unwrap();
        fill(&log, &mut model, 0, 60, 7);
        log.set_high_watermark(log.log_end_offset());
        let bound = cleaned_bound(original.path(), log.log_end_offset());
        log.close().unwrap();
        bound
    };
    let must_keep = expected(&model, bound);
    assert!(must_keep.len() < model.len());

    let mut completed = false;
    for step in 0..500u64 {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(original.path(), dir.path());
        let log = PartitionLog::open(dir.path(), compact_config()).unwrap();
        let guard = inject(
            dir.path(),
            FaultPlan::new(&IoCall::ALL).after(step).sticky(),
        );
        let result = log.compact(1_000);
        let failed_at = guard.first_failure();
        drop(log);
        drop(guard);
        if failed_at.is_none() {
            assert!(result.unwrap().segments_rewritten > 0);
            completed = true;
        } else {
            assert!(
                result.is_err(),
                "step {step}: a failed call {failed_at:?} went unreported"
            );
        }

        let log = PartitionLog::open(dir.path(), compact_config())
            .unwrap_or_else(|e| panic!("step {step} ({failed_at:?}): reopen failed: {e}"));
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".cleaned") || n.ends_with(".swap"))
            .collect();
        assert!(leftovers.is_empty(), "step {step}: {leftovers:?}");
        // Every batch is whole and intact (read_all_records checks each CRC).
        let kept = records(&log);
        for (offset, record) in &kept {
            assert_eq!(
                model.get(offset),
                Some(record),
                "step {step}: offset {offset}"
            );
        }
        for (offset, record) in &must_keep {
            assert_eq!(
                kept.get(offset),
                Some(record),
                "step {step} ({failed_at:?}): lost {offset}"
            );
        }
        // The reopened log (whose high watermark an unclean stop reset) takes the pass to
        // its end.
        log.set_high_watermark(log.log_end_offset());
        log.compact(2_000).unwrap();
        assert_eq!(records(&log), must_keep, "step {step}");
        if completed {
            assert!(step > 10, "a pass makes more than {step} I/O calls");
            return;
        }
    }
    panic!("the pass never completed");
}
