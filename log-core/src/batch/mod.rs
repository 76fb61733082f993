//! Kafka RecordBatch v2: the unit of storage, replication and transfer.
//!
//! Owns the byte format of a batch: the 61-byte header ([`BatchHeader`]),
//! whole-batch validation ([`validate`]) and record-level validation of
//! appends ([`RecordValidator`]), splitting concatenated batches
//! ([`batches`]), in-place rewrites of fields outside the CRC, the varint
//! records inside, compression, encoding ([`BatchBuilder`]) and decoding
//! ([`RecordDecoder`], [`decode_records`]). Nothing here does I/O.

mod builder;
mod codec;
mod error;
mod header;
mod record;
mod retained;
mod validate;
mod validate_records;
mod varint;

pub use builder::BatchBuilder;
pub use error::{BatchError, TimestampBound};
pub use header::{
    set_base_offset, set_log_append_time, set_partition_leader_epoch, set_producer, BatchHeader,
    Compression, TimestampType, BATCH_HEADER_BYTES, LOG_OVERHEAD_BYTES, MAGIC_V2,
    NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE,
};
pub use record::{
    decode_records, ControlRecordType, HeaderIter, Record, RecordDecoder, RecordHeader, RecordIter,
    RecordView, DECOMPRESSED_BYTES_MAX_DEFAULT,
};
pub(crate) use retained::RetainedBuilder;
pub use validate::{batches, compute_crc, validate, validate_produced, BatchSplitter};
pub use validate_records::{
    decompressed_bytes_max_for, ProduceChecks, RecordValidator, TimestampBounds,
    DECOMPRESSION_RATIO_MAX,
};
