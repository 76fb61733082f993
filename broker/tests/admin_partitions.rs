//! Adding partitions to a topic over gRPC: the old partitions keep their
//! records, the new ones take produce and fetch, the count survives a restart,
//! a directory left by a growth that crashed is not served, and every request
//! that would not grow the topic is refused with a clear status.

mod common;

use std::collections::BTreeMap;

use common::{consume_all, TestBroker};
use tonic::Code;
use weir_client::{ClientError, Producer, ProducerConfig, ProducerRecord};

fn status(result: Result<(), ClientError>) -> (Code, String) {
    match result {
        Err(ClientError::Status { code, message }) => (code, message),
        other => panic!("expected a gRPC status, got {other:?}"),
    }
}

/// Writes one record naming its place to each of `partitions`.
async fn produce_each(addr: &str, topic: &str, partitions: std::ops::Range<u32>, tag: &str) {
    let producer = Producer::connect(addr, ProducerConfig::default())
        .await
        .unwrap();
    for partition in partitions {
        let value = format!("{tag}-{partition}");
        producer
            .send(ProducerRecord {
                partition: Some(partition),
                ..ProducerRecord::new(topic, value.as_bytes())
            })
            .await
            .unwrap()
            .await
            .unwrap();
    }
    producer.close().await.unwrap();
}

/// (partition, value) of every record of `partitions`, in partition order.
async fn read(addr: &str, topic: &str, partitions: &[u32], count: usize) -> Vec<(u32, String)> {
    let mut records: Vec<(u32, String)> = consume_all(addr, topic, partitions, count)
        .await
        .into_iter()
        .map(|r| {
            let value = String::from_utf8(r.value.unwrap().to_vec()).unwrap();
            (r.partition, value)
        })
        .collect();
    records.sort();
    records
}

#[tokio::test]
async fn a_grown_topic_keeps_its_records_serves_the_new_partitions_and_survives_a_restart() {
    let broker = TestBroker::start().await;
    let admin = broker.admin().await;
    let configs = BTreeMap::from([("segment.bytes".to_string(), "1048576".to_string())]);
    admin.create_topic("orders", 2, 1, &configs).await.unwrap();
    produce_each(&broker.addr, "orders", 0..2, "before").await;

    admin.create_partitions("orders", 5).await.unwrap();
    let described = admin.describe_topic("orders").await.unwrap();
    assert_eq!(described.partition_count, 5);
    assert_eq!(described.configs, configs, "the overrides stay");
    for partition in &described.partitions[2..] {
        assert_eq!(partition.leader, 0);
        assert_eq!(partition.log_end_offset, 0);
    }
    produce_each(&broker.addr, "orders", 0..5, "after").await;

    let expected: Vec<(u32, String)> = {
        let mut all: Vec<(u32, String)> = (0..2)
            .map(|p| (p, format!("before-{p}")))
            .chain((0..5).map(|p| (p, format!("after-{p}"))))
            .collect();
        all.sort();
        all
    };
    let partitions = [0, 1, 2, 3, 4];
    assert_eq!(read(&broker.addr, "orders", &partitions, 7).await, expected);

    let broker = broker.restart().await;
    let admin = broker.admin().await;
    assert_eq!(
        admin
            .describe_topic("orders")
            .await
            .unwrap()
            .partition_count,
        5
    );
    assert_eq!(read(&broker.addr, "orders", &partitions, 7).await, expected);
    // It grows again from where it is.
    admin.create_partitions("orders", 6).await.unwrap();
    produce_each(&broker.addr, "orders", 5..6, "again").await;
    assert_eq!(
        read(&broker.addr, "orders", &[5], 1).await,
        [(5, "again-5".to_string())]
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn a_directory_left_by_a_crashed_growth_is_not_served() {
    let broker = TestBroker::start().await;
    broker.create_topic("t", 1).await;
    // What a growth that crashed after opening partition 1 and before
    // recording it in topics.json leaves: a directory no registry counts.
    let broker = broker
        .restart_after(|data| {
            let stale = data.join("t-1");
            std::fs::create_dir_all(&stale).unwrap();
            std::fs::write(stale.join("00000000000000000000.log"), b"not a log").unwrap();
        })
        .await;
    let admin = broker.admin().await;
    assert_eq!(admin.describe_topic("t").await.unwrap().partition_count, 1);
    admin.create_partitions("t", 2).await.unwrap();
    let described = admin.describe_topic("t").await.unwrap();
    assert_eq!(described.partitions[1].log_end_offset, 0);
    assert_eq!(described.partitions[1].offline_cause, None);
    broker.shutdown().await;
}

#[tokio::test]
async fn counts_that_would_not_grow_the_topic_are_refused() {
    let broker = TestBroker::start().await;
    let admin = broker.admin().await;
    broker.create_topic("t", 3).await;

    let (code, message) = status(admin.create_partitions("t", 3).await);
    assert_eq!(code, Code::InvalidArgument);
    assert!(message.contains("already has 3 partitions"), "{message}");

    let (code, message) = status(admin.create_partitions("t", 2).await);
    assert_eq!(code, Code::InvalidArgument);
    assert!(message.contains("cannot be removed"), "{message}");

    let (code, message) = status(admin.create_partitions("t", 10_001).await);
    assert_eq!(code, Code::InvalidArgument);
    assert!(message.contains("10000"), "{message}");

    let (code, message) = status(admin.create_partitions("missing", 4).await);
    assert_eq!(code, Code::NotFound);
    assert!(message.contains("missing"), "{message}");

    let (code, message) = status(admin.create_partitions("__consumer_offsets", 100).await);
    assert_eq!(code, Code::InvalidArgument);
    assert!(message.contains("internal"), "{message}");

    assert_eq!(admin.describe_topic("t").await.unwrap().partition_count, 3);
    broker.shutdown().await;
}

#[tokio::test]
async fn a_running_producer_comes_to_use_the_added_partitions() {
    let broker = TestBroker::start().await;
    broker.create_topic("t", 2).await;
    let admin = broker.admin().await;
    let producer = Producer::connect(
        &broker.addr,
        ProducerConfig {
            metadata_max_age: std::time::Duration::ZERO,
            ..ProducerConfig::default()
        },
    )
    .await
    .unwrap();
    let send = |partition: Option<u32>, key: String| {
        let producer = &producer;
        async move {
            let record = ProducerRecord {
                partition,
                key: Some(key.as_bytes()),
                ..ProducerRecord::new("t", b"v")
            };
            producer.send(record).await?.await
        }
    };
    send(Some(1), "first".into()).await.unwrap();
    admin.create_partitions("t", 4).await.unwrap();
    // A partition beyond the count it knew has the topic described again.
    let stored = send(Some(3), "explicit".into()).await.unwrap();
    assert_eq!((stored.partition, stored.offset), (3, Some(0)));
    // Keys hash over the new count once the description is older than
    // metadata_max_age (here at once).
    let mut partitions = std::collections::BTreeSet::new();
    for i in 0..40 {
        let stored = send(None, format!("key-{i}")).await.unwrap();
        assert_eq!(
            stored.partition,
            weir_client::partition_for_key(format!("key-{i}").as_bytes(), 4)
        );
        partitions.insert(stored.partition);
    }
    assert_eq!(partitions.len(), 4, "{partitions:?}");
    producer.close().await.unwrap();
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_group_is_given_the_added_partitions() {
    use weir_client::{GroupConsumer, GroupConsumerConfig};
    let data = tempfile::tempdir().unwrap();
    let mut config = common::config(data.path().to_path_buf());
    config.groups.initial_rebalance_delay_ms = 0;
    config.groups.heartbeat_interval_ms = 100;
    let broker = TestBroker::start_with(config, data).await;
    broker.create_topic("t", 2).await;
    let mut member = GroupConsumer::subscribe(&broker.addr, &["t"], GroupConsumerConfig::new("g"))
        .await
        .unwrap();
    // A hang guard only: each wait ends on its condition.
    let guard = std::time::Duration::from_secs(60);
    let poll = std::time::Duration::from_millis(50);
    tokio::time::timeout(guard, async {
        while member.assignment().len() < 2 {
            member.poll(poll).await.unwrap();
        }
    })
    .await
    .expect("the member owns both partitions");

    broker
        .admin()
        .await
        .create_partitions("t", 4)
        .await
        .unwrap();
    produce_each(&broker.addr, "t", 3..4, "added").await;
    let mut read = Vec::new();
    tokio::time::timeout(guard, async {
        while read.is_empty() {
            read.extend(member.poll(poll).await.unwrap());
        }
    })
    .await
    .expect("the record in the added partition is read");
    assert_eq!(member.assignment().len(), 4, "{:?}", member.assignment());
    assert_eq!(
        (read[0].partition, read[0].value.as_deref()),
        (3, Some(&b"added-3"[..]))
    );
    member.close().await.unwrap();
    broker.shutdown().await;
}

#[tokio::test]
async fn replicas_placed_by_hand_must_name_this_broker_when_it_is_alone() {
    let broker = TestBroker::start().await;
    let admin = broker.admin().await;
    admin
        .create_topic_placed("placed", &[vec![0], vec![0]], &BTreeMap::new())
        .await
        .unwrap();
    assert_eq!(
        admin
            .describe_topic("placed")
            .await
            .unwrap()
            .partition_count,
        2
    );
    let (code, message) = status(
        admin
            .create_topic_placed("elsewhere", &[vec![0], vec![2]], &BTreeMap::new())
            .await,
    );
    assert_eq!(code, Code::InvalidArgument);
    assert!(message.contains("broker 2"), "{message}");
    let (code, _) = status(admin.describe_topic("elsewhere").await.map(|_| ()));
    assert_eq!(code, Code::NotFound, "a refused topic is not created");

    // New partitions placed by hand, over the raw API.
    let mut raw = weir_client::proto::admin_client::AdminClient::new(
        weir_client::connect(&broker.addr).await.unwrap(),
    );
    let request =
        |partitions: u32, placed: &[&[u64]]| weir_client::proto::CreatePartitionsRequest {
            topic: "placed".to_string(),
            partitions,
            validate_only: false,
            assignments: placed
                .iter()
                .map(|brokers| weir_client::proto::ReplicaAssignment {
                    brokers: brokers.to_vec(),
                })
                .collect(),
        };
    raw.create_partitions(request(3, &[&[0]])).await.unwrap();
    let refused = raw
        .create_partitions(request(5, &[&[0]]))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused
            .message()
            .contains("1 assignments for 2 new partitions"),
        "{}",
        refused.message()
    );
    assert_eq!(
        admin
            .describe_topic("placed")
            .await
            .unwrap()
            .partition_count,
        3
    );
    broker.shutdown().await;
}
