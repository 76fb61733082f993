//! A topic with three replicas on three brokers in one process: `acks=all`
//! produces land on every in-sync replica byte for byte, a follower serves no
//! consumer, the controller elects a new leader from the ISR when the leader
//! stops, nothing acknowledged is lost, and the old leader catches up when
//! it returns.

mod common;

use std::collections::BTreeMap;

use common::cluster::{sample, Cluster};
use weir_broker::cluster::NodeId;
use weir_client::{Admin, Producer, ProducerConfig, ProducerRecord};

const TOPIC: &str = "orders";

async fn produce(addr: &str, from: usize, count: usize) {
    let producer = Producer::connect(addr, ProducerConfig::default())
        .await
        .unwrap();
    let mut deliveries = Vec::new();
    for i in from..from + count {
        let value = format!("record-{i}");
        let record = ProducerRecord {
            partition: Some(0),
            ..ProducerRecord::new(TOPIC, value.as_bytes())
        };
        deliveries.push(producer.send(record).await.unwrap());
    }
    for delivery in deliveries {
        delivery.await.unwrap();
    }
    producer.close().await.unwrap();
}

fn leader_of(cluster: &Cluster, at: NodeId) -> Option<(NodeId, i32, Vec<NodeId>)> {
    cluster
        .assignment(at, TOPIC, 0)
        .and_then(|a| a.leader.map(|l| (l, a.leader_epoch, a.isr)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acks_all_reaches_every_replica_and_a_new_leader_from_the_isr_loses_nothing() {
    let mut cluster = Cluster::start_with(|config| {
        config.replica_lag_time_max_ms = 2_000;
        config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    cluster
        .wait_all("every broker registered", |m| m.brokers.len() == 3)
        .await;
    let admin = Admin::connect(&cluster.addr(1)).await.unwrap();
    let configs = BTreeMap::from([("min.insync.replicas".to_string(), "2".to_string())]);
    admin.create_topic(TOPIC, 1, 3, &configs).await.unwrap();
    cluster
        .wait_all("the topic everywhere", |m| m.topics.contains_key(TOPIC))
        .await;
    let (leader, epoch, isr) = leader_of(&cluster, 1).unwrap();
    assert_eq!((epoch, isr.len()), (0, 3));

    produce(&cluster.addr(leader), 0, 500).await;
    // acks=all answered: the leader's high watermark covers all 500, and
    // every replica holds the same bytes.
    assert_eq!(cluster.replica(leader, TOPIC, 0).high_watermark(), 500);
    cluster
        .wait_for("every replica at 500", || {
            (1..=3).all(|id| cluster.replica(id, TOPIC, 0).log_end_offset() == 500)
        })
        .await;
    let leader_bytes = cluster.log_bytes(leader, TOPIC, 0);
    for id in 1..=3 {
        assert_eq!(
            cluster.log_bytes(id, TOPIC, 0),
            leader_bytes,
            "replica on broker {id}"
        );
    }

    // A follower refuses produce and consume, naming the leader.
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let refused = Producer::connect(
        &cluster.addr(follower),
        ProducerConfig {
            retries: 0,
            ..ProducerConfig::default()
        },
    )
    .await
    .unwrap();
    let delivery = refused
        .send(ProducerRecord {
            partition: Some(0),
            ..ProducerRecord::new(TOPIC, b"misdirected")
        })
        .await
        .unwrap();
    let error = delivery.await.unwrap_err().to_string();
    assert!(error.contains(&format!("broker {leader} is")), "{error}");

    // The leader stops: the controller elects another from the ISR at the
    // next epoch, and acks=all goes on with two in-sync replicas.
    cluster.stop_broker(leader).await;
    let survivor = (1..=3).find(|id| *id != leader).unwrap();
    cluster
        .wait_for("a new leader", || {
            leader_of(&cluster, survivor).is_some_and(|(l, e, _)| l != leader && e == 1)
        })
        .await;
    let (second, _, isr) = leader_of(&cluster, survivor).unwrap();
    assert!(
        !isr.contains(&leader),
        "the stopped broker left the ISR: {isr:?}"
    );
    // The metrics say so: one election by the controller, and the new
    // leader's partition under-replicated (two in sync of three).
    let partition = r#"topic="orders",partition="0""#;
    cluster
        .wait_for_async("the new leader's metrics", || async {
            let mut elections = 0.0;
            for id in cluster.brokers.keys() {
                elections += sample(
                    &cluster.scrape(*id).await,
                    "weir_leader_elections_total",
                    "",
                );
            }
            let on_leader = cluster.scrape(second).await;
            elections >= 1.0
                && sample(&on_leader, "weir_partition_leader", partition) == 1.0
                && sample(&on_leader, "weir_partition_in_sync_replicas", partition) == 2.0
                && sample(&on_leader, "weir_partition_under_replicated", partition) == 1.0
        })
        .await;
    produce(&cluster.addr(second), 500, 300).await;
    let records = common::consume_all(&cluster.addr(second), TOPIC, &[0], 800).await;
    let values: Vec<String> = records
        .iter()
        .map(|r| String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap())
        .collect();
    let expected: Vec<String> = (0..800).map(|i| format!("record-{i}")).collect();
    assert_eq!(
        values, expected,
        "every acknowledged record, once, in order"
    );

    // The old leader returns, catches up, rejoins the ISR (and, preferred,
    // may lead again); all three replicas end byte-identical.
    cluster.start_broker(leader).await;
    cluster
        .wait_for("all three back in the ISR at 800", || {
            leader_of(&cluster, survivor).is_some_and(|(_, _, isr)| isr.len() == 3)
                && (1..=3).all(|id| cluster.replica(id, TOPIC, 0).log_end_offset() == 800)
        })
        .await;
    let (now_leader, _, _) = leader_of(&cluster, survivor).unwrap();
    cluster
        .wait_for_async("an ISR expansion counted", || async {
            let mut expands = 0.0;
            for id in cluster.brokers.keys() {
                expands += sample(&cluster.scrape(*id).await, "weir_isr_expands_total", "");
            }
            let on_leader = cluster.scrape(now_leader).await;
            expands >= 1.0
                && sample(&on_leader, "weir_partition_under_replicated", partition) == 0.0
        })
        .await;
    let leader_bytes = cluster.log_bytes(now_leader, TOPIC, 0);
    for id in 1..=3 {
        assert_eq!(
            cluster.log_bytes(id, TOPIC, 0),
            leader_bytes,
            "replica on broker {id}"
        );
    }
    for id in 1..=3 {
        cluster.stop_broker(id).await;
    }
}
