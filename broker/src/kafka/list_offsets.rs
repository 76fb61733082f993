//! ListOffsets (v1-v6): per partition, the earliest offset (timestamp -2),
//! the latest (-1: the high watermark), or the first offset whose record
//! timestamp is at or after a time, found through the time index.

use std::sync::Arc;

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::ResponseError;

use super::connection::Session;
use super::error_code;
use crate::error::BrokerError;
use crate::partition::Partition;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;

pub async fn handle(
    session: &Session,
    request: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    let broker = &session.broker;
    let mut topics = Vec::with_capacity(request.topics.len());
    for requested in request.topics {
        let topic = broker.topic(requested.name.0.as_str());
        let mut partitions = Vec::with_capacity(requested.partitions.len());
        for query in requested.partitions {
            let answer = match &topic {
                Err(error) => Err(error_code::code(error)),
                Ok(topic) => match u32::try_from(query.partition_index)
                    .ok()
                    .and_then(|p| topic.partition(p).ok())
                {
                    None => Err(ResponseError::UnknownTopicOrPartition.code()),
                    Some(partition) => {
                        let partition = Arc::clone(partition);
                        let timestamp = query.timestamp;
                        broker
                            .run_io(move || Ok(lookup(&partition, timestamp)))
                            .await
                            .unwrap_or_else(|error| Err(error_code::code(&error)))
                    }
                },
            };
            let response =
                ListOffsetsPartitionResponse::default().with_partition_index(query.partition_index);
            partitions.push(match answer {
                Ok(found) => {
                    let response = response.with_timestamp(-1).with_offset(found.offset);
                    if version >= 4 {
                        response.with_leader_epoch(found.leader_epoch)
                    } else {
                        response
                    }
                }
                Err(code) => response
                    .with_error_code(code)
                    .with_offset(-1)
                    .with_timestamp(-1),
            });
        }
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(requested.name)
                .with_partitions(partitions),
        );
    }
    ListOffsetsResponse::default().with_topics(topics)
}

struct Found {
    offset: i64,
    leader_epoch: i32,
}

/// The offset for `timestamp`; -1 when no record is that late yet, as in
/// Kafka. The record's own timestamp is not looked up: the response says
/// -1, which clients read as unknown.
fn lookup(partition: &Partition, timestamp: i64) -> Result<Found, i16> {
    let offset = match timestamp {
        LATEST => Some(partition.high_watermark()),
        EARLIEST => Some(partition.log_start_offset()),
        t if t >= 0 => partition
            .offset_for_time(t)
            .map_err(|error: BrokerError| error_code::code(&error))?,
        // -3 (max timestamp) and the tiered-storage specs need ListOffsets
        // v7+, which is not served.
        _ => return Err(ResponseError::InvalidRequest.code()),
    };
    if let Some(cause) = partition.offline_cause() {
        tracing::debug!(cause, "ListOffsets on an offline partition");
        return Err(ResponseError::KafkaStorageError.code());
    }
    Ok(Found {
        offset: offset.map_or(-1, |o| i64::try_from(o).unwrap_or(i64::MAX)),
        leader_epoch: partition.leader_epoch(),
    })
}
