//! Compaction keeps the newest record of each key in sealed segments, preserves offsets
//! (reads skip the gaps), removes tombstones only delete.retention.ms after the pass that
//! first cleaned them, never touches
//! the active segment, survives restarts, and leftovers of an interrupted rewrite are
//! cleaned up on open.

mod log_support;

use std::collections::BTreeMap;

use log_support::*;
use weir_log::{CleanupPolicy, LogConfig, PartitionLog};

fn config(delete_retention_ms: u64) -> LogConfig {
    let mut config = tiny_config();
    config.cleanup_policy = CleanupPolicy::Compact;
    config.delete_retention_ms = delete_retention_ms;
    config
}

/// 60 single-record batches over keys k0..k4 at timestamps 0..60; every 10th is a
/// tombstone. Returns offset -> (key, value).
fn fill(log: &PartitionLog) -> BTreeMap<u64, (String, Option<String>)> {
    let mut written = BTreeMap::new();
    for i in 0..60u64 {
        let key = format!("k{}", i % 5);
        let value = (i % 10 != 9).then(|| format!("v{i}-{}", "x".repeat(40)));
        let mut b = keyed_batch(&[(key.as_str(), value.as_deref(), i as i64)]);
        let info = log.append(&mut b, 0).unwrap();
        written.insert(info.base_offset, (key, value));
    }
    log.set_high_watermark(log.log_end_offset());
    written
}

fn records(log: &PartitionLog) -> Vec<(u64, String, Option<String>)> {
    read_all_records(log)
        .into_iter()
        .map(|r| {
            let key = String::from_utf8(r.key.unwrap().to_vec()).unwrap();
            let value = r.value.map(|v| String::from_utf8(v.to_vec()).unwrap());
            (r.offset as u64, key, value)
        })
        .collect()
}

/// What compaction must leave: the active segment untouched; in sealed segments only the
/// newest sealed record per key, tombstones dropped when `drop_tombstones`.
fn expected(
    written: &BTreeMap<u64, (String, Option<String>)>,
    active_base: u64,
    drop_tombstones: bool,
) -> Vec<(u64, String, Option<String>)> {
    let mut newest: BTreeMap<&str, u64> = BTreeMap::new();
    for (offset, (key, _)) in written.range(..active_base) {
        newest.insert(key, *offset);
    }
    written
        .iter()
        .filter(|(offset, (key, value))| {
            **offset >= active_base
                || (newest[key.as_str()] == **offset && (value.is_some() || !drop_tombstones))
        })
        .map(|(o, (k, v))| (*o, k.clone(), v.clone()))
        .collect()
}

fn active_base(dir: &std::path::Path) -> u64 {
    let last = segment_logs(dir).pop().unwrap();
    last.file_stem().unwrap().to_str().unwrap().parse().unwrap()
}

#[test]
fn keeps_newest_per_key_and_tombstones_within_delete_retention() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), config(1_000_000)).unwrap();
    let written = fill(&log);
    let active = active_base(dir.path());
    assert!(active > 30, "most data is in sealed segments");
    let size_before = log.size_bytes();
    let report = log.compact(100).unwrap();
    assert!(report.segments_rewritten > 0);
    assert!(report.records_removed > 0);
    assert_eq!(report.tombstones_removed, 0);
    assert!(log.size_bytes() < size_before);
    assert_eq!(records(&log), expected(&written, active, false));
    // Offsets are preserved and the end is unchanged.
    assert_eq!(log.log_end_offset(), 60);
    // Reading from a removed offset returns the next kept record.
    let kept: Vec<u64> = records(&log).iter().map(|r| r.0).collect();
    let removed = (0..60).find(|o| !kept.contains(o)).unwrap();
    let slice = log.read(removed, 1, u64::MAX).unwrap();
    let first = weir_log::batch::decode_records(&slice.to_bytes().unwrap()).unwrap();
    assert!(first[0].offset as u64 > removed);
}

#[test]
fn tombstones_go_after_delete_retention_and_results_survive_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), config(10)).unwrap();
    let written = fill(&log);
    let active = active_base(dir.path());
    // The first pass cleans the tombstones: they stay for delete.retention.ms from now,
    // however old their timestamps are.
    let report = log.compact(1_000).unwrap();
    assert_eq!(report.tombstones_removed, 0);
    assert_eq!(records(&log), expected(&written, active, false));
    assert!(
        !log.compact(1_009).unwrap().ran,
        "nothing dirty, no tombstone due"
    );
    let report = log.compact(1_010).unwrap();
    assert!(report.tombstones_removed > 0, "{report:?}");
    let want = expected(&written, active, true);
    assert_eq!(records(&log), want);
    // Compacting again changes nothing.
    assert_eq!(log.compact(2_000).unwrap().segments_rewritten, 0);
    log.close().unwrap();
    let log = PartitionLog::open(dir.path(), config(10)).unwrap();
    assert_eq!(records(&log), want);
    drop(log);
    let log = PartitionLog::open(dir.path(), config(10)).unwrap();
    assert_eq!(records(&log), want);
    let mut b = keyed_batch(&[("k1", Some("after"), 2_000)]);
    assert_eq!(log.append(&mut b, 0).unwrap().base_offset, 60);
}

#[test]
fn leftovers_of_an_interrupted_rewrite_are_removed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), config(10)).unwrap();
    fill(&log);
    let before = read_all_batches(&log);
    drop(log);
    // A crash after writing the cleaned file, before the rename; and one after the rename,
    // before the indexes were rebuilt.
    let first = segment_logs(dir.path()).remove(0);
    let mut cleaned = first.clone().into_os_string();
    cleaned.push(".cleaned");
    std::fs::write(&cleaned, b"half-written compaction output").unwrap();
    std::fs::remove_file(first.with_extension("index")).unwrap();
    std::fs::remove_file(first.with_extension("timeindex")).unwrap();
    let log = PartitionLog::open(dir.path(), config(10)).unwrap();
    assert!(!std::path::Path::new(&cleaned).exists());
    assert!(first.with_extension("index").exists());
    assert_eq!(read_all_batches(&log), before);
}

#[test]
fn delete_policy_does_not_compact() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), tiny_config()).unwrap();
    let written = fill(&log);
    assert_eq!(log.compact(1_000).unwrap().segments_rewritten, 0);
    assert_eq!(records(&log).len(), written.len());
}
