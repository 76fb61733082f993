//! `Admin.ListTopics`: every topic with its partition count; internal ones only
//! when asked for, as Kafka's `listTopics` hides them by default.

use crate::broker::Broker;
use crate::error::BrokerError;
use crate::internal_topics::is_internal;
use crate::proto::{ListTopicsRequest, ListTopicsResponse, TopicSummary};

#[tracing::instrument(name = "list_topics", skip_all)]
pub fn handle(
    broker: &Broker,
    request: ListTopicsRequest,
) -> Result<ListTopicsResponse, BrokerError> {
    let topics = broker
        .topics()?
        .iter()
        .filter(|topic| request.list_internal || !is_internal(&topic.name))
        .map(|topic| TopicSummary {
            topic: topic.name.clone(),
            partitions: topic.partition_count(),
            replication_factor: topic.replication_factor,
            internal: is_internal(&topic.name),
        })
        .collect();
    Ok(ListTopicsResponse { topics })
}
