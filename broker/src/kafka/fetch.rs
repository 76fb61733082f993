//! Fetch (v4-v12): stored batches as they are on disk, never past the high
//! watermark, through the same reads as gRPC's fetch (`rpc::fetch`). A fetch
//! from an offset inside a batch returns that whole batch (the reader skips
//! the records before its offset, as Kafka's clients do); the first batch is
//! returned whole even past `max_bytes` (KIP-74).
//!
//! One topic, the common case, long-polls inside `rpc::fetch` (woken per
//! partition by appends). Several topics: each round reads them all at once
//! within what is left of `max_bytes`, and while the round holds fewer than
//! `min_bytes` it waits for any of their partitions to advance, up to
//! `max_wait_ms` (capped at `fetch_wait_ms_max`, as Kafka caps rather than
//! refuses).
//!
//! Fetch sessions (KIP-227) are not kept: the response's session id is 0,
//! which tells a client to send full fetch requests.
//!
//! Consumers read from leaders only (Kafka before KIP-392): a partition this
//! broker does not lead answers NOT_LEADER_OR_FOLLOWER, from v12 with the
//! leader and epoch the cluster's metadata names (`current_leader`).

use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use kafka_protocol::messages::fetch_request::FetchTopic;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use kafka_protocol::ResponseError;
use tokio::sync::watch;
use tokio::time::Instant;

use super::connection::{Session, MEMORY_WAIT};
use super::frame::Shared;
use super::{error_code, leaders};
use crate::broker::Broker;
use crate::error::BrokerError;
use crate::memory_pool::Reservation;
use crate::metrics::{kafka_error_name, Listener, TopicMetrics};
use crate::partition::ReadInto;
use crate::proto;

/// A response, the records in it (sent without a copy), and the pool
/// memory they hold until written.
pub struct Fetched {
    pub response: FetchResponse,
    pub records: Vec<Shared>,
    pub memory: Reservation,
}

/// One requested partition's answer, in request order.
struct Slot {
    partition: i32,
    data: PartitionData,
}

pub async fn handle(session: &mut Session, request: FetchRequest, version: i16) -> Fetched {
    let broker = Arc::clone(&session.broker);
    let rotation = session.next_fetch_rotation();
    let wait_ms = u32::try_from(request.max_wait_ms)
        .unwrap_or(0)
        .min(broker.config().fetch_wait_ms_max);
    let deadline = Instant::now() + Duration::from_millis(u64::from(wait_ms));
    let min_bytes = u32::try_from(request.min_bytes).unwrap_or(0);
    let max_bytes = u32::try_from(request.max_bytes).unwrap_or(0);
    let mut closing = broker.closing_signal();
    let single = request.topics.len() == 1;
    loop {
        // Subscribed before the read, so an append after it is not missed.
        let signals = if single {
            Vec::new()
        } else {
            subscribe(&broker, &request.topics)
        };
        let round = read_round(
            &broker,
            &request.topics,
            RoundLimits {
                // One topic long-polls inside the gRPC fetch; several are
                // read without waiting and waited for here.
                wait_ms: if single {
                    u32::try_from(
                        deadline
                            .saturating_duration_since(Instant::now())
                            .as_millis(),
                    )
                    .unwrap_or(u32::MAX)
                } else {
                    0
                },
                min_bytes,
                max_bytes,
                rotation,
            },
            version,
        )
        .await;
        let enough = round.bytes >= usize::try_from(min_bytes).unwrap_or(usize::MAX)
            || round.failed
            || single
            || signals.is_empty();
        let shutting_down = *closing.borrow();
        if enough || Instant::now() >= deadline || shutting_down {
            // Counted once, for the round that is answered.
            round.count(&broker);
            return round.into_fetched(version);
        }
        drop(round);
        let mut changed: FuturesUnordered<_> = signals
            .into_iter()
            .map(|mut signal| async move { signal.changed().await })
            .collect();
        tokio::select! {
            _ = changed.next() => {}
            () = tokio::time::sleep_until(deadline) => {}
            _ = closing.changed() => {}
        }
    }
}

fn subscribe(broker: &Broker, topics: &[FetchTopic]) -> Vec<watch::Receiver<u64>> {
    let mut signals = Vec::new();
    for requested in topics {
        let Ok(topic) = broker.topic(requested.topic.0.as_str()) else {
            continue;
        };
        for query in &requested.partitions {
            if let Some(partition) = u32::try_from(query.partition)
                .ok()
                .and_then(|p| topic.partition(p).ok())
            {
                signals.push(partition.subscribe());
            }
        }
    }
    signals
}

#[derive(Clone, Copy)]
struct RoundLimits {
    wait_ms: u32,
    min_bytes: u32,
    max_bytes: u32,
    rotation: usize,
}

/// What one read of every requested topic gave.
struct Round {
    topics: Vec<(FetchTopic, Vec<Slot>)>,
    records: Vec<Shared>,
    /// Each topic's traffic counters and the batches read for it.
    sent: Vec<(Arc<TopicMetrics>, bytes::Bytes)>,
    memory: Reservation,
    bytes: usize,
    failed: bool,
}

impl Round {
    /// Counts the batches sent per topic and each failed partition's error.
    fn count(&self, broker: &Broker) {
        for (topic_metrics, batches) in &self.sent {
            topic_metrics.fetched(Listener::Kafka, batches);
        }
        let metrics = &broker.metrics().requests;
        for (_, slots) in &self.topics {
            for slot in slots
                .iter()
                .filter(|s| s.data.error_code != error_code::NONE)
            {
                metrics.error(
                    Listener::Kafka,
                    "Fetch",
                    kafka_error_name(slot.data.error_code),
                );
            }
        }
    }

    fn into_fetched(self, version: i16) -> Fetched {
        let responses = self
            .topics
            .into_iter()
            .map(|(requested, slots)| {
                FetchableTopicResponse::default()
                    .with_topic(requested.topic)
                    .with_partitions(
                        slots
                            .into_iter()
                            .map(|slot| {
                                debug_assert_eq!(slot.data.partition_index, slot.partition);
                                slot.data
                            })
                            .collect(),
                    )
            })
            .collect();
        let response = FetchResponse::default().with_responses(responses);
        // v7 added the top-level error code and session id; 0 is "no
        // session", so every fetch is a full one.
        debug_assert!(version >= 7 || response.session_id == 0);
        Fetched {
            response,
            records: self.records,
            memory: self.memory,
        }
    }
}

async fn read_round(
    broker: &Broker,
    topics: &[FetchTopic],
    limits: RoundLimits,
    version: i16,
) -> Round {
    let mut round = Round {
        topics: Vec::with_capacity(topics.len()),
        records: Vec::new(),
        sent: Vec::new(),
        memory: broker.memory_pool().nothing(),
        bytes: 0,
        failed: false,
    };
    for requested in topics {
        let budget = limits
            .max_bytes
            .saturating_sub(u32::try_from(round.bytes).unwrap_or(u32::MAX));
        let mut slots = if budget == 0 && round.bytes > 0 {
            // The response is full: the rest answer with no records.
            requested
                .partitions
                .iter()
                .map(|query| empty_slot(broker, requested, query.partition, version))
                .collect()
        } else {
            read_topic(broker, requested, limits, budget, version, &mut round).await
        };
        if version >= 12 {
            for slot in slots
                .iter_mut()
                .filter(|s| s.data.error_code == ResponseError::NotLeaderOrFollower.code())
            {
                slot.data.current_leader =
                    leaders::current_leader(broker, requested.topic.0.as_str(), slot.partition);
            }
        }
        round.topics.push((requested.clone(), slots));
    }
    round
}

/// Reads one topic's valid partitions through the gRPC fetch; the others
/// are answered with their error at once.
async fn read_topic(
    broker: &Broker,
    requested: &FetchTopic,
    limits: RoundLimits,
    budget: u32,
    version: i16,
    round: &mut Round,
) -> Vec<Slot> {
    let name = requested.topic.0.as_str();
    let mut slots: Vec<Slot> = Vec::with_capacity(requested.partitions.len());
    let mut queries = Vec::with_capacity(requested.partitions.len());
    for query in &requested.partitions {
        let refused = match (
            u32::try_from(query.partition),
            u64::try_from(query.fetch_offset),
        ) {
            (Err(_), _) => Some(ResponseError::UnknownTopicOrPartition.code()),
            (_, Err(_)) => Some(ResponseError::OffsetOutOfRange.code()),
            (Ok(partition), Ok(offset)) => {
                if queries
                    .iter()
                    .any(|q: &proto::PartitionFetchRequest| q.partition == partition)
                {
                    Some(ResponseError::InvalidRequest.code())
                } else {
                    queries.push(proto::PartitionFetchRequest {
                        partition,
                        offset,
                        max_bytes: u32::try_from(query.partition_max_bytes).unwrap_or(0),
                    });
                    None
                }
            }
        };
        let data = PartitionData::default()
            .with_partition_index(query.partition)
            .with_error_code(refused.unwrap_or(error_code::NONE));
        round.failed |= refused.is_some();
        slots.push(Slot {
            partition: query.partition,
            data,
        });
    }
    if queries.is_empty() {
        return slots;
    }
    let grpc_request = proto::FetchRequest {
        topic: name.to_string(),
        max_wait_ms: limits.wait_ms,
        min_bytes: limits.min_bytes,
        max_bytes: budget,
        partitions: queries,
    };
    let fetched = crate::rpc::fetch::handle(
        broker,
        grpc_request,
        MEMORY_WAIT,
        limits.rotation,
        ReadInto::Mapped,
    )
    .await;
    match fetched {
        Ok(mut fetched) => {
            round.memory.absorb(fetched.memory);
            for result in fetched.response.partitions {
                let index = i32::try_from(result.partition).unwrap_or(i32::MAX);
                let Some(slot) = slots
                    .iter_mut()
                    .find(|s| s.partition == index && s.data.error_code == error_code::NONE)
                else {
                    continue;
                };
                round.failed |= result.error_code != i32::from(proto::ErrorCode::None);
                if !result.batches.is_empty() {
                    round.bytes += result.batches.len();
                    round
                        .sent
                        .push((Arc::clone(&fetched.topic_metrics), result.batches.clone()));
                    let slice = fetched
                        .slices
                        .iter()
                        .position(|(partition, _)| *partition == result.partition)
                        .map(|at| fetched.slices.swap_remove(at).1);
                    round.records.push(Shared {
                        bytes: result.batches.clone(),
                        slice,
                    });
                }
                slot.data = partition_data(index, &result, version);
            }
        }
        Err(error) => {
            tracing::debug!(topic = name, %error, "Kafka fetch failed");
            round.failed = true;
            let code = error_code::code(&error);
            let unknown_here = matches!(error, BrokerError::UnknownTopic { .. });
            for slot in slots
                .iter_mut()
                .filter(|s| s.data.error_code == error_code::NONE)
            {
                // A topic the cluster has and this broker has not created yet.
                slot.data.error_code = if unknown_here
                    && leaders::not_created_here(broker, name, slot.partition).is_some()
                {
                    ResponseError::NotLeaderOrFollower.code()
                } else {
                    code
                };
            }
        }
    }
    slots
}

fn partition_data(index: i32, result: &proto::PartitionFetchResult, version: i16) -> PartitionData {
    let high_watermark = i64::try_from(result.high_watermark).unwrap_or(i64::MAX);
    let data = PartitionData::default()
        .with_partition_index(index)
        .with_error_code(grpc_error_code(result.error_code))
        .with_high_watermark(high_watermark)
        // No transactions: everything below the high watermark is stable.
        .with_last_stable_offset(high_watermark)
        .with_aborted_transactions(Some(Vec::new()))
        .with_records(Some(result.batches.clone()));
    if version >= 5 {
        data.with_log_start_offset(i64::try_from(result.log_start_offset).unwrap_or(i64::MAX))
    } else {
        data
    }
}

/// A partition left out of a full response: no records, its current bounds
/// (or NOT_LEADER_OR_FOLLOWER, which a read would have answered).
fn empty_slot(broker: &Broker, requested: &FetchTopic, partition: i32, version: i16) -> Slot {
    let name = requested.topic.0.as_str();
    let local = broker.topic(name).ok().and_then(|topic| {
        let index = u32::try_from(partition).ok()?;
        topic.partition(index).ok().map(Arc::clone)
    });
    let not_leader = || {
        PartitionData::default()
            .with_partition_index(partition)
            .with_error_code(ResponseError::NotLeaderOrFollower.code())
    };
    let data = match local {
        Some(local) if leaders::leads(&local) => {
            let status = local.status();
            let result = proto::PartitionFetchResult {
                partition: u32::try_from(partition).unwrap_or(0),
                high_watermark: status.high_watermark,
                log_start_offset: status.log_start_offset,
                log_end_offset: status.log_end_offset,
                ..Default::default()
            };
            partition_data(partition, &result, version)
        }
        Some(_) => not_leader(),
        None if leaders::not_created_here(broker, name, partition).is_some() => not_leader(),
        None => PartitionData::default()
            .with_partition_index(partition)
            .with_error_code(ResponseError::UnknownTopicOrPartition.code()),
    };
    Slot { partition, data }
}

/// The Kafka code of a gRPC fetch's per-partition error code.
fn grpc_error_code(code: i32) -> i16 {
    use proto::ErrorCode;
    let kind = match ErrorCode::try_from(code) {
        Ok(ErrorCode::None) => return error_code::NONE,
        Ok(ErrorCode::OffsetOutOfRange) => ResponseError::OffsetOutOfRange,
        Ok(ErrorCode::UnknownPartition | ErrorCode::UnknownTopicOrPartition) => {
            ResponseError::UnknownTopicOrPartition
        }
        Ok(ErrorCode::Storage) => ResponseError::KafkaStorageError,
        Ok(ErrorCode::CorruptBatch) => ResponseError::CorruptMessage,
        Ok(ErrorCode::NotLeaderOrFollower) => ResponseError::NotLeaderOrFollower,
        _ => ResponseError::UnknownServerError,
    };
    kind.code()
}
