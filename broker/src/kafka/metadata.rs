//! Metadata (v0-v12): this broker as the one node of the cluster, leader of
//! every partition. No topic is created by asking for it (Weir's gRPC does
//! not auto-create either): an unknown topic is UNKNOWN_TOPIC_OR_PARTITION.

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::connection::Session;
use super::error_code;
use crate::broker::Topic;
use crate::internal_topics::is_internal;

/// Reported as the cluster id (Metadata v2+); one broker is one cluster.
const CLUSTER_ID: &str = "weir";

pub fn handle(session: &Session, request: MetadataRequest, version: i16) -> MetadataResponse {
    let node_id = session.broker.config().node_id;
    let broker = MetadataResponseBroker::default()
        .with_node_id(BrokerId(node_id))
        .with_host(StrBytes::from_string(session.advertised.ip().to_string()))
        .with_port(i32::from(session.advertised.port()));
    let topics = match requested(&request, version) {
        None => match session.broker.topics() {
            Ok(topics) => topics.iter().map(|t| describe(t, node_id)).collect(),
            Err(error) => {
                tracing::warn!(%error, "cannot list topics for Metadata");
                Vec::new()
            }
        },
        Some(names) => names
            .into_iter()
            .map(|name| match name {
                Some(name) => match session.broker.topic(&name) {
                    Ok(topic) => describe(&topic, node_id),
                    Err(error) => MetadataResponseTopic::default()
                        .with_name(Some(TopicName(StrBytes::from_string(name))))
                        .with_error_code(error_code::code(&error)),
                },
                // Asked by topic id: Weir's topics have none yet.
                None => MetadataResponseTopic::default()
                    .with_error_code(ResponseError::UnknownTopicId.code()),
            })
            .collect(),
    };
    MetadataResponse::default()
        .with_brokers(vec![broker])
        .with_cluster_id((version >= 2).then(|| StrBytes::from_static_str(CLUSTER_ID)))
        .with_controller_id(BrokerId(if version >= 1 { node_id } else { -1 }))
        .with_topics(topics)
}

/// The names asked for, `None` for every topic: a null list from v1, an
/// empty one in v0.
fn requested(request: &MetadataRequest, version: i16) -> Option<Vec<Option<String>>> {
    let topics = request.topics.as_ref()?;
    if version == 0 && topics.is_empty() {
        return None;
    }
    Some(
        topics
            .iter()
            .map(|topic| topic.name.as_ref().map(|name| name.0.as_str().to_string()))
            .collect(),
    )
}

fn describe(topic: &Topic, node_id: i32) -> MetadataResponseTopic {
    let partitions = topic
        .partitions
        .iter()
        .map(|partition| {
            let index = i32::try_from(partition.index()).unwrap_or(i32::MAX);
            let described = MetadataResponsePartition::default()
                .with_partition_index(index)
                .with_leader_epoch(partition.leader_epoch())
                .with_replica_nodes(vec![BrokerId(node_id)]);
            if partition.offline_cause().is_some() {
                // As Kafka shows a partition whose only replica's log dir failed.
                described
                    .with_error_code(ResponseError::LeaderNotAvailable.code())
                    .with_leader_id(BrokerId(-1))
                    .with_offline_replicas(vec![BrokerId(node_id)])
            } else {
                described
                    .with_leader_id(BrokerId(node_id))
                    .with_isr_nodes(vec![BrokerId(node_id)])
            }
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(topic.name.clone()))))
        .with_is_internal(is_internal(&topic.name))
        .with_partitions(partitions)
}
