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
    if !request.assignments.is_empty() {
        let replicas: Vec<Vec<u64>> = request.assignments.into_iter().map(|a| a.brokers).collect();
        let partitions = u32::try_from(replicas.len()).unwrap_or(u32::MAX);
        let replication_factor = u32::try_from(replicas[0].len()).unwrap_or(u32::MAX);
        let disagrees = |asked: u32, placed: u32| asked != 0 && asked != placed;
        if disagrees(request.partitions, partitions)
            || disagrees(request.replication_factor, replication_factor)
        {
            return Err(BrokerError::InvalidReplicaAssignment {
                topic: request.topic,
                reason: format!(
                    "{partitions} partitions of {replication_factor} replicas are placed, but the request asks for {} of {}",
                    request.partitions, request.replication_factor
                ),
            });
        }
        broker
            .create_topic_placed(&request.topic, replicas, configs)
            .await?;
        return Ok(CreateTopicResponse {
            topic: request.topic,
            partitions,
        });
    }
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
