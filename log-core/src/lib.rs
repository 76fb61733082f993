//! `weir-log`: the storage engine of one partition.
//!
//! Owns the on-disk format (Kafka RecordBatch v2 batches in segment files with
//! sparse offset and time indexes), appends, reads by offset and by time,
//! durability, crash recovery, retention, compaction, and the leader-epoch cache
//! replication truncates by (KIP-101, KIP-279).
//!
//! Does not own: networking, async runtimes, topics, replication policy. The
//! broker drives the partition log and decides when the high watermark moves.
//!
//! Feature `fault-injection` (tests only) adds [`fault`]: make chosen I/O calls on a
//! partition directory fail, to test that a failed fsync is final.

mod append_validation;
pub mod batch;
mod checkpoint;
mod compaction;
mod compaction_checkpoint;
mod compaction_keys;
mod compaction_map;
mod compaction_rewrite;
mod compaction_swap;
mod config;
mod dir_lock;
mod durability;
mod error;
#[cfg(feature = "fault-injection")]
pub mod fault;
mod file_io;
mod file_name;
mod index_file;
pub mod inspect;
mod leader_epoch;
mod leader_epoch_checkpoint;
mod load;
mod offset_index;
mod partition_epochs;
mod partition_log;
#[cfg(feature = "fault-injection")]
pub mod pause_point;
mod read;
mod recompress;
mod recovery;
mod repair;
mod retention;
mod segment;
mod slice;
mod time_index;
mod truncate;

pub use checkpoint::CHECKPOINT_BYTES;
pub use compaction::{CompactionReport, SkippedSegment, COMPACTION_KEY_MAP_BYTES_DEFAULT};
pub use config::{CleanupPolicy, FsyncPolicy, LogConfig, TIMESTAMP_BOUND_MS_MAX};
pub use dir_lock::{DirLock, LockMode, LOCK_FILE};
pub use error::LogError;
pub use file_io::set_fsync_observer;
pub use leader_epoch::{Assigned, EpochEntry, LeaderEpochCache};
pub use offset_index::OFFSET_INDEX_ENTRY_BYTES;
pub use partition_epochs::FollowerTruncation;
pub use partition_log::{AppendInfo, PartitionLog, ValidatedAppend};
pub use repair::{Repair, RepairCut};
pub use retention::RetentionReport;
pub use slice::FileSlice;
pub use time_index::TIME_INDEX_ENTRY_BYTES;
