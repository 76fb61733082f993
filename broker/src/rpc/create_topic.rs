//! `Admin.CreateTopic`: validates name, partition count, replication factor
//! and configs, then creates every partition's log.

use std::collections::BTreeMap;

use crate::broker::Broker;
use crate::error::BrokerError;
use crate::proto::{CreateTopicRequest, CreateTopicResponse};

#[tracing::instrument(name = "create_topic", skip_all, fields(topic = %request.topic, partitions = request.partitions))]
pub async fn handle(
    broker: &Broker,
    request: CreateTopicRequest,
) -> Result<CreateTopicResponse, BrokerError> {
    // The group coordinator creates `__consumer_offsets` itself, with its own settings.
    crate::internal_topics::refuse_internal(&request.topic, "create")?;
    let configs: BTreeMap<String, String> = request.configs.into_iter().collect();
    let topic = broker
        .create_topic(
            &request.topic,
            request.partitions,
            request.replication_factor,
            configs,
        )
        .await?;
    Ok(CreateTopicResponse {
        topic: topic.name.clone(),
        partitions: topic.partition_count(),
    })
}
