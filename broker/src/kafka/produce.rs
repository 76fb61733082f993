//! Produce (v3+): each partition's RecordBatch v2 bytes are appended as they
//! came, through the same path as gRPC's produce (`rpc::produce`): the log
//! validates them (CRC, every record), the partition checks the idempotent
//! producer's sequence, and a batch ahead of its sequence waits for the
//! earlier ones. acks=1 answers once the leader wrote the batches, acks=-1
//! (all) once the high watermark covers them (on a broker in no cluster,
//! the same). A partition this broker does not lead answers
//! NOT_LEADER_OR_FOLLOWER, and the client moves to the leader Metadata names.
//!
//! The frame's buffer is shared by everything decoded from it: the records
//! are moved out and the rest dropped before the appends, so a request with
//! one partition appends from the receive buffer without a copy.

use bytes::Bytes;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tokio::time::Instant;

use super::connection::Session;
use super::{error_code, leaders};
use crate::error::BrokerError;
use crate::metrics::{appended_records, kafka_error_name, Listener};
use crate::rpc::produce::{
    append_in_sequence, earlier_batches_deadline, into_mut, log_append_time_ms,
};

/// One partition's index and the records sent for it.
type PartitionRecords = (i32, Option<Bytes>);

/// How a produce request is answered.
pub enum Produced {
    Respond(ProduceResponse),
    /// acks=0 and every append succeeded: Kafka sends no response.
    Silent,
    /// acks=0 and an append failed: Kafka closes the connection, the only
    /// way such a producer learns of it.
    Close(String),
}

/// One partition's outcome.
struct Outcome {
    index: i32,
    result: Result<Stored, Refusal>,
}

/// Why a partition's records were not stored: Kafka's code, Weir's message,
/// and the records at fault (Kafka's `record_errors`, v8+: each keyless
/// record of a compacted topic).
struct Refusal {
    code: i16,
    message: String,
    records: Vec<u32>,
}

impl Refusal {
    fn new(code: i16, message: String) -> Refusal {
        Refusal {
            code,
            message,
            records: Vec::new(),
        }
    }

    fn of_append(error: &BrokerError) -> Refusal {
        let records = match error {
            BrokerError::Log {
                source:
                    weir_log::LogError::BatchAt {
                        source: weir_log::batch::BatchError::KeylessRecords { record_indexes, .. },
                        ..
                    },
                ..
            } => record_indexes.clone(),
            _ => Vec::new(),
        };
        Refusal {
            code: error_code::produce_code(error),
            message: error.to_string(),
            records,
        }
    }
}

struct Stored {
    base_offset: i64,
    log_append_time_ms: i64,
    log_start_offset: i64,
}

pub async fn handle(session: &Session, request: ProduceRequest, version: i16) -> Produced {
    let acks = request.acks;
    let deadline = earlier_batches_deadline(u32::try_from(request.timeout_ms).unwrap_or(0));
    let replicated_deadline =
        crate::rpc::produce::replication_deadline(u32::try_from(request.timeout_ms).unwrap_or(0));
    let topics = records_by_topic(request);
    let mut responses = Vec::with_capacity(topics.len());
    let mut first_failure: Option<String> = None;
    for (name, partitions) in topics {
        let outcomes = if (-1..=1).contains(&acks) {
            produce_topic(
                session,
                &name,
                partitions,
                deadline,
                acks == -1,
                replicated_deadline,
            )
            .await
        } else {
            let reason = format!("acks must be 0, 1 or -1 (all), not {acks}");
            refuse_all(
                partitions,
                ResponseError::InvalidRequiredAcks.code(),
                &reason,
            )
        };
        count_errors(session, &outcomes);
        if first_failure.is_none() {
            first_failure = outcomes.iter().find_map(|o| {
                o.result
                    .as_ref()
                    .err()
                    .map(|refusal| refusal.message.clone())
            });
        }
        responses.push(topic_response(name, outcomes, version));
    }
    if acks == 0 {
        return match first_failure {
            None => Produced::Silent,
            Some(reason) => Produced::Close(format!("an acks=0 produce failed: {reason}")),
        };
    }
    Produced::Respond(ProduceResponse::default().with_responses(responses))
}

/// Each topic's name, owned, and its partitions' records. The rest of the
/// request (transactional id, names) is dropped: only the records keep the
/// frame's buffer, so the last of them is appended without a copy.
fn records_by_topic(request: ProduceRequest) -> Vec<(String, Vec<PartitionRecords>)> {
    request
        .topic_data
        .into_iter()
        .map(|topic| {
            let partitions = topic
                .partition_data
                .into_iter()
                .map(|data| (data.index, data.records))
                .collect();
            (topic.name.0.as_str().to_string(), partitions)
        })
        .collect()
}

async fn produce_topic(
    session: &Session,
    name: &str,
    partitions: Vec<PartitionRecords>,
    deadline: Instant,
    acks_all: bool,
    replicated_deadline: tokio::time::Instant,
) -> Vec<Outcome> {
    let broker = &session.broker;
    let topic = crate::internal_topics::refuse_internal(name, "produce to")
        .and_then(|()| broker.topic(name));
    let topic = match topic {
        Ok(topic) => topic,
        Err(error) => return refuse_missing(session, name, partitions, &error),
    };
    let mut outcomes: Vec<Outcome> = Vec::with_capacity(partitions.len());
    for (index, records) in partitions {
        let result = async {
            let partition = u32::try_from(index)
                .map_err(|_| BrokerError::PartitionOutOfRange {
                    topic: name.to_string(),
                    partition: u32::MAX,
                    partitions: topic.partition_count(),
                })
                .and_then(|p| topic.partition(p).map(|partition| (p, partition)));
            let (number, partition) = partition?;
            if outcomes.iter().any(|o| o.index == index) {
                return Err(BrokerError::DuplicatePartition {
                    topic: name.to_string(),
                    partition: number,
                });
            }
            let records = records.unwrap_or_default();
            if records.is_empty() {
                return Err(BrokerError::InvalidRequest {
                    topic: name.to_string(),
                    reason: format!("partition {number}: the produce data holds no batch"),
                });
            }
            let partition = std::sync::Arc::clone(partition);
            if acks_all {
                partition.check_min_isr(broker.config().min_insync_replicas(&topic.configs))?;
            }
            let bytes = records.len();
            let (appended, buf) = append_in_sequence(
                broker,
                std::sync::Arc::clone(&partition),
                into_mut(records),
                deadline,
            )
            .await?;
            if acks_all {
                partition
                    .wait_replicated(
                        appended.last_offset,
                        appended.leader_epoch,
                        replicated_deadline,
                        broker.closing_signal(),
                    )
                    .await?;
            }
            topic.metrics.produced(
                Listener::Kafka,
                bytes,
                appended_records(appended.base_offset, appended.last_offset),
            );
            Ok(Stored {
                base_offset: i64::try_from(appended.base_offset).unwrap_or(i64::MAX),
                log_append_time_ms: log_append_time_ms(&appended, &buf),
                log_start_offset: i64::try_from(appended.log_start_offset).unwrap_or(i64::MAX),
            })
        }
        .await;
        let result = result.map_err(|error| {
            tracing::debug!(topic = name, partition = index, %error, "Kafka produce failed");
            Refusal::of_append(&error)
        });
        outcomes.push(Outcome { index, result });
    }
    outcomes
}

/// Counts each failed partition's error code.
fn count_errors(session: &Session, outcomes: &[Outcome]) {
    let metrics = &session.broker.metrics().requests;
    for outcome in outcomes {
        if let Err(refusal) = &outcome.result {
            metrics.error(Listener::Kafka, "Produce", kafka_error_name(refusal.code));
        }
    }
}

fn refuse_all(partitions: Vec<PartitionRecords>, code: i16, message: &str) -> Vec<Outcome> {
    partitions
        .into_iter()
        .map(|(index, _)| Outcome {
            index,
            result: Err(Refusal::new(code, message.to_string())),
        })
        .collect()
}

/// Refuses every partition of a topic this broker does not have: those the
/// cluster's metadata places elsewhere (or here, not created yet) are
/// NOT_LEADER_OR_FOLLOWER, as Kafka answers, the rest `error`.
fn refuse_missing(
    session: &Session,
    name: &str,
    partitions: Vec<PartitionRecords>,
    error: &BrokerError,
) -> Vec<Outcome> {
    partitions
        .into_iter()
        .map(|(index, _)| {
            let elsewhere = matches!(error, BrokerError::UnknownTopic { .. })
                .then(|| leaders::not_created_here(&session.broker, name, index))
                .flatten();
            let error = elsewhere.as_ref().unwrap_or(error);
            Outcome {
                index,
                result: Err(Refusal::new(error_code::code(error), error.to_string())),
            }
        })
        .collect()
}

fn topic_response(name: String, outcomes: Vec<Outcome>, version: i16) -> TopicProduceResponse {
    let partitions = outcomes
        .into_iter()
        .map(|outcome| {
            let response = PartitionProduceResponse::default().with_index(outcome.index);
            match outcome.result {
                Ok(stored) => {
                    let response = response
                        .with_error_code(error_code::NONE)
                        .with_base_offset(stored.base_offset)
                        .with_log_append_time_ms(stored.log_append_time_ms);
                    if version >= 5 {
                        response.with_log_start_offset(stored.log_start_offset)
                    } else {
                        response
                    }
                }
                Err(refusal) => {
                    let response = response.with_error_code(refusal.code).with_base_offset(-1);
                    if version < 8 {
                        return response;
                    }
                    let record_errors = refusal
                        .records
                        .iter()
                        .map(|&index| {
                            BatchIndexAndErrorMessage::default()
                                .with_batch_index(i32::try_from(index).unwrap_or(i32::MAX))
                                .with_batch_index_error_message(Some(StrBytes::from_static_str(
                                    "the record has no key, and the topic is compacted",
                                )))
                        })
                        .collect();
                    response
                        .with_error_message(Some(StrBytes::from_string(refusal.message)))
                        .with_record_errors(record_errors)
                }
            }
        })
        .collect();
    TopicProduceResponse::default()
        .with_name(TopicName(StrBytes::from_string(name)))
        .with_partition_responses(partitions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ApiKey, RequestHeader, TopicName};
    use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};

    #[test]
    fn a_single_partition_s_records_are_taken_over_from_the_receive_buffer() {
        let records = Bytes::from(vec![7u8; 4096]);
        let request = ProduceRequest::default()
            .with_acks(1)
            .with_transactional_id(None)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str("t")))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(records.clone()))])]);
        let header = RequestHeader::default()
            .with_request_api_key(ApiKey::Produce as i16)
            .with_request_api_version(9)
            .with_client_id(Some(StrBytes::from_static_str("client")));
        let mut received = BytesMut::new();
        header
            .encode(&mut received, ProduceRequest::header_version(9))
            .unwrap();
        request.encode(&mut received, 9).unwrap();
        // As the connection reads and decodes a frame.
        let mut frame = received.freeze();
        let start = frame.as_ptr() as usize;
        let end = start + frame.len();
        let decoded_header =
            RequestHeader::decode(&mut frame, ProduceRequest::header_version(9)).unwrap();
        drop(decoded_header);
        let decoded = ProduceRequest::decode(&mut frame, 9).unwrap();
        drop(frame);
        let mut topics = records_by_topic(decoded);
        let (_, mut partitions) = topics.pop().unwrap();
        let (_, taken) = partitions.pop().unwrap();
        let taken = taken.unwrap();
        assert_eq!(taken, records);
        let pointer = taken.as_ptr() as usize;
        let buf = taken
            .try_into_mut()
            .expect("no other reference to the frame is left");
        assert!(
            (start..end).contains(&pointer),
            "the records were not copied out"
        );
        assert_eq!(buf.as_ptr() as usize, pointer);
    }
}
