//! A compaction pass never holds the append lock: while a pass stands paused between
//! writing its cleaned files and swapping them in, another thread keeps appending (and
//! rolling segments) and reading. Afterwards the log keeps the newest record per key below
//! the bound the pass started with, and every record from there on as it was appended.

mod compaction_support;
mod log_support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use compaction_support::*;
use weir_log::pause_point::pause_before_swap;
use weir_log::PartitionLog;

/// A bound on waits that only a deadlock (the bug under test) can reach.
const STUCK: Duration = Duration::from_secs(60);

#[test]
fn appends_and_reads_complete_while_a_pass_is_paused() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), compact_config()).unwrap();
    let mut model = Model::new();
    fill(&log, &mut model, 0, 120, 6);
    let high_watermark = log.log_end_offset();
    log.set_high_watermark(high_watermark);
    let bound = cleaned_bound(dir.path(), high_watermark);
    let segments_before = log.segment_count();

    let pause = pause_before_swap(dir.path());
    let appended = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let (done, finished) = mpsc::channel();
    let tail = std::thread::scope(|scope| {
        let pass = scope.spawn(|| log.compact(1_000));
        assert!(pause.wait_reached(STUCK), "the pass reached its swap");
        let appender = scope.spawn(|| {
            let mut tail = Model::new();
            let mut i = 10_000u64;
            while !stop.load(Ordering::Acquire) {
                fill(&log, &mut tail, i, 1, 6);
                i += 1;
                appended.fetch_add(1, Ordering::AcqRel);
            }
            tail
        });
        // The pass is paused: these appends (which roll segments) and reads must finish.
        scope.spawn(|| {
            while appended.load(Ordering::Acquire) < 100 && !stop.load(Ordering::Acquire) {
                std::thread::yield_now();
            }
            let read = log
                .read(log.log_start_offset(), 1 << 20, u64::MAX)
                .map(|s| s.len());
            let _ = done.send(read.is_ok() && !stop.load(Ordering::Acquire));
        });
        let while_paused = finished.recv_timeout(STUCK);
        let rolled = log.segment_count() > segments_before;
        // Let everything finish before asserting, so a failure is reported, not a hang.
        pause.release();
        let report = pass.join().unwrap().unwrap();
        stop.store(true, Ordering::Release);
        let tail = appender.join().unwrap();
        assert_eq!(while_paused, Ok(true), "appends blocked by the pass");
        assert!(rolled, "appends rolled segments meanwhile");
        assert!(report.segments_rewritten > 0, "{report:?}");
        tail
    });

    model.extend(tail);
    assert_eq!(records(&log), expected(&model, bound));
}
