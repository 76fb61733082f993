//! Whole-batch checks (sizes, magic, CRC-32C, record count) and splitting a
//! buffer of concatenated batches by their length fields.

use super::header::{
    BatchHeader, ATTRIBUTES_AT, BATCH_LENGTH_AT, BATCH_LENGTH_MIN, LOG_OVERHEAD_BYTES,
};
use super::{BatchError, Compression, BATCH_HEADER_BYTES};

/// The smallest encoding of one record: length, attributes, timestamp delta,
/// offset delta, key length, value length and header count, one byte each.
pub(crate) const RECORD_BYTES_MIN: usize = 7;

/// Full check of exactly one batch occupying all of `buf`: length field
/// consistent with `buf.len()`, magic 2, CRC-32C over attributes..end, a known
/// codec, `record_count >= 0` and consistent with `last_offset_delta`, and
/// size at most `max_bytes`.
///
/// Compacted batches may hold fewer records than their offset range (even
/// none), so `record_count <= last_offset_delta + 1` is what is required here;
/// [`validate_produced`] is the stricter check for batches fresh from a producer.
pub fn validate(buf: &[u8], max_bytes: usize) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(buf)?;
    let size_bytes = header.size_bytes();
    if size_bytes != buf.len() {
        return Err(BatchError::SizeMismatch {
            size_bytes,
            buffer_bytes: buf.len(),
        });
    }
    if size_bytes > max_bytes {
        return Err(BatchError::TooLarge {
            size_bytes,
            max_bytes,
        });
    }
    let computed = crc32c::crc32c(&buf[ATTRIBUTES_AT..]);
    if computed != header.crc {
        return Err(BatchError::CrcMismatch {
            base_offset: header.base_offset,
            stored: header.crc,
            computed,
        });
    }
    let compression = header.compression()?;
    check_record_count(&header, compression)?;
    Ok(header)
}

/// [`validate`], plus what a producer's batch must satisfy before the log
/// assigns it offsets: at least one record and exactly one offset per record.
pub fn validate_produced(buf: &[u8], max_bytes: usize) -> Result<BatchHeader, BatchError> {
    let header = validate(buf, max_bytes)?;
    if header.record_count == 0
        || i64::from(header.record_count) != i64::from(header.last_offset_delta) + 1
    {
        return Err(BatchError::InvalidRecordCount {
            base_offset: header.base_offset,
            record_count: header.record_count,
            last_offset_delta: header.last_offset_delta,
        });
    }
    Ok(header)
}

fn check_record_count(header: &BatchHeader, compression: Compression) -> Result<(), BatchError> {
    let count_fits_offsets = header.record_count >= 0
        && header.last_offset_delta >= 0
        && i64::from(header.record_count) <= i64::from(header.last_offset_delta) + 1;
    if !count_fits_offsets {
        return Err(BatchError::InvalidRecordCount {
            base_offset: header.base_offset,
            record_count: header.record_count,
            last_offset_delta: header.last_offset_delta,
        });
    }
    // Only an uncompressed section has a size we can bound the count by here;
    // decoding bounds compressed ones by their decompressed size.
    let records_bytes = header.records_bytes();
    let count = usize::try_from(header.record_count).unwrap_or(usize::MAX);
    if compression == Compression::None && count.saturating_mul(RECORD_BYTES_MIN) > records_bytes {
        return Err(BatchError::RecordCountTooLarge {
            base_offset: header.base_offset,
            record_count: header.record_count,
            records_bytes,
        });
    }
    Ok(())
}

/// The CRC-32C that the batch at the start of `buf` should carry: over its
/// attributes to the end of `buf`. `None` when `buf` is shorter than a header.
pub fn compute_crc(buf: &[u8]) -> Option<u32> {
    if buf.len() < BATCH_HEADER_BYTES {
        return None;
    }
    Some(crc32c::crc32c(&buf[ATTRIBUTES_AT..]))
}

/// Splits a buffer of concatenated batches (a Kafka "MemoryRecords") by their
/// length fields. Yields `Err` for a truncated or garbled batch and then stops;
/// does not check CRCs (call [`validate`] for that).
pub fn batches(buf: &[u8]) -> BatchSplitter<'_> {
    BatchSplitter {
        buf,
        position: 0,
        failed: false,
    }
}

/// Iterator over `(header, whole batch bytes)`; see [`batches`].
#[derive(Debug, Clone)]
pub struct BatchSplitter<'a> {
    buf: &'a [u8],
    position: usize,
    failed: bool,
}

impl<'a> BatchSplitter<'a> {
    /// Byte position of the next batch: after iteration stops without error,
    /// the length of the buffer; after an error, where the bad batch starts
    /// (so everything before it is whole batches).
    pub fn position(&self) -> usize {
        self.position
    }

    fn split_next(&self, rest: &'a [u8]) -> Result<(BatchHeader, &'a [u8]), BatchError> {
        let position = self.position;
        let Some(overhead) = rest.first_chunk::<LOG_OVERHEAD_BYTES>() else {
            return Err(BatchError::Truncated {
                position,
                needed_bytes: LOG_OVERHEAD_BYTES,
                available_bytes: rest.len(),
            });
        };
        let mut length = [0u8; 4];
        length.copy_from_slice(&overhead[BATCH_LENGTH_AT..]);
        let batch_length = i32::from_be_bytes(length);
        if batch_length < BATCH_LENGTH_MIN {
            return Err(BatchError::InvalidLength {
                position,
                batch_length,
            });
        }
        // batch_length >= 49, so this is a positive size of at least 61 bytes.
        let size_bytes = usize::try_from(batch_length).unwrap_or(usize::MAX) + LOG_OVERHEAD_BYTES;
        debug_assert!(size_bytes >= BATCH_HEADER_BYTES);
        let Some(batch) = rest.get(..size_bytes) else {
            return Err(BatchError::Truncated {
                position,
                needed_bytes: size_bytes,
                available_bytes: rest.len(),
            });
        };
        let header = BatchHeader::parse_at(batch, position)?;
        Ok((header, batch))
    }
}

impl<'a> Iterator for BatchSplitter<'a> {
    type Item = Result<(BatchHeader, &'a [u8]), BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let rest = self.buf.get(self.position..)?;
        if rest.is_empty() {
            return None;
        }
        match self.split_next(rest) {
            Ok((header, batch)) => {
                self.position += batch.len();
                Some(Ok((header, batch)))
            }
            Err(err) => {
                self.failed = true;
                Some(Err(err))
            }
        }
    }
}

impl std::iter::FusedIterator for BatchSplitter<'_> {}
