//! A model of what compaction must leave, shared by the compaction tests: below the
//! cleaned bound only the newest record of each key, at and above it every record.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use weir_log::batch::{self, BatchBuilder, Compression};
use weir_log::{CleanupPolicy, LogConfig, PartitionLog};

use crate::log_support::{read_all_records, segment_logs, tiny_config};

/// offset -> (key, value); `None` value = tombstone.
pub type Model = BTreeMap<u64, (String, Option<String>)>;

/// Tiny segments, compact policy, tombstones kept for a long time.
pub fn compact_config() -> LogConfig {
    LogConfig {
        cleanup_policy: CleanupPolicy::Compact,
        delete_retention_ms: 1_000_000_000,
        ..tiny_config()
    }
}

/// A batch of keyed records with `codec`; `producer` makes it an idempotent producer's.
pub fn keyed(
    codec: Compression,
    producer: Option<(i64, i32)>,
    records: &[(String, Option<String>)],
    timestamp: i64,
) -> Vec<u8> {
    let mut builder = BatchBuilder::new(codec);
    if let Some((id, sequence)) = producer {
        builder = builder.with_producer(id, 0, sequence);
    }
    for (key, value) in records {
        builder.push(
            timestamp,
            Some(key.as_bytes()),
            value.as_deref().map(str::as_bytes),
            &[],
        );
    }
    builder.build().unwrap().to_vec()
}

/// Appends `count` single-record batches over `keys` keys, numbering values from `from`,
/// in the log's latest leader epoch (0 for none).
pub fn fill(log: &PartitionLog, model: &mut Model, from: u64, count: u64, keys: u64) {
    for i in from..from + count {
        let record = (
            format!("k{}", i % keys),
            Some(format!("v{i}-{}", "x".repeat(30))),
        );
        let mut b = keyed(
            Compression::None,
            None,
            std::slice::from_ref(&record),
            i as i64,
        );
        // In the log's current leader epoch: a leader's epoch never goes back.
        let epoch = log.latest_leader_epoch().unwrap_or(0);
        let info = log.append(&mut b, epoch).unwrap();
        model.insert(info.base_offset, record);
    }
}

/// Every record in the log.
pub fn records(log: &PartitionLog) -> Model {
    read_all_records(log)
        .into_iter()
        .map(|r| {
            let key = String::from_utf8(r.key.unwrap().to_vec()).unwrap();
            let value = r.value.map(|v| String::from_utf8(v.to_vec()).unwrap());
            (r.offset as u64, (key, value))
        })
        .collect()
}

/// What a complete clean up to `bound` leaves of `written`.
pub fn expected(written: &Model, bound: u64) -> Model {
    let mut newest: BTreeMap<&str, u64> = BTreeMap::new();
    for (offset, (key, _)) in written.range(..bound) {
        newest.insert(key, *offset);
    }
    written
        .iter()
        .filter(|(offset, (key, _))| **offset >= bound || newest[key.as_str()] == **offset)
        .map(|(o, r)| (*o, r.clone()))
        .collect()
}

/// Base offsets of the segments on disk, oldest first.
pub fn segment_bases(dir: &Path) -> Vec<u64> {
    segment_logs(dir)
        .iter()
        .map(|p| p.file_stem().unwrap().to_str().unwrap().parse().unwrap())
        .collect()
}

/// Where cleaning stops: the end of the last sealed segment wholly below
/// min(active base, high watermark).
pub fn cleaned_bound(dir: &Path, high_watermark: u64) -> u64 {
    let bases = segment_bases(dir);
    let active = *bases.last().unwrap();
    let bound = active.min(high_watermark);
    bases.into_iter().filter(|b| *b <= bound).max().unwrap()
}

/// Every batch of the log, as stored, by base offset.
pub fn batches_by_base(log: &PartitionLog) -> BTreeMap<u64, Vec<u8>> {
    crate::log_support::read_all_batches(log)
        .into_iter()
        .map(|b| (batch::BatchHeader::parse(&b).unwrap().base_offset as u64, b))
        .collect()
}
