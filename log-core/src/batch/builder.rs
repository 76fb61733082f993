//! Encoding records into one RecordBatch v2. A [`BatchBuilder`] is reused
//! across batches: its buffers keep their capacity, so once warm a producer
//! allocates nothing per record and only the returned bytes per batch.

use bytes::{Bytes, BytesMut};

use super::codec::Compressor;
use super::header::{
    ATTRIBUTES_AT, ATTR_CONTROL, ATTR_LOG_APPEND_TIME, ATTR_TRANSACTIONAL, BATCH_LENGTH_MIN,
    CRC_AT, NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE,
};
use super::record::ControlRecordType;
use super::varint::{put_varint, put_varlong, varint_len, varlong_len};
use super::{BatchError, BatchHeader, Compression, TimestampType, BATCH_HEADER_BYTES, MAGIC_V2};

/// Builds one batch at a time; see the module docs.
#[derive(Debug)]
pub struct BatchBuilder {
    compression: Compression,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    transactional: bool,
    control: bool,
    log_append_time_ms: Option<i64>,
    /// Uncompressed records section.
    records: Vec<u8>,
    record_count: u32,
    base_timestamp: i64,
    max_timestamp: i64,
    /// Set when a push would break a format limit; reported by `build`.
    overflow: Option<&'static str>,
    compressor: Compressor,
    out: BytesMut,
}

impl BatchBuilder {
    pub fn new(compression: Compression) -> Self {
        BatchBuilder {
            compression,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            base_sequence: NO_SEQUENCE,
            transactional: false,
            control: false,
            log_append_time_ms: None,
            records: Vec::new(),
            record_count: 0,
            base_timestamp: 0,
            max_timestamp: -1,
            overflow: None,
            compressor: Compressor::default(),
            out: BytesMut::new(),
        }
    }

    /// Idempotent-producer fields, kept for every batch this builder builds.
    pub fn with_producer(
        mut self,
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
    ) -> Self {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
        self
    }

    /// Marks batches as part of a transaction (attribute bit 4).
    pub fn with_transactional(mut self, transactional: bool) -> Self {
        self.transactional = transactional;
        self
    }

    /// Builds LogAppendTime batches whose max timestamp is `timestamp_ms`
    /// (what a broker stamps; records then all read that timestamp).
    pub fn with_log_append_time(mut self, timestamp_ms: i64) -> Self {
        self.log_append_time_ms = Some(timestamp_ms);
        self
    }

    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// Sets the base sequence of the next batch (a producer advances it by the
    /// record count of each batch it sends).
    pub fn set_base_sequence(&mut self, base_sequence: i32) {
        self.base_sequence = base_sequence;
    }

    /// Appends one record. Never allocates once the builder has held a batch
    /// of this size before.
    pub fn push(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&str, Option<&[u8]>)],
    ) {
        let Ok(offset_delta) = i32::try_from(self.record_count) else {
            self.overflow = Some("more than 2^31 records");
            return;
        };
        if self.record_count == 0 {
            self.base_timestamp = timestamp;
            self.max_timestamp = timestamp;
        } else {
            self.max_timestamp = self.max_timestamp.max(timestamp);
        }
        // Deltas wrap like Kafka's long arithmetic; decoding wraps back.
        let timestamp_delta = timestamp.wrapping_sub(self.base_timestamp);
        let Some(body_len) = record_body_len(timestamp_delta, offset_delta, key, value, headers)
        else {
            self.overflow = Some("a record longer than 2^31 bytes");
            return;
        };
        self.records
            .reserve(varint_len(body_len) + body_len as usize);
        put_varint(&mut self.records, body_len);
        self.records.push(0); // record attributes: unused in v2
        put_varlong(&mut self.records, timestamp_delta);
        put_varint(&mut self.records, offset_delta);
        put_nullable_bytes(&mut self.records, key);
        put_nullable_bytes(&mut self.records, value);
        // header count fits: checked by record_body_len
        put_varint(&mut self.records, headers.len() as i32);
        for (header_key, header_value) in headers {
            put_nullable_bytes(&mut self.records, Some(header_key.as_bytes()));
            put_nullable_bytes(&mut self.records, *header_value);
        }
        self.record_count += 1;
    }

    /// Appends a transaction marker record and makes the batch a control batch.
    /// A control batch holds only markers; push nothing else into it.
    pub fn push_control(
        &mut self,
        timestamp: i64,
        kind: ControlRecordType,
        coordinator_epoch: i32,
    ) {
        self.control = true;
        let mut value = [0u8; 6];
        value[2..].copy_from_slice(&coordinator_epoch.to_be_bytes());
        self.push(timestamp, Some(&kind.key()), Some(&value), &[]);
    }

    pub fn len(&self) -> usize {
        self.record_count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.record_count == 0
    }

    /// Size of the batch if built uncompressed: an upper estimate for the
    /// compressed codecs on typical data.
    pub fn estimated_size_bytes(&self) -> usize {
        BATCH_HEADER_BYTES + self.records.len()
    }

    /// Drops the records pushed so far, keeping buffers for reuse.
    pub fn clear(&mut self) {
        self.records.clear();
        self.record_count = 0;
        self.base_timestamp = 0;
        self.max_timestamp = -1;
        self.overflow = None;
        self.control = false;
    }

    /// Encodes the pushed records as one batch with base offset 0, then
    /// clears the builder for reuse (also on error).
    pub fn build(&mut self) -> Result<Bytes, BatchError> {
        let result = self.encode();
        self.clear();
        result
    }

    fn encode(&mut self) -> Result<Bytes, BatchError> {
        if let Some(what) = self.overflow {
            return Err(BatchError::EncodeOverflow { what });
        }
        if self.record_count == 0 {
            return Err(BatchError::Empty);
        }
        self.out.clear();
        self.out.reserve(BATCH_HEADER_BYTES + self.records.len());
        self.out.resize(BATCH_HEADER_BYTES, 0);
        self.compressor
            .compress(self.compression, &self.records, &mut self.out)?;
        let records_bytes = self.out.len() - BATCH_HEADER_BYTES;
        let batch_length = i32::try_from(records_bytes)
            .ok()
            .and_then(|bytes| bytes.checked_add(BATCH_LENGTH_MIN))
            .ok_or(BatchError::EncodeOverflow {
                what: "a batch longer than 2^31 bytes",
            })?;
        let header = self.header(batch_length);
        let fixed: &mut [u8; BATCH_HEADER_BYTES] = (&mut self.out[..BATCH_HEADER_BYTES])
            .try_into()
            .map_err(|_| BatchError::EncodeOverflow {
                what: "header space",
            })?;
        header.encode(fixed);
        let crc = crc32c::crc32c(&self.out[ATTRIBUTES_AT..]);
        self.out[CRC_AT..ATTRIBUTES_AT].copy_from_slice(&crc.to_be_bytes());
        Ok(self.out.split().freeze())
    }

    fn header(&self, batch_length: i32) -> BatchHeader {
        debug_assert!(self.record_count > 0);
        let mut attributes = i16::from(self.compression.id());
        if self.log_append_time_ms.is_some() {
            attributes |= ATTR_LOG_APPEND_TIME;
        }
        if self.transactional {
            attributes |= ATTR_TRANSACTIONAL;
        }
        if self.control {
            attributes |= ATTR_CONTROL;
        }
        BatchHeader {
            base_offset: 0,
            batch_length,
            partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
            magic: MAGIC_V2,
            crc: 0,
            attributes,
            // record_count <= i32::MAX was enforced by push.
            last_offset_delta: (self.record_count - 1) as i32,
            base_timestamp: self.base_timestamp,
            max_timestamp: self.log_append_time_ms.unwrap_or(self.max_timestamp),
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            base_sequence: self.base_sequence,
            record_count: self.record_count as i32,
        }
    }

    /// The timestamp type of batches this builder makes.
    pub fn timestamp_type(&self) -> TimestampType {
        if self.log_append_time_ms.is_some() {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }
}

/// Bytes of a record after its length varint, or `None` past i32 limits.
fn record_body_len(
    timestamp_delta: i64,
    offset_delta: i32,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[(&str, Option<&[u8]>)],
) -> Option<i32> {
    let mut len = 1 + varlong_len(timestamp_delta) + varint_len(offset_delta);
    len += nullable_bytes_len(key)?;
    len += nullable_bytes_len(value)?;
    len += varint_len(i32::try_from(headers.len()).ok()?);
    for (header_key, header_value) in headers {
        len = len
            .checked_add(nullable_bytes_len(Some(header_key.as_bytes()))?)?
            .checked_add(nullable_bytes_len(*header_value)?)?;
    }
    i32::try_from(len).ok()
}

fn nullable_bytes_len(bytes: Option<&[u8]>) -> Option<usize> {
    match bytes {
        None => Some(1),
        Some(bytes) => Some(varint_len(i32::try_from(bytes.len()).ok()?) + bytes.len()),
    }
}

fn put_nullable_bytes(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => put_varint(out, -1),
        Some(bytes) => {
            // Lengths were checked to fit i32 by record_body_len.
            put_varint(out, bytes.len() as i32);
            out.extend_from_slice(bytes);
        }
    }
}
