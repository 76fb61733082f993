//! A partition whose log is damaged below its recovery point goes offline at start; the
//! broker starts and serves the others. Produce and fetch to it answer
//! `ERROR_CODE_STORAGE` with a message naming topic, partition and cause, describe shows
//! it offline, and after `Repair` the next start brings it back. A second broker on the
//! same data directory fails at start, naming the holder. A consumer of both partitions
//! keeps reading the healthy one and reports the offline one's error apart.

mod common;

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{batch, TestBroker};
use weir_broker::RunningBroker;
use weir_client::proto::{
    ErrorCode, FetchRequest, PartitionFetchRequest, PartitionProduceData, ProduceRequest,
};
use weir_client::{ClientError, Consumer, ConsumerConfig, OffsetReset};

const TOPIC: &str = "events";

fn segment_logs(dir: &Path) -> Vec<PathBuf> {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs
}

async fn produce(broker: &TestBroker, partition: u32, value: &str) -> (ErrorCode, String) {
    let response = broker
        .produce_client()
        .await
        .produce(ProduceRequest {
            topic: TOPIC.to_string(),
            acks: 0,
            timeout_ms: 1000,
            partitions: vec![PartitionProduceData {
                partition,
                batches: batch(&[value], 0),
            }],
        })
        .await
        .unwrap()
        .into_inner();
    let result = &response.partitions[0];
    (result.error_code(), result.error_message.clone())
}

/// Fetches both partitions in one request: (error code, message, bytes) per partition.
async fn fetch_both(broker: &TestBroker) -> Vec<(ErrorCode, String, usize)> {
    let response = broker
        .fetch_client()
        .await
        .fetch(FetchRequest {
            topic: TOPIC.to_string(),
            max_wait_ms: 0,
            min_bytes: 0,
            max_bytes: 1 << 20,
            partitions: (0..2)
                .map(|partition| PartitionFetchRequest {
                    partition,
                    offset: 0,
                    max_bytes: 1 << 20,
                })
                .collect(),
        })
        .await
        .unwrap()
        .into_inner();
    response
        .partitions
        .iter()
        .map(|r| (r.error_code(), r.error_message.clone(), r.batches.len()))
        .collect()
}

/// A broker whose topic has 12 records in each of two partitions, partition 1 cut below its
/// recovery point (the tail of a sealed, fsynced segment) while the broker was down.
async fn broker_with_partition_1_damaged() -> TestBroker {
    let broker = TestBroker::start().await;
    let configs = BTreeMap::from([("segment.bytes".to_string(), "1024".to_string())]);
    broker
        .admin()
        .await
        .create_topic(TOPIC, 2, 1, &configs)
        .await
        .unwrap();
    let value = "v".repeat(300);
    for partition in 0..2 {
        for _ in 0..12 {
            assert_eq!(produce(&broker, partition, &value).await.0, ErrorCode::None);
        }
    }
    let damaged_dir = broker.data.path().join(format!("{TOPIC}-1"));
    // Stop cleanly, then cut the tail of a sealed (fsynced) segment of partition 1.
    broker
        .restart_after(|_| {
            let logs = segment_logs(&damaged_dir);
            assert!(logs.len() >= 3, "partition 1 rolled: {logs:?}");
            let sealed = &logs[0];
            let len = std::fs::metadata(sealed).unwrap().len();
            OpenOptions::new()
                .write(true)
                .open(sealed)
                .unwrap()
                .set_len(len - 5)
                .unwrap();
        })
        .await
}

#[tokio::test]
async fn a_partition_damaged_below_its_recovery_point_is_offline_and_the_rest_is_served() {
    let broker = broker_with_partition_1_damaged().await;

    // The healthy partition takes and serves records; the damaged one answers the error.
    assert_eq!(produce(&broker, 0, "after").await.0, ErrorCode::None);
    let (code, message) = produce(&broker, 1, "after").await;
    assert_eq!(code, ErrorCode::Storage, "{message}");
    assert!(
        message.contains("\"events\" partition 1 is offline")
            && message.contains("00000000000000000000.log"),
        "{message}"
    );
    let fetched = fetch_both(&broker).await;
    assert_eq!(fetched[0].0, ErrorCode::None, "{}", fetched[0].1);
    assert!(fetched[0].2 > 0);
    assert_eq!(fetched[1].0, ErrorCode::Storage);
    assert!(
        fetched[1].1.contains("below the recovery point"),
        "{}",
        fetched[1].1
    );

    let described = broker.admin().await.describe_topic(TOPIC).await.unwrap();
    assert!(described.partitions[0].online);
    assert!(!described.partitions[1].online);
    let cause = described.partitions[1].offline_cause.clone().unwrap();
    assert!(cause.contains("weir log repair"), "{cause}");

    // Repaired while the broker is down, the partition is back at the next start.
    let broker = broker
        .restart_after(|data| {
            let repaired = weir_log::Repair::plan(&data.join(format!("{TOPIC}-1")))
                .unwrap()
                .apply()
                .unwrap();
            assert!(repaired.is_some());
        })
        .await;
    assert_eq!(produce(&broker, 1, "repaired").await.0, ErrorCode::None);
    let fetched = fetch_both(&broker).await;
    assert_eq!(fetched[1].0, ErrorCode::None, "{}", fetched[1].1);
    let described = broker.admin().await.describe_topic(TOPIC).await.unwrap();
    assert!(described.partitions.iter().all(|p| p.online));
    broker.shutdown().await;
}

#[tokio::test]
async fn a_consumer_keeps_serving_the_healthy_partitions_while_one_is_offline() {
    let broker = broker_with_partition_1_damaged().await;
    let mut consumer = Consumer::connect(
        &broker.addr,
        ConsumerConfig {
            offset_reset: OffsetReset::Earliest,
            ..ConsumerConfig::default()
        },
    )
    .await
    .unwrap();
    consumer.assign(TOPIC, &[0, 1]);

    let mut records = Vec::new();
    for _ in 0..200 {
        if records.len() >= 12 {
            break;
        }
        records.extend(
            consumer
                .poll(Duration::from_millis(200))
                .await
                .expect("an offline partition does not fail the poll"),
        );
    }
    let offsets: Vec<(u32, u64)> = records.iter().map(|r| (r.partition, r.offset)).collect();
    assert_eq!(offsets, (0..12).map(|o| (0, o)).collect::<Vec<_>>());

    // The offline partition's error is there to see, and its position has not moved.
    let errors = consumer.partition_errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    let (partition, error) = &errors[0];
    assert_eq!(*partition, 1);
    assert!(
        matches!(
            error,
            ClientError::Partition {
                partition: 1,
                code: ErrorCode::Storage,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("below the recovery point"),
        "{error}"
    );
    assert_eq!(consumer.position(1).await.unwrap(), 0);

    // Records produced to the healthy partition now keep arriving.
    assert_eq!(produce(&broker, 0, "later").await.0, ErrorCode::None);
    let mut later = Vec::new();
    for _ in 0..200 {
        if !later.is_empty() {
            break;
        }
        later.extend(consumer.poll(Duration::from_millis(200)).await.unwrap());
    }
    let later: Vec<(u32, u64)> = later.iter().map(|r| (r.partition, r.offset)).collect();
    assert_eq!(later, vec![(0, 12)]);
    assert_eq!(consumer.position(1).await.unwrap(), 0);
    assert_eq!(consumer.partition_errors().len(), 1);
    drop(consumer);
    broker.shutdown().await;
}

#[tokio::test]
async fn a_second_broker_on_the_same_data_directory_fails_naming_the_holder() {
    let broker = TestBroker::start().await;
    broker.create_topic(TOPIC, 1).await;
    let second = RunningBroker::start(common::config(broker.data.path().to_path_buf())).await;
    let Err(error) = second else {
        panic!("the second broker started");
    };
    let message = error.to_string();
    assert!(message.contains("is in use"), "{message}");
    assert!(
        message.contains(&format!("pid {}", std::process::id())),
        "{message}"
    );
    assert!(!message.contains('\n'), "{message}");
    // The first broker is unharmed.
    assert_eq!(produce(&broker, 0, "still here").await.0, ErrorCode::None);
    broker.shutdown().await;
}

#[tokio::test]
async fn deleting_a_topic_leaves_no_directory_behind() {
    let broker = TestBroker::start().await;
    broker.create_topic(TOPIC, 3).await;
    assert_eq!(produce(&broker, 0, "x").await.0, ErrorCode::None);
    broker.admin().await.delete_topic(TOPIC).await.unwrap();
    for partition in 0..3 {
        assert!(!broker
            .data
            .path()
            .join(format!("{TOPIC}-{partition}"))
            .exists());
    }
    // A delete that crashed before removing the directories: the next start removes them.
    let broker = broker
        .restart_after(|data| {
            std::fs::create_dir(data.join(format!("{TOPIC}-0"))).unwrap();
            std::fs::write(
                data.join(format!("{TOPIC}-0"))
                    .join("00000000000000000000.log"),
                b"",
            )
            .unwrap();
        })
        .await;
    assert!(!broker.data.path().join(format!("{TOPIC}-0")).exists());
    broker.shutdown().await;
}
