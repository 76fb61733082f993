//! `Admin.CreatePartitions`: grows a topic to a new partition count.

use crate::broker::Broker;
use crate::error::BrokerError;
use crate::proto::{CreatePartitionsRequest, CreatePartitionsResponse};

#[tracing::instrument(name = "create_partitions", skip_all, fields(topic = %request.topic))]
pub async fn handle(
    broker: &Broker,
    request: CreatePartitionsRequest,
) -> Result<CreatePartitionsResponse, BrokerError> {
    if request.assignments.is_empty() {
        broker
            .create_partitions(&request.topic, request.partitions, request.validate_only)
            .await?;
    } else {
        let current = broker.topic(&request.topic)?.partition_count();
        crate::broker::check_growth(&request.topic, current, request.partitions)?;
        let new = request.partitions - current;
        if request.assignments.len() as u64 != u64::from(new) {
            return Err(BrokerError::InvalidReplicaAssignment {
                topic: request.topic,
                reason: format!(
                    "{} assignments for {new} new partitions",
                    request.assignments.len()
                ),
            });
        }
        let replicas = request.assignments.into_iter().map(|a| a.brokers).collect();
        broker
            .create_partitions_placed(&request.topic, replicas, request.validate_only)
            .await?;
    }
    Ok(CreatePartitionsResponse {
        partitions: request.partitions,
    })
}
