//! A broker whose memory pool stays full answers RESOURCE_EXHAUSTED marked
//! as pool exhaustion; the producer sends the same request again (same
//! sequence numbers: the broker never read it) with backoff, so concurrent
//! producers against a tiny pool all complete, each record stored once.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::{consume_all, TestBroker};
use weir_broker::BrokerConfig;
use weir_client::{ClientError, Producer, ProducerConfig, ProducerRecord};

const KIB: usize = 1024;
const POOL_BYTES: usize = 256 * KIB;
const PRODUCERS: usize = 4;
const RECORDS_PER_PRODUCER: usize = 1_000;
const PARTITIONS: u32 = 2;

/// Waits (bounded) until `condition` holds.
async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    for _ in 0..4_000 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producers_against_an_exhausted_pool_retry_and_store_every_record_once() {
    let data = tempfile::tempdir().unwrap();
    let config = BrokerConfig {
        queued_request_bytes_max: POOL_BYTES,
        request_bytes_max: POOL_BYTES,
        fetch_bytes_max: POOL_BYTES,
        ..common::config(data.path().to_path_buf())
    };
    let broker = TestBroker::start_with(config, data).await;
    broker.create_topic("t", PARTITIONS).await;
    let pool = Arc::clone(broker.running.as_ref().unwrap().broker().memory_pool());
    // Every byte taken: the producers' first requests wait for memory until
    // half their request timeout, then are refused as pool exhaustion.
    let held = pool
        .reserve(POOL_BYTES, tokio::time::Instant::now(), "a test")
        .await
        .unwrap();

    let mut tasks = Vec::new();
    for producer_index in 0..PRODUCERS {
        let producer = Producer::connect(
            &broker.addr,
            ProducerConfig {
                linger: Duration::from_millis(1),
                batch_size_bytes: 8 * KIB,
                request_bytes_max: 32 * KIB,
                // The broker waits for memory half of this.
                request_timeout: Duration::from_secs(2),
                ..ProducerConfig::default()
            },
        )
        .await
        .unwrap();
        tasks.push(tokio::spawn(async move {
            let mut deliveries = Vec::with_capacity(RECORDS_PER_PRODUCER);
            for i in 0..RECORDS_PER_PRODUCER {
                let value = format!("{producer_index}:{i:05}:{}", "x".repeat(100));
                let partition = u32::try_from(i).unwrap() % PARTITIONS;
                let record = ProducerRecord::new("t", value.as_bytes()).with_partition(partition);
                deliveries.push(producer.send(record).await.unwrap());
            }
            let mut failures: Vec<ClientError> = Vec::new();
            for delivery in deliveries {
                if let Err(error) = delivery.await {
                    failures.push(error);
                }
            }
            producer.close().await.unwrap();
            failures
        }));
    }
    // Requests were refused for memory (as many times as there are
    // producers, at least) before the memory comes back.
    wait_until("requests were refused for memory", || {
        pool.timeouts() >= PRODUCERS as u64
    })
    .await;
    drop(held);

    for task in tasks {
        let failures = task.await.unwrap();
        assert!(
            failures.is_empty(),
            "{} deliveries failed, the first: {}",
            failures.len(),
            failures[0]
        );
    }

    // Each record exactly once, in each producer's order per partition.
    let total = PRODUCERS * RECORDS_PER_PRODUCER;
    let partitions: Vec<u32> = (0..PARTITIONS).collect();
    let records = consume_all(&broker.addr, "t", &partitions, total).await;
    assert_eq!(records.len(), total, "records lost or stored twice");
    let mut seen: BTreeMap<(usize, usize), u32> = BTreeMap::new();
    let mut last: BTreeMap<(u32, usize), usize> = BTreeMap::new();
    for record in &records {
        let value = std::str::from_utf8(record.value.as_deref().unwrap()).unwrap();
        let mut fields = value.split(':');
        let producer: usize = fields.next().unwrap().parse().unwrap();
        let i: usize = fields.next().unwrap().parse().unwrap();
        assert!(
            seen.insert((producer, i), record.partition).is_none(),
            "record {producer}:{i} stored twice"
        );
        if let Some(previous) = last.insert((record.partition, producer), i) {
            assert!(
                previous < i,
                "producer {producer} out of order: {previous} then {i}"
            );
        }
    }
    assert_eq!(seen.len(), total);
    let described = broker.admin().await.describe_topic("t").await.unwrap();
    let stored: u64 = described.partitions.iter().map(|p| p.log_end_offset).sum();
    assert_eq!(stored, total as u64, "nothing stored twice");
    broker.shutdown().await;
}
