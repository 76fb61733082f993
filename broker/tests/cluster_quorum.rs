//! Three brokers in one process, each on its own loopback port and data
//! directory, forming a cluster over their gRPC listeners: they elect a
//! controller, register, agree on metadata, elect a new controller when the
//! old one stops, and keep the metadata across a restart of every broker.

mod common;

use std::collections::BTreeMap;

use common::cluster::{Cluster, WAIT};
use weir_broker::cluster::{MetadataCommand, PartitionAssignment, QuorumStatus, TopicMetadata};
use weir_broker::{BrokerConfig, RunningBroker};
use weir_client::proto::quorum_client::QuorumClient;
use weir_client::proto::ClusterStatusRequest;

fn topic(name: &str) -> MetadataCommand {
    MetadataCommand::CreateTopic(TopicMetadata {
        name: name.into(),
        configs: BTreeMap::new(),
        partitions: vec![PartitionAssignment {
            replicas: vec![1, 2, 3],
            leader: Some(1),
            leader_epoch: 0,
            isr: vec![1, 2, 3],
            partition_epoch: 0,
        }],
    })
}

/// A topic placed on a broker that is not in the cluster: it fills the
/// metadata log without giving the brokers replicas to open and follow.
fn unhosted_topic(name: &str) -> MetadataCommand {
    MetadataCommand::CreateTopic(TopicMetadata {
        name: name.into(),
        configs: BTreeMap::new(),
        partitions: vec![PartitionAssignment {
            replicas: vec![7],
            leader: None,
            leader_epoch: 0,
            isr: vec![],
            partition_epoch: 0,
        }],
    })
}

/// Broker `id`'s quorum member, as it reports itself now.
fn status(cluster: &Cluster, id: u64) -> QuorumStatus {
    cluster.brokers[&id]
        .quorum()
        .unwrap()
        .view()
        .borrow()
        .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_brokers_elect_register_fail_over_and_keep_metadata_across_a_full_restart() {
    let mut cluster = Cluster::start().await;
    cluster
        .wait_all("every broker registered everywhere", |m| {
            m.brokers.len() == 3
        })
        .await;
    let controller = cluster.controller().await;

    // A follower's proposal is forwarded to the controller and applies everywhere.
    let follower = (1..=3).find(|id| *id != controller).unwrap();
    cluster.brokers[&follower]
        .quorum()
        .unwrap()
        .propose(topic("clicks"), WAIT)
        .await
        .unwrap();
    cluster
        .wait_all("clicks everywhere", |m| m.topics.contains_key("clicks"))
        .await;

    // The status RPC names the controller and who is alive.
    let addr = format!("http://127.0.0.1:{}", cluster.ports[&controller]);
    let mut client = QuorumClient::connect(addr).await.unwrap();
    let status = client
        .cluster_status(ClusterStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.controller_id, controller);
    assert_eq!(status.brokers.len(), 3);
    assert!(status.brokers.iter().all(|b| b.registered));

    // The controller stops: the two left elect another and still commit.
    cluster.stop_broker(controller).await;
    let second = cluster.controller().await;
    assert_ne!(second, controller);
    let survivor = (1..=3)
        .find(|id| *id != controller && *id != second)
        .unwrap();
    cluster.brokers[&survivor]
        .quorum()
        .unwrap()
        .propose(topic("views"), WAIT)
        .await
        .unwrap();
    // The old controller comes back and catches up.
    cluster.start_broker(controller).await;
    cluster
        .wait_all("views everywhere", |m| m.topics.contains_key("views"))
        .await;

    // Every broker stops; every broker starts: the metadata is still there.
    for id in 1..=3 {
        cluster.stop_broker(id).await;
    }
    for id in 1..=3 {
        cluster.start_broker(id).await;
    }
    cluster
        .wait_all("both topics after a full restart", |m| {
            m.topics.contains_key("clicks")
                && m.topics.contains_key("views")
                && m.brokers.len() == 3
        })
        .await;
    for id in 1..=3 {
        cluster.stop_broker(id).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proposal_forwarded_to_a_controller_that_just_stopped_applies_under_the_next() {
    let mut cluster = Cluster::start().await;
    cluster
        .wait_all("every broker registered everywhere", |m| {
            m.brokers.len() == 3
        })
        .await;
    let controller = cluster.controller().await;
    let follower = (1..=3).find(|id| *id != controller).unwrap();
    cluster.stop_broker(controller).await;
    // The follower still takes the stopped broker for the controller, so Raft forwards the
    // proposal there, where it is lost; it is proposed again once the two left elect one.
    assert_eq!(status(&cluster, follower).leader_id, Some(controller));
    cluster.brokers[&follower]
        .quorum()
        .unwrap()
        .propose(topic("late"), WAIT)
        .await
        .unwrap();
    cluster
        .wait_all("late on both brokers left", |m| {
            m.topics.contains_key("late")
        })
        .await;
    assert_ne!(cluster.controller().await, controller);
    for id in cluster.brokers.keys().copied().collect::<Vec<_>>() {
        cluster.stop_broker(id).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_behind_the_compacted_metadata_log_catches_up_through_a_snapshot_and_a_full_restart_keeps_it(
) {
    let mut cluster = Cluster::start_with(|config| config.metadata_snapshot_entries = 10).await;
    cluster
        .wait_all("every broker registered everywhere", |m| {
            m.brokers.len() == 3
        })
        .await;
    let controller = cluster.controller().await;
    let stopped = (1..=3).find(|id| *id != controller).unwrap();
    let stopped_committed = status(&cluster, stopped).committed_index;
    cluster.stop_broker(stopped).await;
    let names: Vec<String> = (0..30).map(|i| format!("topic-{i}")).collect();
    for name in &names {
        cluster.brokers[&controller]
            .quorum()
            .unwrap()
            .propose(unhosted_topic(name), WAIT)
            .await
            .unwrap();
    }
    // Both brokers left dropped the entries the stopped one lacks (and more
    // than it could have held uncommitted): only a snapshot can bring it back.
    cluster
        .wait_for("the running brokers compacted their metadata logs", || {
            cluster
                .brokers
                .keys()
                .all(|id| status(&cluster, *id).snapshot_index > stopped_committed + 10)
        })
        .await;
    cluster.start_broker(stopped).await;
    cluster
        .wait_all("every topic on every broker", |m| {
            names.iter().all(|name| m.topics.contains_key(name))
        })
        .await;
    let caught_up = status(&cluster, stopped);
    assert!(caught_up.snapshots_installed >= 1, "{caught_up:?}");
    let expected = cluster.metadata(controller);
    cluster
        .wait_for("the same metadata everywhere", || {
            cluster.metadata(stopped).topics == expected.topics
        })
        .await;

    // Every broker stops; every broker starts from its snapshot and log.
    for id in 1..=3 {
        cluster.stop_broker(id).await;
    }
    for id in 1..=3 {
        cluster.start_broker(id).await;
        assert!(
            status(&cluster, id).snapshot_index > 0,
            "broker {id} loaded a snapshot"
        );
    }
    cluster
        .wait_all("every topic and broker after a full restart", |m| {
            m.brokers.len() == 3 && names.iter().all(|name| m.topics.contains_key(name))
        })
        .await;
    for id in 1..=3 {
        assert_eq!(cluster.metadata(id).topics, expected.topics, "broker {id}");
        cluster.stop_broker(id).await;
    }
}

/// A topic of `partitions` partitions, none of them hosted in the cluster.
fn wide_unhosted_topic(name: &str, partitions: usize) -> MetadataCommand {
    let MetadataCommand::CreateTopic(mut topic) = unhosted_topic(name) else {
        unreachable!("unhosted_topic creates a topic")
    };
    topic.partitions = vec![topic.partitions[0].clone(); partitions];
    MetadataCommand::CreateTopic(topic)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metadata_snapshot_larger_than_a_grpc_message_reaches_a_lagging_broker_in_pieces() {
    let mut cluster = Cluster::start_with(|config| config.metadata_snapshot_entries = 4).await;
    cluster
        .wait_all("every broker registered everywhere", |m| {
            m.brokers.len() == 3
        })
        .await;
    let controller = cluster.controller().await;
    let stopped = (1..=3).find(|id| *id != controller).unwrap();
    let stopped_at = status(&cluster, stopped).committed_index;
    cluster.stop_broker(stopped).await;
    // About 6 MB of metadata as JSON, over gRPC's default 4 MiB message
    // bound, in entries each well under it.
    let names: Vec<String> = (0..10).map(|i| format!("wide-{i}")).collect();
    for name in &names {
        cluster.brokers[&controller]
            .quorum()
            .unwrap()
            .propose(wide_unhosted_topic(name, 8_000), WAIT)
            .await
            .unwrap();
    }
    let snapshot_bytes = serde_json::to_vec(&cluster.metadata(controller))
        .unwrap()
        .len();
    assert!(snapshot_bytes > 4 << 20, "{snapshot_bytes} bytes");
    cluster
        .wait_for("the running brokers compacted past the stopped one", || {
            cluster
                .brokers
                .keys()
                .all(|id| status(&cluster, *id).snapshot_index > stopped_at + 4)
        })
        .await;
    cluster.start_broker(stopped).await;
    let expected = cluster.metadata(controller);
    cluster
        .wait_for("the stopped broker caught up", || {
            cluster.metadata(stopped).topics == expected.topics
        })
        .await;
    let caught_up = status(&cluster, stopped);
    assert!(caught_up.snapshots_installed >= 1, "{caught_up:?}");
    for id in 1..=3 {
        cluster.stop_broker(id).await;
    }
}

#[tokio::test]
async fn a_broker_whose_node_id_is_not_among_its_peers_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = BrokerConfig {
        node_id: 4,
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        peers: Some("1=127.0.0.1:1,2=127.0.0.1:2".into()),
        ..BrokerConfig::default()
    };
    let error = RunningBroker::start(config).await.unwrap_err().to_string();
    assert!(error.contains("node id 4 is not among them"), "{error}");
}
