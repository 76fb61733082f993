//! A fetch at the end of the log waits for data (up to max_wait_ms) and
//! answers as soon as an append arrives.

mod common;

use std::time::Duration;

use common::{batch, TestBroker};
use weir_client::proto::{
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

/// Waits (bounded) until fetches have read `reads` partitions.
async fn reads_reach(broker: &TestBroker, reads: u64) {
    let running = broker.running.as_ref().unwrap().broker();
    for _ in 0..2_000 {
        if running.fetch_partition_reads() >= reads {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the fetch never read its partitions");
}

#[tokio::test]
async fn waiting_fetch_wakes_on_append() {
    let broker = TestBroker::start().await;
    broker.create_topic("t", 2).await;
    let mut fetch = broker.fetch_client().await;
    let waiting = tokio::spawn(async move { fetch.fetch(waiting_fetch(0, 30_000)).await });
    // Once both partitions were read (empty), the fetch waits; it subscribed
    // before reading, so the append below wakes it whenever it lands.
    reads_reach(&broker, 2).await;
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
    reads_reach(&broker, 2).await;
    broker.shutdown().await;
    let response = waiting.await.unwrap().unwrap().into_inner();
    assert!(response.partitions.iter().all(|p| p.batches.is_empty()));
}
