//! Record-level validation of a batch before the log stores it: the CRC only
//! proves the bytes are the ones the producer sent, not that they hold what
//! the header declares. A batch stored with a valid CRC but records its
//! readers cannot decode stops every consumer of the partition at it, so an
//! append walks every record first.
//!
//! Uncompressed records are walked in place, in one pass, allocating nothing;
//! compressed ones are decompressed into a buffer the [`RecordValidator`]
//! keeps, bounded by [`decompressed_bytes_max_for`] so that a decompression
//! bomb is refused before it allocates more.

use super::codec::Decompressor;
use super::header::BATCH_HEADER_BYTES;
use super::record::{decompress_records, read_record_body, split_record, RecordDeltas, RecordIter};
use super::varint::Reader;
use super::{
    validate, validate_produced, BatchError, BatchHeader, Compression, TimestampType,
    DECOMPRESSED_BYTES_MAX_DEFAULT,
};
use crate::batch::error::TimestampBound;

/// How many times `max.message.bytes` a produced batch's records may take
/// once decompressed. Kafka sets no such bound; this one keeps a batch of
/// highly repetitive records (64x is far beyond what real records compress
/// by) while refusing a decompression bomb after a bounded allocation.
pub const DECOMPRESSION_RATIO_MAX: usize = 64;

/// A buffer grown past this by one large batch is released after it, so
/// that each thread does not keep its largest batch ever.
const SCRATCH_BYTES_KEPT_MAX: usize = 16 * 1024 * 1024;

/// The largest decompressed records section accepted in a produced batch of
/// a topic with `max.message.bytes = batch_bytes_max`: [`DECOMPRESSION_RATIO_MAX`]
/// times it, and never more than readers decode ([`DECOMPRESSED_BYTES_MAX_DEFAULT`]).
pub fn decompressed_bytes_max_for(batch_bytes_max: usize) -> usize {
    batch_bytes_max
        .saturating_mul(DECOMPRESSION_RATIO_MAX)
        .min(DECOMPRESSED_BYTES_MAX_DEFAULT)
}

/// Kafka's `message.timestamp.before.max.ms` / `after.max.ms` (KIP-937)
/// against a clock reading: a CreateTime record must lie in
/// `[now_ms - before_max_ms, now_ms + after_max_ms]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampBounds {
    pub now_ms: i64,
    pub before_max_ms: u64,
    pub after_max_ms: u64,
}

impl TimestampBounds {
    /// The earliest and latest timestamp the bounds accept, inclusive.
    fn range(&self) -> (i64, i64) {
        let before_ms = i64::try_from(self.before_max_ms).unwrap_or(i64::MAX);
        let after_ms = i64::try_from(self.after_max_ms).unwrap_or(i64::MAX);
        (
            self.now_ms.saturating_sub(before_ms),
            self.now_ms.saturating_add(after_ms),
        )
    }

    fn check(&self, timestamp: i64) -> Result<(), (TimestampBound, u64)> {
        // Kafka exempts records without a timestamp (-1, NO_TIMESTAMP).
        if timestamp == NO_TIMESTAMP {
            return Ok(());
        }
        let (earliest, latest) = self.range();
        if timestamp < earliest {
            return Err((TimestampBound::Before, self.before_max_ms));
        }
        if timestamp > latest {
            return Err((TimestampBound::After, self.after_max_ms));
        }
        Ok(())
    }
}

const NO_TIMESTAMP: i64 = -1;

/// What a topic asks of a batch fresh from a producer, beyond its format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProduceChecks {
    /// `max.message.bytes`: the largest batch, as sent.
    pub batch_bytes_max: usize,
    /// The largest records section once decompressed.
    pub decompressed_bytes_max: usize,
    /// Bounds on record timestamps, for CreateTime topics; `None` for
    /// LogAppendTime topics, whose batches the broker stamps itself.
    pub timestamp_bounds: Option<TimestampBounds>,
    /// Every record must have a key: a compacted topic keeps the latest
    /// record per key, and Kafka refuses a keyless one there.
    pub keys_required: bool,
}

impl ProduceChecks {
    /// Checks for a topic with `max.message.bytes = batch_bytes_max` and no
    /// timestamp bounds.
    pub fn new(batch_bytes_max: usize) -> Self {
        ProduceChecks {
            batch_bytes_max,
            decompressed_bytes_max: decompressed_bytes_max_for(batch_bytes_max),
            timestamp_bounds: None,
            keys_required: false,
        }
    }
}

/// Validates batches record by record, reusing its decompression buffer and
/// codec state: warm, it allocates nothing per record, and nothing per
/// uncompressed batch.
#[derive(Debug, Default)]
pub struct RecordValidator {
    scratch: Vec<u8>,
    decompressor: Decompressor,
}

impl RecordValidator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything [`validate_produced`] checks (sizes, magic, CRC-32C, one
    /// offset per record), then what Kafka's broker requires of a batch from
    /// a producer before it assigns offsets: no control or transactional
    /// batch (there are no transactions yet), and every record well formed —
    /// its length matching the bytes it spans, key, value and header lengths
    /// -1 or within the record, offset deltas 0, 1, ..., n-1 — exactly
    /// `record_count` of them with nothing after, and for a CreateTime batch
    /// timestamps that do not overflow, within `checks.timestamp_bounds`,
    /// whose largest is the batch's max timestamp. The CRC is checked first,
    /// so damaged bytes are reported as such.
    pub fn validate_produced(
        &mut self,
        batch: &[u8],
        checks: &ProduceChecks,
    ) -> Result<BatchHeader, BatchError> {
        let header = validate_produced(batch, checks.batch_bytes_max)?;
        // Kafka refuses control batches from clients (INVALID_RECORD: "Clients
        // are not allowed to write control records").
        if header.is_control() {
            return Err(BatchError::ControlBatch {
                base_offset: header.base_offset,
            });
        }
        // Kafka answers a transactional batch outside a transaction it knows
        // of with INVALID_TXN_STATE; with no transactions, none is known.
        if header.is_transactional() {
            return Err(BatchError::TransactionalBatch {
                base_offset: header.base_offset,
                producer_id: header.producer_id,
            });
        }
        let bounds = match header.timestamp_type() {
            TimestampType::CreateTime => checks.timestamp_bounds,
            // Every record of such a batch reads its max timestamp.
            TimestampType::LogAppendTime => {
                if let Some(bounds) = checks.timestamp_bounds {
                    check_bound(&header, &bounds, 0, header.max_timestamp)?;
                }
                None
            }
        };
        let section = &batch[BATCH_HEADER_BYTES..];
        if header.compression()? == Compression::None {
            walk_produced(&header, section, bounds, checks.keys_required)?;
            return Ok(header);
        }
        let decompressed = decompress_records(
            &mut self.decompressor,
            &header,
            section,
            &mut self.scratch,
            checks.decompressed_bytes_max,
        )
        .and_then(|()| walk_produced(&header, &self.scratch, bounds, checks.keys_required));
        self.release_large_scratch();
        decompressed.map(|()| header)
    }

    /// The check for batches already validated by a leader (replication):
    /// [`validate`] (sizes, magic, CRC-32C) and every record decodable as a
    /// reader would decode it. Compacted batches may have gaps in their offset
    /// deltas, and their timestamps were bounded when they were produced, so
    /// neither is required here.
    pub fn validate_stored(
        &mut self,
        batch: &[u8],
        decompressed_bytes_max: usize,
    ) -> Result<BatchHeader, BatchError> {
        let header = validate(batch, usize::MAX)?;
        let section = &batch[BATCH_HEADER_BYTES..];
        if header.compression()? == Compression::None {
            drain(RecordIter::new(header, section))?;
            return Ok(header);
        }
        let decompressed = decompress_records(
            &mut self.decompressor,
            &header,
            section,
            &mut self.scratch,
            decompressed_bytes_max,
        )
        .and_then(|()| drain(RecordIter::new(header, &self.scratch)));
        self.release_large_scratch();
        decompressed.map(|()| header)
    }

    fn release_large_scratch(&mut self) {
        if self.scratch.capacity() > SCRATCH_BYTES_KEPT_MAX {
            self.scratch = Vec::new();
        }
    }
}

fn drain(records: RecordIter<'_>) -> Result<(), BatchError> {
    for record in records {
        record?;
    }
    Ok(())
}

/// One pass over the records section of a produced batch (see
/// [`RecordValidator::validate_produced`]); `bounds` apply to CreateTime
/// timestamps. Each record is split off by [`split_record`], which checks its
/// framing without building it; only a record it refuses is read again, as
/// readers read it, for the error.
fn walk_produced(
    header: &BatchHeader,
    records: &[u8],
    bounds: Option<TimestampBounds>,
    keys_required: bool,
) -> Result<(), BatchError> {
    // validate_produced checked 1 <= record_count == last_offset_delta + 1.
    let record_count = u32::try_from(header.record_count).unwrap_or(0);
    debug_assert!(record_count >= 1);
    let create_time = header.timestamp_type() == TimestampType::CreateTime;
    // Two comparisons per record; one outside the range is checked again for
    // the error (or for being NO_TIMESTAMP, which the bounds exempt).
    let (timestamp_min, timestamp_max) = bounds.map_or((i64::MIN, i64::MAX), |b| b.range());
    let mut rest = records;
    let mut records_max_timestamp = i64::MIN;
    // Every keyless record is named, as Kafka's answer lists each (allocated
    // only for a batch that has one).
    let mut keyless: Vec<u32> = Vec::new();
    for record_index in 0..record_count {
        if rest.is_empty() {
            return Err(BatchError::RecordCountMismatch {
                base_offset: header.base_offset,
                record_count: header.record_count,
                records_found: record_index,
            });
        }
        let position = records.len() - rest.len();
        let split = split_record(rest);
        debug_assert_eq!(
            split.map(|(deltas, after)| (deltas, after.len())),
            read_record_at(header, rest, position, record_index)
                .ok()
                .map(|(deltas, after)| (deltas, after.len())),
            "the split and the read of record {record_index} disagree"
        );
        let (deltas, after) = match split {
            Some(split) => split,
            None => read_record_at(header, rest, position, record_index)?,
        };
        rest = after;
        if keys_required && !deltas.keyed {
            keyless.push(record_index);
        }
        if i64::from(deltas.offset_delta) != i64::from(record_index) {
            return Err(BatchError::OffsetDeltaMismatch {
                base_offset: header.base_offset,
                record_index,
                offset_delta: deltas.offset_delta,
            });
        }
        if create_time {
            let Some(timestamp) = header.base_timestamp.checked_add(deltas.timestamp_delta) else {
                return Err(BatchError::TimestampOverflow {
                    base_offset: header.base_offset,
                    record_index,
                    base_timestamp: header.base_timestamp,
                    timestamp_delta: deltas.timestamp_delta,
                });
            };
            records_max_timestamp = records_max_timestamp.max(timestamp);
            if timestamp < timestamp_min || timestamp > timestamp_max {
                if let Some(bounds) = &bounds {
                    check_bound(header, bounds, record_index, timestamp)?;
                }
            }
        }
    }
    if !rest.is_empty() {
        return Err(BatchError::TrailingBytes {
            base_offset: header.base_offset,
            record_count: header.record_count,
            trailing_bytes: rest.len(),
        });
    }
    // Time indexes and retention trust the header's max timestamp without
    // reading records, so it must be the records' own.
    if create_time && records_max_timestamp != header.max_timestamp {
        return Err(BatchError::MaxTimestampMismatch {
            base_offset: header.base_offset,
            max_timestamp: header.max_timestamp,
            records_max_timestamp,
        });
    }
    if !keyless.is_empty() {
        return Err(BatchError::KeylessRecords {
            base_offset: header.base_offset,
            record_indexes: keyless,
        });
    }
    Ok(())
}

/// The record at the start of `rest` (byte `position` of the records section)
/// read as readers read it ([`read_record_body`]): its deltas and the bytes
/// after it, or what is wrong with it and where.
#[cold]
#[inline(never)]
fn read_record_at<'a>(
    header: &BatchHeader,
    rest: &'a [u8],
    position: usize,
    record_index: u32,
) -> Result<(RecordDeltas, &'a [u8]), BatchError> {
    let corrupt = |at: usize, reason: &'static str| BatchError::CorruptRecord {
        base_offset: header.base_offset,
        record_index,
        position: position + at,
        reason,
    };
    let mut reader = Reader::new(rest);
    let length = reader.read_varint().map_err(|reason| corrupt(0, reason))?;
    let length =
        usize::try_from(length).map_err(|_| corrupt(0, "the record length is negative"))?;
    let body_start = reader.position();
    let body = reader
        .read_bytes(length)
        .map_err(|_| corrupt(0, "the record length runs past the records section"))?;
    let mut body_reader = Reader::new(body);
    let parts = read_record_body(&mut body_reader)
        .map_err(|reason| corrupt(body_start + body_reader.position(), reason))?;
    let deltas = RecordDeltas {
        timestamp_delta: parts.timestamp_delta,
        offset_delta: parts.offset_delta,
        keyed: parts.key.is_some(),
    };
    Ok((deltas, rest.get(reader.position()..).unwrap_or_default()))
}

fn check_bound(
    header: &BatchHeader,
    bounds: &TimestampBounds,
    record_index: u32,
    timestamp: i64,
) -> Result<(), BatchError> {
    bounds
        .check(timestamp)
        .map_err(|(bound, bound_ms)| BatchError::TimestampOutOfRange {
            base_offset: header.base_offset,
            record_index,
            timestamp,
            now_ms: bounds.now_ms,
            bound,
            bound_ms,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_compacted_topic_refuses_keyless_records_and_names_each() {
        let now_ms = 1_760_000_000_000;
        for compression in [Compression::None, Compression::Gzip] {
            let mut builder = crate::batch::BatchBuilder::new(compression);
            for index in 0..12u32 {
                // Every fifth record has no key; an empty key is a key.
                let key: Option<&[u8]> = match index % 5 {
                    0 => None,
                    1 => Some(b""),
                    _ => Some(b"k"),
                };
                builder.push(now_ms, key, Some(b"v"), &[]);
            }
            let batch = builder.build().unwrap();
            let mut validator = RecordValidator::new();
            let open = ProduceChecks::new(1 << 20);
            validator.validate_produced(&batch, &open).unwrap();
            let compacted = ProduceChecks {
                keys_required: true,
                ..open
            };
            let refused = validator.validate_produced(&batch, &compacted).unwrap_err();
            assert!(
                matches!(&refused, BatchError::KeylessRecords { record_indexes, .. } if record_indexes == &[0, 5, 10]),
                "{compression}: {refused:?}"
            );
            assert!(
                refused
                    .to_string()
                    .contains("records 0, 5, 10 of the batch"),
                "{refused}"
            );
        }
    }

    #[test]
    fn timestamp_bounds_are_inclusive_and_skip_missing_timestamps() {
        let bounds = TimestampBounds {
            now_ms: 10_000,
            before_max_ms: 1_000,
            after_max_ms: 500,
        };
        assert_eq!(bounds.check(9_000), Ok(()));
        assert_eq!(bounds.check(10_500), Ok(()));
        assert_eq!(bounds.check(NO_TIMESTAMP), Ok(()));
        assert_eq!(bounds.check(8_999), Err((TimestampBound::Before, 1_000)));
        assert_eq!(bounds.check(10_501), Err((TimestampBound::After, 500)));
    }

    #[test]
    fn largest_bounds_accept_far_timestamps_without_overflow() {
        let bounds = TimestampBounds {
            now_ms: 10_000,
            before_max_ms: u64::MAX,
            after_max_ms: u64::MAX,
        };
        // As Kafka computes it: the lower bound is now - Long.MAX_VALUE.
        assert_eq!(bounds.check(10_000 - i64::MAX), Ok(()));
        assert_eq!(bounds.check(i64::MAX), Ok(()));
        assert_eq!(
            bounds.check(i64::MIN),
            Err((TimestampBound::Before, u64::MAX))
        );
    }

    #[test]
    fn records_with_varints_of_three_bytes_and_more_validate() {
        // Offset deltas past 8191 and a 9 KiB value take three-byte varints, timestamp
        // deltas past 17 minutes and a 2 MiB value four: past the walk's short paths.
        let mut builder = crate::batch::BatchBuilder::new(Compression::None);
        let now_ms = 1_760_000_000_000;
        let large = vec![b'x'; 2 << 20];
        let medium = vec![b'y'; 9 << 10];
        let record_count = 9_000;
        for index in 0..record_count {
            let value: &[u8] = match index {
                0 => &large,
                1 => &medium,
                _ => b"v",
            };
            let timestamp = now_ms - 3_000_000 + i64::from(index) * 500;
            builder.push(timestamp, Some(b"key"), Some(value), &[("h", Some(b"1"))]);
        }
        let batch = builder.build().unwrap();
        let checks = ProduceChecks {
            timestamp_bounds: Some(TimestampBounds {
                now_ms,
                before_max_ms: 3_600_000,
                after_max_ms: 3_600_000,
            }),
            ..ProduceChecks::new(8 << 20)
        };
        let header = RecordValidator::new()
            .validate_produced(&batch, &checks)
            .unwrap();
        assert_eq!(header.record_count, record_count);
    }

    #[test]
    fn decompressed_limit_is_a_multiple_of_the_batch_limit_capped_for_readers() {
        assert_eq!(decompressed_bytes_max_for(1024), 64 * 1024);
        assert_eq!(
            decompressed_bytes_max_for(usize::MAX),
            DECOMPRESSED_BYTES_MAX_DEFAULT
        );
    }
}
