//! Producing through the client and reading back through the consumer and
//! raw fetches: order, placement by key, offsets, and the per-partition and
//! request-level errors.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{batch, consume_all, TestBroker};
use tonic::Code;
use weir_client::proto::{
    ErrorCode, FetchRequest, ListOffsetsRequest, OffsetSpec, PartitionFetchRequest,
    PartitionOffsetQuery, PartitionProduceData, ProduceRequest,
};
use weir_client::{
    partition_for_key, Acks, ClientError, Consumer, ConsumerConfig, OffsetReset, Producer,
    ProducerConfig, ProducerRecord, SeekTo,
};
use weir_log::batch::Compression;

fn produce_request(topic: &str, partition: u32, batches: Bytes) -> ProduceRequest {
    ProduceRequest {
        topic: topic.to_string(),
        acks: 0,
        timeout_ms: 1000,
        partitions: vec![PartitionProduceData { partition, batches }],
    }
}

fn fetch_request(topic: &str, partition: u32, offset: u64) -> FetchRequest {
    FetchRequest {
        topic: topic.to_string(),
        max_wait_ms: 0,
        min_bytes: 0,
        max_bytes: 1 << 20,
        partitions: vec![PartitionFetchRequest {
            partition,
            offset,
            max_bytes: 1 << 20,
        }],
    }
}

#[tokio::test]
async fn keyed_records_land_on_the_murmur2_partition_in_order() {
    let broker = TestBroker::start().await;
    broker.create_topic("events", 4).await;
    let producer = Producer::connect(
        &broker.addr,
        ProducerConfig {
            linger: Duration::from_millis(2),
            batch_size_bytes: 4096,
            compression: Compression::Lz4,
            ..ProducerConfig::default()
        },
    )
    .await
    .unwrap();
    let mut deliveries = Vec::new();
    for i in 0..500u32 {
        let key = format!("user-{}", i % 17);
        let value = format!("event-{i}");
        let record = ProducerRecord::new("events", value.as_bytes()).with_key(key.as_bytes());
        let delivery = producer.send(record).await.unwrap();
        deliveries.push((key, delivery));
    }
    let mut acknowledged = Vec::new();
    for (key, delivery) in deliveries {
        let metadata = delivery.await.unwrap();
        assert_eq!(metadata.partition, partition_for_key(key.as_bytes(), 4));
        acknowledged.push((metadata.partition, metadata.offset.unwrap()));
    }
    producer.close().await.unwrap();
    // Offsets of each partition are dense from 0.
    for p in 0..4 {
        let mut offsets: Vec<u64> = acknowledged
            .iter()
            .filter(|(q, _)| *q == p)
            .map(|(_, o)| *o)
            .collect();
        offsets.sort_unstable();
        assert_eq!(offsets, (0..offsets.len() as u64).collect::<Vec<_>>());
    }

    let records = consume_all(&broker.addr, "events", &[0, 1, 2, 3], 500).await;
    assert_eq!(records.len(), 500);
    // Per key, values come back in the order they were sent.
    for k in 0..17 {
        let key = format!("user-{k}");
        let values: Vec<u32> = records
            .iter()
            .filter(|r| r.key.as_deref() == Some(key.as_bytes()))
            .map(|r| {
                let v = std::str::from_utf8(r.value.as_deref().unwrap()).unwrap();
                v.trim_start_matches("event-").parse().unwrap()
            })
            .collect();
        let mut sorted = values.clone();
        sorted.sort_unstable();
        assert_eq!(values, sorted, "key {key}");
        assert!(!values.is_empty());
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn records_without_key_and_acks_zero_still_arrive() {
    let broker = TestBroker::start().await;
    broker.create_topic("loose", 3).await;
    let producer = Producer::connect(
        &broker.addr,
        ProducerConfig {
            acks: Acks::None,
            idempotent: false,
            ..ProducerConfig::default()
        },
    )
    .await
    .unwrap();
    let mut deliveries = Vec::new();
    for i in 0..100 {
        let value = format!("v{i}");
        deliveries.push(
            producer
                .send(ProducerRecord::new("loose", value.as_bytes()))
                .await
                .unwrap(),
        );
    }
    for delivery in deliveries {
        assert_eq!(delivery.await.unwrap().offset, None);
    }
    producer.close().await.unwrap();
    let records = consume_all(&broker.addr, "loose", &[0, 1, 2], 100).await;
    assert_eq!(records.len(), 100);
    broker.shutdown().await;
}

#[tokio::test]
async fn consumer_seeks_to_offset_end_and_time() {
    let broker = TestBroker::start().await;
    broker.create_topic("t", 1).await;
    let mut client = broker.produce_client().await;
    client
        .produce(produce_request("t", 0, batch(&["a", "b", "c"], 1_000)))
        .await
        .unwrap();
    client
        .produce(produce_request("t", 0, batch(&["d", "e"], 5_000)))
        .await
        .unwrap();

    let mut consumer = Consumer::connect(&broker.addr, ConsumerConfig::default())
        .await
        .unwrap();
    consumer.assign("t", &[0]);
    consumer.seek(0, SeekTo::Offset(1)).unwrap();
    let values: Vec<Bytes> = consumer
        .poll(Duration::from_secs(1))
        .await
        .unwrap()
        .into_iter()
        .filter_map(|r| r.value)
        .collect();
    assert_eq!(
        values,
        ["b", "c", "d", "e"].map(|s| Bytes::from_static(s.as_bytes()))
    );

    consumer.seek(0, SeekTo::Time(5_000)).unwrap();
    assert_eq!(consumer.position(0).await.unwrap(), 3);
    consumer.seek(0, SeekTo::Time(1_001)).unwrap();
    assert_eq!(consumer.position(0).await.unwrap(), 1);
    consumer.seek(0, SeekTo::End).unwrap();
    assert_eq!(consumer.position(0).await.unwrap(), 5);
    consumer.seek(0, SeekTo::Beginning).unwrap();
    assert_eq!(consumer.position(0).await.unwrap(), 0);
    assert_eq!(consumer.end_offsets().await.unwrap(), [(0, 5)]);
    broker.shutdown().await;
}

#[tokio::test]
async fn list_offsets_reports_earliest_latest_and_by_time() {
    let broker = TestBroker::start().await;
    broker.create_topic("t", 1).await;
    let mut client = broker.produce_client().await;
    client
        .produce(produce_request("t", 0, batch(&["a", "b"], 100)))
        .await
        .unwrap();
    let mut fetch = broker.fetch_client().await;
    let query = |spec: OffsetSpec, timestamp_ms| ListOffsetsRequest {
        topic: "t".to_string(),
        partitions: vec![PartitionOffsetQuery {
            partition: 0,
            spec: spec.into(),
            timestamp_ms,
        }],
    };
    let answer = |r: tonic::Response<weir_client::proto::ListOffsetsResponse>| {
        let p = &r.into_inner().partitions[0];
        (p.offset, p.found)
    };
    assert_eq!(
        answer(
            fetch
                .list_offsets(query(OffsetSpec::Earliest, 0))
                .await
                .unwrap()
        ),
        (0, true)
    );
    assert_eq!(
        answer(
            fetch
                .list_offsets(query(OffsetSpec::Latest, 0))
                .await
                .unwrap()
        ),
        (2, true)
    );
    assert_eq!(
        answer(
            fetch
                .list_offsets(query(OffsetSpec::Timestamp, 101))
                .await
                .unwrap()
        ),
        (1, true)
    );
    assert_eq!(
        answer(
            fetch
                .list_offsets(query(OffsetSpec::Timestamp, 9_999))
                .await
                .unwrap()
        ),
        (2, false)
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn fetch_returns_stored_batches_byte_for_byte_below_the_high_watermark() {
    let broker = TestBroker::start().await;
    broker.create_topic("t", 1).await;
    let sent = batch(&["x", "y"], 7);
    let response = broker
        .produce_client()
        .await
        .produce(produce_request("t", 0, sent.clone()))
        .await
        .unwrap()
        .into_inner();
    let result = &response.partitions[0];
    assert_eq!(result.error_code(), ErrorCode::None);
    assert_eq!((result.base_offset, result.last_offset), (0, 1));

    let fetched = broker
        .fetch_client()
        .await
        .fetch(fetch_request("t", 0, 0))
        .await
        .unwrap()
        .into_inner();
    let p = &fetched.partitions[0];
    assert_eq!(p.high_watermark, 2);
    assert_eq!(p.batches.len(), sent.len());
    // Base offset 0 as sent, same length, leader epoch stamped 0, rest as sent.
    assert_eq!(&p.batches[..12], &sent[..12]);
    assert_eq!(&p.batches[12..16], &0i32.to_be_bytes());
    assert_eq!(&p.batches[16..], &sent[16..]);
    broker.shutdown().await;
}

#[tokio::test]
async fn produce_errors_name_topic_partition_and_cause() {
    let broker = TestBroker::start().await;
    broker.create_topic("t", 2).await;
    let mut client = broker.produce_client().await;

    let status = client
        .produce(produce_request("nope", 0, batch(&["a"], 0)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert!(status.message().contains("nope"), "{}", status.message());

    let status = client
        .produce(produce_request("t", 7, batch(&["a"], 0)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("partition 7") && status.message().contains("2 partitions"),
        "{}",
        status.message()
    );

    let mut corrupt = batch(&["a", "b"], 0).to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    let response = client
        .produce(produce_request("t", 1, Bytes::from(corrupt)))
        .await
        .unwrap()
        .into_inner();
    let result = &response.partitions[0];
    assert_eq!(result.error_code(), ErrorCode::CorruptBatch);
    assert!(
        result.error_message.contains("\"t\" partition 1"),
        "{}",
        result.error_message
    );
    assert!(
        result.error_message.to_lowercase().contains("crc"),
        "{}",
        result.error_message
    );

    let response = client
        .produce(produce_request("t", 1, Bytes::from_static(b"short")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.partitions[0].error_code(), ErrorCode::CorruptBatch);

    // Nothing of the refused batches was stored.
    let fetched = broker
        .fetch_client()
        .await
        .fetch(fetch_request("t", 1, 0))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fetched.partitions[0].high_watermark, 0);
    broker.shutdown().await;
}

#[tokio::test]
async fn oversize_request_is_resource_exhausted() {
    let data = tempfile::tempdir().unwrap();
    let config = weir_broker::BrokerConfig {
        request_bytes_max: 64 * 1024,
        ..common::config(data.path().to_path_buf())
    };
    let broker = TestBroker::start_with(config, data).await;
    broker.create_topic("t", 1).await;
    let big = "z".repeat(100 * 1024);
    let status = broker
        .produce_client()
        .await
        .produce(produce_request("t", 0, batch(&[big.as_str()], 0)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    // The broker is still serving.
    broker.admin().await.describe_topic("t").await.unwrap();
    broker.shutdown().await;
}

#[tokio::test]
async fn fetch_out_of_range_offset_reports_the_valid_range() {
    let broker = TestBroker::start().await;
    broker.create_topic("t", 1).await;
    broker
        .produce_client()
        .await
        .produce(produce_request("t", 0, batch(&["a", "b", "c"], 0)))
        .await
        .unwrap();
    let fetched = broker
        .fetch_client()
        .await
        .fetch(fetch_request("t", 0, 10))
        .await
        .unwrap()
        .into_inner();
    let p = &fetched.partitions[0];
    assert_eq!(p.error_code(), ErrorCode::OffsetOutOfRange);
    assert!(
        p.error_message.contains("offset 10") && p.error_message.contains("0..=3"),
        "{}",
        p.error_message
    );

    // The consumer reports it too when told not to reset.
    let mut consumer = Consumer::connect(
        &broker.addr,
        ConsumerConfig {
            offset_reset: OffsetReset::Error,
            ..ConsumerConfig::default()
        },
    )
    .await
    .unwrap();
    consumer.assign("t", &[0]);
    consumer.seek(0, SeekTo::Offset(10)).unwrap();
    let error = consumer.poll(Duration::from_millis(100)).await.unwrap_err();
    assert!(
        matches!(
            error,
            ClientError::Partition {
                code: ErrorCode::OffsetOutOfRange,
                ..
            }
        ),
        "{error:?}"
    );

    let status = broker
        .fetch_client()
        .await
        .fetch(fetch_request("t", 3, 0))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    broker.shutdown().await;
}

#[tokio::test]
async fn records_survive_a_restart() {
    let broker = TestBroker::start().await;
    broker.create_topic("t", 1).await;
    broker
        .produce_client()
        .await
        .produce(produce_request("t", 0, batch(&["a", "b"], 0)))
        .await
        .unwrap();
    let broker = broker.restart().await;
    let response = broker
        .produce_client()
        .await
        .produce(produce_request("t", 0, batch(&["c"], 0)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.partitions[0].base_offset, 2);
    let records = consume_all(&broker.addr, "t", &[0], 3).await;
    let values: Vec<_> = records.iter().map(|r| r.value.clone().unwrap()).collect();
    assert_eq!(
        values,
        ["a", "b", "c"].map(|s| Bytes::from_static(s.as_bytes()))
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn batches_stay_within_the_batch_size() {
    let broker = TestBroker::start().await;
    broker.create_topic("sized", 1).await;
    let batch_size_bytes = 8 * 1024;
    let producer = Producer::connect(
        &broker.addr,
        ProducerConfig {
            batch_size_bytes,
            linger: Duration::from_millis(50),
            ..ProducerConfig::default()
        },
    )
    .await
    .unwrap();
    let value = vec![b'v'; 1000];
    let mut deliveries = Vec::new();
    for _ in 0..100 {
        deliveries.push(
            producer
                .send(ProducerRecord::new("sized", &value))
                .await
                .unwrap(),
        );
    }
    for delivery in deliveries {
        delivery.await.unwrap();
    }
    producer.close().await.unwrap();
    let fetched = broker
        .fetch_client()
        .await
        .fetch(fetch_request("sized", 0, 0))
        .await
        .unwrap()
        .into_inner();
    let mut batches = 0;
    for item in weir_log::batch::batches(&fetched.partitions[0].batches) {
        let (header, raw) = item.unwrap();
        assert!(
            raw.len() <= batch_size_bytes,
            "batch of {} bytes",
            raw.len()
        );
        assert!(header.record_count > 1);
        batches += 1;
    }
    assert!(batches >= 100 * 1000 / batch_size_bytes);
    broker.shutdown().await;
}

#[tokio::test]
async fn records_without_a_key_move_to_another_partition_when_a_batch_fills() {
    let broker = TestBroker::start().await;
    broker.create_topic("spread", 4).await;
    let batch_size_bytes = 4 * 1024;
    let producer = Producer::connect(
        &broker.addr,
        ProducerConfig {
            batch_size_bytes,
            ..ProducerConfig::default()
        },
    )
    .await
    .unwrap();
    let value = vec![b'v'; 100];
    let mut deliveries = Vec::new();
    for _ in 0..2000 {
        let record = ProducerRecord::new("spread", &value);
        deliveries.push(producer.send(record).await.unwrap());
    }
    let mut per_partition = [0usize; 4];
    for delivery in deliveries {
        per_partition[delivery.await.unwrap().partition as usize] += 1;
    }
    producer.close().await.unwrap();
    // About 36 records fill a batch: 2000 records make about 55 batches, each
    // on a partition other than the one before.
    assert!(
        per_partition.iter().all(|&n| n > 0),
        "every partition gets batches: {per_partition:?}"
    );
    assert!(
        per_partition.iter().all(|&n| n < 1000),
        "no partition takes half: {per_partition:?}"
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn a_log_append_time_topic_returns_the_time_the_broker_stamped() {
    let broker = TestBroker::start().await;
    let configs = std::collections::BTreeMap::from([(
        "message.timestamp.type".to_string(),
        "LogAppendTime".to_string(),
    )]);
    let admin = broker.admin().await;
    admin.create_topic("stamped", 1, 1, &configs).await.unwrap();
    broker.create_topic("created", 1).await;
    let now_ms = || {
        i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis(),
        )
        .unwrap()
    };
    let before_ms = now_ms();
    let mut client = broker.produce_client().await;
    let stamped = client
        .produce(produce_request("stamped", 0, batch(&["a", "b"], 5)))
        .await
        .unwrap()
        .into_inner();
    let after_ms = now_ms();
    let stamp = stamped.partitions[0].log_append_time_ms;
    assert!(
        (before_ms..=after_ms).contains(&stamp),
        "{before_ms} <= {stamp} <= {after_ms}"
    );
    // The stored batch carries the same time.
    let fetched = broker
        .fetch_client()
        .await
        .fetch(fetch_request("stamped", 0, 0))
        .await
        .unwrap()
        .into_inner();
    let (header, _) = weir_log::batch::batches(&fetched.partitions[0].batches)
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(header.max_timestamp, stamp);
    // A CreateTime topic keeps the producer's timestamps and answers -1.
    let created = client
        .produce(produce_request("created", 0, batch(&["a"], 5)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.partitions[0].log_append_time_ms, -1);
    broker.shutdown().await;
}

#[tokio::test]
async fn the_producer_reports_the_log_append_time_as_the_record_timestamp() {
    let broker = TestBroker::start().await;
    let configs = std::collections::BTreeMap::from([(
        "message.timestamp.type".to_string(),
        "LogAppendTime".to_string(),
    )]);
    broker
        .admin()
        .await
        .create_topic("stamped", 1, 1, &configs)
        .await
        .unwrap();
    let producer = Producer::connect(&broker.addr, ProducerConfig::default())
        .await
        .unwrap();
    let metadata = producer
        .send(ProducerRecord::new("stamped", b"v".as_slice()).with_timestamp(5))
        .await
        .unwrap()
        .await
        .unwrap();
    // Not the record's own timestamp: the broker's.
    assert!(metadata.timestamp_ms > 5, "{metadata:?}");
    let fetched = broker
        .fetch_client()
        .await
        .fetch(fetch_request("stamped", 0, 0))
        .await
        .unwrap()
        .into_inner();
    let (header, _) = weir_log::batch::batches(&fetched.partitions[0].batches)
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(header.max_timestamp, metadata.timestamp_ms);
    broker.shutdown().await;
}
