//! Our RecordBatch v2 against two independent implementations, both ways:
//! kafka-python (through checked-in fixtures, see `fixtures/make_fixtures.py`)
//! and the `kafka-protocol` crate (live, in process).

use std::path::PathBuf;

use bytes::Bytes;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression as KpCompression, Record as KpRecord, RecordBatchDecoder, RecordBatchEncoder,
    RecordEncodeOptions, TimestampType as KpTimestampType,
};
use serde_json::{json, Value};
use weir_log::batch::{
    batches, decode_records, set_base_offset, set_log_append_time, set_partition_leader_epoch,
    validate, BatchBuilder, Compression, ControlRecordType, Record, TimestampType,
};

const BASE_OFFSET: i64 = 100;
const LEADER_EPOCH: i32 = 5;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Bytes as the fixture JSON writes them: hex, or length and CRC-32C past 1 KiB.
fn bytes_json(bytes: Option<&[u8]>) -> Value {
    match bytes {
        None => Value::Null,
        Some(bytes) if bytes.len() > 1024 => {
            json!({"len": bytes.len(), "crc32c": crc32c::crc32c(bytes)})
        }
        Some(bytes) => Value::String(bytes.iter().map(|b| format!("{b:02x}")).collect()),
    }
}

/// One batch as the fixture JSON describes it, from our own decoder.
fn batch_json(batch: &[u8]) -> Value {
    let header = validate(batch, usize::MAX).unwrap();
    let records: Vec<Value> = decode_records(batch)
        .unwrap()
        .iter()
        .map(|record| {
            if header.is_control() {
                let kind = ControlRecordType::from_key(record.key.as_deref().unwrap()).unwrap();
                return json!({
                    "offset": record.offset,
                    "timestamp": record.timestamp,
                    "control_type": match kind {
                        ControlRecordType::Commit => "commit",
                        ControlRecordType::Abort => "abort",
                    },
                });
            }
            json!({
                "offset": record.offset,
                "timestamp": record.timestamp,
                "key": bytes_json(record.key.as_deref()),
                "value": bytes_json(record.value.as_deref()),
                "headers": record.headers.iter()
                    .map(|h| json!([h.key, bytes_json(h.value.as_deref())]))
                    .collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "base_offset": header.base_offset,
        "last_offset_delta": header.last_offset_delta,
        "partition_leader_epoch": header.partition_leader_epoch,
        "compression": header.compression().unwrap().id(),
        "timestamp_type": match header.timestamp_type() {
            TimestampType::CreateTime => 0,
            TimestampType::LogAppendTime => 1,
        },
        "is_transactional": header.is_transactional(),
        "is_control": header.is_control(),
        "max_timestamp": header.max_timestamp,
        "producer_id": header.producer_id,
        "producer_epoch": header.producer_epoch,
        "base_sequence": header.base_sequence,
        "records": records,
    })
}

/// Every batch of a buffer of concatenated batches, as fixture JSON.
fn batches_json(buf: &[u8]) -> Value {
    Value::Array(
        batches(buf)
            .map(|batch| batch_json(batch.unwrap().1))
            .collect(),
    )
}

struct SampleRecord {
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

/// The same records `make_fixtures.py` writes.
fn sample_records() -> Vec<SampleRecord> {
    let big: Vec<u8> = (0..2000)
        .flat_map(|i| format!("line {i:05} of a long compressible value\n").into_bytes())
        .collect();
    let record =
        |timestamp, key: Option<&[u8]>, value: Option<&[u8]>, headers: &[(&str, Option<&[u8]>)]| {
            SampleRecord {
                timestamp,
                key: key.map(<[u8]>::to_vec),
                value: value.map(<[u8]>::to_vec),
                headers: headers
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), v.map(<[u8]>::to_vec)))
                    .collect(),
            }
        };
    vec![
        record(
            1_700_000_000_000,
            Some(b"user-1"),
            Some(br#"{"page":"/home"}"#),
            &[],
        ),
        record(
            1_700_000_000_250,
            None,
            Some(b"no key here"),
            &[
                ("trace", Some(b"abc123")),
                ("empty", Some(b"")),
                ("null", None),
            ],
        ),
        record(1_699_999_999_900, Some(b"user-2"), None, &[]),
        record(
            1_700_000_000_500,
            Some(b"\x00\xff\x10binary"),
            Some(&b"\x01\x02\x03".repeat(40)),
            &[("h\u{e9}", Some(b"\xfe"))],
        ),
        record(1_700_000_001_000, Some(b"big"), Some(&big), &[]),
        record(1_700_000_001_001, Some(b""), Some(b""), &[]),
    ]
}

/// Our encoding of the sample, stamped as the fixtures are.
fn weir_sample_batch(compression: Compression) -> Vec<u8> {
    let mut builder = BatchBuilder::new(compression);
    if compression == Compression::None {
        builder = builder.with_producer(4242, 3, 17).with_transactional(true);
    }
    for record in sample_records() {
        let headers: Vec<(&str, Option<&[u8]>)> = record
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_deref()))
            .collect();
        builder.push(
            record.timestamp,
            record.key.as_deref(),
            record.value.as_deref(),
            &headers,
        );
    }
    let mut batch = builder.build().unwrap().to_vec();
    set_base_offset(&mut batch, BASE_OFFSET);
    set_partition_leader_epoch(&mut batch, LEADER_EPOCH);
    batch
}

/// A transactional lz4 batch stamped LogAppendTime, then its commit marker.
fn weir_special_batches() -> Vec<u8> {
    let mut data = BatchBuilder::new(Compression::Lz4)
        .with_producer(4242, 3, 0)
        .with_transactional(true);
    for index in 0..3u8 {
        data.push(
            1_000 + i64::from(index),
            Some(&[b'k', index]),
            Some(b"in a transaction"),
            &[],
        );
    }
    let mut out = data.build().unwrap().to_vec();
    set_base_offset(&mut out, 200);
    set_partition_leader_epoch(&mut out, LEADER_EPOCH);
    set_log_append_time(&mut out, 1_800_000_000_000);
    let mut marker = BatchBuilder::new(Compression::None)
        .with_producer(4242, 3, -1)
        .with_transactional(true);
    marker.push_control(1_800_000_000_001, ControlRecordType::Commit, 9);
    let mut marker = marker.build().unwrap().to_vec();
    set_base_offset(&mut marker, 203);
    set_partition_leader_epoch(&mut marker, LEADER_EPOCH);
    out.extend_from_slice(&marker);
    out
}

fn read_json(name: &str) -> Value {
    let text = std::fs::read_to_string(fixture(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn kafka_python_batches_decode_to_their_records() {
    for compression in Compression::ALL {
        let batch = std::fs::read(fixture(&format!("kafka_python_{compression}.bin"))).unwrap();
        let expected = read_json(&format!("kafka_python_{compression}.json"));
        assert_eq!(
            batch_json(&batch),
            expected,
            "kafka-python {compression} batch"
        );
    }
}

#[test]
fn our_uncompressed_batch_is_byte_identical_to_kafka_python() {
    let theirs = std::fs::read(fixture("kafka_python_none.bin")).unwrap();
    assert_eq!(weir_sample_batch(Compression::None), theirs);
}

#[test]
fn our_batches_decode_with_kafka_python() {
    // weir_<codec>.json is what kafka-python decoded weir_<codec>.bin to.
    for compression in Compression::ALL {
        let ours = std::fs::read(fixture(&format!("weir_{compression}.bin"))).unwrap();
        let decoded_by_kafka_python = read_json(&format!("weir_{compression}.json"));
        let expected = read_json(&format!("kafka_python_{compression}.json"));
        assert_eq!(
            decoded_by_kafka_python,
            json!([expected]),
            "weir {compression} batch"
        );
        assert_eq!(json!([batch_json(&ours)]), decoded_by_kafka_python);
        // The encoder today still produces what kafka-python decoded.
        assert_eq!(batch_json(&weir_sample_batch(compression)), expected);
    }
    let checked_in = std::fs::read(fixture("weir_none.bin")).unwrap();
    assert_eq!(weir_sample_batch(Compression::None), checked_in);
}

/// Writes `weir_<codec>.bin` for `make_fixtures.py --decode`.
#[test]
#[ignore = "writes fixtures; run by hand when the sample changes"]
fn write_weir_fixtures() {
    for compression in Compression::ALL {
        let path = fixture(&format!("weir_{compression}.bin"));
        std::fs::write(path, weir_sample_batch(compression)).unwrap();
    }
    std::fs::write(fixture("weir_special.bin"), weir_special_batches()).unwrap();
}

#[test]
fn transactional_log_append_time_and_markers_read_the_same_in_kafka_python() {
    let ours = std::fs::read(fixture("weir_special.bin")).unwrap();
    assert_eq!(ours, weir_special_batches());
    let decoded_by_kafka_python = read_json("weir_special.json");
    assert_eq!(batches_json(&ours), decoded_by_kafka_python);
    let batches = decoded_by_kafka_python.as_array().unwrap();
    assert_eq!(batches.len(), 2);
    // LogAppendTime: every record reads the batch max timestamp.
    for record in batches[0]["records"].as_array().unwrap() {
        assert_eq!(record["timestamp"], 1_800_000_000_000i64);
    }
    assert_eq!(batches[0]["timestamp_type"], 1);
    assert_eq!(batches[1]["is_control"], true);
    assert_eq!(batches[1]["records"][0]["control_type"], "commit");
    assert_eq!(batches[1]["records"][0]["offset"], 203);
}

fn kp_compression(compression: Compression) -> KpCompression {
    match compression {
        Compression::None => KpCompression::None,
        Compression::Gzip => KpCompression::Gzip,
        Compression::Snappy => KpCompression::Snappy,
        Compression::Lz4 => KpCompression::Lz4,
        Compression::Zstd => KpCompression::Zstd,
    }
}

/// The fields both implementations carry per record. kafka-protocol keeps
/// headers in a map, so samples compared with it use distinct header keys.
type Comparable = (
    i64,
    i64,
    Option<Bytes>,
    Option<Bytes>,
    Vec<(String, Option<Bytes>)>,
);

fn comparable_ours(record: &Record) -> Comparable {
    let headers = record
        .headers
        .iter()
        .map(|h| (h.key.clone(), h.value.clone()))
        .collect();
    (
        record.offset,
        record.timestamp,
        record.key.clone(),
        record.value.clone(),
        headers,
    )
}

fn comparable_theirs(record: &KpRecord) -> Comparable {
    let headers = record
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
        .collect();
    (
        record.offset,
        record.timestamp,
        record.key.clone(),
        record.value.clone(),
        headers,
    )
}

#[test]
fn our_batches_decode_with_kafka_protocol() {
    for compression in Compression::ALL {
        let batch = weir_sample_batch(compression);
        let ours: Vec<Comparable> = decode_records(&batch)
            .unwrap()
            .iter()
            .map(comparable_ours)
            .collect();
        let mut buf = Bytes::from(batch);
        let set = RecordBatchDecoder::decode(&mut buf).unwrap();
        assert_eq!(set.compression, kp_compression(compression));
        let theirs: Vec<Comparable> = set.records.iter().map(comparable_theirs).collect();
        assert_eq!(theirs, ours, "{compression}");
        assert_eq!(theirs.len(), 6);
        let first = &set.records[0];
        assert_eq!(first.partition_leader_epoch, LEADER_EPOCH);
        assert_eq!(first.transactional, compression == Compression::None);
        assert_eq!(first.timestamp_type, KpTimestampType::Creation);
    }
}

fn kp_sample_records() -> Vec<KpRecord> {
    sample_records()
        .into_iter()
        .enumerate()
        .map(|(index, record)| KpRecord {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: LEADER_EPOCH,
            producer_id: 77,
            producer_epoch: 1,
            timestamp_type: KpTimestampType::Creation,
            offset: BASE_OFFSET + index as i64,
            sequence: 10 + index as i32,
            timestamp: record.timestamp,
            key: record.key.map(Bytes::from),
            value: record.value.map(Bytes::from),
            headers: record
                .headers
                .into_iter()
                .map(|(k, v)| (StrBytes::from_string(k), v.map(Bytes::from)))
                .collect(),
        })
        .collect()
}

#[test]
fn kafka_protocol_batches_decode_with_ours() {
    for compression in Compression::ALL {
        let records = kp_sample_records();
        let mut buf = bytes::BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression: kp_compression(compression),
        };
        RecordBatchEncoder::encode(&mut buf, &records, &options).unwrap();
        let header = validate(&buf, usize::MAX).unwrap();
        assert_eq!(header.compression().unwrap(), compression);
        assert_eq!(header.base_offset, BASE_OFFSET);
        assert_eq!(
            (
                header.producer_id,
                header.producer_epoch,
                header.base_sequence
            ),
            (77, 1, 10)
        );
        assert_eq!(header.max_timestamp, 1_700_000_001_001);
        let ours: Vec<Comparable> = decode_records(&buf)
            .unwrap()
            .iter()
            .map(comparable_ours)
            .collect();
        let expected: Vec<Comparable> = records.iter().map(comparable_theirs).collect();
        assert_eq!(ours, expected, "{compression}");
    }
}
