//! Builders and readers shared by the partition-log tests.
#![allow(dead_code)]

use std::path::Path;

use weir_log::batch::{self, BatchBuilder, Compression, Record};
use weir_log::{CleanupPolicy, FsyncPolicy, LogConfig, PartitionLog};

/// A config with tiny segments and indexes so that rolls and index entries happen often.
pub fn tiny_config() -> LogConfig {
    LogConfig {
        segment_bytes: 1024,
        segment_ms: u64::MAX / 2,
        index_interval_bytes: 128,
        index_bytes_max: 96,
        max_message_bytes: 64 * 1024,
        retention_ms: None,
        retention_bytes: None,
        cleanup_policy: CleanupPolicy::Delete,
        delete_retention_ms: 0,
        fsync: FsyncPolicy::Never,
        ..LogConfig::default()
    }
}

/// One batch of `count` records whose values are derived from `seed`, timestamps from `timestamp`.
pub fn batch_of(seed: u64, count: usize, value_bytes: usize, timestamp: i64) -> Vec<u8> {
    let mut builder = BatchBuilder::new(Compression::None);
    for i in 0..count {
        let key = format!("k{}", seed.wrapping_add(i as u64) % 7);
        let value: Vec<u8> = (0..value_bytes)
            .map(|j| (seed as usize).wrapping_mul(31).wrapping_add(i * 7 + j) as u8)
            .collect();
        builder.push(
            timestamp.wrapping_add(i as i64),
            Some(key.as_bytes()),
            Some(&value),
            &[],
        );
    }
    builder.build().expect("build batch").to_vec()
}

/// One batch of keyed records (`None` value = tombstone).
pub fn keyed_batch(records: &[(&str, Option<&str>, i64)]) -> Vec<u8> {
    let mut builder = BatchBuilder::new(Compression::None);
    for (key, value, timestamp) in records {
        builder.push(
            *timestamp,
            Some(key.as_bytes()),
            value.map(str::as_bytes),
            &[],
        );
    }
    builder.build().expect("build batch").to_vec()
}

/// Reads every batch from the log start to the end, following next offsets.
pub fn read_all_batches(log: &PartitionLog) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    let end = log.log_end_offset();
    while offset < end {
        let slice = log.read(offset, 4096, u64::MAX).expect("read");
        let bytes = slice.to_bytes().expect("slice bytes");
        if slice.is_empty() {
            break;
        }
        for item in batch::batches(&bytes) {
            let (_, b) = item.expect("whole batches");
            batch::validate(b, usize::MAX).expect("valid batch");
            out.push(b.to_vec());
        }
        assert!(slice.next_offset() > offset, "read made progress");
        offset = slice.next_offset();
    }
    out
}

/// Every record in the log, decoded.
pub fn read_all_records(log: &PartitionLog) -> Vec<Record> {
    read_all_batches(log)
        .iter()
        .flat_map(|b| batch::decode_records(b).expect("decode"))
        .collect()
}

/// The batch as the log stores it: base offset set, leader epoch stamped.
pub fn stored_form(mut bytes: Vec<u8>, base_offset: u64, epoch: i32) -> Vec<u8> {
    batch::set_base_offset(&mut bytes, base_offset as i64);
    batch::set_partition_leader_epoch(&mut bytes, epoch);
    bytes
}

pub fn segment_logs(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut logs: Vec<_> = std::fs::read_dir(dir)
        .expect("list dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs
}
