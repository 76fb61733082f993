//! Helpers of the leader-epoch tests: what a log's cache says, and what its batches say
//! it should be.
#![allow(dead_code)]

use weir_log::batch::BatchHeader;
use weir_log::{LeaderEpochCache, PartitionLog};

use crate::log_support::{batch_of, read_all_batches, stored_form};

/// The log's cache as (epoch, start offset) pairs.
pub fn epochs(log: &PartitionLog) -> Vec<(i32, u64)> {
    log.leader_epochs()
        .iter()
        .map(|e| (e.epoch, e.start_offset))
        .collect()
}

/// The cache the log's batches describe: each batch's epoch assigned at its base offset,
/// oldest first, cut to the log start (what a rebuild from the segments gives).
pub fn epochs_of_batches(log: &PartitionLog) -> Vec<(i32, u64)> {
    let mut cache = LeaderEpochCache::new();
    for bytes in read_all_batches(log) {
        let header = BatchHeader::parse(&bytes).expect("stored header");
        cache.assign(header.partition_leader_epoch, header.base_offset as u64);
    }
    cache.truncate_from_start(log.log_start_offset());
    cache
        .entries()
        .iter()
        .map(|e| (e.epoch, e.start_offset))
        .collect()
}

/// Appends one leader batch of `records` records at `epoch`; returns its base offset.
pub fn append_at(log: &PartitionLog, seed: u64, records: usize, epoch: i32) -> u64 {
    let mut b = batch_of(seed, records, 40, seed as i64);
    log.append(&mut b, epoch)
        .unwrap_or_else(|e| panic!("append at epoch {epoch}: {e}"))
        .base_offset
}

/// A batch as a leader sends it to a follower: `records` records from `base_offset` on,
/// stamped `epoch`.
pub fn leader_batch(seed: u64, records: usize, base_offset: u64, epoch: i32) -> Vec<u8> {
    stored_form(batch_of(seed, records, 40, seed as i64), base_offset, epoch)
}
