//! `Produce.Produce`: appends each partition's batches as received.
//!
//! The broker never decodes records here: the partition log validates the
//! batch bytes (CRC, then every record) before the idempotence check, and
//! appends them rewriting only the base offset and leader epoch in place. The bytes are copied at most once, when the receive
//! buffer is shared and cannot be taken over for that in-place rewrite.
//! Request-level problems (unknown topic, partition out of range) fail the
//! whole request; a failed append is reported in that partition's result.
//!
//! A producer may have several requests for one partition in flight. HTTP/2
//! streams are served concurrently, so a later request can reach the log
//! first: when its first batch is ahead of its producer's sequence, it waits
//! (up to [`EARLIER_BATCHES_WAIT_MAX`], or half the request's timeout if
//! shorter, so the answer comes before the client gives up on the request)
//! for the earlier batches to be appended instead of failing, and the log
//! keeps the order they were sent in.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::futures::Notified;
use tokio::time::Instant;
use weir_log::batch::TimestampType;

use crate::broker::{Broker, Topic};
use crate::error::BrokerError;
use crate::metrics::{appended_records, Listener};
use crate::partition::{Appended, Partition};
use crate::producer_state::is_ahead;
use crate::proto::{Acks, ErrorCode, PartitionProduceResult, ProduceRequest, ProduceResponse};

/// How long a batch ahead of its producer's sequence waits for the earlier
/// ones at most. An earlier request is normally a few milliseconds behind,
/// or one retry backoff (the client's is at most a second); when it was
/// refused for good it never comes, and the later ones should fail well
/// before the client's own request timeout rather than look like a timeout
/// it would retry.
pub const EARLIER_BATCHES_WAIT_MAX: Duration = Duration::from_secs(5);

#[tracing::instrument(name = "produce", skip_all, fields(topic = %request.topic, partitions = request.partitions.len()))]
pub async fn handle(
    broker: &Broker,
    request: ProduceRequest,
) -> Result<ProduceResponse, BrokerError> {
    crate::internal_topics::refuse_internal(&request.topic, "produce to")?;
    check_acks(&request)?;
    let topic = broker.topic(&request.topic)?;
    check_partitions(&topic, &request)?;
    let mut results = Vec::with_capacity(request.partitions.len());
    // One deadline for the whole request, however many partitions wait.
    let deadline = earlier_batches_deadline(request.timeout_ms);
    let acks_all = request.acks == Acks::All as i32;
    let replicated_deadline = replication_deadline(request.timeout_ms);
    for data in request.partitions {
        let partition = Arc::clone(topic.partition(data.partition)?);
        let index = data.partition;
        if acks_all {
            let min_isr = broker.config().min_insync_replicas(&topic.configs);
            if let Err(error) = partition.check_min_isr(min_isr) {
                results.push(result(index, Err(error)));
                continue;
            }
        }
        let appended = if data.batches.is_empty() {
            Err(BrokerError::InvalidRequest {
                topic: topic.name.clone(),
                reason: format!("partition {index}: the produce data holds no batch"),
            })
        } else {
            let bytes = data.batches.len();
            append_in_sequence(
                broker,
                Arc::clone(&partition),
                into_mut(data.batches),
                deadline,
            )
            .await
            .map(|(appended, buf)| {
                topic.metrics.produced(
                    Listener::Grpc,
                    bytes,
                    appended_records(appended.base_offset, appended.last_offset),
                );
                (appended, log_append_time_ms(&appended, &buf))
            })
        };
        let appended = match appended {
            Ok((appended, time)) if acks_all => partition
                .wait_replicated(
                    appended.last_offset,
                    appended.leader_epoch,
                    replicated_deadline,
                    broker.closing_signal(),
                )
                .await
                .map(|()| (appended, time)),
            other => other,
        };
        results.push(result(index, appended));
    }
    Ok(ProduceResponse {
        partitions: results,
    })
}

/// Until when an `acks=all` produce waits for the in-sync replicas: its
/// timeout (Kafka's `request.timeout.ms` default of 30 s when none is given).
pub(crate) fn replication_deadline(timeout_ms: u32) -> tokio::time::Instant {
    tokio::time::Instant::now()
        + match timeout_ms {
            0 => Duration::from_secs(30),
            ms => Duration::from_millis(u64::from(ms)),
        }
}

/// Until when a request's batches ahead of their producer's sequence wait
/// for the earlier ones: half its timeout (0: none given), at most
/// [`EARLIER_BATCHES_WAIT_MAX`].
pub(crate) fn earlier_batches_deadline(timeout_ms: u32) -> Instant {
    Instant::now()
        + match timeout_ms {
            0 => EARLIER_BATCHES_WAIT_MAX,
            ms => Duration::from_millis(u64::from(ms) / 2).min(EARLIER_BATCHES_WAIT_MAX),
        }
}

/// The time the log stamped on the appended batches of a LogAppendTime
/// topic (the log rewrote their headers in `buf`), or -1. A retry that was
/// already stored reports -1, as Kafka does for a duplicate.
pub(crate) fn log_append_time_ms(appended: &Appended, buf: &[u8]) -> i64 {
    if appended.duplicate {
        return -1;
    }
    match weir_log::batch::batches(buf).next() {
        Some(Ok((header, _))) if header.timestamp_type() == TimestampType::LogAppendTime => {
            header.max_timestamp
        }
        _ => -1,
    }
}

/// Appends `buf`; while its first batch is ahead of its producer's sequence
/// (an earlier request of the same producer is still on its way), waits for
/// other appends to the partition and tries again, until `deadline`.
///
/// Most requests append at the first attempt and never touch the partition's
/// `appended` signal. After a first miss the wait is registered and the
/// append tried again at once: an append that ends after the registration
/// wakes it, one that ended before is seen by the new attempt.
pub(crate) async fn append_in_sequence(
    broker: &Broker,
    partition: Arc<Partition>,
    mut buf: BytesMut,
    deadline: Instant,
) -> Result<(Appended, BytesMut), BrokerError> {
    let mut registered: Option<Pin<Box<Notified<'_>>>> = None;
    loop {
        let (result, back) = broker.append(&partition, buf).await?;
        buf = back;
        match result {
            Err(BrokerError::OutOfOrderSequence {
                sequence, expected, ..
            }) if is_ahead(sequence, expected) && first_sequence(&buf) == Some(sequence) => {
                if let Some(appended) = registered.take() {
                    // Checked here, not only by the timeout: on a busy
                    // partition the signal has often fired already, and
                    // `timeout_at` polls it before it looks at the clock.
                    if Instant::now() >= deadline
                        || tokio::time::timeout_at(deadline, appended).await.is_err()
                    {
                        return result.map(|appended| (appended, buf));
                    }
                }
                let mut appended = Box::pin(partition.appended().notified());
                appended.as_mut().enable();
                registered = Some(appended);
            }
            result => return result.map(|appended| (appended, buf)),
        }
    }
}

/// The base sequence of the first batch, if it is an idempotent one.
fn first_sequence(buf: &[u8]) -> Option<i32> {
    let (header, _) = weir_log::batch::batches(buf).next()?.ok()?;
    crate::partition::sequenced(&header).map(|batch| batch.first_sequence)
}

/// The acknowledgement asked for must be one the protocol knows; Kafka refuses
/// any acks but -1, 0 and 1 with INVALID_REQUIRED_ACKS.
fn check_acks(request: &ProduceRequest) -> Result<(), BrokerError> {
    if Acks::try_from(request.acks).is_ok() {
        return Ok(());
    }
    Err(BrokerError::InvalidRequest {
        topic: request.topic.clone(),
        reason: format!(
            "acks {} is not one of ACKS_LEADER (0, Kafka's acks=1), ACKS_NONE (1, acks=0) or ACKS_ALL (2, acks=-1)",
            request.acks
        ),
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
pub(crate) fn into_mut(bytes: Bytes) -> BytesMut {
    bytes
        .try_into_mut()
        .unwrap_or_else(|shared| BytesMut::from(&shared[..]))
}

fn result(
    partition: u32,
    appended: Result<(Appended, i64), BrokerError>,
) -> PartitionProduceResult {
    match appended {
        Ok((appended, log_append_time_ms)) => PartitionProduceResult {
            partition,
            error_code: ErrorCode::None.into(),
            error_message: String::new(),
            base_offset: appended.base_offset,
            last_offset: appended.last_offset,
            log_append_time_ms,
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
