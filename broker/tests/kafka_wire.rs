//! The Kafka listener spoken to through `kafka-protocol`: versions, produce
//! and fetch on the same partitions as gRPC (byte for byte), errors with
//! Kafka's codes and Weir's messages, and frames that close only their own
//! connection.

mod common;
mod kafka_support;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiVersionsRequest, ApiVersionsResponse, FetchRequest, FetchResponse, MetadataRequest,
    ProduceRequest, ProduceResponse, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use weir_client::proto::{
    FetchRequest as GrpcFetch, PartitionFetchRequest, PartitionProduceData as GrpcData,
    ProduceRequest as GrpcProduce,
};
use weir_log::batch::{decode_records, BatchBuilder, Compression};

use kafka_support::{start_broker, KafkaWire};

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn keyed_batch(compression: Compression, prefix: &str, count: usize) -> Bytes {
    let mut builder = BatchBuilder::new(compression);
    let now = now_ms();
    for i in 0..count {
        let key = format!("{prefix}-key-{i}");
        let value = format!("{prefix}-value-{i}");
        builder.push(
            now + i as i64,
            Some(key.as_bytes()),
            Some(value.as_bytes()),
            &[("source", Some(prefix.as_bytes())), ("empty", None)],
        );
    }
    builder.build().unwrap()
}

fn produce(topic: &str, partition: i32, acks: i16, batch: Bytes) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(5_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(batch))])])
}

fn fetch(topic: &str, partition: i32, offset: i64, max_wait_ms: i32) -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])])
}

fn only_partition(
    response: &ProduceResponse,
) -> &kafka_protocol::messages::produce_response::PartitionProduceResponse {
    assert_eq!(response.responses.len(), 1);
    assert_eq!(response.responses[0].partition_responses.len(), 1);
    &response.responses[0].partition_responses[0]
}

fn fetched(response: &FetchResponse) -> &kafka_protocol::messages::fetch_response::PartitionData {
    assert_eq!(response.responses.len(), 1);
    assert_eq!(response.responses[0].partitions.len(), 1);
    &response.responses[0].partitions[0]
}

async fn grpc_batches(broker: &common::TestBroker, topic: &str, partition: u32) -> Bytes {
    let mut fetch = broker.fetch_client().await;
    let response = fetch
        .fetch(GrpcFetch {
            topic: topic.to_string(),
            max_wait_ms: 0,
            min_bytes: 0,
            max_bytes: 1 << 20,
            partitions: vec![PartitionFetchRequest {
                partition,
                offset: 0,
                max_bytes: 1 << 20,
            }],
        })
        .await
        .unwrap()
        .into_inner();
    response.partitions[0].batches.clone()
}

#[tokio::test]
async fn api_versions_lists_the_served_apis_and_answers_an_unknown_version_with_v0() {
    let (broker, kafka) = start_broker().await;
    let mut wire = KafkaWire::connect(kafka).await;
    for version in 0..=3 {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("weir-test"))
            .with_client_software_version(StrBytes::from_static_str("1"));
        let response = wire.call(version, &request).await;
        assert_eq!(response.error_code, 0, "v{version}");
        let range = |key: i16| {
            let api = response.api_keys.iter().find(|k| k.api_key == key).unwrap();
            (api.min_version, api.max_version)
        };
        assert_eq!(range(0), (3, 9), "Produce");
        assert_eq!(range(1), (4, 12), "Fetch");
        assert_eq!(range(18), (0, 3), "ApiVersions");
        assert_eq!(range(10), (0, 4), "FindCoordinator");
        assert_eq!(range(8), (2, 9), "OffsetCommit");
    }
    // ApiVersions v99: header v0 fields, then a body the broker cannot know.
    let mut frame = BytesMut::new();
    frame.put_i32(2 + 2 + 4 + 2 + 3);
    frame.put_i16(18);
    frame.put_i16(99);
    frame.put_i32(77);
    frame.put_i16(-1);
    frame.put_slice(&[1, 2, 3]);
    wire.send_raw(&frame).await;
    let mut answer = wire.read_frame().await.expect("an answer, not a close");
    let header = ResponseHeader::decode(&mut answer, 0).unwrap();
    assert_eq!(header.correlation_id, 77);
    let body = ApiVersionsResponse::decode(&mut answer, 0).unwrap();
    assert_eq!(body.error_code, 35, "UNSUPPORTED_VERSION");
    assert!(body
        .api_keys
        .iter()
        .any(|k| k.api_key == 18 && k.max_version == 3));
    // The connection still serves.
    let again = wire.call(3, &ApiVersionsRequest::default()).await;
    assert_eq!(again.error_code, 0);
    broker.shutdown().await;
}

#[tokio::test]
async fn records_produced_over_grpc_are_fetched_over_kafka_byte_for_byte_and_back() {
    let (broker, kafka) = start_broker().await;
    broker.create_topic("bytes", 2).await;
    let from_grpc = keyed_batch(Compression::Lz4, "grpc", 3);
    let mut produce_client = broker.produce_client().await;
    produce_client
        .produce(GrpcProduce {
            topic: "bytes".to_string(),
            acks: 1,
            timeout_ms: 5_000,
            partitions: vec![GrpcData {
                partition: 1,
                batches: from_grpc.clone(),
            }],
        })
        .await
        .unwrap();
    let mut wire = KafkaWire::connect(kafka).await;
    // Over Kafka, at the oldest and the newest versions served.
    let from_kafka_v3 = keyed_batch(Compression::None, "kafka-v3", 2);
    let from_kafka_v9 = keyed_batch(Compression::Zstd, "kafka-v9", 4);
    let produced = wire
        .call(3, &produce("bytes", 1, 1, from_kafka_v3.clone()))
        .await;
    assert_eq!(only_partition(&produced).error_code, 0);
    assert_eq!(only_partition(&produced).base_offset, 3);
    let produced = wire
        .call(9, &produce("bytes", 1, -1, from_kafka_v9.clone()))
        .await;
    assert_eq!(only_partition(&produced).error_code, 0);
    assert_eq!(only_partition(&produced).base_offset, 5);
    assert_eq!(only_partition(&produced).log_start_offset, 0);

    let stored = grpc_batches(&broker, "bytes", 1).await;
    for version in [4, 7, 11, 12] {
        let response = wire.call(version, &fetch("bytes", 1, 0, 0)).await;
        let data = fetched(&response);
        assert_eq!(data.error_code, 0, "v{version}");
        assert_eq!(data.high_watermark, 9, "v{version}");
        assert_eq!(
            data.records.as_ref().unwrap(),
            &stored,
            "Fetch v{version} returns the bytes gRPC returns"
        );
    }
    // The stored batches are the produced ones, with the offsets the log assigned.
    let records: Vec<_> = weir_log::batch::batches(&stored)
        .flat_map(|batch| {
            let (_, bytes) = batch.unwrap();
            decode_records(bytes).unwrap()
        })
        .collect();
    let mut expected = Vec::new();
    for batch in [&from_grpc, &from_kafka_v3, &from_kafka_v9] {
        expected.extend(decode_records(batch).unwrap());
    }
    assert_eq!(records.len(), expected.len());
    for (offset, (got, want)) in records.iter().zip(&expected).enumerate() {
        assert_eq!(got.offset, offset as i64);
        assert_eq!(
            (&got.key, &got.value, &got.headers),
            (&want.key, &want.value, &want.headers)
        );
        assert_eq!(got.timestamp, want.timestamp);
    }
    // The first batch sent over Kafka is stored byte for byte but for the
    // base offset (bytes 0..8) and leader epoch (12..16), outside the CRC.
    let second = weir_log::batch::batches(&stored).nth(1).unwrap().unwrap().1;
    assert_eq!(second.len(), from_kafka_v3.len());
    assert_eq!(second[8..12], from_kafka_v3[8..12]);
    assert_eq!(second[16..], from_kafka_v3[16..]);
    broker.shutdown().await;
}

#[tokio::test]
async fn a_fetch_from_inside_a_batch_returns_the_whole_batch() {
    let (broker, kafka) = start_broker().await;
    broker.create_topic("inside", 1).await;
    let mut wire = KafkaWire::connect(kafka).await;
    let batch = keyed_batch(Compression::None, "inside", 5);
    let produced = wire.call(7, &produce("inside", 0, 1, batch)).await;
    assert_eq!(only_partition(&produced).error_code, 0);
    let from_start = wire.call(12, &fetch("inside", 0, 0, 0)).await;
    let from_middle = wire.call(12, &fetch("inside", 0, 3, 0)).await;
    let whole = fetched(&from_start).records.clone().unwrap();
    assert!(!whole.is_empty());
    assert_eq!(fetched(&from_middle).records.as_ref().unwrap(), &whole);
    broker.shutdown().await;
}

#[tokio::test]
async fn a_long_poll_fetch_answers_when_records_arrive() {
    let (broker, kafka) = start_broker().await;
    broker.create_topic("poll", 1).await;
    let mut waiting = KafkaWire::connect(kafka).await;
    let correlation_id = waiting.send(12, &fetch("poll", 0, 0, 25_000)).await;
    let mut producer = KafkaWire::connect(kafka).await;
    let batch = keyed_batch(Compression::None, "poll", 2);
    let produced = producer.call(9, &produce("poll", 0, 1, batch)).await;
    assert_eq!(only_partition(&produced).error_code, 0);
    let response = waiting.response::<FetchRequest>(12, correlation_id).await;
    let data = fetched(&response);
    assert_eq!(data.error_code, 0);
    assert_eq!(data.high_watermark, 2);
    assert!(!data.records.as_ref().unwrap().is_empty());
    broker.shutdown().await;
}

#[tokio::test]
async fn errors_carry_kafka_codes_and_weirs_message() {
    let (broker, kafka) = start_broker().await;
    broker.create_topic("errors", 1).await;
    let mut wire = KafkaWire::connect(kafka).await;
    let batch = keyed_batch(Compression::None, "errors", 1);

    let internal = wire
        .call(9, &produce("__consumer_offsets", 0, 1, batch.clone()))
        .await;
    let refused = only_partition(&internal);
    assert_eq!(refused.error_code, 17, "INVALID_TOPIC_EXCEPTION");
    let message = refused.error_message.as_ref().unwrap().to_string();
    assert!(message.contains("internal"), "{message}");

    let unknown = wire.call(9, &produce("missing", 0, 1, batch.clone())).await;
    assert_eq!(
        only_partition(&unknown).error_code,
        3,
        "UNKNOWN_TOPIC_OR_PARTITION"
    );
    let out_of_range = wire.call(9, &produce("errors", 4, 1, batch.clone())).await;
    assert_eq!(only_partition(&out_of_range).error_code, 3);
    let bad_acks = wire.call(9, &produce("errors", 0, 2, batch.clone())).await;
    assert_eq!(
        only_partition(&bad_acks).error_code,
        21,
        "INVALID_REQUIRED_ACKS"
    );

    let mut corrupt = BytesMut::from(&batch[..]);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    let damaged = wire
        .call(9, &produce("errors", 0, 1, corrupt.freeze()))
        .await;
    let refused = only_partition(&damaged);
    assert_eq!(refused.error_code, 2, "CORRUPT_MESSAGE");
    let message = refused.error_message.as_ref().unwrap().to_string();
    assert!(
        message.contains("errors") && message.contains("partition 0"),
        "{message}"
    );
    // Nothing of it was stored.
    let response = wire.call(12, &fetch("errors", 0, 0, 0)).await;
    assert_eq!(fetched(&response).high_watermark, 0);

    let past_end = wire.call(12, &fetch("errors", 0, 5, 0)).await;
    assert_eq!(fetched(&past_end).error_code, 1, "OFFSET_OUT_OF_RANGE");
    let no_topic = wire.call(12, &fetch("missing", 0, 0, 0)).await;
    assert_eq!(fetched(&no_topic).error_code, 3);
    broker.shutdown().await;
}

#[tokio::test]
async fn an_acks_zero_produce_gets_no_response_and_the_next_request_is_answered_in_order() {
    let (broker, kafka) = start_broker().await;
    broker.create_topic("quiet", 1).await;
    let mut wire = KafkaWire::connect(kafka).await;
    wire.send(
        9,
        &produce("quiet", 0, 0, keyed_batch(Compression::None, "quiet", 3)),
    )
    .await;
    let response = wire.call(12, &fetch("quiet", 0, 0, 0)).await;
    assert_eq!(fetched(&response).high_watermark, 3);
    // An acks=0 produce that fails closes the connection: its producer has no other way to learn.
    wire.send(
        9,
        &produce("quiet", 9, 0, keyed_batch(Compression::None, "quiet", 1)),
    )
    .await;
    assert!(wire.read_frame().await.is_none());
    broker.shutdown().await;
}

#[tokio::test]
async fn bad_frames_close_only_their_own_connection() {
    let (broker, kafka) = start_broker().await;
    broker.create_topic("steady", 1).await;
    let mut steady = KafkaWire::connect(kafka).await;
    let produced = steady
        .call(
            9,
            &produce("steady", 0, 1, keyed_batch(Compression::None, "s", 1)),
        )
        .await;
    assert_eq!(only_partition(&produced).error_code, 0);

    let frames: Vec<(&str, Vec<u8>)> = vec![
        ("a negative size", (-5i32).to_be_bytes().to_vec()),
        ("a size shorter than a header", 3i32.to_be_bytes().to_vec()),
        (
            "a size over request_bytes_max, never sent",
            (16 * 1024 * 1024 + 1i32).to_be_bytes().to_vec(),
        ),
        ("an unknown API key", {
            let mut f = BytesMut::new();
            f.put_i32(10);
            f.put_i16(999);
            f.put_i16(0);
            f.put_i32(1);
            f.put_i16(-1);
            f.to_vec()
        }),
        ("a group API this listener does not serve", {
            let mut f = BytesMut::new();
            f.put_i32(10);
            f.put_i16(10); // FindCoordinator
            f.put_i16(0);
            f.put_i32(1);
            f.put_i16(-1);
            f.to_vec()
        }),
        ("a Metadata body cut short", {
            let mut f = BytesMut::new();
            f.put_i32(14);
            f.put_i16(3);
            f.put_i16(4);
            f.put_i32(1);
            f.put_i16(-1);
            f.put_i32(5); // five topics announced, none sent
            f.to_vec()
        }),
    ];
    for (what, frame) in frames {
        let mut bad = KafkaWire::connect(kafka).await;
        bad.send_raw(&frame).await;
        assert!(
            bad.read_frame().await.is_none(),
            "{what}: the connection is closed"
        );
        // Every other connection is served as before.
        let response = steady.call(12, &fetch("steady", 0, 0, 0)).await;
        assert_eq!(fetched(&response).high_watermark, 1, "after {what}");
    }
    let metadata = steady
        .call(12, &MetadataRequest::default().with_topics(None))
        .await;
    assert!(metadata
        .topics
        .iter()
        .any(|t| t.name == Some(name("steady"))));
    // gRPC too.
    assert!(!grpc_batches(&broker, "steady", 0).await.is_empty());
    let pool = broker
        .running
        .as_ref()
        .unwrap()
        .broker()
        .memory_pool()
        .clone();
    broker.shutdown().await;
    assert_eq!(pool.in_use_bytes(), 0, "every frame gave its memory back");
}

#[tokio::test]
async fn shutdown_answers_a_long_poll_and_closes_idle_kafka_connections() {
    let (mut broker, kafka) = start_broker().await;
    broker.create_topic("closing", 1).await;
    let mut idle = KafkaWire::connect(kafka).await;
    let _ = idle.call(3, &ApiVersionsRequest::default()).await;
    let mut polling = KafkaWire::connect(kafka).await;
    let correlation_id = polling.send(12, &fetch("closing", 0, 0, 25_000)).await;
    // Shut down only once the fetch has read the partition and waits.
    let running = broker.running.take().unwrap();
    tokio::time::timeout(kafka_support::RESPONSE_WAIT, async {
        while running.broker().fetch_partition_reads() == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the long poll never reached the partition");
    let stopping = tokio::spawn(running.shutdown());
    // The long poll answers with what there is, then the connection closes.
    let answered = polling.response::<FetchRequest>(12, correlation_id).await;
    assert_eq!(fetched(&answered).high_watermark, 0);
    assert!(polling.read_frame().await.is_none());
    assert!(idle.read_frame().await.is_none());
    tokio::time::timeout(kafka_support::RESPONSE_WAIT, stopping)
        .await
        .expect("shutdown finished")
        .unwrap()
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(kafka).await.is_err(),
        "the listener is closed"
    );
}

fn fetch_two(first: &str, second: &str, max_wait_ms: i32) -> FetchRequest {
    let topic = |topic: &str| {
        FetchTopic::default()
            .with_topic(name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])
    };
    fetch(first, 0, 0, max_wait_ms).with_topics(vec![topic(first), topic(second)])
}

#[tokio::test]
async fn a_fetch_of_two_topics_long_polls_until_either_has_records() {
    let (broker, kafka) = start_broker().await;
    broker.create_topic("left", 1).await;
    broker.create_topic("right", 1).await;
    let mut waiting = KafkaWire::connect(kafka).await;
    let correlation_id = waiting.send(12, &fetch_two("left", "right", 25_000)).await;
    let mut producer = KafkaWire::connect(kafka).await;
    let batch = keyed_batch(Compression::None, "right", 2);
    let produced = producer.call(9, &produce("right", 0, 1, batch)).await;
    assert_eq!(only_partition(&produced).error_code, 0);
    let response = waiting.response::<FetchRequest>(12, correlation_id).await;
    let topics: Vec<(String, i64, usize)> = response
        .responses
        .iter()
        .map(|t| {
            let p = &t.partitions[0];
            (
                t.topic.0.to_string(),
                p.high_watermark,
                p.records.as_ref().map_or(0, Bytes::len),
            )
        })
        .collect();
    assert_eq!(topics[0], ("left".to_string(), 0, 0));
    assert_eq!(topics[1].0, "right");
    assert_eq!(topics[1].1, 2);
    assert!(topics[1].2 > 0);
    assert_eq!(
        response.responses[1].partitions[0]
            .records
            .as_ref()
            .unwrap(),
        &grpc_batches(&broker, "right", 0).await
    );
    // With records already there, the same fetch answers from them.
    let again = waiting.call(12, &fetch_two("left", "right", 25_000)).await;
    assert_eq!(again.responses[1].partitions[0].high_watermark, 2);
    broker.shutdown().await;
}

#[tokio::test]
async fn a_kafka_request_waits_for_pool_memory_before_it_is_read() {
    let data = tempfile::tempdir().unwrap();
    let mut config = common::config(data.path().to_path_buf());
    config.kafka_listen = Some("127.0.0.1:0".parse().unwrap());
    config.request_bytes_max = 64 * 1024;
    config.fetch_bytes_max = 64 * 1024;
    config.queued_request_bytes_max = 128 * 1024;
    let (broker, kafka) = kafka_support::start_broker_with(config, data).await;
    broker.create_topic("pool", 1).await;
    let pool = broker
        .running
        .as_ref()
        .unwrap()
        .broker()
        .memory_pool()
        .clone();
    // Everything but a few bytes is taken: no produce frame fits.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    let held = pool
        .reserve(128 * 1024 - 16, deadline, "the test")
        .await
        .unwrap();
    let mut wire = KafkaWire::connect(kafka).await;
    let waits_before = pool.waits();
    let correlation_id = wire
        .send(
            9,
            &produce("pool", 0, 1, keyed_batch(Compression::None, "pool", 10)),
        )
        .await;
    tokio::time::timeout(kafka_support::RESPONSE_WAIT, async {
        while pool.waits() == waits_before {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the request never waited for memory");
    drop(held);
    let produced = wire.response::<ProduceRequest>(9, correlation_id).await;
    assert_eq!(only_partition(&produced).error_code, 0);
    assert!(pool.in_use_bytes_max() <= 128 * 1024);
    broker.shutdown().await;
}
