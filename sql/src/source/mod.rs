//! Where topic records come from: one trait, [`TopicSource`], with a local implementation
//! (partition directories read through `weir_log::PartitionLog`) and a remote one (the
//! broker). A source lists topics and opens a [`TopicReader`], which snapshots offsets,
//! seeks by time and reads whole batches by offset range.

mod local;
mod remote;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::SqlError;

pub use local::{LocalOptions, LocalSource, ReadBound};
pub use remote::RemoteSource;

/// The offsets of one partition at one instant: records `start_offset..end_offset` are
/// readable. A query reads only below the `end_offset` it captured when it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionSnapshot {
    pub partition: u32,
    pub start_offset: u64,
    pub end_offset: u64,
}

/// Whole batches read from one partition.
#[derive(Debug, Clone)]
pub struct BatchChunk {
    /// Concatenated RecordBatch v2 batches; the first contains the requested offset (so
    /// it may start below it).
    pub bytes: Bytes,
    /// The offset to read next.
    pub next_offset: u64,
}

/// A place topics are read from.
#[async_trait]
pub trait TopicSource: Debug + Send + Sync {
    /// The topics, sorted by name.
    async fn topic_names(&self) -> Result<Vec<String>, SqlError>;

    /// Opens `topic`, or `None` when it does not exist.
    async fn open_topic(&self, topic: &str) -> Result<Option<Arc<dyn TopicReader>>, SqlError>;

    /// Counts every byte of batches handed out by this source's readers.
    fn bytes_read(&self) -> &ByteCounter;
}

/// One opened topic.
#[async_trait]
pub trait TopicReader: Debug + Send + Sync {
    fn topic(&self) -> &str;

    /// The partition numbers, ascending.
    fn partitions(&self) -> Vec<u32>;

    /// The topic's config overrides (Kafka names), where the source knows them; the
    /// catalog reads `value.format` and `value.schema` from them.
    fn configs(&self) -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    /// The current offset range of every partition.
    async fn snapshot(&self) -> Result<Vec<PartitionSnapshot>, SqlError>;

    /// The first offset of `partition` whose record timestamp is at or after
    /// `timestamp_ms`, or `None` when every record is older.
    async fn offset_for_time(
        &self,
        partition: u32,
        timestamp_ms: i64,
    ) -> Result<Option<u64>, SqlError>;

    /// Whole batches from the one containing `offset`, about `max_bytes` (at least one
    /// batch), none starting at or after `end_offset`.
    async fn read(
        &self,
        partition: u32,
        offset: u64,
        end_offset: u64,
        max_bytes: usize,
    ) -> Result<BatchChunk, SqlError>;
}

/// A shared count of bytes read, for tests and scan metrics.
#[derive(Debug, Default, Clone)]
pub struct ByteCounter(Arc<AtomicU64>);

impl ByteCounter {
    pub fn add(&self, bytes: usize) {
        self.0.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}
