//! `Admin.AlterConfigs`: sets or removes topic config overrides; the
//! partitions are reopened with the new settings.

use crate::broker::Broker;
use crate::error::BrokerError;
use crate::proto::{AlterConfigsRequest, AlterConfigsResponse};

#[tracing::instrument(name = "alter_configs", skip_all, fields(topic = %request.topic))]
pub async fn handle(
    broker: &Broker,
    request: AlterConfigsRequest,
) -> Result<AlterConfigsResponse, BrokerError> {
    crate::internal_topics::refuse_internal(&request.topic, "alter the configs of")?;
    let configs = broker
        .alter_configs(&request.topic, request.set.into_iter().collect())
        .await?;
    Ok(AlterConfigsResponse {
        configs: configs.into_iter().collect(),
    })
}
