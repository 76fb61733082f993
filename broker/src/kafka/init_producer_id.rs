//! InitProducerId (v0-v4): a new producer id for an idempotent producer, or
//! the next epoch of one it holds (KIP-360, v3+), through the same broker
//! function as gRPC. Transactions are not supported: a transactional id is
//! refused.

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;

use super::connection::Session;
use super::error_code;
use crate::broker::ProducerIdRequest;

pub async fn handle(session: &Session, request: InitProducerIdRequest) -> InitProducerIdResponse {
    let refused = |code: i16| {
        InitProducerIdResponse::default()
            .with_error_code(code)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    if request
        .transactional_id
        .as_ref()
        .is_some_and(|id| !id.0.is_empty())
    {
        tracing::debug!("refused a transactional InitProducerId: transactions are not supported");
        return refused(ResponseError::TransactionalIdAuthorizationFailed.code());
    }
    let producer = match (request.producer_id.0, request.producer_epoch) {
        (-1, -1) => ProducerIdRequest::New,
        (producer_id, producer_epoch) => ProducerIdRequest::Bump {
            producer_id,
            producer_epoch,
        },
    };
    match session.broker.init_producer_id(producer).await {
        Ok((producer_id, producer_epoch)) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(producer_epoch),
        Err(error) => {
            tracing::debug!(%error, "InitProducerId failed");
            refused(error_code::code(&error))
        }
    }
}
