//! Three brokers in a cluster, each with a Kafka listener, spoken to through
//! `kafka-protocol` and kcat: Metadata from any broker lists every broker at
//! its Kafka address and every partition's leader, epoch, replicas and ISR
//! as the cluster's metadata has them; Produce, Fetch and ListOffsets sent
//! to a broker that does not lead the partition answer
//! NOT_LEADER_OR_FOLLOWER (Fetch v12 naming the leader), and librdkafka,
//! given a bootstrap list, finds the leaders itself. FindCoordinator from any
//! broker names the leader of the group's `__consumer_offsets` partition, and
//! the others answer the group's requests NOT_COORDINATOR.

mod common;
mod kafka_support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use bytes::Bytes;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    CreateTopicsRequest, FetchRequest, FindCoordinatorRequest, GroupId, ListOffsetsRequest,
    MetadataRequest, MetadataResponse, OffsetCommitRequest, OffsetFetchRequest, ProduceRequest,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;

use common::cluster::Cluster;
use kafka_support::tools::kcat;
use kafka_support::KafkaWire;
use weir_broker::cluster::{ClusterMetadata, NodeId};

const TOPIC: &str = "spread";
const PARTITIONS: u32 = 3;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const NOT_LEADER_OR_FOLLOWER: i16 = 6;
const INVALID_REPLICATION_FACTOR: i16 = 38;

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

/// A cluster of three brokers with Kafka listeners, every one registered
/// with its listener's address, and their Kafka addresses by node id.
async fn kafka_cluster() -> (Cluster, BTreeMap<NodeId, SocketAddr>) {
    let cluster =
        Cluster::start_with(|config| config.kafka_listen = Some("127.0.0.1:0".parse().unwrap()))
            .await;
    cluster
        .wait_all("every broker registered with its Kafka listener", |m| {
            m.brokers.len() == 3 && m.brokers.values().all(|b| b.kafka_address.is_some())
        })
        .await;
    let kafka = cluster
        .brokers
        .iter()
        .map(|(id, running)| (*id, running.kafka_addr().unwrap()))
        .collect();
    (cluster, kafka)
}

/// Creates `TOPIC` with three replicas over Kafka's CreateTopics, and waits
/// until every broker has taken the part the metadata gives it (leader or
/// follower of each partition).
async fn create_replicated_topic(cluster: &Cluster, kafka: SocketAddr) {
    let mut wire = KafkaWire::connect(kafka).await;
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(5_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(name(TOPIC))
            .with_num_partitions(PARTITIONS as i32)
            .with_replication_factor(3)]);
    let created = wire.call(7, &request).await;
    assert_eq!(created.topics[0].error_code, 0, "{created:?}");
    cluster
        .wait_for("every replica in its role", || {
            (1..=3).all(|id| {
                let Some(assignment) = cluster.assignment(id, TOPIC, 0) else {
                    return false;
                };
                assignment.leader.is_some()
                    && (0..PARTITIONS).all(|p| {
                        let leader = cluster.assignment(id, TOPIC, p).and_then(|a| a.leader);
                        cluster.brokers[&id]
                            .broker()
                            .topic(TOPIC)
                            .ok()
                            .and_then(|t| t.partition(p).ok().map(|p| p.leader_id()))
                            .is_some_and(|known| known.is_some() && known == leader)
                    })
            })
        })
        .await;
}

fn leader(metadata: &ClusterMetadata, partition: u32) -> NodeId {
    metadata.topics[TOPIC].partitions[partition as usize]
        .leader
        .unwrap()
}

fn ids(ids: &[NodeId]) -> Vec<i32> {
    ids.iter().map(|&id| id as i32).collect()
}

/// Each listed broker's node id, host and port.
fn listed_brokers(response: &MetadataResponse) -> Vec<(i32, String, i32)> {
    response
        .brokers
        .iter()
        .map(|b| (b.node_id.0, b.host.to_string(), b.port))
        .collect()
}

/// Each partition of `TOPIC` as listed: index, error, leader, epoch, replicas, ISR.
type Listed = (i32, i16, i32, i32, Vec<i32>, Vec<i32>);

fn listed_partitions(response: &MetadataResponse) -> Vec<Listed> {
    let topic = response
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == TOPIC))
        .expect("the topic is listed");
    assert_eq!(topic.error_code, 0);
    topic
        .partitions
        .iter()
        .map(|p| {
            (
                p.partition_index,
                p.error_code,
                p.leader_id.0,
                p.leader_epoch,
                p.replica_nodes.iter().map(|id| id.0).collect(),
                p.isr_nodes.iter().map(|id| id.0).collect(),
            )
        })
        .collect()
}

fn produce_one(partition: i32, value: &str) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(TOPIC))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(common::batch(&[value], 1_000)))])])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_broker_answers_metadata_with_the_whole_cluster() {
    let (mut cluster, kafka) = kafka_cluster().await;
    create_replicated_topic(&cluster, kafka[&1]).await;
    let controller = cluster.controller().await;
    let expected_brokers: Vec<(i32, String, i32)> = kafka
        .iter()
        .map(|(id, addr)| (*id as i32, addr.ip().to_string(), i32::from(addr.port())))
        .collect();
    for (&id, &addr) in &kafka {
        let metadata = cluster.metadata(id);
        let expected_partitions: Vec<Listed> = metadata.topics[TOPIC]
            .partitions
            .iter()
            .enumerate()
            .map(|(index, a)| {
                (
                    index as i32,
                    0,
                    a.leader.unwrap() as i32,
                    a.leader_epoch,
                    ids(&a.replicas),
                    ids(&a.isr),
                )
            })
            .collect();
        assert!(
            expected_partitions.iter().all(|p| p.4.len() == 3),
            "three replicas each: {expected_partitions:?}"
        );
        let mut wire = KafkaWire::connect(addr).await;
        for version in 0..=12 {
            // v0 asks for every topic with an empty list, later versions with null.
            let request = if version == 0 {
                MetadataRequest::default().with_topics(Some(Vec::new()))
            } else {
                MetadataRequest::default().with_topics(None)
            };
            let response = wire.call(version, &request).await;
            assert_eq!(
                listed_brokers(&response),
                expected_brokers,
                "broker {id}, v{version}"
            );
            if version >= 1 {
                assert_eq!(
                    response.controller_id.0, controller as i32,
                    "broker {id}, v{version}"
                );
            }
            let listed = listed_partitions(&response);
            // The leader epoch is in the response from v7.
            let comparable = |p: &Listed| {
                let epoch = if version >= 7 { p.3 } else { 0 };
                (p.0, p.1, p.2, epoch, p.4.clone(), p.5.clone())
            };
            assert_eq!(
                listed.iter().map(comparable).collect::<Vec<_>>(),
                expected_partitions
                    .iter()
                    .map(comparable)
                    .collect::<Vec<_>>(),
                "broker {id}, v{version}"
            );
        }
        // Asked by name, the same.
        let by_name = MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(name(TOPIC))),
        ]));
        let response = wire.call(12, &by_name).await;
        assert_eq!(listed_partitions(&response), expected_partitions);
        // A topic the cluster does not have is unknown, as on one broker.
        let unknown = MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(name("nowhere"))),
        ]));
        let response = wire.call(12, &unknown).await;
        assert_eq!(response.topics[0].error_code, UNKNOWN_TOPIC_OR_PARTITION);
    }
    // Three registered brokers place three replicas, not four.
    let mut wire = KafkaWire::connect(kafka[&2]).await;
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(5_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(name("crowded"))
            .with_num_partitions(1)
            .with_replication_factor(4)]);
    let refused = wire.call(7, &request).await;
    assert_eq!(refused.topics[0].error_code, INVALID_REPLICATION_FACTOR);
    let message = refused.topics[0]
        .error_message
        .as_ref()
        .unwrap()
        .to_string();
    assert!(message.contains("3 registered brokers"), "{message}");
    for id in 1..=3 {
        cluster.stop_broker(id).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_refuses_produce_fetch_and_list_offsets_and_names_the_leader() {
    let (mut cluster, kafka) = kafka_cluster().await;
    create_replicated_topic(&cluster, kafka[&1]).await;
    let metadata = cluster.metadata(1);
    for partition in 0..PARTITIONS {
        let leader = leader(&metadata, partition);
        let epoch = metadata.topics[TOPIC].partitions[partition as usize].leader_epoch;
        let index = partition as i32;
        let mut to_leader = KafkaWire::connect(kafka[&leader]).await;
        let produced = to_leader
            .call(9, &produce_one(index, &format!("to-{partition}")))
            .await;
        let answer = &produced.responses[0].partition_responses[0];
        assert_eq!(
            (answer.error_code, answer.base_offset),
            (0, 0),
            "partition {partition} on its leader {leader}: {answer:?}"
        );
        for follower in (1..=3).filter(|id| *id != leader) {
            let mut wire = KafkaWire::connect(kafka[&follower]).await;
            let refused = wire.call(9, &produce_one(index, "misdirected")).await;
            let answer = &refused.responses[0].partition_responses[0];
            assert_eq!(
                answer.error_code, NOT_LEADER_OR_FOLLOWER,
                "partition {partition} on follower {follower}"
            );
            let message = answer.error_message.as_ref().unwrap().to_string();
            assert!(
                message.contains(&format!("broker {leader} is")),
                "{message}"
            );

            let fetch = FetchRequest::default()
                .with_max_wait_ms(0)
                .with_max_bytes(1 << 20)
                .with_topics(vec![FetchTopic::default()
                    .with_topic(name(TOPIC))
                    .with_partitions(vec![FetchPartition::default()
                        .with_partition(index)
                        .with_fetch_offset(0)
                        .with_partition_max_bytes(1 << 20)])]);
            let fetched = wire.call(12, &fetch).await;
            let data = &fetched.responses[0].partitions[0];
            assert_eq!(data.error_code, NOT_LEADER_OR_FOLLOWER);
            assert_eq!(
                (
                    data.current_leader.leader_id.0,
                    data.current_leader.leader_epoch
                ),
                (leader as i32, epoch),
                "Fetch v12 names the leader"
            );
            assert_eq!(data.records.as_ref().map_or(0, Bytes::len), 0);

            let latest = ListOffsetsRequest::default()
                .with_replica_id((-1).into())
                .with_topics(vec![ListOffsetsTopic::default()
                    .with_name(name(TOPIC))
                    .with_partitions(vec![ListOffsetsPartition::default()
                        .with_partition_index(index)
                        .with_timestamp(-1)])]);
            let listed = wire.call(6, &latest).await;
            assert_eq!(
                listed.topics[0].partitions[0].error_code,
                NOT_LEADER_OR_FOLLOWER
            );
        }
        // The leader answers the same ListOffsets: acks=-1 answered, so the
        // high watermark covers the record.
        let latest = ListOffsetsRequest::default()
            .with_replica_id((-1).into())
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(name(TOPIC))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(index)
                    .with_timestamp(-1)])]);
        let listed = to_leader.call(6, &latest).await;
        let answer = &listed.topics[0].partitions[0];
        assert_eq!((answer.error_code, answer.offset), (0, 1));
    }
    for id in 1..=3 {
        cluster.stop_broker(id).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kcat_lists_the_cluster_and_follows_the_leaders() {
    let (mut cluster, kafka) = kafka_cluster().await;
    create_replicated_topic(&cluster, kafka[&1]).await;
    let controller = cluster.controller().await;

    let listed = kcat(
        vec!["-b".to_string(), kafka[&2].to_string(), "-L".to_string()],
        "",
    )
    .await;
    assert!(listed.contains(" 3 brokers:"), "{listed}");
    for (id, addr) in &kafka {
        let line = format!("broker {id} at {addr}");
        assert!(listed.contains(&line), "{line} in {listed}");
    }
    assert!(
        listed.contains(&format!(
            "broker {controller} at {} (controller)",
            kafka[&controller]
        )),
        "{listed}"
    );
    assert!(
        listed.contains(&format!("topic \"{TOPIC}\" with {PARTITIONS} partitions")),
        "{listed}"
    );

    let bootstrap = kafka
        .values()
        .map(SocketAddr::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let mut expected = BTreeSet::new();
    for partition in 0..PARTITIONS {
        let values: Vec<String> = (0..3).map(|i| format!("p{partition}-r{i}")).collect();
        expected.extend(values.iter().map(|v| (partition, v.clone())));
        kcat(
            [
                "-b",
                &bootstrap,
                "-t",
                TOPIC,
                "-P",
                "-p",
                &partition.to_string(),
                "-X",
                "acks=all",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            values.join("\n") + "\n",
        )
        .await;
    }
    let consumed = kcat(
        [
            "-b",
            &bootstrap,
            "-t",
            TOPIC,
            "-C",
            "-o",
            "beginning",
            "-e",
            "-f",
            "%p %s\n",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        "",
    )
    .await;
    let seen: BTreeSet<(u32, String)> = consumed
        .lines()
        .map(|line| {
            let (partition, value) = line.split_once(' ').unwrap();
            (partition.parse().unwrap(), value.to_string())
        })
        .collect();
    assert_eq!(seen, expected);
    assert_eq!(consumed.lines().count(), expected.len(), "{consumed}");
    // Every record is on its partition's leader and covered by its high watermark.
    let metadata = cluster.metadata(1);
    for partition in 0..PARTITIONS {
        let leader = leader(&metadata, partition);
        assert_eq!(
            cluster.replica(leader, TOPIC, partition).high_watermark(),
            3
        );
    }
    for id in 1..=3 {
        cluster.stop_broker(id).await;
    }
}

/// The coordinator of `group` as FindCoordinator v`version` answers at `kafka`:
/// (node id, port), or the error code.
async fn find_coordinator(kafka: SocketAddr, group: &str, version: i16) -> Result<(i32, i32), i16> {
    let mut wire = KafkaWire::connect(kafka).await;
    let key = StrBytes::from_string(group.to_string());
    if version >= 4 {
        let request = FindCoordinatorRequest::default().with_coordinator_keys(vec![key]);
        let found = &wire.call(version, &request).await.coordinators[0];
        return match found.error_code {
            0 => Ok((found.node_id.0, found.port)),
            code => Err(code),
        };
    }
    let found = wire
        .call(version, &FindCoordinatorRequest::default().with_key(key))
        .await;
    match found.error_code {
        0 => Ok((found.node_id.0, found.port)),
        code => Err(code),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_broker_names_the_leader_of_the_groups_offsets_partition_as_its_coordinator() {
    const GROUP: &str = "auditors";
    const NOT_COORDINATOR: i16 = 16;
    const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    let (cluster, kafka) = kafka_cluster().await;
    create_replicated_topic(&cluster, kafka[&1]).await;

    // The first FindCoordinator creates `__consumer_offsets` (replicated to all three)
    // and answers COORDINATOR_NOT_AVAILABLE until its partitions have leaders.
    let deadline = tokio::time::Instant::now() + common::cluster::WAIT;
    let coordinator = loop {
        if let Ok(found) = find_coordinator(kafka[&1], GROUP, 3).await {
            break found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no coordinator found"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let partitions = cluster.brokers[&1]
        .broker()
        .config()
        .offsets_topic_partitions;
    let index = weir_broker::group::offsets_partition_for(GROUP, partitions);
    let placement = cluster
        .assignment(1, weir_broker::group::CONSUMER_OFFSETS_TOPIC, index)
        .unwrap();
    let leader = placement.leader.unwrap();
    assert_eq!(placement.replicas.len(), 3, "{placement:?}");
    assert_eq!(
        coordinator,
        (leader as i32, i32::from(kafka[&leader].port()))
    );
    for (id, addr) in &kafka {
        for version in [0, 3, 4] {
            // A broker answers once it has applied the partition's leader.
            let deadline = tokio::time::Instant::now() + common::cluster::WAIT;
            let found = loop {
                match find_coordinator(*addr, GROUP, version).await {
                    Err(COORDINATOR_NOT_AVAILABLE) if tokio::time::Instant::now() < deadline => {
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await
                    }
                    found => break found,
                }
            };
            assert_eq!(
                found,
                Ok(coordinator),
                "FindCoordinator v{version} at broker {id}"
            );
        }
    }

    // A commit at the coordinator is read back there; any other broker answers the
    // group's requests NOT_COORDINATOR, which sends a client back to FindCoordinator.
    let commit = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str(GROUP)))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(name(TOPIC))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(0)])]);
    let fetch = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str(GROUP)))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(name(TOPIC))
            .with_partition_indexes(vec![0])]));
    for (id, addr) in &kafka {
        let mut wire = KafkaWire::connect(*addr).await;
        let committed = wire.call(2, &commit).await;
        let fetched = wire.call(1, &fetch).await;
        if *id == leader {
            assert_eq!(committed.topics[0].partitions[0].error_code, 0);
            assert_eq!(fetched.topics[0].partitions[0].committed_offset, 0);
        } else {
            assert_eq!(
                committed.topics[0].partitions[0].error_code, NOT_COORDINATOR,
                "OffsetCommit at broker {id}"
            );
            assert_eq!(
                fetched.topics[0].partitions[0].error_code, NOT_COORDINATOR,
                "OffsetFetch at broker {id}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metadata_auto_creates_a_topic_through_the_cluster_and_answers_leader_not_available_first()
{
    const LEADER_NOT_AVAILABLE: i16 = 5;
    let cluster = Cluster::start_with(|config| {
        config.kafka_listen = Some("127.0.0.1:0".parse().unwrap());
        config.auto_create_topics = true;
        config.num_partitions = 2;
    })
    .await;
    cluster
        .wait_all("every broker registered with its Kafka listener", |m| {
            m.brokers.len() == 3 && m.brokers.values().all(|b| b.kafka_address.is_some())
        })
        .await;
    let asked = cluster.brokers[&2].kafka_addr().unwrap();
    let mut wire = KafkaWire::connect(asked).await;
    let request = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(name("made")))
        ]))
        .with_allow_auto_topic_creation(true);
    let first = wire.call(12, &request).await;
    assert_eq!(
        first.topics[0].error_code, LEADER_NOT_AVAILABLE,
        "{first:?}"
    );
    cluster
        .wait_all("the auto-created topic is placed", |m| {
            m.topics.get("made").is_some_and(|t| {
                t.partitions.len() == 2 && t.partitions.iter().all(|p| p.leader.is_some())
            })
        })
        .await;
    // Every broker now describes it, a client asking again among them.
    for (id, running) in &cluster.brokers {
        let mut wire = KafkaWire::connect(running.kafka_addr().unwrap()).await;
        let again = wire.call(12, &request).await;
        let made = &again.topics[0];
        assert_eq!(
            (made.error_code, made.partitions.len()),
            (0, 2),
            "broker {id}: {again:?}"
        );
    }
}
