//! `Admin.CreatePartitions`: grows a topic to a new partition count.

use crate::broker::Broker;
use crate::error::BrokerError;
use crate::proto::{CreatePartitionsRequest, CreatePartitionsResponse};

#[tracing::instrument(name = "create_partitions", skip_all, fields(topic = %request.topic))]
pub async fn handle(
    broker: &Broker,
    request: CreatePartitionsRequest,
) -> Result<CreatePartitionsResponse, BrokerError> {
    broker
        .create_partitions(&request.topic, request.partitions, request.validate_only)
        .await?;
    Ok(CreatePartitionsResponse {
        partitions: request.partitions,
    })
}
