//! A compaction pass holds the maintenance lock only for its short steps (planning, one
//! segment's swap, the checkpoint), not while it reads and writes cleaned segments, so a
//! truncation or a retention pass does not wait for a whole pass. Shown by order: with the
//! pass standing between writing its first cleaned segment and swapping it in, a truncation
//! (or retention) on another thread completes. The pass then checks what changed: after a
//! truncation it swaps nothing more and leaves the clean point alone; a segment retention
//! deleted is not brought back. Either way no `.cleaned` file is left behind.

mod compaction_support;
mod log_support;

use std::sync::mpsc;
use std::time::Duration;

use compaction_support::*;
use weir_log::pause_point::pause_before_swap;
use weir_log::{CleanupPolicy, CompactionReport, LogConfig, LogError, PartitionLog};

/// A bound on waits that only a deadlock (the bug under test) can reach.
const STUCK: Duration = Duration::from_secs(60);

fn leftovers(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".cleaned") || n.ends_with(".swap"))
        .collect()
}

/// Runs a pass on another thread and, while it stands before its first swap, `during` on
/// this one (bounded by `STUCK`). Returns what `during` returned (None if it did not finish
/// while the pass was paused) and the pass's result.
fn while_a_pass_is_paused<T: Send>(
    log: &PartitionLog,
    during: impl FnOnce() -> T + Send,
) -> (Option<T>, Result<CompactionReport, LogError>) {
    let pause = pause_before_swap(log.dir());
    let (done, finished) = mpsc::channel();
    std::thread::scope(|scope| {
        let pass = scope.spawn(|| log.compact(1_000));
        let reached = pause.wait_reached(STUCK);
        scope.spawn(move || {
            let _ = done.send(during());
        });
        let result = finished.recv_timeout(STUCK).ok();
        // Released before any assertion, so a failure is reported, not a hang.
        pause.release();
        let report = pass.join().unwrap();
        assert!(reached, "the pass never reached its swap");
        (result, report)
    })
}

#[test]
fn a_truncation_completes_while_a_pass_runs_and_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), compact_config()).unwrap();
    let mut model = Model::new();
    fill(&log, &mut model, 0, 120, 6);
    log.set_high_watermark(log.log_end_offset());
    let target = 30;

    let (truncated, report) = while_a_pass_is_paused(&log, || log.truncate_to(target));
    let truncated = truncated.expect("the truncation waited for the compaction pass");
    truncated.unwrap();
    let report = report.unwrap();
    assert!(report.stopped_by_truncation, "{report:?}");
    assert_eq!(report.segments_rewritten, 0, "{report:?}");

    // Nothing was compacted: the log is the first `target` offsets as written.
    let kept: Model = model
        .range(..target)
        .map(|(o, r)| (*o, r.clone()))
        .collect();
    assert_eq!(log.log_end_offset(), target);
    assert_eq!(records(&log), kept);
    assert_eq!(leftovers(dir.path()), Vec::<String>::new());
    log.close().unwrap();
    let reopened = PartitionLog::open(dir.path(), compact_config()).unwrap();
    assert_eq!(records(&reopened), kept);

    // The next pass cleans what is there.
    let mut model = kept;
    fill(&reopened, &mut model, 500, 60, 6);
    reopened.set_high_watermark(reopened.log_end_offset());
    let bound = cleaned_bound(dir.path(), reopened.log_end_offset());
    let report = reopened.compact(1_000).unwrap();
    assert!(report.segments_rewritten > 0, "{report:?}");
    assert_eq!(records(&reopened), expected(&model, bound));
}

#[test]
fn retention_completes_while_a_pass_runs_and_the_deleted_segments_stay_gone() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        cleanup_policy: CleanupPolicy::CompactDelete,
        ..compact_config()
    };
    let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    let mut model = Model::new();
    fill(&log, &mut model, 0, 120, 6);
    log.set_high_watermark(log.log_end_offset());
    let segments_before = log.segment_count();

    // Keep about half of the log's bytes: retention deletes the oldest segments, the
    // ones the pass is about to swap in first.
    let mut shrink = config.clone();
    shrink.retention_bytes = Some(log.size_bytes() / 2);
    let (retained, report) = while_a_pass_is_paused(&log, || {
        log.set_config(shrink);
        log.enforce_retention(0)
    });
    let retained = retained.expect("retention waited for the compaction pass");
    let retained = retained.unwrap();
    assert!(retained.segments_deleted > 0, "{retained:?}");
    report.unwrap();

    let start = log.log_start_offset();
    assert_eq!(start, retained.log_start_offset);
    assert!(log.segment_count() < segments_before);
    // Every record left lies at or after the new start, and is one that was written.
    let left = records(&log);
    assert!(
        left.keys().all(|o| *o >= start),
        "a deleted segment came back"
    );
    assert!(left.iter().all(|(o, r)| model.get(o) == Some(r)));
    assert_eq!(leftovers(dir.path()), Vec::<String>::new());
    log.close().unwrap();
    let reopened = PartitionLog::open(dir.path(), config).unwrap();
    assert_eq!(reopened.log_start_offset(), start);
    assert_eq!(records(&reopened), left);
}
