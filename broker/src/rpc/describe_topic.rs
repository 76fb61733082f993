//! `Admin.DescribeTopic`: per partition, leader, leader epoch, offsets and
//! size on disk.

use crate::broker::Broker;
use crate::error::BrokerError;
use crate::proto::{DescribeTopicRequest, DescribeTopicResponse, PartitionDescription};

#[tracing::instrument(name = "describe_topic", skip_all, fields(topic = %request.topic))]
pub fn handle(
    broker: &Broker,
    request: DescribeTopicRequest,
) -> Result<DescribeTopicResponse, BrokerError> {
    let topic = broker.topic(&request.topic)?;
    let leader = broker.config().node_id;
    let partitions = topic
        .partitions
        .iter()
        .map(|partition| {
            let status = partition.status();
            PartitionDescription {
                partition: partition.index(),
                leader,
                leader_epoch: status.leader_epoch,
                replicas: vec![leader],
                isr: vec![leader],
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
