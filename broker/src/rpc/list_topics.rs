//! `Admin.ListTopics`: every topic with its partition count.

use crate::broker::Broker;
use crate::error::BrokerError;
use crate::proto::{ListTopicsRequest, ListTopicsResponse, TopicSummary};

#[tracing::instrument(name = "list_topics", skip_all)]
pub fn handle(
    broker: &Broker,
    _request: ListTopicsRequest,
) -> Result<ListTopicsResponse, BrokerError> {
    let topics = broker
        .topics()?
        .iter()
        .map(|topic| TopicSummary {
            topic: topic.name.clone(),
            partitions: topic.partition_count(),
            replication_factor: topic.replication_factor,
        })
        .collect();
    Ok(ListTopicsResponse { topics })
}
