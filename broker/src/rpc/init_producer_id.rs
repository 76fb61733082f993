//! `Produce.InitProducerId`: a fresh producer id for an idempotent producer.

use crate::broker::Broker;
use crate::error::BrokerError;
use crate::proto::{InitProducerIdRequest, InitProducerIdResponse};

#[tracing::instrument(name = "init_producer_id", skip_all)]
pub async fn handle(
    broker: &Broker,
    request: InitProducerIdRequest,
) -> Result<InitProducerIdResponse, BrokerError> {
    if !request.transactional_id.is_empty() {
        return Err(BrokerError::InvalidRequest {
            topic: String::new(),
            reason: "transactional producers are not supported; leave transactional_id empty"
                .to_string(),
        });
    }
    let (producer_id, producer_epoch) = broker.init_producer_id().await?;
    Ok(InitProducerIdResponse {
        producer_id,
        producer_epoch: i32::from(producer_epoch),
    })
}
