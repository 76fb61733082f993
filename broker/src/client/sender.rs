//! The producer's background task: takes sendable batches from the
//! accumulator, encodes them (compression and CRC, off the executor when
//! compressing), sends one request per partition (`raw_produce`: batches
//! are body chunks, never copied into the request) with retries and backoff,
//! and resolves every record's delivery future.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use weir_log::batch::{BatchBuilder, Compression};

use super::accumulator::{Job, JobEnd, PendingBatch};
use super::delivery::Stored;
use super::error::ClientError;
use super::producer::{Acks, ProducerShared};
use super::raw_produce::{self, RawProduce};
use super::written::WrittenSignal;
use crate::proto::{self, ErrorCode};

/// Runs until the producer is closed and every batch is done.
pub(crate) async fn run(shared: Arc<ProducerShared>) {
    loop {
        if let Err(error) = renew_producer_if_needed(&shared).await {
            // Batches still go out (and fail fast if the broker is gone), so
            // their memory is given back and `send` never waits forever.
            tracing::warn!(%error, "cannot renew the producer id; will retry");
            tokio::time::sleep(shared.config.retry_backoff).await;
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

async fn renew_producer_if_needed(shared: &ProducerShared) -> Result<(), ClientError> {
    let renew = shared
        .accumulator
        .lock()
        .map_err(|_| ClientError::Closed)?
        .renew_producer;
    if !renew {
        return Ok(());
    }
    let response = shared
        .client
        .clone()
        .init_producer_id(proto::InitProducerIdRequest::default())
        .await?
        .into_inner();
    let epoch = i16::try_from(response.producer_epoch).unwrap_or(0);
    shared
        .accumulator
        .lock()
        .map_err(|_| ClientError::Closed)?
        .set_producer((response.producer_id, epoch));
    tracing::info!(
        producer_id = response.producer_id,
        "renewed the producer id"
    );
    Ok(())
}

/// Sends one partition's batches and settles their delivery futures.
async fn dispatch(shared: Arc<ProducerShared>, job: Job) {
    // What the slot says is freed whatever becomes of the batches: an encode
    // that fails hands none of them back.
    let Job { slot, batches } = job;
    let (topic, partition) = (Arc::clone(&slot.topic), slot.partition);
    let (pending, encoded) = encode(&shared, batches, slot.producer).await;
    let mut dones = Vec::with_capacity(pending.len());
    let mut builders = Vec::with_capacity(pending.len());
    let mut records = Vec::with_capacity(pending.len());
    for batch in pending {
        dones.push(batch.done);
        builders.push(batch.builder);
        records.push(batch.records);
    }
    let acks_none = shared.config.acks == Acks::None;
    let mut outcome = match encoded {
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
                    for done in dones.drain(..) {
                        done.complete(Ok(None));
                    }
                    send.await
                }
            };
            outcome
        }
        Ok(bytes) => send_with_retries(&shared, &topic, partition, bytes, None).await,
        Err(error) => Err(Delivery::NotStored(error)),
    };
    let end = match &outcome {
        Ok(_) => JobEnd::Stored,
        Err(Delivery::NotStored(_)) => JobEnd::NotStored,
        Err(Delivery::Unknown(_)) => JobEnd::Unknown,
    };
    if acks_none {
        if let Err(error) = &outcome {
            tracing::warn!(%topic, partition, error = %error.error(), "acks=0 produce failed");
        }
        outcome = Ok(None);
    }
    match outcome {
        Ok(stored) => {
            let mut next = stored;
            for (done, records) in dones.into_iter().zip(records) {
                done.complete(Ok(next));
                next = next.map(|stored| Stored {
                    base_offset: stored.base_offset + u64::from(records),
                    ..stored
                });
            }
        }
        Err(delivery) => {
            let error = delivery.into_error();
            for done in dones {
                done.complete(Err(error.clone()));
            }
        }
    }
    if let Ok(mut accumulator) = shared.accumulator.lock() {
        accumulator.finish(&slot, builders, end);
        if accumulator.outstanding_batches == 0 {
            shared.idle.notify_waiters();
        }
    }
    shared.memory.add_permits(slot.reserved_bytes);
    shared.wake.notify_one();
}

/// A failed delivery: whether the broker may have stored the batches.
#[derive(Debug)]
enum Delivery {
    /// The broker refused the batches: nothing was stored.
    NotStored(ClientError),
    /// Retries ran out on a transport or timeout error: the batches may or may not be stored.
    Unknown(ClientError),
}

impl Delivery {
    fn error(&self) -> &ClientError {
        match self {
            Delivery::NotStored(e) | Delivery::Unknown(e) => e,
        }
    }
    fn into_error(self) -> ClientError {
        match self {
            Delivery::NotStored(e) | Delivery::Unknown(e) => e,
        }
    }
}

/// Encodes the batches (stamping producer id and sequences), one `Bytes` each.
/// Compression runs on the blocking pool; CRC alone is cheap enough here.
async fn encode(
    shared: &ProducerShared,
    mut batches: Vec<PendingBatch>,
    producer: Option<(i64, i16, i32)>,
) -> (Vec<PendingBatch>, Result<Vec<Bytes>, ClientError>) {
    let compressed = shared.config.compression != Compression::None;
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
        if let (Some((id, epoch, _)), Some(seq)) = (producer, sequence) {
            let builder =
                std::mem::replace(&mut batch.builder, BatchBuilder::new(Compression::None));
            batch.builder = builder.with_producer(id, epoch, seq);
            let records = i32::try_from(batch.records).unwrap_or(i32::MAX);
            sequence = Some(crate::producer_state::increment_sequence(seq, records));
        }
        let bytes = batch
            .builder
            .build()
            .map_err(|e| ClientError::InvalidArgument(format!("cannot encode a batch: {e}")))?;
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
    loop {
        attempts += 1;
        let attempt = tokio::time::timeout(
            config.request_timeout,
            raw_produce::produce(&shared.channel, &request, written.take()),
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
        let retriable = error.is_retriable() || timed_out;
        if !retriable {
            return Err(Delivery::NotStored(error));
        }
        if attempts > config.retries || started.elapsed() >= config.delivery_timeout {
            return Err(Delivery::Unknown(ClientError::DeliveryTimeout {
                topic: topic.to_string(),
                partition,
                timeout_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                attempts,
                last_error: error.to_string(),
            }));
        }
        tracing::debug!(%topic, partition, attempts, %error, "retrying produce");
        let backoff = config.retry_backoff.saturating_mul(attempts.min(10));
        tokio::time::sleep(backoff).await;
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
