//! Every field of a request is held to a limit: a fetch's `max_wait_ms` is capped at
//! `fetch_wait_ms_max`, a fetch budget of 0 returns exactly one batch (KIP-74 promises
//! progress, not everything), `acks` outside the three the protocol knows is refused, a
//! producer a partition does not know must start at sequence 0, and topic configs outside
//! their range are refused naming it. Each was accepted by an earlier broker.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use common::{batch, config, sequenced_batch, TestBroker};
use weir_client::proto::{
    ErrorCode, FetchRequest, InitProducerIdRequest, PartitionFetchRequest, PartitionProduceData,
    ProduceRequest,
};

const TOPIC: &str = "limits";

fn produce(partition: u32, batches: Bytes) -> ProduceRequest {
    ProduceRequest {
        topic: TOPIC.to_string(),
        acks: 0,
        timeout_ms: 10_000,
        partitions: vec![PartitionProduceData { partition, batches }],
    }
}

fn fetch(offset: u64, max_wait_ms: u32, max_bytes: u32) -> FetchRequest {
    FetchRequest {
        topic: TOPIC.to_string(),
        max_wait_ms,
        min_bytes: 1,
        max_bytes,
        partitions: vec![PartitionFetchRequest {
            partition: 0,
            offset,
            max_bytes,
        }],
    }
}

#[tokio::test]
async fn a_fetch_asking_to_wait_u32_max_ms_answers_at_fetch_wait_ms_max() {
    let data = tempfile::tempdir().unwrap();
    let config = weir_broker::BrokerConfig {
        fetch_wait_ms_max: 100,
        ..config(data.path().to_path_buf())
    };
    let broker = TestBroker::start_with(config, data).await;
    broker.create_topic(TOPIC, 1).await;
    let mut client = broker.fetch_client().await;
    // Nothing to read: only the cap can end this long poll.
    let answered = tokio::time::timeout(
        Duration::from_secs(60),
        client.fetch(fetch(0, u32::MAX, 1 << 20)),
    )
    .await
    .expect("a fetch asking for u32::MAX ms was not capped at fetch_wait_ms_max")
    .unwrap()
    .into_inner();
    assert!(answered.partitions[0].batches.is_empty());
    broker.shutdown().await;
}

#[tokio::test]
async fn a_fetch_budget_of_zero_returns_exactly_one_batch() {
    let broker = TestBroker::start().await;
    broker.create_topic(TOPIC, 1).await;
    let mut producer = broker.produce_client().await;
    for values in [["a", "b"], ["c", "d"], ["e", "f"]] {
        let result = producer
            .produce(produce(0, batch(&values, 1_000)))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(result.partitions[0].error_code(), ErrorCode::None);
    }
    let mut client = broker.fetch_client().await;
    let fetched = client
        .fetch(fetch(0, 0, 0))
        .await
        .unwrap()
        .into_inner()
        .partitions
        .remove(0);
    let batches: Vec<_> = weir_log::batch::batches(&fetched.batches)
        .map(|item| item.unwrap().0)
        .collect();
    assert_eq!(batches.len(), 1, "max_bytes = 0 must return one batch");
    assert_eq!(
        (batches[0].base_offset, batches[0].last_offset_delta),
        (0, 1)
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn acks_outside_the_protocol_values_are_refused_naming_them() {
    let broker = TestBroker::start().await;
    broker.create_topic(TOPIC, 1).await;
    let mut client = broker.produce_client().await;
    let mut request = produce(0, batch(&["x"], 1_000));
    request.acks = 99;
    let refused = client.produce(request).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    let message = refused.message();
    assert!(
        message.contains("acks 99") && message.contains("ACKS_ALL"),
        "{message}"
    );
    let described = broker.admin().await.describe_topic(TOPIC).await.unwrap();
    assert_eq!(described.partitions[0].log_end_offset, 0, "nothing stored");
    broker.shutdown().await;
}

#[tokio::test]
async fn a_producer_unknown_to_the_partition_must_start_at_sequence_zero() {
    let broker = TestBroker::start().await;
    broker.create_topic(TOPIC, 1).await;
    let mut client = broker.produce_client().await;
    let pid = client
        .init_producer_id(InitProducerIdRequest::default())
        .await
        .unwrap()
        .into_inner()
        .producer_id;
    let result = client
        .produce(produce(0, sequenced_batch(pid, 0, 5, &["late"])))
        .await
        .unwrap()
        .into_inner()
        .partitions
        .remove(0);
    assert_eq!(
        result.error_code(),
        ErrorCode::OutOfOrderSequence,
        "{}",
        result.error_message
    );
    assert!(
        result.error_message.contains("\"limits\" partition 0")
            && result.error_message.contains("sequence 5, expected 0"),
        "{}",
        result.error_message
    );
    // From sequence 0 the same producer is taken.
    let result = client
        .produce(produce(0, sequenced_batch(pid, 0, 0, &["first"])))
        .await
        .unwrap()
        .into_inner()
        .partitions
        .remove(0);
    assert_eq!(
        (result.error_code(), result.base_offset),
        (ErrorCode::None, 0)
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn topic_configs_outside_their_range_are_refused_naming_the_range() {
    let broker = TestBroker::start().await;
    let admin = broker.admin().await;
    for (key, value, says) in [
        ("segment.bytes", "1", "between 1024 and 4294967295"),
        ("segment.bytes", "0", "between 1024 and 4294967295"),
    ] {
        let configs = BTreeMap::from([(key.to_string(), value.to_string())]);
        let refused = admin.create_topic(TOPIC, 1, 1, &configs).await.unwrap_err();
        assert_eq!(
            refused.code(),
            Some(tonic::Code::InvalidArgument),
            "{refused}"
        );
        let message = refused.to_string();
        assert!(message.contains(key) && message.contains(says), "{message}");
    }
    let listed = admin.list_topics().await.unwrap();
    assert!(
        listed.iter().all(|topic| topic.topic != TOPIC),
        "{listed:?}"
    );
    broker.shutdown().await;
}
