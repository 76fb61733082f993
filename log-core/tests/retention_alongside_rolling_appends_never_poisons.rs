//! Retention and compaction take the maintenance lock, not the writer lock, so they run while
//! appends roll segments. A roll must never expose the old segment as sealed (deletable)
//! before its indexes are sealed: otherwise retention removes the files under the roll and
//! the failed trim poisons the log.

mod log_support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use log_support::*;
use weir_log::PartitionLog;

const BATCHES: u64 = 2000;

#[test]
fn retention_running_alongside_rolling_appends_never_poisons_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = tiny_config();
    config.segment_bytes = 2 * 1024;
    config.index_bytes_max = 64 * 1024;
    config.retention_bytes = Some(4 * 1024);
    let log = Arc::new(PartitionLog::open(dir.path(), config).unwrap());
    let done = Arc::new(AtomicBool::new(false));
    let cleaner = {
        let (log, done) = (Arc::clone(&log), Arc::clone(&done));
        thread::spawn(move || {
            let mut deleted = 0usize;
            while !done.load(Ordering::Acquire) {
                deleted += log.enforce_retention(i64::MAX).unwrap().segments_deleted;
            }
            deleted
        })
    };
    for i in 0..BATCHES {
        let mut b = batch_of(i, 1, 100, i as i64);
        log.append(&mut b, 0).unwrap();
    }
    done.store(true, Ordering::Release);
    let deleted = cleaner.join().unwrap();
    assert!(deleted > 0, "retention never deleted a segment");
    assert!(!log.is_poisoned());
    assert_eq!(log.log_end_offset(), BATCHES);
    // What is left reads back whole and in order.
    let start = log.log_start_offset();
    let slice = log.read(start, usize::MAX, u64::MAX).unwrap();
    assert!(!slice.to_bytes().unwrap().is_empty());
}
