//! `Produce.InitProducerId`: a fresh producer id for an idempotent producer,
//! or the next epoch of one it has (KIP-360).

use crate::broker::{Broker, ProducerIdRequest};
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
    let producer = match (request.producer_id, request.producer_epoch) {
        (None, None) => ProducerIdRequest::New,
        (Some(producer_id), Some(epoch)) => ProducerIdRequest::Bump {
            producer_id,
            producer_epoch: i16::try_from(epoch).map_err(|_| BrokerError::InvalidRequest {
                topic: String::new(),
                reason: format!("producer epoch {epoch} is outside the i16 range"),
            })?,
        },
        _ => {
            return Err(BrokerError::InvalidRequest {
                topic: String::new(),
                reason: "an epoch bump needs both producer_id and producer_epoch".to_string(),
            })
        }
    };
    let (producer_id, producer_epoch) = broker.init_producer_id(producer).await?;
    Ok(InitProducerIdResponse {
        producer_id,
        producer_epoch: i32::from(producer_epoch),
    })
}
