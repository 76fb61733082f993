//! An append walks every record of a produced batch: batches whose CRC is valid but whose
//! records are not what the header declares (random bytes, too few or too many records,
//! bad lengths, bad offset deltas, a wrong max timestamp, a corrupt or oversized compressed
//! section) are refused with a typed error naming the record, as are control and
//! transactional batches and CreateTime records outside the topic's timestamp bounds. A
//! refused batch leaves the log as it was, and later good batches read back whole.

mod log_support;

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use log_support::*;
use weir_log::batch::{
    compute_crc, BatchBuilder, BatchError, Compression, ControlRecordType, TimestampBound,
    BATCH_HEADER_BYTES,
};
use weir_log::{LogConfig, LogError, PartitionLog};

fn put_varlong(out: &mut Vec<u8>, value: i64) {
    let mut raw = ((value << 1) ^ (value >> 63)) as u64;
    while raw >= 0x80 {
        out.push((raw as u8) | 0x80);
        raw >>= 7;
    }
    out.push(raw as u8);
}

/// One record's fields, each written as given: lengths need not match the bytes.
#[derive(Clone)]
struct RawRecord {
    timestamp_delta: i64,
    offset_delta: i64,
    key_length: i64,
    key: Vec<u8>,
    value_length: i64,
    value: Vec<u8>,
    header_count: i64,
    headers: Vec<u8>,
}

impl RawRecord {
    fn new(offset_delta: i64, value: &[u8]) -> Self {
        RawRecord {
            timestamp_delta: 0,
            offset_delta,
            key_length: -1,
            key: Vec::new(),
            value_length: value.len() as i64,
            value: value.to_vec(),
            header_count: 0,
            headers: Vec::new(),
        }
    }

    fn body(&self) -> Vec<u8> {
        let mut out = vec![0u8]; // attributes
        put_varlong(&mut out, self.timestamp_delta);
        put_varlong(&mut out, self.offset_delta);
        put_varlong(&mut out, self.key_length);
        out.extend_from_slice(&self.key);
        put_varlong(&mut out, self.value_length);
        out.extend_from_slice(&self.value);
        put_varlong(&mut out, self.header_count);
        out.extend_from_slice(&self.headers);
        out
    }

    /// The record with its length varint adjusted by `length_error`.
    fn encode_with_length_error(&self, length_error: i64) -> Vec<u8> {
        let body = self.body();
        let mut out = Vec::new();
        put_varlong(&mut out, body.len() as i64 + length_error);
        out.extend_from_slice(&body);
        out
    }

    fn encode(&self) -> Vec<u8> {
        self.encode_with_length_error(0)
    }
}

/// Header fields of a hand-built batch.
#[derive(Clone, Copy)]
struct RawBatch {
    attributes: i16,
    record_count: i32,
    base_timestamp: i64,
    max_timestamp: i64,
    producer_id: i64,
}

impl RawBatch {
    fn records(record_count: i32) -> Self {
        RawBatch {
            attributes: 0,
            record_count,
            base_timestamp: 1_000,
            max_timestamp: 1_000,
            producer_id: -1,
        }
    }

    /// A whole batch around `section` (compressed already if the attributes say so), with
    /// `last_offset_delta = record_count - 1` and a valid CRC: only the records can be wrong.
    fn seal(self, section: &[u8]) -> Vec<u8> {
        let mut batch = vec![0u8; BATCH_HEADER_BYTES];
        batch.extend_from_slice(section);
        let batch_length = i32::try_from(batch.len() - 12).unwrap();
        batch[8..12].copy_from_slice(&batch_length.to_be_bytes());
        batch[12..16].copy_from_slice(&(-1i32).to_be_bytes());
        batch[16] = 2;
        batch[21..23].copy_from_slice(&self.attributes.to_be_bytes());
        batch[23..27].copy_from_slice(&(self.record_count.wrapping_sub(1)).to_be_bytes());
        batch[27..35].copy_from_slice(&self.base_timestamp.to_be_bytes());
        batch[35..43].copy_from_slice(&self.max_timestamp.to_be_bytes());
        batch[43..51].copy_from_slice(&self.producer_id.to_be_bytes());
        batch[51..53].copy_from_slice(&(-1i16).to_be_bytes());
        batch[53..57].copy_from_slice(&(-1i32).to_be_bytes());
        batch[57..61].copy_from_slice(&self.record_count.to_be_bytes());
        fix_crc(&mut batch);
        batch
    }
}

fn fix_crc(batch: &mut [u8]) {
    let crc = compute_crc(batch).unwrap();
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// Rewrites the record count (and the last offset delta with it) of a built batch.
fn declare_records(mut batch: Vec<u8>, record_count: i32) -> Vec<u8> {
    batch[23..27].copy_from_slice(&(record_count - 1).to_be_bytes());
    batch[57..61].copy_from_slice(&record_count.to_be_bytes());
    fix_crc(&mut batch);
    batch
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn built(compression: Compression, values: &[&str], timestamp: i64) -> Vec<u8> {
    let mut builder = BatchBuilder::new(compression);
    for value in values {
        builder.push(timestamp, None, Some(value.as_bytes()), &[]);
    }
    builder.build().unwrap().to_vec()
}

fn now_ms() -> i64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    i64::try_from(since_epoch.as_millis()).unwrap()
}

fn open_with(config: LogConfig) -> (tempfile::TempDir, PartitionLog) {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), config).unwrap();
    (dir, log)
}

/// Appends `batch` to a log holding one good batch, expects it refused, and checks that
/// the log is unchanged and still takes and returns good batches.
fn refused(mut batch: Vec<u8>) -> BatchError {
    refused_with(tiny_config(), &mut batch)
}

fn refused_with(config: LogConfig, batch: &mut [u8]) -> BatchError {
    let (_dir, log) = open_with(config);
    let mut good = built(Compression::None, &["before-1", "before-2"], now_ms());
    log.append(&mut good, 0).unwrap();
    let error = log.append(batch, 0).unwrap_err();
    let LogError::BatchAt {
        position: 0,
        source,
    } = error
    else {
        panic!("expected a refused batch, got {error}");
    };
    assert_eq!(log.log_end_offset(), 2, "a refused batch takes no offsets");
    let mut after = built(Compression::Lz4, &["after"], now_ms());
    assert_eq!(log.append(&mut after, 0).unwrap().base_offset, 2);
    let values: Vec<_> = read_all_records(&log)
        .into_iter()
        .map(|record| record.value.unwrap())
        .collect();
    assert_eq!(values, ["before-1", "before-2", "after"].map(str::as_bytes));
    source
}

fn assert_corrupt_record(error: &BatchError, index: u32, reason_part: &str) {
    match error {
        BatchError::CorruptRecord {
            record_index,
            reason,
            ..
        } if *record_index == index && reason.contains(reason_part) => {}
        other => panic!("expected record {index} corrupt ({reason_part}), got {other}"),
    }
    assert!(
        error.to_string().contains(&format!("record {index}")),
        "{error}"
    );
}

#[test]
fn random_record_bytes_behind_a_valid_crc_are_refused() {
    let random: Vec<u8> = (0u32..200)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let error = refused(RawBatch::records(3).seal(&random));
    assert!(
        matches!(
            error,
            BatchError::CorruptRecord { .. }
                | BatchError::OffsetDeltaMismatch { .. }
                | BatchError::RecordCountMismatch { .. }
                | BatchError::TrailingBytes { .. }
        ),
        "{error}"
    );
}

#[test]
fn gzip_batch_declaring_more_records_than_it_holds_is_refused() {
    let batch = declare_records(built(Compression::Gzip, &["a", "b"], 1_000), 10);
    let error = refused(batch);
    assert!(
        matches!(
            error,
            BatchError::RecordCountMismatch {
                record_count: 10,
                records_found: 2,
                ..
            }
        ),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("declares 10 records but holds 2"),
        "{error}"
    );
}

#[test]
fn huge_declared_record_count_neither_passes_nor_moves_the_log_end() {
    let (_dir, log) = open_with(tiny_config());
    for _ in 0..3 {
        let mut batch = declare_records(built(Compression::Gzip, &["a", "b"], 1_000), i32::MAX);
        let error = log.append(&mut batch, 0).unwrap_err();
        assert!(
            matches!(
                error,
                LogError::BatchAt {
                    source: BatchError::RecordCountMismatch {
                        record_count: i32::MAX,
                        records_found: 2,
                        ..
                    },
                    ..
                }
            ),
            "{error}"
        );
    }
    assert_eq!(log.log_end_offset(), 0);
}

#[test]
fn uncompressed_batch_holding_more_records_than_declared_is_refused() {
    let batch = declare_records(built(Compression::None, &["a", "b"], 1_000), 1);
    let error = refused(batch);
    assert!(
        matches!(
            error,
            BatchError::TrailingBytes {
                record_count: 1,
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn corrupt_deflate_stream_is_refused() {
    let records = [RawRecord::new(0, b"value"), RawRecord::new(1, b"other")]
        .iter()
        .flat_map(RawRecord::encode)
        .collect::<Vec<_>>();
    let mut compressed = gzip(&records);
    // Past the 10-byte gzip header: the deflate data itself.
    compressed[12] ^= 0x5a;
    compressed[13] ^= 0xa5;
    let mut header = RawBatch::records(2);
    header.attributes = i16::from(Compression::Gzip.id());
    let error = refused(header.seal(&compressed));
    assert!(
        matches!(
            error,
            BatchError::Decompress {
                codec: Compression::Gzip,
                ..
            } | BatchError::CorruptRecord { .. }
        ),
        "{error}"
    );
}

#[test]
fn negative_key_length_other_than_null_is_refused() {
    let mut record = RawRecord::new(0, b"value");
    record.key_length = -2;
    let error = refused(RawBatch::records(1).seal(&record.encode()));
    assert_corrupt_record(&error, 0, "negative");
}

#[test]
fn key_and_value_lengths_past_the_record_are_refused() {
    let mut record = RawRecord::new(0, b"value");
    record.value_length = 50;
    let error = refused(RawBatch::records(1).seal(&record.encode()));
    assert_corrupt_record(&error, 0, "exceeds");
}

#[test]
fn record_length_that_does_not_match_its_bytes_is_refused() {
    let second = RawRecord::new(1, b"second");
    // Declares one byte more than the body: it swallows the next record's first byte.
    let mut section = RawRecord::new(0, b"first").encode_with_length_error(1);
    section.extend(second.encode());
    let error = refused(RawBatch::records(2).seal(&section));
    assert_corrupt_record(&error, 0, "left after");

    // Declares one byte less: the body ends inside its header count.
    let mut section = RawRecord::new(0, b"first").encode_with_length_error(-1);
    section.extend(second.encode());
    let error = refused(RawBatch::records(2).seal(&section));
    assert_corrupt_record(&error, 0, "ends inside");

    let mut section = Vec::new();
    put_varlong(&mut section, -3);
    section.extend(RawRecord::new(0, b"x").body());
    let error = refused(RawBatch::records(1).seal(&section));
    assert_corrupt_record(&error, 0, "negative");
}

#[test]
fn overlong_varint_is_refused() {
    let mut body = RawRecord::new(0, b"v").body();
    // The timestamp delta as an 11-byte varlong.
    body.splice(1..2, [0x80u8; 10].into_iter().chain([0x00]));
    let mut section = Vec::new();
    put_varlong(&mut section, body.len() as i64);
    section.extend(body);
    let error = refused(RawBatch::records(1).seal(&section));
    assert_corrupt_record(&error, 0, "varint");
}

#[test]
fn offset_deltas_must_number_the_records_from_zero() {
    let section: Vec<u8> = [RawRecord::new(0, b"a"), RawRecord::new(2, b"b")]
        .iter()
        .flat_map(RawRecord::encode)
        .collect();
    let error = refused(RawBatch::records(2).seal(&section));
    assert!(
        matches!(
            error,
            BatchError::OffsetDeltaMismatch {
                record_index: 1,
                offset_delta: 2,
                ..
            }
        ),
        "{error}"
    );

    let section: Vec<u8> = [RawRecord::new(1, b"a"), RawRecord::new(0, b"b")]
        .iter()
        .flat_map(RawRecord::encode)
        .collect();
    let error = refused(RawBatch::records(2).seal(&section));
    assert!(
        matches!(
            error,
            BatchError::OffsetDeltaMismatch {
                record_index: 0,
                offset_delta: 1,
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn bad_header_counts_and_header_lengths_are_refused() {
    let mut record = RawRecord::new(0, b"v");
    record.header_count = -1;
    assert_corrupt_record(
        &refused(RawBatch::records(1).seal(&record.encode())),
        0,
        "header count",
    );

    let mut record = RawRecord::new(0, b"v");
    record.header_count = 1_000;
    assert_corrupt_record(
        &refused(RawBatch::records(1).seal(&record.encode())),
        0,
        "header count",
    );

    // One header whose key is null.
    let mut record = RawRecord::new(0, b"v");
    record.header_count = 1;
    record.headers = vec![0x01, 0x00];
    assert_corrupt_record(
        &refused(RawBatch::records(1).seal(&record.encode())),
        0,
        "null",
    );

    // One header whose value length is -5.
    let mut record = RawRecord::new(0, b"v");
    record.header_count = 1;
    record.headers = vec![0x02, b'k', 0x09];
    assert_corrupt_record(
        &refused(RawBatch::records(1).seal(&record.encode())),
        0,
        "negative",
    );
}

#[test]
fn max_timestamp_must_be_the_largest_record_timestamp() {
    let mut second = RawRecord::new(1, b"b");
    second.timestamp_delta = 50;
    let section: Vec<u8> = [RawRecord::new(0, b"a"), second]
        .iter()
        .flat_map(RawRecord::encode)
        .collect();
    let mut header = RawBatch::records(2);
    header.max_timestamp = 1_000;
    let error = refused(header.seal(&section));
    assert!(
        matches!(
            error,
            BatchError::MaxTimestampMismatch {
                max_timestamp: 1_000,
                records_max_timestamp: 1_050,
                ..
            }
        ),
        "{error}"
    );
    header.max_timestamp = 1_050;
    let (_dir, log) = open_with(tiny_config());
    log.append(&mut header.seal(&section), 0).unwrap();
}

#[test]
fn timestamp_delta_that_overflows_is_refused() {
    let mut record = RawRecord::new(0, b"v");
    record.timestamp_delta = 10;
    let mut header = RawBatch::records(1);
    header.base_timestamp = i64::MAX - 5;
    header.max_timestamp = i64::MAX;
    let mut config = tiny_config();
    config.timestamp_after_max_ms = weir_log::TIMESTAMP_BOUND_MS_MAX;
    let error = refused_with(config, &mut header.seal(&record.encode()));
    assert!(
        matches!(
            error,
            BatchError::TimestampOverflow {
                record_index: 0,
                timestamp_delta: 10,
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn control_and_transactional_batches_are_refused_from_producers() {
    let mut builder = BatchBuilder::new(Compression::None).with_producer(7, 0, -1);
    builder.push_control(1_000, ControlRecordType::Commit, 0);
    let error = refused(builder.build().unwrap().to_vec());
    assert!(matches!(error, BatchError::ControlBatch { .. }), "{error}");
    assert!(error.to_string().contains("control"), "{error}");

    let mut builder = BatchBuilder::new(Compression::None)
        .with_producer(7, 0, 0)
        .with_transactional(true);
    builder.push(1_000, None, Some(b"in a transaction"), &[]);
    let error = refused(builder.build().unwrap().to_vec());
    assert!(
        matches!(error, BatchError::TransactionalBatch { producer_id: 7, .. }),
        "{error}"
    );
    assert!(error.to_string().contains("transactional"), "{error}");
}

#[test]
fn crc_is_checked_before_the_records() {
    let mut batch = RawBatch::records(3).seal(&[0xff; 40]);
    batch[BATCH_HEADER_BYTES] ^= 1;
    let error = refused(batch);
    assert!(matches!(error, BatchError::CrcMismatch { .. }), "{error}");
}

#[test]
fn records_beyond_the_decompression_limit_are_refused() {
    let mut config = tiny_config();
    config.max_message_bytes = 16 * 1024;
    // One record of 2 MiB of zeros compresses to far less than 16 KiB.
    let zeros = vec![0u8; 2 * 1024 * 1024];
    for compression in [Compression::Gzip, Compression::Lz4, Compression::Zstd] {
        let mut builder = BatchBuilder::new(compression);
        builder.push(1_000, None, Some(&zeros), &[]);
        let mut batch = builder.build().unwrap().to_vec();
        assert!(batch.len() < 16 * 1024, "{compression}: {}", batch.len());
        let error = refused_with(config.clone(), &mut batch);
        assert!(
            matches!(
                error,
                BatchError::DecompressedTooLarge {
                    limit_bytes: 1_048_576,
                    ..
                }
            ),
            "{compression}: {error}"
        );
    }
}

#[test]
fn future_timestamps_past_after_max_ms_are_refused() {
    let now = now_ms();
    let two_hours = 2 * 3_600_000;
    let mut batch = built(Compression::Zstd, &["far ahead"], now + two_hours);
    let error = refused_with(tiny_config(), &mut batch);
    match &error {
        BatchError::TimestampOutOfRange {
            record_index: 0,
            timestamp,
            bound: TimestampBound::After,
            bound_ms: 3_600_000,
            ..
        } => assert_eq!(*timestamp, now + two_hours),
        other => panic!("expected a timestamp out of range, got {other}"),
    }
    assert!(
        error.to_string().contains("message.timestamp.after.max.ms"),
        "{error}"
    );

    // Within the hour, and with the bound raised, it is taken.
    let (_dir, log) = open_with(tiny_config());
    log.append(&mut built(Compression::None, &["soon"], now + 60_000), 0)
        .unwrap();
    let mut config = tiny_config();
    config
        .apply("message.timestamp.after.max.ms", "10800000")
        .unwrap();
    log.set_config(config);
    log.append(&mut batch, 0).unwrap();
}

#[test]
fn past_timestamps_past_before_max_ms_are_refused_and_unset_ones_pass() {
    let mut config = tiny_config();
    config
        .apply("message.timestamp.before.max.ms", "60000")
        .unwrap();
    let now = now_ms();
    let mut old = built(Compression::None, &["old"], now - 120_000);
    let error = refused_with(config.clone(), &mut old);
    assert!(
        matches!(
            error,
            BatchError::TimestampOutOfRange {
                bound: TimestampBound::Before,
                bound_ms: 60_000,
                ..
            }
        ),
        "{error}"
    );
    // Kafka exempts records without a timestamp (-1).
    let (_dir, log) = open_with(config);
    log.append(&mut built(Compression::None, &["unset"], -1), 0)
        .unwrap();
}

#[test]
fn log_append_time_topics_take_any_producer_timestamp() {
    let mut config = tiny_config();
    config
        .apply("message.timestamp.type", "LogAppendTime")
        .unwrap();
    let (_dir, log) = open_with(config);
    let mut batch = built(Compression::None, &["stamped"], now_ms() + 10 * 3_600_000);
    let info = log.append(&mut batch, 0).unwrap();
    assert!(info.max_timestamp <= now_ms());
}

#[test]
fn timestamp_bound_configs_parse_like_kafka() {
    let mut config = LogConfig::default();
    assert_eq!(config.timestamp_after_max_ms, 3_600_000);
    assert_eq!(config.timestamp_before_max_ms, i64::MAX as u64);
    config
        .apply("message.timestamp.before.max.ms", "9223372036854775807")
        .unwrap();
    config.apply("message.timestamp.after.max.ms", "0").unwrap();
    assert_eq!(config.timestamp_after_max_ms, 0);
    for bad in ["-1", "9223372036854775808", "soon"] {
        let error = config
            .apply("message.timestamp.after.max.ms", bad)
            .unwrap_err();
        assert!(
            error.to_string().contains("message.timestamp.after.max.ms"),
            "{error}"
        );
    }
    assert_eq!(
        config.timestamp_after_max_ms, 0,
        "a bad value changes nothing"
    );
}

#[test]
fn replicated_batches_with_undecodable_records_are_refused() {
    let (_dir, log) = open_with(tiny_config());
    let mut batch = declare_records(built(Compression::Gzip, &["a", "b"], 1_000), 10);
    weir_log::batch::set_base_offset(&mut batch, 0);
    let error = log.append_replicated(&batch).unwrap_err();
    assert!(
        matches!(
            error,
            LogError::BatchAt {
                source: BatchError::CorruptRecord { .. },
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(log.log_end_offset(), 0);
}
