//! Consumer groups in a cluster of three brokers: a group's coordinator is the leader of
//! its partition of `__consumer_offsets`, which is replicated like any topic. Members that
//! bootstrap at different brokers find that one coordinator and share the partitions; when
//! the coordinator's broker stops, a follower of the partition takes over with every
//! committed offset, and the members follow it.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::cluster::{Cluster, WAIT};
use weir_broker::cluster::NodeId;
use weir_broker::group::{offsets_partition_for, CONSUMER_OFFSETS_TOPIC};
use weir_client::{
    Admin, GroupConsumer, GroupConsumerConfig, Producer, ProducerConfig, ProducerRecord,
};

const TOPIC: &str = "events";
const PARTITIONS: u32 = 4;
const GROUP: &str = "readers";
/// Few partitions of `__consumer_offsets`, so that the cluster creates them quickly.
const OFFSETS_PARTITIONS: u32 = 5;

async fn cluster_with_topic() -> Cluster {
    let cluster = Cluster::start_with(|config| {
        config.replica_lag_time_max_ms = 2_000;
        config.shutdown_timeout_ms = 1_000;
        config.offsets_topic_partitions = OFFSETS_PARTITIONS;
    })
    .await;
    cluster
        .wait_all("every broker registered", |m| m.brokers.len() == 3)
        .await;
    let admin = Admin::connect(&cluster.addr(1)).await.unwrap();
    admin
        .create_topic(TOPIC, PARTITIONS, 3, &BTreeMap::new())
        .await
        .unwrap();
    cluster
        .wait_all("every partition led with three in-sync replicas", |m| {
            m.topics.get(TOPIC).is_some_and(|t| {
                t.partitions
                    .iter()
                    .all(|p| p.leader.is_some() && p.isr.len() == 3)
            })
        })
        .await;
    cluster
}

/// The addresses of the brokers in `order`, as a bootstrap list.
fn bootstrap(cluster: &Cluster, order: &[NodeId]) -> String {
    order
        .iter()
        .filter(|id| cluster.brokers.contains_key(id))
        .map(|id| cluster.addr(*id))
        .collect::<Vec<_>>()
        .join(",")
}

async fn produce(cluster: &Cluster, from: u32, count: u32) {
    let producer = Producer::connect(&bootstrap(cluster, &[1, 2, 3]), ProducerConfig::default())
        .await
        .unwrap();
    let mut deliveries = Vec::new();
    for i in from..from + count {
        let value = format!("r{i}");
        let record = ProducerRecord::new(TOPIC, value.as_bytes()).with_partition(i % PARTITIONS);
        deliveries.push(producer.send(record).await.unwrap());
    }
    for delivery in deliveries {
        delivery.await.unwrap();
    }
    producer.close().await.unwrap();
}

fn member() -> GroupConsumerConfig {
    GroupConsumerConfig {
        enable_auto_commit: false,
        ..GroupConsumerConfig::new(GROUP)
    }
}

fn owned(consumer: &GroupConsumer) -> BTreeSet<u32> {
    consumer
        .positions()
        .into_iter()
        .map(|(_, p, _)| p)
        .collect()
}

/// Polls both members until every record of `expected` was read by one of them, both own partitions and none is owned twice; then commits both.
async fn read_all_and_commit(members: &mut [&mut GroupConsumer; 2], expected: BTreeSet<String>) {
    let mut read = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + WAIT * 2;
    loop {
        for consumer in members.iter_mut() {
            for record in consumer.poll(Duration::from_millis(100)).await.unwrap() {
                let value = String::from_utf8(record.value.unwrap().to_vec()).unwrap();
                read.insert(value);
            }
        }
        let (a, b) = (owned(members[0]), owned(members[1]));
        let shared = !a.is_empty() && !b.is_empty() && a.is_disjoint(&b);
        let covered = a.union(&b).count() == PARTITIONS as usize;
        if shared && covered && expected.is_subset(&read) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the two members own {a:?} and {b:?} and read {} of {} records",
            read.intersection(&expected).count(),
            expected.len()
        );
    }
    for consumer in members.iter_mut() {
        let deadline = tokio::time::Instant::now() + WAIT;
        // A commit meeting the coordinator's move is refused as NOT_COORDINATOR;
        // the next one goes to the new coordinator.
        while let Err(error) = consumer.commit().await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "commit failed: {error}"
            );
            consumer.poll(Duration::from_millis(100)).await.unwrap();
        }
    }
}

/// The offsets the group has committed, summed over the topic's partitions, as the
/// broker at `addr` finds them (at the group's coordinator).
async fn committed_total(addr: &str) -> u64 {
    let admin = Admin::connect(addr).await.unwrap();
    let description = admin.describe_group(GROUP).await.unwrap();
    description
        .partitions
        .iter()
        .filter(|p| p.topic == TOPIC)
        .map(|p| p.committed_offset.unwrap_or(0))
        .sum()
}

fn values(from: u32, count: u32) -> BTreeSet<String> {
    (from..from + count).map(|i| format!("r{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn members_that_bootstrap_at_different_brokers_share_one_coordinator_which_fails_over_with_the_commits(
) {
    let mut cluster = cluster_with_topic().await;
    produce(&cluster, 0, 400).await;

    // Each member asks a different broker first.
    let mut a = GroupConsumer::subscribe(&bootstrap(&cluster, &[1, 2, 3]), &[TOPIC], member())
        .await
        .unwrap();
    let mut b = GroupConsumer::subscribe(&bootstrap(&cluster, &[2, 3, 1]), &[TOPIC], member())
        .await
        .unwrap();
    read_all_and_commit(&mut [&mut a, &mut b], values(0, 400)).await;
    for id in 1..=3 {
        assert_eq!(
            committed_total(&cluster.addr(id)).await,
            400,
            "the commits as found through broker {id}"
        );
    }

    // The coordinator is the leader of the group's partition of `__consumer_offsets`,
    // which the cluster replicated to every broker.
    let index = offsets_partition_for(GROUP, OFFSETS_PARTITIONS);
    let placement = cluster
        .assignment(1, CONSUMER_OFFSETS_TOPIC, index)
        .expect("the cluster created __consumer_offsets");
    assert_eq!(placement.replicas.len(), 3, "{placement:?}");
    let coordinator = placement.leader.unwrap();
    cluster
        .wait_all("the group's offsets replicated to every broker", |m| {
            m.topics[CONSUMER_OFFSETS_TOPIC].partitions[index as usize]
                .isr
                .len()
                == 3
        })
        .await;
    cluster.stop_broker(coordinator).await;
    cluster
        .wait_all("another broker leads the group's partition", |m| {
            m.topics[CONSUMER_OFFSETS_TOPIC].partitions[index as usize]
                .leader
                .is_some_and(|leader| leader != coordinator)
        })
        .await;
    let survivor = *cluster.brokers.keys().next().unwrap();
    assert_eq!(
        committed_total(&cluster.addr(survivor)).await,
        400,
        "the commits after the coordinator's broker stopped"
    );

    // The members follow the new coordinator: the group reads and commits on.
    produce(&cluster, 400, 100).await;
    read_all_and_commit(&mut [&mut a, &mut b], values(400, 100)).await;
    assert_eq!(committed_total(&cluster.addr(survivor)).await, 500);
    // Both leave at the new coordinator: the group is empty, its commits kept.
    a.close().await.unwrap();
    b.close().await.unwrap();
    let admin = Admin::connect(&cluster.addr(survivor)).await.unwrap();
    let described = admin.describe_group(GROUP).await.unwrap();
    assert!(described.members.is_empty(), "{described:?}");
    assert_eq!(committed_total(&cluster.addr(survivor)).await, 500);
}
