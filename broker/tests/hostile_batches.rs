//! Batches a hostile or broken client sends with a valid CRC but records that are not what
//! their header declares are refused over gRPC with a per-partition error naming the
//! problem, and stored nowhere: a consumer of the topic still reads every healthy record.
//! A damaged retry is refused as damaged before the producer's sequence is consulted.

mod common;

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::{batch, consume_all, sequenced_batch, TestBroker};
use weir_client::proto::{
    ErrorCode, InitProducerIdRequest, PartitionProduceData, PartitionProduceResult, ProduceRequest,
};
use weir_log::batch::{compute_crc, BatchBuilder, Compression, BATCH_HEADER_BYTES};

const TOPIC: &str = "hostile";

fn request(partition: u32, batches: Bytes) -> ProduceRequest {
    ProduceRequest {
        topic: TOPIC.to_string(),
        acks: 0,
        timeout_ms: 1000,
        partitions: vec![PartitionProduceData { partition, batches }],
    }
}

fn fix_crc(batch: &mut [u8]) {
    let crc = compute_crc(batch).unwrap();
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// Rewrites the record count (and the last offset delta with it), CRC recomputed.
fn declare_records(batch: Bytes, record_count: i32) -> Bytes {
    let mut batch = batch.to_vec();
    batch[23..27].copy_from_slice(&(record_count - 1).to_be_bytes());
    batch[57..61].copy_from_slice(&record_count.to_be_bytes());
    fix_crc(&mut batch);
    Bytes::from(batch)
}

/// Replaces the records section of `batch`, length and CRC fixed up.
fn with_records(batch: Bytes, records: &[u8]) -> Bytes {
    let mut batch = batch[..BATCH_HEADER_BYTES].to_vec();
    batch.extend_from_slice(records);
    let batch_length = i32::try_from(batch.len() - 12).unwrap();
    batch[8..12].copy_from_slice(&batch_length.to_be_bytes());
    fix_crc(&mut batch);
    Bytes::from(batch)
}

fn built(compression: Compression, values: &[&str], timestamp_ms: i64) -> Bytes {
    let mut builder = BatchBuilder::new(compression);
    for value in values {
        builder.push(timestamp_ms, None, Some(value.as_bytes()), &[]);
    }
    builder.build().unwrap()
}

fn now_ms() -> i64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    i64::try_from(since_epoch.as_millis()).unwrap()
}

/// The hostile batches, each with what its refusal must say.
fn hostile_batches() -> Vec<(&'static str, Bytes, ErrorCode, &'static str)> {
    let random: Vec<u8> = (0u32..300)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    let mut corrupt_deflate = built(Compression::Gzip, &["a", "b", "c"], 0).to_vec();
    corrupt_deflate[BATCH_HEADER_BYTES + 12] ^= 0x5a;
    corrupt_deflate[BATCH_HEADER_BYTES + 13] ^= 0xa5;
    fix_crc(&mut corrupt_deflate);
    // length 7 | attributes | timestamp delta 0 | offset delta 0 | key length -2 | value "v" | no headers
    let negative_key = [0x0e, 0x00, 0x00, 0x00, 0x03, 0x02, b'v', 0x00];
    let mut transactional = BatchBuilder::new(Compression::None)
        .with_producer(5, 0, 0)
        .with_transactional(true);
    transactional.push(0, None, Some(b"t"), &[]);
    let mut control = BatchBuilder::new(Compression::None).with_producer(5, 0, -1);
    control.push_control(0, weir_log::batch::ControlRecordType::Commit, 0);
    // A data record behind the control attribute (bit 5): readers would skip it unseen.
    let mut control_hiding_data = built(Compression::None, &["hidden"], 0).to_vec();
    control_hiding_data[22] |= 0x20;
    fix_crc(&mut control_hiding_data);
    vec![
        (
            "random record bytes",
            with_records(built(Compression::None, &["x", "y", "z"], 0), &random),
            ErrorCode::CorruptBatch,
            "record",
        ),
        (
            "gzip declaring 10 records holding 2",
            declare_records(built(Compression::Gzip, &["a", "b"], 0), 10),
            ErrorCode::CorruptBatch,
            "declares 10 records but holds 2",
        ),
        (
            "gzip declaring 2^31-1 records holding 2",
            declare_records(built(Compression::Gzip, &["a", "b"], 0), i32::MAX),
            ErrorCode::CorruptBatch,
            "declares 2147483647 records but holds 2",
        ),
        (
            "uncompressed declaring 1 record holding 2",
            declare_records(built(Compression::None, &["a", "b"], 0), 1),
            ErrorCode::CorruptBatch,
            "left after its 1 records",
        ),
        (
            "corrupt deflate stream",
            Bytes::from(corrupt_deflate),
            ErrorCode::CorruptBatch,
            "gzip",
        ),
        (
            "negative key length",
            with_records(built(Compression::None, &["v"], 0), &negative_key),
            ErrorCode::CorruptBatch,
            "negative",
        ),
        (
            "timestamp two hours ahead",
            built(Compression::Lz4, &["future"], now_ms() + 2 * 3_600_000),
            ErrorCode::InvalidTimestamp,
            "message.timestamp.after.max.ms",
        ),
        (
            // It would keep its segment from time retention for a millennium.
            "timestamp in the year 3000",
            built(Compression::None, &["far"], 32_503_680_000_000),
            ErrorCode::InvalidTimestamp,
            "message.timestamp.after.max.ms",
        ),
        (
            "transactional batch",
            transactional.build().unwrap(),
            ErrorCode::InvalidTxnState,
            "transactional",
        ),
        (
            "control batch",
            control.build().unwrap(),
            ErrorCode::CorruptBatch,
            "control",
        ),
        (
            "control batch carrying a data record",
            Bytes::from(control_hiding_data),
            ErrorCode::CorruptBatch,
            "control",
        ),
    ]
}

fn only(response: tonic::Response<weir_client::proto::ProduceResponse>) -> PartitionProduceResult {
    response.into_inner().partitions.remove(0)
}

#[tokio::test]
async fn hostile_batches_are_refused_and_healthy_records_stay_readable() {
    let broker = TestBroker::start().await;
    broker.create_topic(TOPIC, 2).await;
    let mut client = broker.produce_client().await;
    for partition in 0..2 {
        let result = only(
            client
                .produce(request(partition, batch(&["before-1", "before-2"], 0)))
                .await
                .unwrap(),
        );
        assert_eq!(result.error_code(), ErrorCode::None);
    }

    for (name, hostile, code, says) in hostile_batches() {
        let result = only(client.produce(request(1, hostile)).await.unwrap());
        assert_eq!(
            result.error_code(),
            code,
            "{name}: {}",
            result.error_message
        );
        let message = &result.error_message;
        assert!(
            message.contains("\"hostile\" partition 1") && message.contains(says),
            "{name}: {message}"
        );
    }

    for partition in 0..2 {
        let result = only(
            client
                .produce(request(partition, batch(&["after"], 0)))
                .await
                .unwrap(),
        );
        assert_eq!(
            (result.error_code(), result.base_offset),
            (ErrorCode::None, 2)
        );
    }
    let described = broker.admin().await.describe_topic(TOPIC).await.unwrap();
    for partition in &described.partitions {
        assert_eq!(partition.log_end_offset, 3, "nothing hostile was stored");
    }
    let records = consume_all(&broker.addr, TOPIC, &[0, 1], 6).await;
    let mut values: Vec<(u32, u64, Bytes)> = records
        .into_iter()
        .map(|r| (r.partition, r.offset, r.value.unwrap()))
        .collect();
    values.sort();
    let expected: Vec<(u32, u64, Bytes)> = (0..2)
        .flat_map(|partition| {
            ["before-1", "before-2", "after"]
                .into_iter()
                .enumerate()
                .map(move |(offset, value)| {
                    (
                        partition,
                        offset as u64,
                        Bytes::from_static(value.as_bytes()),
                    )
                })
        })
        .collect();
    assert_eq!(values, expected);
    broker.shutdown().await;
}

#[tokio::test]
async fn damaged_retry_is_refused_as_damaged_not_answered_as_a_duplicate() {
    let broker = TestBroker::start().await;
    broker.create_topic(TOPIC, 1).await;
    let mut client = broker.produce_client().await;
    let pid = client
        .init_producer_id(InitProducerIdRequest::default())
        .await
        .unwrap()
        .into_inner()
        .producer_id;
    let first = sequenced_batch(pid, 0, 0, &["a", "b"]);
    let stored = only(client.produce(request(0, first.clone())).await.unwrap());
    assert_eq!(
        (stored.error_code(), stored.base_offset),
        (ErrorCode::None, 0)
    );

    // A retry of the stored batch whose bytes were damaged on the way.
    let mut damaged = first.to_vec();
    let last = damaged.len() - 1;
    damaged[last] ^= 0xff;
    let result = only(
        client
            .produce(request(0, Bytes::from(damaged)))
            .await
            .unwrap(),
    );
    assert_eq!(result.error_code(), ErrorCode::CorruptBatch, "{result:?}");
    assert!(!result.duplicate);
    assert!(
        result.error_message.contains("CRC"),
        "{}",
        result.error_message
    );

    // The next batch, damaged: refused, and the producer's sequence does not move.
    let next = sequenced_batch(pid, 0, 2, &["c"]);
    let mut damaged = next.to_vec();
    damaged[BATCH_HEADER_BYTES] ^= 0x01;
    let result = only(
        client
            .produce(request(0, Bytes::from(damaged)))
            .await
            .unwrap(),
    );
    assert_eq!(result.error_code(), ErrorCode::CorruptBatch, "{result:?}");

    // Intact, the same sequence is then taken as new.
    let result = only(client.produce(request(0, next)).await.unwrap());
    assert_eq!(
        (result.error_code(), result.base_offset, result.duplicate),
        (ErrorCode::None, 2, false)
    );
    let records = consume_all(&broker.addr, TOPIC, &[0], 3).await;
    let values: Vec<Bytes> = records.into_iter().map(|r| r.value.unwrap()).collect();
    assert_eq!(
        values,
        ["a", "b", "c"].map(|v| Bytes::from_static(v.as_bytes()))
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn timestamp_bounds_follow_the_topic_config() {
    let broker = TestBroker::start().await;
    broker.create_topic(TOPIC, 1).await;
    let admin = broker.admin().await;
    let mut client = broker.produce_client().await;
    let ten_minutes_ahead = || built(Compression::None, &["soon"], now_ms() + 600_000);
    let result = only(
        client
            .produce(request(0, ten_minutes_ahead()))
            .await
            .unwrap(),
    );
    assert_eq!(
        result.error_code(),
        ErrorCode::None,
        "within the default hour"
    );

    let set = |key: &str, value: &str| BTreeMap::from([(key.to_string(), value.to_string())]);
    admin
        .alter_configs(TOPIC, &set("message.timestamp.after.max.ms", "60000"))
        .await
        .unwrap();
    let result = only(
        client
            .produce(request(0, ten_minutes_ahead()))
            .await
            .unwrap(),
    );
    assert_eq!(result.error_code(), ErrorCode::InvalidTimestamp);
    assert!(
        result.error_message.contains("more than 60000 ms after"),
        "{}",
        result.error_message
    );

    let refused = admin
        .alter_configs(TOPIC, &set("message.timestamp.before.max.ms", "-1"))
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        Some(tonic::Code::InvalidArgument),
        "{refused}"
    );
    assert!(
        refused
            .to_string()
            .contains("message.timestamp.before.max.ms"),
        "{refused}"
    );
    broker.shutdown().await;
}
