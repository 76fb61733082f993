//! Fetch fairness and limits: the partition order rotates between fetches
//! of a connection (KIP-74), a budget of 0 still returns one batch, a long
//! poll reads only the partitions that advanced, and requests no Kafka
//! fetch could mean are INVALID_ARGUMENT.

mod common;

use std::time::Duration;

use common::{batch, TestBroker};
use tonic::Code;
use weir_client::proto::{
    ErrorCode, FetchRequest, PartitionFetchRequest, PartitionProduceData, ProduceRequest,
};

fn request(topic: &str, max_bytes: u32, partitions: &[(u32, u64)]) -> FetchRequest {
    FetchRequest {
        topic: topic.to_string(),
        max_wait_ms: 0,
        min_bytes: 0,
        max_bytes,
        partitions: partitions
            .iter()
            .map(|&(partition, offset)| PartitionFetchRequest {
                partition,
                offset,
                max_bytes: 0,
            })
            .collect(),
    }
}

async fn produce_batches(broker: &TestBroker, topic: &str, partition: u32, count: usize) {
    let mut client = broker.produce_client().await;
    for i in 0..count {
        let value = format!("p{partition}-{i}");
        client
            .produce(ProduceRequest {
                topic: topic.to_string(),
                acks: 0,
                timeout_ms: 1000,
                partitions: vec![PartitionProduceData {
                    partition,
                    batches: batch(&[value.as_str()], 0),
                }],
            })
            .await
            .unwrap();
    }
}

/// The batches in a fetch result.
fn batch_count(batches: &[u8]) -> usize {
    weir_log::batch::batches(batches).count()
}

#[tokio::test]
async fn with_a_budget_of_one_batch_every_partition_takes_its_turn() {
    let broker = TestBroker::start().await;
    broker.create_topic("three", 3).await;
    for partition in 0..3 {
        produce_batches(&broker, "three", partition, 5).await;
    }
    let mut client = broker.fetch_client().await;
    let mut offsets = [0u64; 3];
    for _ in 0..6 {
        let positions: Vec<(u32, u64)> = (0..3).map(|p| (p, offsets[p as usize])).collect();
        let response = client
            .fetch(request("three", 1, &positions))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(response.partitions.len(), 3);
        let returned: Vec<_> = response
            .partitions
            .iter()
            .filter(|r| !r.batches.is_empty())
            .collect();
        assert_eq!(returned.len(), 1, "one batch per fetch: {response:?}");
        assert_eq!(batch_count(&returned[0].batches), 1);
        offsets[returned[0].partition as usize] += 1;
    }
    // Without rotation partition 0 would have taken all six turns.
    assert_eq!(offsets, [2, 2, 2]);
    broker.shutdown().await;
}

#[tokio::test]
async fn a_budget_of_zero_returns_one_batch_not_all() {
    let broker = TestBroker::start().await;
    broker.create_topic("t", 1).await;
    produce_batches(&broker, "t", 0, 4).await;
    let response = broker
        .fetch_client()
        .await
        .fetch(request("t", 0, &[(0, 0)]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(batch_count(&response.partitions[0].batches), 1);
    broker.shutdown().await;
}

#[tokio::test]
async fn a_long_poll_over_many_partitions_reads_only_the_one_that_advanced() {
    const PARTITIONS: u32 = 100;
    const APPENDS: u64 = 3;
    let broker = TestBroker::start().await;
    broker.create_topic("wide", PARTITIONS).await;
    let running = broker.running.as_ref().unwrap().broker().clone();
    let one_batch = batch(&["p7-0"], 0).len();
    let mut waiting = FetchRequest {
        max_wait_ms: 30_000,
        min_bytes: u32::try_from(one_batch * APPENDS as usize).unwrap(),
        ..request(
            "wide",
            1 << 20,
            &(0..PARTITIONS).map(|p| (p, 0)).collect::<Vec<_>>(),
        )
    };
    waiting.max_bytes = 1 << 20;
    let mut client = broker.fetch_client().await;
    let poll = tokio::spawn(async move { client.fetch(waiting).await });
    // The first round reads every partition once.
    wait_for(|| running.fetch_partition_reads() >= u64::from(PARTITIONS)).await;
    let mut producer = broker.produce_client().await;
    for i in 0..APPENDS {
        let before = running.fetch_partition_reads();
        let value = format!("p7-{i}");
        producer
            .produce(ProduceRequest {
                topic: "wide".to_string(),
                acks: 0,
                timeout_ms: 1000,
                partitions: vec![PartitionProduceData {
                    partition: 7,
                    batches: batch(&[value.as_str()], 0),
                }],
            })
            .await
            .unwrap();
        wait_for(|| running.fetch_partition_reads() > before).await;
    }
    let response = poll.await.unwrap().unwrap().into_inner();
    let p7 = response
        .partitions
        .iter()
        .find(|r| r.partition == 7)
        .unwrap();
    assert_eq!(batch_count(&p7.batches), APPENDS as usize);
    // One read per partition, then one per append: not 100 per append.
    assert_eq!(
        running.fetch_partition_reads(),
        u64::from(PARTITIONS) + APPENDS
    );
    broker.shutdown().await;
}

/// Waits (bounded) until `condition` holds.
async fn wait_for(mut condition: impl FnMut() -> bool) {
    for _ in 0..2_000 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the condition did not hold in time");
}

#[tokio::test]
async fn a_negative_offset_is_invalid_argument_and_a_future_one_is_out_of_range() {
    let broker = TestBroker::start().await;
    broker.create_topic("t", 1).await;
    let mut client = broker.fetch_client().await;
    let status = client
        .fetch(request("t", 1 << 20, &[(0, u64::MAX)]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("offset"), "{status:?}");
    // Past the end but a valid offset: Kafka's OFFSET_OUT_OF_RANGE for the partition.
    let response = client
        .fetch(request("t", 1 << 20, &[(0, i64::MAX as u64)]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        response.partitions[0].error_code(),
        ErrorCode::OffsetOutOfRange
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn the_longest_wait_is_capped_by_the_broker() {
    let data = tempfile::tempdir().unwrap();
    let config = weir_broker::BrokerConfig {
        fetch_wait_ms_max: 50,
        ..common::config(data.path().to_path_buf())
    };
    let broker = TestBroker::start_with(config, data).await;
    broker.create_topic("t", 1).await;
    let waiting = FetchRequest {
        max_wait_ms: u32::MAX,
        min_bytes: 1,
        ..request("t", 1 << 20, &[(0, 0)])
    };
    // Bounded so a missing cap fails here instead of hanging for 49 days.
    let response = tokio::time::timeout(
        Duration::from_secs(60),
        broker.fetch_client().await.fetch(waiting),
    )
    .await
    .expect("the wait was capped")
    .unwrap()
    .into_inner();
    assert!(response.partitions[0].batches.is_empty());
    broker.shutdown().await;
}

/// A message whose field 5 (`partitions`) has the wrong wire type.
#[derive(Clone, PartialEq, prost::Message)]
struct Malformed {
    #[prost(uint64, tag = "5")]
    partitions: u64,
}

#[tokio::test]
async fn an_undecodable_fetch_request_is_invalid_argument() {
    let broker = TestBroker::start().await;
    let channel = weir_client::connect(&broker.addr).await.unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let status = grpc
        .unary::<Malformed, weir_client::proto::FetchResponse, _>(
            tonic::Request::new(Malformed { partitions: 7 }),
            http::uri::PathAndQuery::from_static("/weir.v1.Fetch/Fetch"),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("decode"), "{status:?}");
    broker.shutdown().await;
}
