//! ListOffsets (v1-v6): per partition, the earliest offset (timestamp -2),
//! the latest (-1: the high watermark), or the first offset whose record
//! timestamp is at or after a time, found through the time index, with that
//! record's timestamp (read from its batch, as Kafka does). Only the leader
//! answers (NOT_LEADER_OR_FOLLOWER elsewhere), except to Kafka's debugging
//! replica id -2, which any replica answers from its own log.

use std::sync::Arc;

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::ResponseError;

use super::connection::Session;
use super::{error_code, leaders};
use crate::error::BrokerError;
use crate::partition::Partition;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
/// Kafka's `ListOffsetsRequest.DEBUGGING_REPLICA_ID`: may read a follower.
const DEBUGGING_REPLICA_ID: i32 = -2;

pub async fn handle(
    session: &Session,
    request: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    let broker = &session.broker;
    let leader_only = request.replica_id.0 != DEBUGGING_REPLICA_ID;
    let mut topics = Vec::with_capacity(request.topics.len());
    for requested in request.topics {
        let name = requested.name.0.as_str();
        let topic = broker.topic(name);
        let mut partitions = Vec::with_capacity(requested.partitions.len());
        for query in requested.partitions {
            let answer = match &topic {
                Err(BrokerError::UnknownTopic { .. })
                    if leaders::not_created_here(broker, name, query.partition_index).is_some() =>
                {
                    Err(ResponseError::NotLeaderOrFollower.code())
                }
                Err(error) => Err(error_code::code(error)),
                Ok(topic) => match u32::try_from(query.partition_index)
                    .ok()
                    .and_then(|p| topic.partition(p).ok())
                {
                    None => Err(ResponseError::UnknownTopicOrPartition.code()),
                    Some(partition) if !answers(partition, leader_only) => {
                        Err(ResponseError::NotLeaderOrFollower.code())
                    }
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
                    let response = response
                        .with_timestamp(found.timestamp)
                        .with_offset(found.offset);
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

/// Whether this broker's replica answers: the leader's, or any replica's
/// to the debugging replica id.
fn answers(partition: &Partition, leader_only: bool) -> bool {
    if leader_only {
        leaders::leads(partition)
    } else {
        leaders::hosts(partition)
    }
}

struct Found {
    offset: i64,
    /// The found record's timestamp; -1 for earliest and latest, as in Kafka.
    timestamp: i64,
    leader_epoch: i32,
}

/// The offset for `timestamp`; offset and timestamp -1 when no record is
/// that late yet, as in Kafka.
fn lookup(partition: &Partition, timestamp: i64) -> Result<Found, i16> {
    if let Some(cause) = partition.offline_cause() {
        tracing::debug!(cause, "ListOffsets on an offline partition");
        return Err(ResponseError::KafkaStorageError.code());
    }
    let code = |error: BrokerError| error_code::code(&error);
    let (offset, found_timestamp) = match timestamp {
        LATEST => (Some(partition.high_watermark()), -1),
        EARLIEST => (Some(partition.log_start_offset()), -1),
        t if t >= 0 => match partition.offset_for_time(t).map_err(code)? {
            Some(offset) => (
                Some(offset),
                record_timestamp(partition, offset).map_err(code)?,
            ),
            None => (None, -1),
        },
        // -3 (max timestamp) and the tiered-storage specs need ListOffsets
        // v7+, which is not served.
        _ => return Err(ResponseError::InvalidRequest.code()),
    };
    Ok(Found {
        offset: offset.map_or(-1, |o| i64::try_from(o).unwrap_or(i64::MAX)),
        timestamp: found_timestamp,
        leader_epoch: partition.leader_epoch(),
    })
}

/// The timestamp of the record at `offset`, decoded from its batch.
fn record_timestamp(partition: &Partition, offset: u64) -> Result<i64, BrokerError> {
    let read = partition.read(offset, 1, false)?;
    let Some(first) = weir_log::batch::batches(&read.batches).next() else {
        return Ok(-1);
    };
    let bad = |reason: String| BrokerError::InvalidRequest {
        topic: String::new(),
        reason,
    };
    let (_, batch) = first.map_err(|e| bad(e.to_string()))?;
    let records = weir_log::batch::decode_records(batch).map_err(|e| bad(e.to_string()))?;
    let wanted = i64::try_from(offset).unwrap_or(i64::MAX);
    Ok(records
        .iter()
        .find(|record| record.offset >= wanted)
        .map_or(-1, |record| record.timestamp))
}
