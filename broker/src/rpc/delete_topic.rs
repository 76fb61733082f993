//! `Admin.DeleteTopic`: removes the topic from the registry, then its data.

use crate::broker::Broker;
use crate::error::BrokerError;
use crate::proto::{DeleteTopicRequest, DeleteTopicResponse};

#[tracing::instrument(name = "delete_topic", skip_all, fields(topic = %request.topic))]
pub async fn handle(
    broker: &Broker,
    request: DeleteTopicRequest,
) -> Result<DeleteTopicResponse, BrokerError> {
    crate::internal_topics::refuse_internal(&request.topic, "delete")?;
    broker.delete_topic(&request.topic).await?;
    Ok(DeleteTopicResponse {})
}
