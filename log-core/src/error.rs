//! The one error type at the boundary of the crate: every way an operation on a
//! partition log can fail, each a sentence naming what and where.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use crate::batch::BatchError;

/// Why an operation on a [`crate::PartitionLog`] failed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A batch handed to append (or found where a whole batch must be) is malformed.
    #[error("invalid record batch: {0}")]
    Batch(#[from] BatchError),

    /// A batch in an append buffer is malformed; `position` is its byte position in the buffer.
    #[error("invalid record batch at byte {position} of the append buffer: {source}")]
    BatchAt {
        position: usize,
        #[source]
        source: BatchError,
    },

    #[error("offset {offset} is out of range: the log holds offsets {log_start}..{log_end}")]
    OffsetOutOfRange {
        offset: u64,
        log_start: u64,
        log_end: u64,
    },

    #[error("batch of {size_bytes} bytes at byte {position} of the append buffer exceeds max.message.bytes = {max_bytes}")]
    MessageTooLarge {
        position: usize,
        size_bytes: usize,
        max_bytes: usize,
    },

    #[error("append buffer holds no batch")]
    EmptyAppend,

    #[error("batch at byte {position} of the append buffer has last offset delta {last_offset_delta}; it must be at least 0")]
    InvalidOffsetDelta {
        position: usize,
        last_offset_delta: i32,
    },

    #[error("replicated batch at byte {position} starts at offset {got}, but the log expects an offset at or after {expected}")]
    NonContiguous {
        position: usize,
        expected: u64,
        got: i64,
    },

    /// A leader append at an epoch below the latest this log holds: leader epochs only
    /// grow, so the caller was deposed. Nothing was written.
    #[error("append at leader epoch {epoch} to the partition log in {} refused: it already holds batches of leader epoch {latest_epoch}", dir.display())]
    StaleLeaderEpoch {
        dir: PathBuf,
        epoch: i32,
        latest_epoch: i32,
    },

    #[error("append of {size_bytes} bytes does not fit in the segment at base offset {segment_base_offset}, whose positions are 32-bit")]
    SegmentOverflow {
        segment_base_offset: u64,
        size_bytes: u64,
    },

    #[error("failed to {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// An fsync failed (or a write that could not be undone, or a change of the directory
    /// that stopped half done). The page cache may have dropped data it had reported
    /// written, so retrying could report durability that does not exist: the log takes no
    /// more writes until it is reopened, which recovers from what is on disk. Reads of
    /// data appended before still work.
    #[error("partition log in {} stopped taking writes after a failure: {cause}", dir.display())]
    Poisoned { dir: PathBuf, cause: Arc<LogError> },

    #[error("config {key} = {value:?} is invalid: {reason}")]
    Config {
        key: String,
        value: String,
        reason: String,
    },

    #[error("segment {} is corrupt at byte {position}: {reason}", segment.display())]
    Corrupt {
        segment: PathBuf,
        position: u64,
        reason: String,
    },

    /// Damage in a segment below the recovery point: those bytes were fsynced, so the
    /// damage is not a torn write, and the open refuses rather than serve or drop data.
    /// `weir log repair` cuts the partition to the last whole batch before it.
    #[error("segment {} is damaged at byte {position} (offset {offset}), below the recovery point {recovery_point}: {reason}; run `weir log repair` on the partition directory to drop everything from offset {offset} on", segment.display())]
    DamagedBelowRecoveryPoint {
        segment: PathBuf,
        position: u64,
        /// The first offset the damage loses.
        offset: u64,
        recovery_point: u64,
        reason: String,
    },

    /// Another process holds the directory (see `weir_log::DirLock`).
    #[error("{} is in use: locked by {holder}", dir.display())]
    Locked { dir: PathBuf, holder: String },

    /// A file slice was cut from bytes that a truncation has since removed.
    #[error("segment {} was truncated to {truncated_to_bytes} bytes under a slice of bytes {position}..{end}", segment.display())]
    SliceTruncated {
        segment: PathBuf,
        position: u64,
        end: u64,
        truncated_to_bytes: u64,
    },

    #[error("a lock of the partition log in {} was poisoned by a panic", dir.display())]
    LockPoisoned { dir: PathBuf },

    /// One batch holds more records than the whole compaction key map: no pass could get
    /// past it (Kafka stops cleaning such a log too).
    #[error("compaction of {} cannot get past offset {offset}: its batch holds {record_count} records and the key map ({key_map_bytes} bytes) only {keys_max} keys; raise compaction_key_map_bytes", dir.display())]
    CompactionKeyMapTooSmall {
        dir: PathBuf,
        offset: u64,
        record_count: i32,
        keys_max: usize,
        key_map_bytes: u64,
    },
}

/// Attaches the operation and path to an `io::Error`.
pub(crate) trait IoContext<T> {
    fn io_ctx(self, op: &'static str, path: &std::path::Path) -> Result<T, LogError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn io_ctx(self, op: &'static str, path: &std::path::Path) -> Result<T, LogError> {
        self.map_err(|source| LogError::Io {
            op,
            path: path.to_path_buf(),
            source,
        })
    }
}
