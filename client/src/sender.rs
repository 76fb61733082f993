//! The producer's background task: takes sendable batches from the
//! accumulator, encodes them (compression and CRC, off the executor when
//! compressing), sends one request per partition (`raw_produce`: batches
//! are body chunks, never copied into the request) with retries and backoff,
//! and resolves every record's delivery future. After a failure that leaves
//! a gap in a partition's sequence it bumps the producer epoch (see
//! `accumulator`).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use weir_log::batch::{BatchBuilder, Compression};

use super::accumulator::{Job, JobEnd, PendingBatch, RequestSlot};
use super::cluster_metadata::{is_not_leader, is_unreachable};
use super::delivery::Stored;
use super::error::ClientError;
use super::producer::{produce_client, Acks, ProducerShared};
use super::raw_produce::{self, RawProduce};
use super::written::{SignallingChannel, WrittenSignal};
use crate::proto::produce_client::ProduceClient;
use crate::proto::{self, ErrorCode};

/// Runs until the producer is closed and every batch is done.
pub(crate) async fn run(shared: Arc<ProducerShared>) {
    loop {
        if let Err(error) = bump_epoch_if_needed(&shared).await {
            // Nothing is sent until the bump succeeds; batches that wait
            // past their delivery timeout fail (none of them was stored), so
            // their memory is given back and `send` never waits forever.
            tracing::warn!(%error, "cannot bump the producer epoch; will retry");
            expire_waiting(&shared, &error);
            let finished = shared
                .accumulator
                .lock()
                .map_or(true, |a| a.closed && a.outstanding_batches == 0);
            if finished {
                shared.idle.notify_waiters();
                return;
            }
            tokio::time::sleep(shared.config.retry_backoff).await;
            continue;
        }
        let (jobs, next_due, finished) = {
            let Ok(mut accumulator) = shared.accumulator.lock() else {
                return;
            };
            let (jobs, next_due) = accumulator.collect(&shared.config, Instant::now());
            let finished = accumulator.closed && accumulator.outstanding_batches == 0;
            (jobs, next_due, finished)
        };
        for job in jobs {
            tokio::spawn(dispatch(Arc::clone(&shared), job));
        }
        if finished {
            shared.idle.notify_waiters();
            return;
        }
        match next_due {
            Some(due) => {
                tokio::select! {
                    () = shared.wake.notified() => {}
                    () = tokio::time::sleep_until(due.into()) => {}
                }
            }
            None => shared.wake.notified().await,
        }
    }
}

/// Asks the broker for the next epoch of the producer id once a bump is
/// pending and no request of the old epoch is in flight (KIP-360). A fenced
/// or unknown id (another instance bumped it, or the broker never knew it)
/// or exhausted epochs get a new producer id instead.
async fn bump_epoch_if_needed(shared: &ProducerShared) -> Result<(), ClientError> {
    let producer = {
        let accumulator = shared.accumulator.lock().map_err(|_| ClientError::Closed)?;
        if !accumulator.ready_to_bump() {
            return Ok(());
        }
        accumulator.producer
    };
    let bump = proto::InitProducerIdRequest {
        producer_id: producer.map(|(id, _)| id),
        producer_epoch: producer.map(|(_, epoch)| i32::from(epoch)),
        ..Default::default()
    };
    // Any broker hands out producer ids and epochs: in a cluster, the next
    // one is asked when the first cannot be reached (it may have stopped).
    let mut brokers = shared.metadata.any_brokers().into_iter();
    let response = loop {
        let channel = brokers.next().ok_or(ClientError::Closed)?;
        let last = brokers.len() == 0;
        // Bounded like a produce request: a broker that took the call and
        // never answers (stopped, hung) must not hold every send behind it.
        let asked = tokio::time::timeout(
            shared.config.request_timeout,
            init_producer_id(produce_client(channel), bump.clone()),
        )
        .await
        .unwrap_or_else(|_| {
            Err(ClientError::Status {
                code: tonic::Code::Unavailable,
                message: format!(
                    "no answer to InitProducerId within {} ms",
                    shared.config.request_timeout.as_millis()
                ),
            })
        });
        match asked {
            Err(error) if !last && is_unreachable(&error) => {
                tracing::debug!(%error, "cannot reach a broker for the epoch bump; asking the next");
            }
            outcome => break outcome?,
        }
    };
    let epoch = i16::try_from(response.producer_epoch).map_err(|_| {
        ClientError::InvalidArgument(format!(
            "broker returned producer epoch {} outside the i16 range",
            response.producer_epoch
        ))
    })?;
    shared
        .accumulator
        .lock()
        .map_err(|_| ClientError::Closed)?
        .set_producer((response.producer_id, epoch));
    tracing::info!(
        producer_id = response.producer_id,
        producer_epoch = epoch,
        "bumped the producer epoch"
    );
    Ok(())
}

/// Asks `client` for the next epoch; a fenced or unknown id takes a new one.
async fn init_producer_id(
    mut client: ProduceClient<SignallingChannel>,
    bump: proto::InitProducerIdRequest,
) -> Result<proto::InitProducerIdResponse, ClientError> {
    match client.init_producer_id(bump).await {
        Ok(response) => Ok(response.into_inner()),
        Err(status)
            if matches!(
                status.code(),
                tonic::Code::FailedPrecondition | tonic::Code::InvalidArgument
            ) =>
        {
            tracing::warn!(error = %status.message(), "epoch bump refused; taking a new producer id");
            Ok(client
                .init_producer_id(proto::InitProducerIdRequest::default())
                .await?
                .into_inner())
        }
        Err(status) => Err(status.into()),
    }
}

/// Fails the batches that have waited for the epoch bump past their delivery
/// timeout. None of them was stored: they were never sent, or refused.
fn expire_waiting(shared: &ProducerShared, cause: &ClientError) {
    let Some(created_before) = Instant::now().checked_sub(shared.config.delivery_timeout) else {
        return;
    };
    let Ok(mut accumulator) = shared.accumulator.lock() else {
        return;
    };
    let expired = accumulator.take_expired(created_before);
    if expired.is_empty() {
        return;
    }
    let error = ClientError::NotSent {
        reason: format!(
            "not sent within the delivery timeout of {} ms (nothing was stored): the producer epoch could not be bumped: {cause}",
            shared.config.delivery_timeout.as_millis()
        ),
    };
    let mut released = 0;
    for batch in expired {
        released += batch.reserved_bytes;
        batch.done.complete(Err(error.clone()));
    }
    if accumulator.outstanding_batches == 0 {
        shared.idle.notify_waiters();
    }
    drop(accumulator);
    shared.memory.add_permits(released);
}

/// Sends one partition's batches and settles their delivery futures.
async fn dispatch(shared: Arc<ProducerShared>, job: Job) {
    // What the slot says is freed whatever becomes of the batches: an encode
    // that fails hands none of them back.
    let Job { slot, batches } = job;
    let (topic, partition) = (Arc::clone(&slot.topic), slot.partition);
    let (batches, encoded) = encode(&shared, batches, slot.producer).await;
    let acks_none = shared.config.acks == Acks::None;
    let outcome = match encoded {
        Ok(bytes) if acks_none => {
            // Futures resolve once the request is written; the request
            // stays in flight (it holds its sequences) until the answer.
            let (signal, written) = WrittenSignal::new();
            let send = send_with_retries(&shared, &topic, partition, bytes, Some(signal));
            tokio::pin!(send);
            let outcome = tokio::select! {
                biased;
                outcome = &mut send => outcome,
                Ok(()) = written => {
                    for batch in &batches {
                        batch.done.settle(Ok(None));
                    }
                    send.await
                }
            };
            outcome
        }
        Ok(bytes) => send_with_retries(&shared, &topic, partition, bytes, None).await,
        Err(error) => Err(Delivery::Refused(error)),
    };
    let end = match &outcome {
        Ok(_) => JobEnd::Stored,
        Err(delivery) => delivery.end(),
    };
    if acks_none {
        if let Err(error) = &outcome {
            tracing::warn!(%topic, partition, error = %error.error(), "acks=0 produce failed");
        }
    }
    let mut released = 0;
    if let Ok(mut accumulator) = shared.accumulator.lock() {
        if let Some(batches) = accumulator.finish(&slot, end, batches) {
            released = settle(&mut accumulator, &slot, batches, outcome, acks_none);
        } else {
            tracing::debug!(%topic, partition, "batches refused behind a failed one; sent again after the epoch bump");
        }
        if accumulator.outstanding_batches == 0 {
            shared.idle.notify_waiters();
        }
    }
    shared.memory.add_permits(released);
    shared.wake.notify_one();
}

/// Resolves the batches' delivery futures and keeps their builders; returns
/// the buffer memory they held.
fn settle(
    accumulator: &mut super::accumulator::Accumulator,
    slot: &RequestSlot,
    batches: Vec<PendingBatch>,
    outcome: Result<Option<Stored>, Delivery>,
    acks_none: bool,
) -> usize {
    let mut released = 0;
    let error = outcome.as_ref().err().map(|delivery| delivery.to_error());
    let mut next = outcome.ok().flatten().filter(|_| !acks_none);
    for batch in batches {
        released += batch.reserved_bytes;
        match &error {
            // acks=0: a failure is only logged (the futures resolved on write).
            Some(_) if acks_none => batch.done.complete(Ok(None)),
            Some(error) => batch.done.complete(Err(error.clone())),
            None => {
                batch.done.complete(Ok(next));
                next = next.map(|stored| Stored {
                    base_offset: stored.base_offset + u64::from(batch.records),
                    ..stored
                });
            }
        }
        accumulator.recycle(slot, batch.builder);
    }
    released
}

/// A failed delivery: whether the broker may have stored the batches.
#[derive(Debug)]
enum Delivery {
    /// The broker validated and refused the batches: nothing was stored.
    Refused(ClientError),
    /// Refused as out of order or of a fenced epoch: nothing was stored.
    OutOfSequence(ClientError),
    /// Retries ran out, or the broker failed to store them: the batches may
    /// or may not be stored.
    Unknown(ClientError),
}

impl Delivery {
    /// Sorts a failure the producer will not retry by what it proves.
    fn classify(error: ClientError) -> Delivery {
        match &error {
            ClientError::Partition { code, .. } => match code {
                ErrorCode::OutOfOrderSequence | ErrorCode::ProducerFenced => {
                    Delivery::OutOfSequence(error)
                }
                ErrorCode::UnknownPartition
                | ErrorCode::CorruptBatch
                | ErrorCode::BatchTooLarge
                | ErrorCode::OffsetOutOfRange
                | ErrorCode::InvalidTimestamp
                | ErrorCode::InvalidRecord
                | ErrorCode::InvalidTxnState => Delivery::Refused(error),
                _ => Delivery::Unknown(error),
            },
            // Refusals of the request before any append: bad arguments, an
            // unknown topic, a request too large.
            ClientError::Status {
                code:
                    tonic::Code::InvalidArgument
                    | tonic::Code::NotFound
                    | tonic::Code::OutOfRange
                    | tonic::Code::ResourceExhausted
                    | tonic::Code::Unimplemented
                    | tonic::Code::PermissionDenied
                    | tonic::Code::Unauthenticated,
                ..
            } => Delivery::Refused(error),
            _ => Delivery::Unknown(error),
        }
    }

    fn end(&self) -> JobEnd {
        match self {
            Delivery::Refused(_) => JobEnd::Refused,
            Delivery::OutOfSequence(ClientError::Partition {
                code: ErrorCode::OutOfOrderSequence,
                ..
            }) => JobEnd::OutOfOrder,
            Delivery::OutOfSequence(_) => JobEnd::OutOfSequence,
            Delivery::Unknown(_) => JobEnd::Unknown,
        }
    }

    fn error(&self) -> &ClientError {
        match self {
            Delivery::Refused(e) | Delivery::OutOfSequence(e) | Delivery::Unknown(e) => e,
        }
    }

    /// The error the batch's records fail with: one whose outcome is unknown
    /// says so.
    fn to_error(&self) -> ClientError {
        match self {
            Delivery::Unknown(error @ ClientError::DeliveryTimeout { .. }) => error.clone(),
            Delivery::Unknown(error) => ClientError::MaybeStored {
                reason: error.to_string(),
            },
            Delivery::Refused(e) | Delivery::OutOfSequence(e) => e.clone(),
        }
    }
}

/// Encodes the batches (stamping producer id and sequences), one `Bytes` each.
/// Compression runs on the blocking pool; CRC alone is cheap enough here. A
/// batch sent before is re-stamped instead.
async fn encode(
    shared: &ProducerShared,
    mut batches: Vec<PendingBatch>,
    producer: Option<(i64, i16, i32)>,
) -> (Vec<PendingBatch>, Result<Vec<Bytes>, ClientError>) {
    let compressed = shared.config.compression != Compression::None
        && batches.iter().any(|batch| batch.encoded.is_none());
    let work = move || {
        let result = encode_batches(&mut batches, producer);
        (batches, result)
    };
    if compressed {
        match tokio::task::spawn_blocking(work).await {
            Ok(done) => done,
            Err(e) => (
                Vec::new(),
                Err(ClientError::InvalidArgument(format!(
                    "encoding task failed: {e}"
                ))),
            ),
        }
    } else {
        work()
    }
}

fn encode_batches(
    batches: &mut [PendingBatch],
    producer: Option<(i64, i16, i32)>,
) -> Result<Vec<Bytes>, ClientError> {
    let mut sequence = producer.map(|(_, _, first)| first);
    let mut encoded: Vec<Bytes> = Vec::with_capacity(batches.len());
    for batch in batches.iter_mut() {
        let stamp = producer
            .zip(sequence)
            .map(|((id, epoch, _), seq)| (id, epoch, seq));
        let bytes = match (batch.encoded.take(), stamp) {
            (Some(sent), Some((id, epoch, seq))) => {
                // Sent before under an older epoch: only the header changes.
                let mut buf = bytes::BytesMut::from(&sent[..]);
                weir_log::batch::set_producer(&mut buf, id, epoch, seq);
                buf.freeze()
            }
            (Some(sent), None) => sent,
            (None, stamp) => {
                if let Some((id, epoch, seq)) = stamp {
                    let builder =
                        std::mem::replace(&mut batch.builder, BatchBuilder::new(Compression::None));
                    batch.builder = builder.with_producer(id, epoch, seq);
                }
                batch.builder.build().map_err(|e| {
                    ClientError::InvalidArgument(format!("cannot encode a batch: {e}"))
                })?
            }
        };
        if let Some(seq) = sequence {
            let records = i32::try_from(batch.records).unwrap_or(i32::MAX);
            sequence = Some(weir_proto::sequence::increment_sequence(seq, records));
        }
        batch.encoded = Some(bytes.clone());
        encoded.push(bytes);
    }
    // Sent back to back as body chunks: never concatenated.
    Ok(encoded)
}

/// Sends one partition's request until it is acknowledged, refused, or the
/// retries or the delivery timeout run out. Returns the base offset.
async fn send_with_retries(
    shared: &ProducerShared,
    topic: &str,
    partition: u32,
    batches: Vec<Bytes>,
    mut written: Option<WrittenSignal>,
) -> Result<Option<Stored>, Delivery> {
    let config = &shared.config;
    let acks = match config.acks {
        Acks::None => proto::Acks::None,
        Acks::Leader => proto::Acks::Leader,
        Acks::All => proto::Acks::All,
    };
    let request = RawProduce {
        topic: topic.to_string(),
        acks: acks.into(),
        timeout_ms: u32::try_from(config.request_timeout.as_millis()).unwrap_or(u32::MAX),
        partition,
        batches,
    };
    let started = Instant::now();
    let mut attempts = 0u32;
    // Whether an earlier attempt may have been stored without an answer (a timeout, a
    // lost connection): a refusal of a later attempt then proves nothing about the batch,
    // and giving its sequences back could make the broker take the next batch for a
    // retry of this one (as Kafka, such an outcome is never taken as "not stored").
    let mut maybe_stored = false;
    loop {
        attempts += 1;
        // The partition's leader as last learnt (the bootstrap broker until
        // a broker says it does not lead it).
        let generation = shared.metadata.generation();
        let (leader, tried) = shared.metadata.leader(topic, partition);
        let attempt = tokio::time::timeout(
            config.request_timeout,
            raw_produce::produce(&SignallingChannel::new(leader), &request, written.take()),
        )
        .await;
        let error = match attempt {
            Ok(Ok(response)) => match partition_result(topic, partition, response) {
                Ok(stored) => return Ok(Some(stored)),
                Err(error) => error,
            },
            Ok(Err(status)) => ClientError::from(status),
            Err(_) => ClientError::Status {
                code: tonic::Code::DeadlineExceeded,
                message: format!(
                    "topic {topic:?} partition {partition}: no response within {} ms",
                    config.request_timeout.as_millis()
                ),
            },
        };
        let timed_out = matches!(error.code(), Some(tonic::Code::DeadlineExceeded));
        // A broker that has not yet applied the topic (a new leader behind on the
        // metadata log) answers that it does not exist, though the cluster's
        // metadata has it: a leader still catching up, retried as a leader change
        // (Kafka's producer retries UNKNOWN_TOPIC_OR_PARTITION alike).
        let not_yet_applied = error.is_not_found() && shared.metadata.knows_topic(topic);
        let retriable = error.is_retriable() || timed_out || not_yet_applied;
        if !retriable {
            return Err(match Delivery::classify(error) {
                Delivery::Refused(error) if maybe_stored => Delivery::Unknown(error),
                delivery => delivery,
            });
        }
        // A broker out of memory did not read the request, and one that does
        // not lead the partition refused it before any append: this attempt
        // stored nothing, so the retry carries the same sequence numbers and,
        // if every attempt ended so, the batches can be given up as unsent.
        let not_leader = is_not_leader(&error) || not_yet_applied;
        let not_read = matches!(error, ClientError::MemoryExhausted { .. }) || not_leader;
        maybe_stored |= !not_read;
        // The leader moved, cannot be reached, or did not answer in time (a
        // broker stopped mid-request answers nothing): learn where it is now
        // (coalesced with the other partitions' refreshes) before the retry,
        // which carries the same producer id, epoch and sequences; the new
        // leader has the producer's state from the replicated log.
        let mut new_leader = false;
        if not_leader || ((is_unreachable(&error) || timed_out) && shared.metadata.in_cluster()) {
            shared
                .metadata
                .refresh(generation, config.retry_backoff)
                .await;
            let (_, now) = shared.metadata.leader(topic, partition);
            new_leader = now != 0 && now != tried;
        }
        if attempts > config.retries || started.elapsed() >= config.delivery_timeout {
            if !maybe_stored {
                let why = if not_leader {
                    "no broker it was sent to led the partition"
                } else {
                    "the broker's memory stayed full"
                };
                return Err(Delivery::Refused(ClientError::NotSent {
                    reason: format!(
                        "topic {topic:?} partition {partition}: not sent: {why} through \
                         {attempts} attempts in {} ms (nothing was stored): {error}",
                        started.elapsed().as_millis()
                    ),
                }));
            }
            return Err(Delivery::Unknown(ClientError::DeliveryTimeout {
                topic: topic.to_string(),
                partition,
                timeout_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                attempts,
                last_error: error.to_string(),
            }));
        }
        // `sent_to`: the broker the attempt went to (0: the bootstrap broker).
        tracing::debug!(%topic, partition, attempts, sent_to = tried, %error, new_leader, "retrying produce");
        // A leader just learnt is tried at once (Kafka's KIP-951); while the
        // metadata still names a leader that cannot be reached, the wait
        // grows to 4 backoffs, not 10, as each retry also asks for the
        // metadata that names the new leader once the controller elects it.
        if !new_leader {
            let steps = if shared.metadata.in_cluster() { 4 } else { 10 };
            let backoff = config.retry_backoff.saturating_mul(attempts.min(steps));
            tokio::time::sleep(backoff).await;
        }
    }
}

fn partition_result(
    topic: &str,
    partition: u32,
    response: proto::ProduceResponse,
) -> Result<Stored, ClientError> {
    let result = response
        .partitions
        .into_iter()
        .find(|r| r.partition == partition)
        .ok_or_else(|| ClientError::Status {
            code: tonic::Code::Internal,
            message: format!(
                "topic {topic:?} partition {partition}: the broker's answer has no result for it"
            ),
        })?;
    match result.error_code() {
        ErrorCode::None => Ok(Stored {
            base_offset: result.base_offset,
            log_append_time_ms: result.log_append_time_ms,
        }),
        code => Err(ClientError::Partition {
            topic: topic.to_string(),
            partition,
            code,
            message: result.error_message,
        }),
    }
}
