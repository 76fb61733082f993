//! `weir-log`: the storage engine of one partition.
//!
//! Owns the on-disk format (Kafka RecordBatch v2 batches in segment files with
//! sparse offset and time indexes), appends, reads by offset and by time,
//! durability, crash recovery, retention and compaction.
//!
//! Does not own: networking, async runtimes, topics, replication policy. The
//! broker drives the partition log and decides when the high watermark moves.

pub mod batch;
