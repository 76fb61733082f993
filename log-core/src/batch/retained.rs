//! Rebuilding one stored batch with only some of its records, as compaction does: the
//! batch keeps its base offset, last offset delta, leader epoch, producer fields,
//! attributes and base timestamp, and each kept record keeps its offset delta (so the
//! deltas may have gaps); the records are recompressed with the batch's codec and the CRC
//! recomputed. A batch that keeps no record becomes an empty batch (header only, no
//! codec), which is what Kafka writes to keep a producer's last sequence.

use super::codec::Compressor;
use super::header::{ATTRIBUTES_AT, ATTR_COMPRESSION_MASK, BATCH_LENGTH_MIN, CRC_AT};
use super::varint::{put_varint, put_varlong, varint_len, varlong_len};
use super::{BatchError, BatchHeader, Compression, RecordView, TimestampType, BATCH_HEADER_BYTES};

/// Reusable buffers for rebuilding batches.
#[derive(Debug, Default)]
pub(crate) struct RetainedBuilder {
    compressor: Compressor,
    records: Vec<u8>,
    record_count: i32,
    max_timestamp: Option<i64>,
    packed: bytes::BytesMut,
}

impl RetainedBuilder {
    /// Forgets the records pushed so far.
    pub fn clear(&mut self) {
        self.records.clear();
        self.record_count = 0;
        self.max_timestamp = None;
    }

    /// Adds `record` of the batch `original`, at its own offset delta.
    pub fn push(
        &mut self,
        original: &BatchHeader,
        record: &RecordView<'_>,
    ) -> Result<(), BatchError> {
        let overflow = |what| BatchError::EncodeOverflow { what };
        let offset_delta = i32::try_from(record.offset.wrapping_sub(original.base_offset))
            .map_err(|_| overflow("an offset delta outside 32 bits"))?;
        // LogAppendTime records read the batch's timestamp whatever their delta says.
        let timestamp_delta = record.timestamp.wrapping_sub(original.base_timestamp);
        let mut header_bytes = 0usize;
        let mut header_count = 0i32;
        for (key, value) in record.headers() {
            header_bytes += nullable_len(Some(key.as_bytes())) + nullable_len(value);
            header_count += 1;
        }
        let body_len = 1
            + varlong_len(timestamp_delta)
            + varint_len(offset_delta)
            + nullable_len(record.key)
            + nullable_len(record.value)
            + varint_len(header_count)
            + header_bytes;
        let body_len = i32::try_from(body_len).map_err(|_| overflow("a record past 2^31 bytes"))?;
        put_varint(&mut self.records, body_len);
        self.records.push(record.attributes.to_be_bytes()[0]);
        put_varlong(&mut self.records, timestamp_delta);
        put_varint(&mut self.records, offset_delta);
        put_nullable(&mut self.records, record.key);
        put_nullable(&mut self.records, record.value);
        put_varint(&mut self.records, header_count);
        for (key, value) in record.headers() {
            put_nullable(&mut self.records, Some(key.as_bytes()));
            put_nullable(&mut self.records, value);
        }
        self.record_count += 1;
        self.max_timestamp = Some(
            self.max_timestamp
                .map_or(record.timestamp, |m| m.max(record.timestamp)),
        );
        Ok(())
    }

    /// Appends the rebuilt batch to `out` and clears the builder.
    pub fn finish(&mut self, original: &BatchHeader, out: &mut Vec<u8>) -> Result<(), BatchError> {
        let result = self.encode(original, out);
        self.clear();
        result
    }

    fn encode(&mut self, original: &BatchHeader, out: &mut Vec<u8>) -> Result<(), BatchError> {
        let mut header = *original;
        header.record_count = self.record_count;
        let codec = if self.record_count == 0 {
            // Kafka's empty batch: no records section, so no codec either.
            header.attributes &= !ATTR_COMPRESSION_MASK;
            Compression::None
        } else {
            original.compression()?
        };
        if original.timestamp_type() == TimestampType::CreateTime {
            if let Some(max_timestamp) = self.max_timestamp {
                header.max_timestamp = max_timestamp;
            }
        }
        self.packed.clear();
        if self.record_count > 0 {
            self.compressor
                .compress(codec, &self.records, &mut self.packed)?;
        }
        header.batch_length = i32::try_from(self.packed.len())
            .ok()
            .and_then(|b| b.checked_add(BATCH_LENGTH_MIN))
            .ok_or(BatchError::EncodeOverflow {
                what: "a batch longer than 2^31 bytes",
            })?;
        let start = out.len();
        let mut fixed = [0u8; BATCH_HEADER_BYTES];
        header.encode(&mut fixed);
        out.extend_from_slice(&fixed);
        out.extend_from_slice(&self.packed);
        let batch = out.get_mut(start..).unwrap_or_default();
        let crc = crc32c::crc32c(batch.get(ATTRIBUTES_AT..).unwrap_or_default());
        if let Some(field) = batch.get_mut(CRC_AT..ATTRIBUTES_AT) {
            field.copy_from_slice(&crc.to_be_bytes());
        }
        Ok(())
    }
}

fn nullable_len(bytes: Option<&[u8]>) -> usize {
    match bytes {
        None => 1,
        // Lengths of records read from a valid batch fit i32.
        Some(b) => varint_len(i32::try_from(b.len()).unwrap_or(i32::MAX)) + b.len(),
    }
}

fn put_nullable(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => put_varint(out, -1),
        Some(b) => {
            put_varint(out, i32::try_from(b.len()).unwrap_or(i32::MAX));
            out.extend_from_slice(b);
        }
    }
}
