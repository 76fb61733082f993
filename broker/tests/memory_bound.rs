//! The broker-wide memory bound (`queued_request_bytes_max`): many
//! connections with large produce requests and fetches never hold more than
//! the bound, every request still succeeds, and a request that cannot get
//! memory before its deadline fails with RESOURCE_EXHAUSTED. A request
//! whose body stalls gives its memory back at `request_body_timeout_ms`, and a
//! long poll woken while the pool is full answers at its own deadline.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{batch, TestBroker};
use tonic::Code;
use weir_broker::{BrokerConfig, MemoryPool};
use weir_client::proto::{
    ErrorCode, FetchRequest, PartitionFetchRequest, PartitionProduceData, ProduceRequest,
};

const MIB: usize = 1024 * 1024;
const POOL_BYTES: usize = 4 * MIB;
const PARTITIONS: u32 = 4;
const PRODUCERS: u32 = 16;
const REQUESTS_PER_PRODUCER: usize = 2;
const BATCHES_PER_REQUEST: usize = 2;
const RECORDS_PER_BATCH: usize = 900;

fn bounded_config(data: &tempfile::TempDir) -> BrokerConfig {
    BrokerConfig {
        queued_request_bytes_max: POOL_BYTES,
        request_bytes_max: 2 * MIB,
        fetch_bytes_max: 2 * MIB,
        ..common::config(data.path().to_path_buf())
    }
}

fn pool(broker: &TestBroker) -> Arc<MemoryPool> {
    Arc::clone(broker.running.as_ref().unwrap().broker().memory_pool())
}

/// Two batches of 900 records of 1000 bytes: about 1.8 MB.
fn large_request(topic: &str, partition: u32) -> ProduceRequest {
    let value = "v".repeat(1000);
    let values: Vec<&str> = (0..RECORDS_PER_BATCH).map(|_| value.as_str()).collect();
    let mut batches = Vec::new();
    for _ in 0..BATCHES_PER_REQUEST {
        batches.extend_from_slice(&batch(&values, 1_000));
    }
    ProduceRequest {
        topic: topic.to_string(),
        acks: 0,
        timeout_ms: 30_000,
        partitions: vec![PartitionProduceData {
            partition,
            batches: Bytes::from(batches),
        }],
    }
}

fn fetch_from(topic: &str, partition: u32, offset: u64) -> FetchRequest {
    FetchRequest {
        topic: topic.to_string(),
        max_wait_ms: 500,
        min_bytes: 1,
        max_bytes: 2 * MIB as u32,
        partitions: vec![PartitionFetchRequest {
            partition,
            offset,
            max_bytes: 0,
        }],
    }
}

/// Waits (bounded) until `condition` holds.
async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    for _ in 0..2_000 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_connections_with_large_requests_stay_under_the_bound_and_all_succeed() {
    let data = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_with(bounded_config(&data), data).await;
    broker.create_topic("big", PARTITIONS).await;
    let pool = pool(&broker);
    let records_per_partition = (PRODUCERS / PARTITIONS) as usize
        * REQUESTS_PER_PRODUCER
        * BATCHES_PER_REQUEST
        * RECORDS_PER_BATCH;

    let mut tasks = Vec::new();
    for producer in 0..PRODUCERS {
        // Each on its own connection.
        let mut client = broker.produce_client().await;
        tasks.push(tokio::spawn(async move {
            for _ in 0..REQUESTS_PER_PRODUCER {
                let response = client
                    .produce(large_request("big", producer % PARTITIONS))
                    .await
                    .expect("a produce waits for memory rather than failing")
                    .into_inner();
                assert_eq!(response.partitions[0].error_code(), ErrorCode::None);
            }
            0usize
        }));
    }
    for partition in 0..PARTITIONS {
        let mut client = broker.fetch_client().await;
        tasks.push(tokio::spawn(async move {
            let mut offset = 0u64;
            let mut records = 0usize;
            for _ in 0..10_000 {
                if records >= records_per_partition {
                    break;
                }
                let response = client
                    .fetch(fetch_from("big", partition, offset))
                    .await
                    .expect("a fetch waits for memory rather than failing")
                    .into_inner();
                let result = &response.partitions[0];
                assert_eq!(
                    result.error_code(),
                    ErrorCode::None,
                    "{}",
                    result.error_message
                );
                for item in weir_log::batch::batches(&result.batches) {
                    let (header, _) = item.unwrap();
                    assert_eq!(u64::try_from(header.base_offset).unwrap(), offset);
                    offset = u64::try_from(header.last_offset()).unwrap() + 1;
                    records += usize::try_from(header.record_count).unwrap();
                }
            }
            records
        }));
    }
    let mut fetched = Vec::new();
    for task in tasks {
        fetched.push(task.await.unwrap());
    }
    // Nothing lost: every fetcher read all of its partition.
    assert_eq!(
        &fetched[PRODUCERS as usize..],
        &vec![records_per_partition; PARTITIONS as usize][..]
    );
    assert!(
        pool.in_use_bytes_max() <= POOL_BYTES,
        "{} bytes were held at once, more than the bound of {POOL_BYTES}",
        pool.in_use_bytes_max()
    );
    // The load was more than the pool: some requests waited for memory.
    assert!(pool.waits() > 0, "no request ever waited for memory");
    // Every reservation was given back once its response was sent.
    wait_until("the pool is empty", || pool.in_use_bytes() == 0).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn a_request_that_waits_for_memory_past_half_its_timeout_is_resource_exhausted() {
    let data = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_with(bounded_config(&data), data).await;
    broker.create_topic("t", 1).await;
    let pool = pool(&broker);
    let held = pool
        .reserve(POOL_BYTES, tokio::time::Instant::now(), "a test")
        .await
        .unwrap();

    let mut request = tonic::Request::new(large_request("t", 0));
    request.set_timeout(Duration::from_millis(400));
    let status = broker
        .produce_client()
        .await
        .produce(request)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("queued_request_bytes_max"),
        "{status:?}"
    );

    let mut request = tonic::Request::new(fetch_from("t", 0, 0));
    request.set_timeout(Duration::from_millis(400));
    let status = broker
        .fetch_client()
        .await
        .fetch(request)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");

    // Once the memory is back, the same request succeeds.
    drop(held);
    let response = broker
        .produce_client()
        .await
        .produce(large_request("t", 0))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.partitions[0].error_code(), ErrorCode::None);
    broker.shutdown().await;
}

#[tokio::test]
async fn a_produce_waits_while_the_pool_is_full_and_succeeds_when_memory_comes_back() {
    let data = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_with(bounded_config(&data), data).await;
    broker.create_topic("t", 1).await;
    let pool = pool(&broker);
    let held = pool
        .reserve(POOL_BYTES, tokio::time::Instant::now(), "a test")
        .await
        .unwrap();
    let mut client = broker.produce_client().await;
    let produce = tokio::spawn(async move { client.produce(large_request("t", 0)).await });
    wait_until("the produce waits for memory", || pool.waits() > 0).await;
    assert!(!produce.is_finished());
    drop(held);
    let response = produce.await.unwrap().unwrap().into_inner();
    assert_eq!(response.partitions[0].error_code(), ErrorCode::None);
    assert_eq!(
        response.partitions[0].last_offset,
        (BATCHES_PER_REQUEST * RECORDS_PER_BATCH) as u64 - 1
    );
    wait_until("the pool is empty", || pool.in_use_bytes() == 0).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn a_stalled_request_body_gives_its_memory_back_and_other_producers_proceed() {
    let data = tempfile::tempdir().unwrap();
    let config = BrokerConfig {
        // A stalled 2 MiB request and a 1.8 MB one do not fit together.
        queued_request_bytes_max: 3 * MIB,
        request_body_timeout_ms: 300,
        ..bounded_config(&data)
    };
    let broker = TestBroker::start_with(config, data).await;
    broker.create_topic("t", 1).await;
    let pool = pool(&broker);

    // A client that announces a 2 MiB produce request, sends half of it, then
    // nothing more, keeping the stream open.
    let announced = 2 * MIB;
    let tcp = tokio::net::TcpStream::connect(&broker.addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    let connection = tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let request = http::Request::post(format!("http://{}/weir.v1.Produce/Produce", broker.addr))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (response, mut body) = client.send_request(request, false).unwrap();
    let mut half = vec![0u8; 5 + announced / 2];
    half[1..5].copy_from_slice(&u32::try_from(announced).unwrap().to_be_bytes());
    body.send_data(Bytes::from(half), false).unwrap();
    wait_until("the stalled request holds its memory", || {
        pool.in_use_bytes() == announced
    })
    .await;

    // Another producer needs memory the stalled request holds: it waits.
    let mut producer = broker.produce_client().await;
    let produce = tokio::spawn(async move { producer.produce(large_request("t", 0)).await });

    let produced = produce
        .await
        .unwrap()
        .expect("the waiting producer got the memory back")
        .into_inner();
    assert_eq!(produced.partitions[0].error_code(), ErrorCode::None);

    // The stalled request failed, naming what timed out.
    let answer = response.await.unwrap();
    let grpc_status = answer.headers().get("grpc-status").unwrap();
    assert_eq!(grpc_status, "4", "DEADLINE_EXCEEDED: {answer:?}");
    let message = answer
        .headers()
        .get("grpc-message")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(message.contains("request_body_timeout_ms"), "{message}");
    wait_until("the pool is empty", || pool.in_use_bytes() == 0).await;
    // Graceful shutdown waits for open connections: close this one first.
    drop((client, body, answer));
    connection.abort();
    let _ = connection.await;
    broker.shutdown().await;
}

#[tokio::test]
async fn a_long_poll_woken_while_the_pool_is_full_answers_at_its_deadline() {
    let data = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_with(bounded_config(&data), data).await;
    broker.create_topic("t", 1).await;
    let pool = pool(&broker);
    let running = broker.running.as_ref().unwrap().broker();
    let reads_before = running.fetch_partition_reads();

    // A long poll on an empty partition, with no grpc-timeout: a read waits
    // up to 15 s for memory, far past its max_wait_ms.
    let mut fetcher = broker.fetch_client().await;
    let fetch = tokio::spawn(async move {
        let mut request = fetch_from("t", 0, 0);
        request.max_wait_ms = 1_000;
        fetcher.fetch(request).await
    });
    wait_until("the first read of the long poll ran", || {
        running.fetch_partition_reads() > reads_before
    })
    .await;
    // Every byte but room for one small produce; taken once the first read
    // has given its budget back.
    let small_produce_bytes = 4096;
    let held = pool
        .reserve(
            POOL_BYTES - small_produce_bytes,
            tokio::time::Instant::now() + Duration::from_secs(30),
            "a test",
        )
        .await
        .unwrap();
    let timeouts_before = pool.timeouts();
    // The append wakes the long poll, whose next read finds no memory.
    let produced = broker
        .produce_client()
        .await
        .produce(ProduceRequest {
            topic: "t".to_string(),
            acks: 0,
            timeout_ms: 1_000,
            partitions: vec![PartitionProduceData {
                partition: 0,
                batches: batch(&["wakes the poll"], 1_000),
            }],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(produced.partitions[0].error_code(), ErrorCode::None);

    let answer = fetch
        .await
        .unwrap()
        .expect("the long poll answers at its deadline instead of failing")
        .into_inner();
    assert_eq!(answer.partitions[0].error_code(), ErrorCode::None);
    assert!(answer.partitions[0].batches.is_empty());
    // It did wait for memory, and gave up at its deadline with the pool still held.
    assert!(pool.timeouts() > timeouts_before);
    assert_eq!(pool.in_use_bytes(), POOL_BYTES - small_produce_bytes);
    drop(held);
    wait_until("the pool is empty", || pool.in_use_bytes() == 0).await;
    broker.shutdown().await;
}
