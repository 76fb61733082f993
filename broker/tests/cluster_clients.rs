//! Clients in a cluster of three brokers: given a bootstrap list (or one
//! address) they learn each partition's leader from the cluster metadata,
//! produce and fetch there, and follow a new leader when the old one stops,
//! without losing or duplicating an acknowledged record.

mod common;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::cluster::{Cluster, WAIT};
use weir_broker::cluster::NodeId;
use weir_client::{
    Admin, Consumer, ConsumerConfig, ConsumerRecord, OffsetReset, Producer, ProducerConfig,
    ProducerRecord, RecordMetadata,
};

const TOPIC: &str = "events";
const PARTITIONS: u32 = 3;

/// Starts the cluster and creates a three-partition topic with three
/// replicas; returns the leader of each partition.
async fn cluster_with_topic() -> (Cluster, Vec<NodeId>) {
    let cluster = Cluster::start_with(|config| {
        config.replica_lag_time_max_ms = 2_000;
        // A stopped broker cuts the connections of requests still in flight
        // after a second (an acks=all produce would otherwise hold its
        // shutdown for the request's timeout): their answers are lost, as
        // when a broker dies, and the producer retries them elsewhere.
        config.shutdown_timeout_ms = 1_000;
    })
    .await;
    cluster
        .wait_all("every broker registered", |m| m.brokers.len() == 3)
        .await;
    let admin = Admin::connect(&cluster.addr(1)).await.unwrap();
    let configs = BTreeMap::from([("min.insync.replicas".to_string(), "2".to_string())]);
    admin
        .create_topic(TOPIC, PARTITIONS, 3, &configs)
        .await
        .unwrap();
    cluster
        .wait_all(
            "every partition with a leader and three in-sync replicas",
            |m| {
                m.topics.get(TOPIC).is_some_and(|t| {
                    t.partitions
                        .iter()
                        .all(|p| p.leader.is_some() && p.isr.len() == 3)
                })
            },
        )
        .await;
    let leaders: Vec<NodeId> = (0..PARTITIONS)
        .map(|p| cluster.assignment(1, TOPIC, p).unwrap().leader.unwrap())
        .collect();
    (cluster, leaders)
}

fn bootstrap_list(cluster: &Cluster) -> String {
    (1..=3)
        .map(|id| cluster.addr(id))
        .collect::<Vec<_>>()
        .join(",")
}

fn value_of(record: &ConsumerRecord) -> String {
    String::from_utf8(record.value.clone().unwrap().to_vec()).unwrap()
}

/// Reads every partition from the beginning up to the leaders' high
/// watermarks.
async fn read_everything(addr: &str) -> Vec<ConsumerRecord> {
    let mut consumer = Consumer::connect(
        addr,
        ConsumerConfig {
            offset_reset: OffsetReset::Earliest,
            ..ConsumerConfig::default()
        },
    )
    .await
    .unwrap();
    let partitions: Vec<u32> = (0..PARTITIONS).collect();
    consumer.assign(TOPIC, &partitions);
    let ends: BTreeMap<u32, u64> = consumer.end_offsets().await.unwrap().into_iter().collect();
    let mut records = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut done = true;
        for (partition, end) in &ends {
            done &= consumer.position(*partition).await.unwrap() >= *end;
        }
        if done {
            return records;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "read {} records, not up to {ends:?}; partition errors: {:?}",
            records.len(),
            consumer.partition_errors()
        );
        records.extend(consumer.poll(Duration::from_millis(200)).await.unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bootstrap_list_producer_writes_each_partition_at_its_leader_and_one_address_reads_all() {
    let (mut cluster, leaders) = cluster_with_topic().await;
    assert_eq!(
        leaders.iter().collect::<BTreeSet<_>>().len(),
        3,
        "each partition led by another broker: {leaders:?}"
    );

    // The list starts with an address nobody listens on: the next answers.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_addr = closed.local_addr().unwrap().to_string();
    drop(closed);
    let producer = Producer::connect(
        &format!("{closed_addr},{}", bootstrap_list(&cluster)),
        ProducerConfig::default(),
    )
    .await
    .unwrap();
    let mut deliveries = Vec::new();
    for i in 0..300u32 {
        let value = format!("record-{i}");
        let record = ProducerRecord::new(TOPIC, value.as_bytes()).with_partition(i % PARTITIONS);
        deliveries.push(producer.send(record).await.unwrap());
    }
    for (i, delivery) in deliveries.into_iter().enumerate() {
        let stored = delivery.await.unwrap();
        assert_eq!(stored.partition, i as u32 % PARTITIONS);
        assert_eq!(stored.offset, Some(i as u64 / u64::from(PARTITIONS)));
    }
    producer.close().await.unwrap();
    for (partition, leader) in leaders.iter().enumerate() {
        assert_eq!(
            cluster
                .replica(*leader, TOPIC, partition as u32)
                .high_watermark(),
            100,
            "partition {partition} at its leader, broker {leader}"
        );
    }

    // A consumer given one broker fetches the other two partitions from
    // their leaders.
    let records = read_everything(&cluster.addr(2)).await;
    for partition in 0..PARTITIONS {
        let values: Vec<String> = records
            .iter()
            .filter(|r| r.partition == partition)
            .map(value_of)
            .collect();
        let expected: Vec<String> = (0..300u32)
            .filter(|i| i % PARTITIONS == partition)
            .map(|i| format!("record-{i}"))
            .collect();
        assert_eq!(values, expected, "partition {partition}, once and in order");
    }
    for id in 1..=3 {
        cluster.stop_broker(id).await;
    }
}

/// Outstanding deliveries the sending task keeps before it waits for the
/// oldest: the producer always has records in flight.
const WINDOW: usize = 300;
/// A bound on the sending loop.
const RECORDS_MAX: u32 = 50_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_producer_follows_a_new_leader_and_every_acknowledged_record_is_stored_once_in_order() {
    let (mut cluster, leaders) = cluster_with_topic().await;
    // The broker to stop leads a partition and is the producer's bootstrap
    // broker: the producer must learn the new leader from another.
    let (victim_partition, victim) = leaders
        .iter()
        .enumerate()
        .map(|(p, l)| (p as u32, *l))
        .find(|(_, l)| *l == 1)
        .expect("broker 1 leads a partition");
    let producer = Producer::connect(
        &bootstrap_list(&cluster),
        ProducerConfig {
            retries: u32::MAX,
            delivery_timeout: Duration::from_secs(60),
            ..ProducerConfig::default()
        },
    )
    .await
    .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicUsize::new(0));
    let sender = tokio::spawn({
        let (stop, acked) = (Arc::clone(&stop), Arc::clone(&acked));
        async move {
            let mut outstanding = VecDeque::new();
            let mut outcomes: Vec<(u32, String, Result<RecordMetadata, String>)> = Vec::new();
            let mut settle = |outcome: (u32, String, Result<RecordMetadata, String>)| {
                if outcome.2.is_ok() {
                    acked.fetch_add(1, Ordering::SeqCst);
                }
                outcomes.push(outcome);
            };
            let mut i = 0u32;
            while !stop.load(Ordering::SeqCst) && i < RECORDS_MAX {
                let partition = i % PARTITIONS;
                let value = format!("record-{i}");
                let record = ProducerRecord::new(TOPIC, value.as_bytes()).with_partition(partition);
                let delivery = producer.send(record).await.unwrap();
                outstanding.push_back((partition, value, delivery));
                if outstanding.len() > WINDOW {
                    let (partition, value, delivery) = outstanding.pop_front().unwrap();
                    let result = delivery.await.map_err(|e| e.to_string());
                    settle((partition, value, result));
                }
                i += 1;
            }
            for (partition, value, delivery) in outstanding {
                let result = delivery.await.map_err(|e| e.to_string());
                settle((partition, value, result));
            }
            producer.close().await.unwrap();
            outcomes
        }
    });

    cluster
        .wait_for("the first 1000 acknowledgements", || {
            acked.load(Ordering::SeqCst) >= 1_000
        })
        .await;
    cluster.stop_broker(victim).await;
    cluster
        .wait_for("a new leader of the stopped broker's partition", || {
            cluster
                .assignment(2, TOPIC, victim_partition)
                .is_some_and(|a| a.leader.is_some_and(|l| l != victim))
        })
        .await;
    let at_election = acked.load(Ordering::SeqCst);
    cluster
        .wait_for("1000 more acknowledgements after the election", || {
            acked.load(Ordering::SeqCst) >= at_election + 1_000
        })
        .await;
    stop.store(true, Ordering::SeqCst);
    let outcomes = sender.await.unwrap();

    let failed: Vec<&(u32, String, Result<RecordMetadata, String>)> =
        outcomes.iter().filter(|o| o.2.is_err()).collect();
    assert!(
        failed.is_empty(),
        "{} of {} deliveries failed, the first: {:?}",
        failed.len(),
        outcomes.len(),
        failed.first()
    );
    let records = read_everything(&cluster.addr(2)).await;
    for partition in 0..PARTITIONS {
        let read: Vec<(u64, String)> = records
            .iter()
            .filter(|r| r.partition == partition)
            .map(|r| (r.offset, value_of(r)))
            .collect();
        let acknowledged: Vec<(u64, String)> = outcomes
            .iter()
            .filter(|(p, _, _)| *p == partition)
            .map(|(_, value, stored)| (stored.as_ref().unwrap().offset.unwrap(), value.clone()))
            .collect();
        assert!(!acknowledged.is_empty());
        // Every acknowledged record at the offset it was acknowledged with,
        // and nothing else: none lost, none twice, in the order sent.
        assert_eq!(
            read, acknowledged,
            "partition {partition} (led by broker {} before the stop)",
            leaders[partition as usize]
        );
    }
    for id in [2, 3] {
        cluster.stop_broker(id).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_producer_whose_bootstrap_broker_stopped_learns_a_new_topic_from_another() {
    let (mut cluster, _) = cluster_with_topic().await;
    const LATER: &str = "later";
    let admin = Admin::connect(&cluster.addr(2)).await.unwrap();
    admin
        .create_topic(LATER, PARTITIONS, 3, &BTreeMap::new())
        .await
        .unwrap();
    let producer = Producer::connect(&bootstrap_list(&cluster), ProducerConfig::default())
        .await
        .unwrap();
    // One record per partition: broker 1 leads only one of them, so the
    // producer learns the cluster from a NOT_LEADER answer.
    for partition in 0..PARTITIONS {
        let record = ProducerRecord::new(TOPIC, b"before").with_partition(partition);
        producer.send(record).await.unwrap().await.unwrap();
    }

    cluster.stop_broker(1).await;
    cluster
        .wait_for("leaders of the new topic other than broker 1", || {
            cluster.metadata(2).topics.get(LATER).is_some_and(|t| {
                t.partitions
                    .iter()
                    .all(|p| p.leader.is_some_and(|l| l != 1))
            })
        })
        .await;
    // The first record of a topic has its partitions described first: by
    // broker 2 or 3, since broker 1 is gone.
    for partition in 0..PARTITIONS {
        let record = ProducerRecord::new(LATER, b"after").with_partition(partition);
        let stored = producer.send(record).await.unwrap().await.unwrap();
        assert_eq!(stored.offset, Some(0));
    }
    producer.close().await.unwrap();
    for id in [2, 3] {
        cluster.stop_broker(id).await;
    }
}
