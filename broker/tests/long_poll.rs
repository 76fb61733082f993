//! A fetch at the end of the log waits for data (up to max_wait_ms) and
//! answers as soon as an append arrives.

mod common;

use std::time::Duration;

use common::{batch, TestBroker};
use weir_broker::proto::{
    FetchRequest, PartitionFetchRequest, PartitionProduceData, ProduceRequest,
};

fn waiting_fetch(offset: u64, max_wait_ms: u32) -> FetchRequest {
    FetchRequest {
        topic: "t".to_string(),
        max_wait_ms,
        min_bytes: 1,
        max_bytes: 1 << 20,
        partitions: vec![
            PartitionFetchRequest {
                partition: 0,
                offset,
                max_bytes: 0,
            },
            PartitionFetchRequest {
                partition: 1,
                offset: 0,
                max_bytes: 0,
            },
        ],
    }
}

#[tokio::test]
async fn waiting_fetch_wakes_on_append() {
    let broker = TestBroker::start().await;
    broker.create_topic("t", 2).await;
    let mut fetch = broker.fetch_client().await;
    let waiting = tokio::spawn(async move { fetch.fetch(waiting_fetch(0, 30_000)).await });
    // Let the fetch reach its wait; it must still be waiting.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiting.is_finished());
    broker
        .produce_client()
        .await
        .produce(ProduceRequest {
            topic: "t".to_string(),
            acks: 0,
            timeout_ms: 1000,
            partitions: vec![PartitionProduceData {
                partition: 1,
                batches: batch(&["late"], 0),
            }],
        })
        .await
        .unwrap();
    let response = waiting.await.unwrap().unwrap().into_inner();
    let p1 = response
        .partitions
        .iter()
        .find(|p| p.partition == 1)
        .unwrap();
    assert_eq!(p1.high_watermark, 1);
    assert!(!p1.batches.is_empty());
    broker.shutdown().await;
}

#[tokio::test]
async fn waiting_fetch_answers_empty_when_nothing_arrives() {
    let broker = TestBroker::start().await;
    broker.create_topic("t", 2).await;
    let response = broker
        .fetch_client()
        .await
        .fetch(waiting_fetch(0, 50))
        .await
        .unwrap()
        .into_inner();
    assert!(response.partitions.iter().all(|p| p.batches.is_empty()));
    broker.shutdown().await;
}

#[tokio::test]
async fn shutdown_ends_waiting_fetches() {
    let broker = TestBroker::start().await;
    broker.create_topic("t", 2).await;
    let mut fetch = broker.fetch_client().await;
    let waiting = tokio::spawn(async move { fetch.fetch(waiting_fetch(0, 30_000)).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    broker.shutdown().await;
    let response = waiting.await.unwrap().unwrap().into_inner();
    assert!(response.partitions.iter().all(|p| p.batches.is_empty()));
}
