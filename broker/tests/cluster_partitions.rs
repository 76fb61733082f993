//! Adding partitions in a cluster of three brokers: the request goes through
//! the metadata log from any broker, the new partitions are placed on the
//! registered brokers with the topic's replication factor, every replica
//! opens them, `acks=all` produces to them reach each replica, and a broker
//! that was stopped while the topic grew opens its new replicas when it
//! returns and catches up. Replicas placed by hand land on the brokers named.

mod common;

use std::collections::BTreeMap;

use common::cluster::Cluster;
use weir_broker::cluster::NodeId;
use weir_client::{Admin, Producer, ProducerConfig, ProducerRecord};

const TOPIC: &str = "orders";

async fn produce(addr: &str, partition: u32, count: usize) {
    let producer = Producer::connect(addr, ProducerConfig::default())
        .await
        .unwrap();
    let mut deliveries = Vec::new();
    for i in 0..count {
        let value = format!("record-{i}");
        let record = ProducerRecord {
            partition: Some(partition),
            ..ProducerRecord::new(TOPIC, value.as_bytes())
        };
        deliveries.push(producer.send(record).await.unwrap());
    }
    for delivery in deliveries {
        delivery.await.unwrap();
    }
    producer.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partitions_added_through_any_broker_are_replicated_and_reach_a_returning_broker() {
    let mut cluster = Cluster::start_with(|config| {
        config.replica_lag_time_max_ms = 2_000;
        config.shutdown_timeout_ms = 1_000;
    })
    .await;
    cluster
        .wait_all("every broker registered", |m| m.brokers.len() == 3)
        .await;
    let admin = Admin::connect(&cluster.addr(1)).await.unwrap();
    // min.insync.replicas stays 1: the new partitions of the broker that is
    // stopped below take writes while it is away.
    let configs = BTreeMap::from([("retention.ms".to_string(), "86400000".to_string())]);
    admin.create_topic(TOPIC, 2, 2, &configs).await.unwrap();
    cluster
        .wait_all("two partitions led, two replicas each in sync", |m| {
            m.topics
                .get(TOPIC)
                .is_some_and(|t| t.partitions.iter().all(|p| p.leader.is_some()))
        })
        .await;

    // Through another broker than the one that created it.
    let other = Admin::connect(&cluster.addr(2)).await.unwrap();
    other.create_partitions(TOPIC, 5).await.unwrap();
    let (code, message) = match other.create_partitions(TOPIC, 5).await {
        Err(weir_client::ClientError::Status { code, message }) => (code, message),
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert_eq!(code, tonic::Code::InvalidArgument);
    assert!(message.contains("already has 5"), "{message}");
    cluster
        .wait_all("five partitions, each led with two in-sync replicas", |m| {
            m.topics.get(TOPIC).is_some_and(|t| {
                t.partitions.len() == 5
                    && t.partitions
                        .iter()
                        .all(|p| p.leader.is_some() && p.replicas.len() == 2 && p.isr.len() == 2)
            })
        })
        .await;
    let assignments: Vec<Vec<NodeId>> = (0..5)
        .map(|p| cluster.assignment(1, TOPIC, p).unwrap().replicas)
        .collect();
    cluster
        .wait_for("every broker serves five partitions", || {
            (1..=3).all(|id| {
                cluster.brokers[&id]
                    .broker()
                    .topic(TOPIC)
                    .is_ok_and(|t| t.partition_count() == 5 && t.configs == configs)
            })
        })
        .await;
    // Leaders spread over the brokers, as at creation.
    let leaders: std::collections::BTreeSet<NodeId> =
        assignments.iter().map(|replicas| replicas[0]).collect();
    assert_eq!(leaders.len(), 3, "{assignments:?}");

    // acks=all to a new partition lands on both of its replicas.
    produce(&cluster.addr(1), 4, 50).await;
    for &id in &assignments[4] {
        cluster
            .wait_for("both replicas of partition 4 at 50", || {
                cluster.replica(id, TOPIC, 4).log_end_offset() == 50
            })
            .await;
    }
    let [a, b] = assignments[4][..] else {
        panic!("two replicas")
    };
    assert_eq!(
        cluster.log_bytes(a, TOPIC, 4),
        cluster.log_bytes(b, TOPIC, 4)
    );

    // A broker stopped while the topic grows opens its new replicas when it returns.
    let away: NodeId = 3;
    cluster.stop_broker(away).await;
    Admin::connect(&cluster.addr(1))
        .await
        .unwrap()
        .create_partitions(TOPIC, 8)
        .await
        .unwrap();
    cluster
        .wait_all("eight partitions, each led by a running broker", |m| {
            m.topics.get(TOPIC).is_some_and(|t| {
                t.partitions.len() == 8
                    && t.partitions
                        .iter()
                        .all(|p| p.leader.is_some_and(|l| l != away))
            })
        })
        .await;
    let hosted_away: Vec<u32> = (5..8)
        .filter(|&p| {
            cluster
                .assignment(1, TOPIC, p)
                .unwrap()
                .replicas
                .contains(&away)
        })
        .collect();
    assert!(
        !hosted_away.is_empty(),
        "placement is a function of the name: this one's new partitions include broker {away}"
    );
    for &p in &hosted_away {
        produce(&cluster.addr(1), p, 20).await;
    }
    cluster.start_broker(away).await;
    cluster
        .wait_for("the returning broker serves eight partitions", || {
            cluster.brokers[&away]
                .broker()
                .topic(TOPIC)
                .is_ok_and(|t| t.partition_count() == 8)
        })
        .await;
    for &p in &hosted_away {
        cluster
            .wait_for("the returning replica caught up", || {
                cluster.replica(away, TOPIC, p).log_end_offset() == 20
            })
            .await;
    }
    for id in [1, 2, away] {
        cluster.stop_broker(id).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_placed_by_hand_land_on_the_brokers_named() {
    let cluster = Cluster::start().await;
    cluster
        .wait_all("every broker registered", |m| m.brokers.len() == 3)
        .await;
    let broker = cluster.brokers[&2].broker();
    broker
        .create_topic_placed("placed", vec![vec![3, 1], vec![1, 2]], BTreeMap::new())
        .await
        .unwrap();
    broker
        .create_partitions_placed("placed", vec![vec![2, 3]], false)
        .await
        .unwrap();
    cluster
        .wait_all("three partitions, led by the first broker named", |m| {
            m.topics.get("placed").is_some_and(|t| {
                let placed: Vec<(Vec<NodeId>, Option<NodeId>)> = t
                    .partitions
                    .iter()
                    .map(|p| (p.replicas.clone(), p.leader))
                    .collect();
                placed
                    == [
                        (vec![3, 1], Some(3)),
                        (vec![1, 2], Some(1)),
                        (vec![2, 3], Some(2)),
                    ]
            })
        })
        .await;
    cluster
        .wait_for("each broker holds the replicas named for it", || {
            (1..=3).all(|id| {
                cluster.brokers[&id]
                    .broker()
                    .topic("placed")
                    .is_ok_and(|t| t.partition_count() == 3)
            })
        })
        .await;
    for (id, hosted) in [
        (1, [true, true, false]),
        (2, [false, true, true]),
        (3, [true, false, true]),
    ] {
        for (partition, expected) in hosted.into_iter().enumerate() {
            let dir =
                weir_broker::partition_dir(cluster.dirs[&id].path(), "placed", partition as u32);
            assert_eq!(dir.exists(), expected, "broker {id} partition {partition}");
        }
    }
    // A broker the cluster does not know, a repeated one, a length unlike the topic's.
    for (replicas, says) in [
        (vec![vec![1, 9]], "broker 9"),
        (vec![vec![2, 2]], "twice"),
        (vec![vec![1, 2, 3]], "every partition needs 2"),
    ] {
        let refused = broker
            .create_partitions_placed("placed", replicas, false)
            .await
            .unwrap_err()
            .to_string();
        assert!(refused.contains(says), "{refused}");
    }
    let mut cluster = cluster;
    for id in [1, 2, 3] {
        cluster.stop_broker(id).await;
    }
}
