//! The fixed 61-byte RecordBatch v2 header: field layout, parsing, the
//! attribute bits, and in-place rewrites of header fields.
//!
//! Layout (big-endian, as Kafka writes it):
//!
//! | byte | field                  | type | in CRC |
//! |------|------------------------|------|--------|
//! | 0    | base offset            | i64  | no     |
//! | 8    | batch length           | i32  | no     |
//! | 12   | partition leader epoch | i32  | no     |
//! | 16   | magic (2)              | i8   | no     |
//! | 17   | CRC-32C                | u32  | no     |
//! | 21   | attributes             | i16  | yes    |
//! | 23   | last offset delta      | i32  | yes    |
//! | 27   | base timestamp         | i64  | yes    |
//! | 35   | max timestamp          | i64  | yes    |
//! | 43   | producer id            | i64  | yes    |
//! | 51   | producer epoch         | i16  | yes    |
//! | 53   | base sequence          | i32  | yes    |
//! | 57   | record count           | i32  | yes    |
//! | 61   | records …              |      | yes    |
//!
//! The batch length counts every byte after the length field itself.

use std::fmt;
use std::str::FromStr;

use super::BatchError;

/// Size of the fixed RecordBatch v2 header.
pub const BATCH_HEADER_BYTES: usize = 61;
/// Bytes before the batch length covers: base offset (8) and batch length (4).
pub const LOG_OVERHEAD_BYTES: usize = 12;
/// The only record format this crate reads and writes.
pub const MAGIC_V2: i8 = 2;

pub(crate) const BASE_OFFSET_AT: usize = 0;
pub(crate) const BATCH_LENGTH_AT: usize = 8;
pub(crate) const PARTITION_LEADER_EPOCH_AT: usize = 12;
pub(crate) const MAGIC_AT: usize = 16;
pub(crate) const CRC_AT: usize = 17;
/// The CRC covers everything from the attributes to the end of the batch.
pub(crate) const ATTRIBUTES_AT: usize = 21;
pub(crate) const LAST_OFFSET_DELTA_AT: usize = 23;
pub(crate) const BASE_TIMESTAMP_AT: usize = 27;
pub(crate) const MAX_TIMESTAMP_AT: usize = 35;
pub(crate) const PRODUCER_ID_AT: usize = 43;
pub(crate) const PRODUCER_EPOCH_AT: usize = 51;
pub(crate) const BASE_SEQUENCE_AT: usize = 53;
pub(crate) const RECORD_COUNT_AT: usize = 57;
/// Smallest legal batch length field: a header with no records.
pub(crate) const BATCH_LENGTH_MIN: i32 = (BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32;

const _: () = assert!(BATCH_HEADER_BYTES == 61);
const _: () = assert!(LOG_OVERHEAD_BYTES == BATCH_LENGTH_AT + 4);
const _: () = assert!(RECORD_COUNT_AT + 4 == BATCH_HEADER_BYTES);
const _: () = assert!(ATTRIBUTES_AT == CRC_AT + 4);

pub(crate) const ATTR_COMPRESSION_MASK: i16 = 0x07;
pub(crate) const ATTR_LOG_APPEND_TIME: i16 = 0x08;
pub(crate) const ATTR_TRANSACTIONAL: i16 = 0x10;
pub(crate) const ATTR_CONTROL: i16 = 0x20;

/// Kafka's "no partition leader epoch" and "no producer" sentinels.
pub const NO_PARTITION_LEADER_EPOCH: i32 = -1;
pub const NO_PRODUCER_ID: i64 = -1;
pub const NO_PRODUCER_EPOCH: i16 = -1;
pub const NO_SEQUENCE: i32 = -1;

/// The decoded fixed header of one RecordBatch v2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

impl BatchHeader {
    /// Parses the 61 header bytes at the start of `buf`; checks sizes and
    /// magic, NOT the CRC. `buf` may hold more (or, past the header, less)
    /// than the whole batch.
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        Self::parse_at(buf, 0)
    }

    /// As [`BatchHeader::parse`], naming `position` in errors.
    pub(crate) fn parse_at(buf: &[u8], position: usize) -> Result<BatchHeader, BatchError> {
        let Some(fixed) = buf.first_chunk::<BATCH_HEADER_BYTES>() else {
            return Err(BatchError::Truncated {
                position,
                needed_bytes: BATCH_HEADER_BYTES,
                available_bytes: buf.len(),
            });
        };
        let batch_length = i32_at(fixed, BATCH_LENGTH_AT);
        if batch_length < BATCH_LENGTH_MIN {
            return Err(BatchError::InvalidLength {
                position,
                batch_length,
            });
        }
        let magic = i8::from_be_bytes([fixed[MAGIC_AT]]);
        if magic != MAGIC_V2 {
            return Err(BatchError::UnsupportedMagic { position, magic });
        }
        Ok(BatchHeader {
            base_offset: i64_at(fixed, BASE_OFFSET_AT),
            batch_length,
            partition_leader_epoch: i32_at(fixed, PARTITION_LEADER_EPOCH_AT),
            magic,
            crc: u32::from_be_bytes(array_at(fixed, CRC_AT)),
            attributes: i16::from_be_bytes(array_at(fixed, ATTRIBUTES_AT)),
            last_offset_delta: i32_at(fixed, LAST_OFFSET_DELTA_AT),
            base_timestamp: i64_at(fixed, BASE_TIMESTAMP_AT),
            max_timestamp: i64_at(fixed, MAX_TIMESTAMP_AT),
            producer_id: i64_at(fixed, PRODUCER_ID_AT),
            producer_epoch: i16::from_be_bytes(array_at(fixed, PRODUCER_EPOCH_AT)),
            base_sequence: i32_at(fixed, BASE_SEQUENCE_AT),
            record_count: i32_at(fixed, RECORD_COUNT_AT),
        })
    }

    /// Writes this header into the first 61 bytes of `out`, as stored.
    pub(crate) fn encode(&self, out: &mut [u8; BATCH_HEADER_BYTES]) {
        out[BASE_OFFSET_AT..BATCH_LENGTH_AT].copy_from_slice(&self.base_offset.to_be_bytes());
        out[BATCH_LENGTH_AT..PARTITION_LEADER_EPOCH_AT]
            .copy_from_slice(&self.batch_length.to_be_bytes());
        out[PARTITION_LEADER_EPOCH_AT..MAGIC_AT]
            .copy_from_slice(&self.partition_leader_epoch.to_be_bytes());
        out[MAGIC_AT] = self.magic.to_be_bytes()[0];
        out[CRC_AT..ATTRIBUTES_AT].copy_from_slice(&self.crc.to_be_bytes());
        out[ATTRIBUTES_AT..LAST_OFFSET_DELTA_AT].copy_from_slice(&self.attributes.to_be_bytes());
        out[LAST_OFFSET_DELTA_AT..BASE_TIMESTAMP_AT]
            .copy_from_slice(&self.last_offset_delta.to_be_bytes());
        out[BASE_TIMESTAMP_AT..MAX_TIMESTAMP_AT]
            .copy_from_slice(&self.base_timestamp.to_be_bytes());
        out[MAX_TIMESTAMP_AT..PRODUCER_ID_AT].copy_from_slice(&self.max_timestamp.to_be_bytes());
        out[PRODUCER_ID_AT..PRODUCER_EPOCH_AT].copy_from_slice(&self.producer_id.to_be_bytes());
        out[PRODUCER_EPOCH_AT..BASE_SEQUENCE_AT]
            .copy_from_slice(&self.producer_epoch.to_be_bytes());
        out[BASE_SEQUENCE_AT..RECORD_COUNT_AT].copy_from_slice(&self.base_sequence.to_be_bytes());
        out[RECORD_COUNT_AT..BATCH_HEADER_BYTES].copy_from_slice(&self.record_count.to_be_bytes());
    }

    /// Whole size of the batch on disk: the length field plus the 12 bytes
    /// before it. Never less than [`BATCH_HEADER_BYTES`] for a parsed header.
    pub fn size_bytes(&self) -> usize {
        // A parsed header has batch_length >= 49, so the cast is lossless.
        usize::try_from(self.batch_length).unwrap_or(0) + LOG_OVERHEAD_BYTES
    }

    /// Offset of the last record (possibly removed by compaction) in the batch.
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .wrapping_add(i64::from(self.last_offset_delta))
    }

    /// The offset a batch appended after this one starts at.
    pub fn next_offset(&self) -> i64 {
        self.last_offset().wrapping_add(1)
    }

    pub fn compression(&self) -> Result<Compression, BatchError> {
        Compression::from_attributes(self.attributes)
    }

    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & ATTR_LOG_APPEND_TIME != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }

    /// Bytes of the records section (compressed or not) after the header.
    pub fn records_bytes(&self) -> usize {
        self.size_bytes().saturating_sub(BATCH_HEADER_BYTES)
    }
}

/// Rewrites the base offset of the batch starting at `buf[0]`. The field is
/// outside the CRC, so the batch stays valid. `buf` must start with a parsed
/// header; a shorter buffer is left unchanged.
pub fn set_base_offset(buf: &mut [u8], base_offset: i64) {
    debug_assert!(buf.len() >= BATCH_HEADER_BYTES);
    if let Some(field) = buf.get_mut(BASE_OFFSET_AT..BATCH_LENGTH_AT) {
        field.copy_from_slice(&base_offset.to_be_bytes());
    }
}

/// Rewrites the partition leader epoch of the batch starting at `buf[0]`;
/// outside the CRC, like the base offset. A shorter buffer is left unchanged.
pub fn set_partition_leader_epoch(buf: &mut [u8], epoch: i32) {
    debug_assert!(buf.len() >= BATCH_HEADER_BYTES);
    if let Some(field) = buf.get_mut(PARTITION_LEADER_EPOCH_AT..MAGIC_AT) {
        field.copy_from_slice(&epoch.to_be_bytes());
    }
}

/// Marks the whole batch in `buf` as LogAppendTime with `timestamp_ms` as its
/// max timestamp, as a broker does for topics configured that way. Both fields
/// are inside the CRC, which is recomputed (records are not re-encoded).
/// `buf` must hold exactly one whole batch; a shorter buffer is left unchanged.
pub fn set_log_append_time(buf: &mut [u8], timestamp_ms: i64) {
    debug_assert!(buf.len() >= BATCH_HEADER_BYTES);
    if buf.len() < BATCH_HEADER_BYTES {
        return;
    }
    let attributes = i16::from_be_bytes([buf[ATTRIBUTES_AT], buf[ATTRIBUTES_AT + 1]]);
    let attributes = attributes | ATTR_LOG_APPEND_TIME;
    buf[ATTRIBUTES_AT..LAST_OFFSET_DELTA_AT].copy_from_slice(&attributes.to_be_bytes());
    buf[MAX_TIMESTAMP_AT..PRODUCER_ID_AT].copy_from_slice(&timestamp_ms.to_be_bytes());
    let crc = crc32c::crc32c(&buf[ATTRIBUTES_AT..]);
    buf[CRC_AT..ATTRIBUTES_AT].copy_from_slice(&crc.to_be_bytes());
}

/// Re-stamps the idempotent-producer fields (producer id, epoch, base
/// sequence) of the whole batch in `buf`, as a producer does when it sends a
/// batch again under a new epoch (Kafka's KIP-360). The fields are inside the
/// CRC, which is recomputed (records are not re-encoded). `buf` must hold
/// exactly one whole batch; a shorter buffer is left unchanged.
pub fn set_producer(buf: &mut [u8], producer_id: i64, producer_epoch: i16, base_sequence: i32) {
    debug_assert!(buf.len() >= BATCH_HEADER_BYTES);
    if buf.len() < BATCH_HEADER_BYTES {
        return;
    }
    buf[PRODUCER_ID_AT..PRODUCER_EPOCH_AT].copy_from_slice(&producer_id.to_be_bytes());
    buf[PRODUCER_EPOCH_AT..BASE_SEQUENCE_AT].copy_from_slice(&producer_epoch.to_be_bytes());
    buf[BASE_SEQUENCE_AT..RECORD_COUNT_AT].copy_from_slice(&base_sequence.to_be_bytes());
    let crc = crc32c::crc32c(&buf[ATTRIBUTES_AT..]);
    buf[CRC_AT..ATTRIBUTES_AT].copy_from_slice(&crc.to_be_bytes());
}

/// Compression codec of a batch's records section (attribute bits 0..3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    /// Every codec, in attribute-id order.
    pub const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    /// The codec id stored in the low three attribute bits.
    pub fn id(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    pub fn from_attributes(attributes: i16) -> Result<Compression, BatchError> {
        let codec = (attributes & ATTR_COMPRESSION_MASK) as u8;
        match codec {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Gzip),
            2 => Ok(Compression::Snappy),
            3 => Ok(Compression::Lz4),
            4 => Ok(Compression::Zstd),
            _ => Err(BatchError::UnknownCompression { codec }),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Compression {
    type Err = BatchError;

    /// Accepts Kafka's `compression.type` names, case-insensitively.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Compression::ALL
            .into_iter()
            .find(|codec| codec.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| BatchError::UnknownCompressionName {
                name: name.to_owned(),
            })
    }
}

/// What a batch's timestamps mean (attribute bit 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimestampType {
    /// Set by the producer per record.
    CreateTime,
    /// Set by the broker on append; every record reads the batch max timestamp.
    LogAppendTime,
}

impl fmt::Display for TimestampType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimestampType::CreateTime => "CreateTime",
            TimestampType::LogAppendTime => "LogAppendTime",
        })
    }
}

fn array_at<const N: usize>(fixed: &[u8; BATCH_HEADER_BYTES], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&fixed[at..at + N]);
    out
}

fn i32_at(fixed: &[u8; BATCH_HEADER_BYTES], at: usize) -> i32 {
    i32::from_be_bytes(array_at(fixed, at))
}

fn i64_at(fixed: &[u8; BATCH_HEADER_BYTES], at: usize) -> i64 {
    i64::from_be_bytes(array_at(fixed, at))
}
