//! The one error type of the batch module: every way a RecordBatch can be
//! malformed, too large, or fail to (de)compress. Positions are byte offsets
//! into the buffer handed to the failing function.

use std::io;

use super::Compression;

/// Why a batch could not be parsed, validated, decoded or built.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error(
        "batch at byte {position} is truncated: it needs {needed_bytes} bytes but only {available_bytes} remain"
    )]
    Truncated {
        position: usize,
        needed_bytes: usize,
        available_bytes: usize,
    },

    #[error(
        "batch at byte {position} has an invalid length field {batch_length} (a v2 batch length is at least 49)"
    )]
    InvalidLength { position: usize, batch_length: i32 },

    #[error(
        "batch at byte {position} has magic {magic}; only RecordBatch v2 (magic 2) is supported"
    )]
    UnsupportedMagic { position: usize, magic: i8 },

    #[error(
        "batch length field says the batch is {size_bytes} bytes but the buffer holds {buffer_bytes} bytes"
    )]
    SizeMismatch {
        size_bytes: usize,
        buffer_bytes: usize,
    },

    #[error("batch of {size_bytes} bytes exceeds the limit of {max_bytes} bytes")]
    TooLarge { size_bytes: usize, max_bytes: usize },

    #[error(
        "batch at base offset {base_offset} fails its CRC-32C check: stored {stored:#010x}, computed {computed:#010x}"
    )]
    CrcMismatch {
        base_offset: i64,
        stored: u32,
        computed: u32,
    },

    #[error(
        "batch at base offset {base_offset} declares {record_count} records, which does not fit its last offset delta {last_offset_delta}"
    )]
    InvalidRecordCount {
        base_offset: i64,
        record_count: i32,
        last_offset_delta: i32,
    },

    #[error(
        "batch at base offset {base_offset} declares {record_count} records but its {records_bytes}-byte records section cannot hold them"
    )]
    RecordCountTooLarge {
        base_offset: i64,
        record_count: i32,
        records_bytes: usize,
    },

    #[error("batch attributes name unknown compression codec {codec}")]
    UnknownCompression { codec: u8 },

    #[error("unknown compression {name:?}; expected none, gzip, snappy, lz4 or zstd")]
    UnknownCompressionName { name: String },

    #[error("{codec} compression of a batch failed: {source}")]
    Compress {
        codec: Compression,
        #[source]
        source: io::Error,
    },

    #[error(
        "records section of the {codec} batch at base offset {base_offset} does not decompress: {source}"
    )]
    Decompress {
        codec: Compression,
        base_offset: i64,
        #[source]
        source: io::Error,
    },

    #[error(
        "records section of the {codec} batch at base offset {base_offset} decompresses to more than the limit of {limit_bytes} bytes"
    )]
    DecompressedTooLarge {
        codec: Compression,
        base_offset: i64,
        limit_bytes: usize,
    },

    #[error(
        "record {record_index} of the batch at base offset {base_offset} is corrupt at byte {position} of the records section: {reason}"
    )]
    CorruptRecord {
        base_offset: i64,
        record_index: u32,
        position: usize,
        reason: &'static str,
    },

    #[error(
        "batch at base offset {base_offset} has {trailing_bytes} bytes left after its {record_count} records"
    )]
    TrailingBytes {
        base_offset: i64,
        record_count: i32,
        trailing_bytes: usize,
    },

    #[error(
        "batch at base offset {base_offset} declares {record_count} records but holds {records_found}"
    )]
    RecordCountMismatch {
        base_offset: i64,
        record_count: i32,
        records_found: u32,
    },

    #[error(
        "record {record_index} of the batch at base offset {base_offset} has offset delta {offset_delta}; a produced batch numbers its records 0, 1, 2, ..., so it must be {record_index}"
    )]
    OffsetDeltaMismatch {
        base_offset: i64,
        record_index: u32,
        offset_delta: i32,
    },

    #[error(
        "record {record_index} of the batch at base offset {base_offset} has timestamp delta {timestamp_delta}, which overflows the base timestamp {base_timestamp}"
    )]
    TimestampOverflow {
        base_offset: i64,
        record_index: u32,
        base_timestamp: i64,
        timestamp_delta: i64,
    },

    #[error(
        "batch at base offset {base_offset} declares max timestamp {max_timestamp}, but the largest timestamp of its records is {records_max_timestamp}"
    )]
    MaxTimestampMismatch {
        base_offset: i64,
        max_timestamp: i64,
        records_max_timestamp: i64,
    },

    #[error(
        "record {record_index} of the batch at base offset {base_offset} has timestamp {timestamp}, more than {bound_ms} ms {direction} the broker's clock {now_ms} ({config})",
        direction = bound.direction(),
        config = bound.config_name()
    )]
    TimestampOutOfRange {
        base_offset: i64,
        record_index: u32,
        timestamp: i64,
        now_ms: i64,
        bound: TimestampBound,
        bound_ms: u64,
    },

    /// Kafka's INVALID_RECORD on a compacted topic.
    #[error(
        "{} of the batch at base offset {base_offset} {} no key; a compacted topic keeps the latest record per key, so every record needs one",
        keyless_records(record_indexes), if record_indexes.len() == 1 { "has" } else { "have" }
    )]
    KeylessRecords {
        base_offset: i64,
        /// Index in the batch of every record without a key, in order.
        record_indexes: Vec<u32>,
    },

    #[error(
        "batch at base offset {base_offset} is a control batch; producers may not write control records"
    )]
    ControlBatch { base_offset: i64 },

    #[error(
        "batch at base offset {base_offset} of producer {producer_id} is transactional, but transactions are not supported yet"
    )]
    TransactionalBatch { base_offset: i64, producer_id: i64 },

    #[error("a batch needs at least one record")]
    Empty,

    #[error("batch would exceed the RecordBatch v2 limits: {what}")]
    EncodeOverflow { what: &'static str },
}

/// Which of a topic's timestamp bounds a record broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampBound {
    /// `message.timestamp.before.max.ms`: too far in the past.
    Before,
    /// `message.timestamp.after.max.ms`: too far in the future.
    After,
}

impl TimestampBound {
    /// The Kafka topic config that sets this bound.
    pub fn config_name(self) -> &'static str {
        match self {
            TimestampBound::Before => "message.timestamp.before.max.ms",
            TimestampBound::After => "message.timestamp.after.max.ms",
        }
    }

    fn direction(self) -> &'static str {
        match self {
            TimestampBound::Before => "before",
            TimestampBound::After => "after",
        }
    }
}

impl BatchError {
    /// True when the bytes simply end early (a torn tail, a fetch cut at
    /// `max_bytes`), as opposed to bytes that are present but wrong.
    pub fn is_truncation(&self) -> bool {
        matches!(self, BatchError::Truncated { .. })
    }
}

/// "record 3" or "records 0, 10, 20" (the first few, then how many more).
fn keyless_records(indexes: &[u32]) -> String {
    const SHOWN: usize = 5;
    let shown: Vec<String> = indexes.iter().take(SHOWN).map(u32::to_string).collect();
    let more = indexes.len().saturating_sub(SHOWN);
    match (indexes.len(), more) {
        (1, _) => format!("record {}", shown[0]),
        (_, 0) => format!("records {}", shown.join(", ")),
        _ => format!("records {} and {more} more", shown.join(", ")),
    }
}
