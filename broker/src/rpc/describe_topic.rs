//! `Admin.DescribeTopic`: per partition, leader, leader epoch, replicas,
//! in-sync replicas, offsets and size on disk. In a cluster the placement
//! comes from the cluster's metadata (the only place that knows the other
//! brokers' replicas); offsets and size are always this broker's replica.

use crate::broker::Broker;
use crate::cluster::{NodeId, PartitionAssignment};
use crate::error::BrokerError;
use crate::proto::{DescribeTopicRequest, DescribeTopicResponse, PartitionDescription};

#[tracing::instrument(name = "describe_topic", skip_all, fields(topic = %request.topic))]
pub fn handle(
    broker: &Broker,
    request: DescribeTopicRequest,
) -> Result<DescribeTopicResponse, BrokerError> {
    let topic = broker.topic(&request.topic)?;
    let node_id = broker.config().node_id;
    let placements = cluster_placements(broker, &request.topic);
    let partitions = topic
        .partitions
        .iter()
        .map(|partition| {
            let status = partition.status();
            let placement = placements
                .as_ref()
                .and_then(|all| all.get(partition.index() as usize));
            let (leader, leader_epoch, replicas, isr) = match placement {
                Some(assignment) => (
                    assignment.leader.map_or(0, node),
                    assignment.leader_epoch,
                    assignment.replicas.iter().copied().map(node).collect(),
                    assignment.isr.iter().copied().map(node).collect(),
                ),
                // A broker in no cluster holds the only replica.
                None => (node_id, status.leader_epoch, vec![node_id], vec![node_id]),
            };
            PartitionDescription {
                partition: partition.index(),
                leader,
                leader_epoch,
                replicas,
                isr,
                log_start_offset: status.log_start_offset,
                log_end_offset: status.log_end_offset,
                high_watermark: status.high_watermark,
                size_bytes: status.size_bytes,
                offline_cause: partition.offline_cause().unwrap_or_default().to_string(),
            }
        })
        .collect();
    Ok(DescribeTopicResponse {
        topic: topic.name.clone(),
        replication_factor: topic.replication_factor,
        configs: topic.configs.clone().into_iter().collect(),
        partitions,
        internal: crate::internal_topics::is_internal(&topic.name),
    })
}

/// The topic's partitions as the cluster's metadata places them; `None` on a
/// broker in no cluster (or before the metadata has the topic, when this
/// broker's own replica is all there is to report).
fn cluster_placements(broker: &Broker, topic: &str) -> Option<Vec<PartitionAssignment>> {
    let link = broker.cluster()?;
    let metadata = link.quorum.metadata();
    let metadata = metadata.borrow();
    Some(metadata.topics.get(topic)?.partitions.clone())
}

/// Node ids run below `cluster::NODE_IDS` (1024), so every one fits the
/// message's `int32`.
fn node(id: NodeId) -> i32 {
    debug_assert!(id < crate::cluster::NODE_IDS, "node id {id} out of range");
    i32::try_from(id).unwrap_or(-1)
}
