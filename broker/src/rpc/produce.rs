//! `Produce.Produce`: appends each partition's batches as received.
//!
//! The broker never decodes records here: the batch bytes are validated and
//! appended by the partition log, which rewrites only the base offset and
//! leader epoch in place. The bytes are copied at most once, when the receive
//! buffer is shared and cannot be taken over for that in-place rewrite.
//! Request-level problems (unknown topic, partition out of range) fail the
//! whole request; a failed append is reported in that partition's result.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::broker::{Broker, Topic};
use crate::error::BrokerError;
use crate::partition::Appended;
use crate::proto::{ErrorCode, PartitionProduceResult, ProduceRequest, ProduceResponse};

#[tracing::instrument(name = "produce", skip_all, fields(topic = %request.topic, partitions = request.partitions.len()))]
pub async fn handle(
    broker: &Broker,
    request: ProduceRequest,
) -> Result<ProduceResponse, BrokerError> {
    let topic = broker.topic(&request.topic)?;
    check_partitions(&topic, &request)?;
    let mut results = Vec::with_capacity(request.partitions.len());
    for data in request.partitions {
        let partition = Arc::clone(topic.partition(data.partition)?);
        let index = data.partition;
        let appended = if data.batches.is_empty() {
            Err(BrokerError::InvalidRequest {
                topic: topic.name.clone(),
                reason: format!("partition {index}: the produce data holds no batch"),
            })
        } else {
            let mut buf = into_mut(data.batches);
            broker.run_io(move || partition.append(&mut buf)).await
        };
        results.push(result(index, appended));
    }
    Ok(ProduceResponse {
        partitions: results,
    })
}

/// Every partition must exist and be named once.
fn check_partitions(topic: &Topic, request: &ProduceRequest) -> Result<(), BrokerError> {
    for (i, data) in request.partitions.iter().enumerate() {
        topic.partition(data.partition)?;
        if request.partitions[..i]
            .iter()
            .any(|earlier| earlier.partition == data.partition)
        {
            return Err(BrokerError::DuplicatePartition {
                topic: topic.name.clone(),
                partition: data.partition,
            });
        }
    }
    Ok(())
}

/// Takes the received bytes over for the in-place offset rewrite, copying
/// only if they share their allocation with something else.
fn into_mut(bytes: Bytes) -> BytesMut {
    bytes
        .try_into_mut()
        .unwrap_or_else(|shared| BytesMut::from(&shared[..]))
}

fn result(partition: u32, appended: Result<Appended, BrokerError>) -> PartitionProduceResult {
    match appended {
        Ok(appended) => PartitionProduceResult {
            partition,
            error_code: ErrorCode::None.into(),
            error_message: String::new(),
            base_offset: appended.base_offset,
            last_offset: appended.last_offset,
            log_append_time_ms: -1,
            log_start_offset: appended.log_start_offset,
            duplicate: appended.duplicate,
        },
        Err(error) => {
            tracing::debug!(partition, %error, "append failed");
            PartitionProduceResult {
                partition,
                error_code: error.error_code().into(),
                error_message: error.to_string(),
                base_offset: 0,
                last_offset: 0,
                log_append_time_ms: -1,
                log_start_offset: 0,
                duplicate: false,
            }
        }
    }
}
