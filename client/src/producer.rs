//! The producer: `send` puts a record into a per-partition batch and returns
//! a [`DeliveryFuture`] of its partition and offset; a background task sends
//! batches when they are full or have lingered long enough.
//!
//! Memory is bounded: `send` waits for room when `buffer_memory_bytes` of
//! records are not yet acknowledged (backpressure). With idempotence (the
//! default), each partition has up to `max_in_flight_requests` requests in
//! flight; the broker deduplicates retried batches and appends the batches
//! in sequence order, so records stay in order through retries. Without it,
//! one request per partition is in flight. Records arriving while a
//! partition is at its limit pile up in batches the next request carries
//! together.

use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{Notify, Semaphore, TryAcquireError};
use tonic::transport::Channel;
use weir_log::batch::Compression;

use super::accumulator::{Accumulator, Appended, Metadata, TopicState};
use super::cluster_metadata::{is_unreachable, ClusterMetadata};
use super::connection::{bootstrap_list, connect, RESPONSE_BYTES_MAX};
use super::delivery::DeliveryFuture;
use super::error::ClientError;
use super::sender;
use super::written::SignallingChannel;
use crate::proto::admin_client::AdminClient;
use crate::proto::produce_client::ProduceClient;
use crate::proto::{DescribeTopicRequest, InitProducerIdRequest};

/// How many acknowledgements a produce waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// acks=0: a record's future resolves once its request has been written
    /// to the connection, before the broker answers; its offset is unknown
    /// (`None`; the CLI shows -1) and a failure is only logged.
    None,
    /// acks=1: the leader appended it.
    Leader,
    /// acks=all: every in-sync replica has it.
    All,
}

impl FromStr for Acks {
    type Err = ClientError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "0" => Ok(Acks::None),
            "1" => Ok(Acks::Leader),
            "all" | "-1" => Ok(Acks::All),
            other => Err(ClientError::InvalidArgument(format!(
                "acks {other:?} is not one of 0, 1, all"
            ))),
        }
    }
}

/// Producer settings; field names follow Kafka's producer configs.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    pub acks: Acks,
    /// `linger.ms`: how long a batch waits for more records before it is sent.
    pub linger: Duration,
    /// `batch.size`: a batch is sent once its records reach this size.
    pub batch_size_bytes: usize,
    pub compression: Compression,
    /// `buffer.memory`: records not yet acknowledged, at most; `send` waits beyond.
    pub buffer_memory_bytes: usize,
    /// `max.request.size`: the largest produce request (several batches of one partition).
    pub request_bytes_max: usize,
    /// Attempts after the first for a retriable failure.
    pub retries: u32,
    pub retry_backoff: Duration,
    /// Gives up on a batch this long after its first attempt.
    pub delivery_timeout: Duration,
    /// Gives up on one attempt after this long.
    pub request_timeout: Duration,
    /// `enable.idempotence`: producer id and sequence numbers on every batch.
    pub idempotent: bool,
    /// `max.in.flight.requests.per.connection`, per partition: requests sent
    /// before the earlier ones are answered. The broker appends them in
    /// sequence order, so more than one needs `idempotent`; without it, one.
    pub max_in_flight_requests: usize,
    /// `metadata.max.age.ms`: a topic's partition count is described again
    /// when it is older than this, so partitions added to a topic come into
    /// use. A record for a partition beyond the known count has it described
    /// again at once.
    pub metadata_max_age: Duration,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            acks: Acks::All,
            linger: Duration::from_millis(5),
            batch_size_bytes: 256 * 1024,
            compression: Compression::None,
            buffer_memory_bytes: 64 * 1024 * 1024,
            request_bytes_max: 8 * 1024 * 1024,
            retries: 10,
            retry_backoff: Duration::from_millis(100),
            delivery_timeout: Duration::from_secs(120),
            request_timeout: Duration::from_secs(30),
            idempotent: true,
            max_in_flight_requests: 5,
            metadata_max_age: Duration::from_secs(300),
        }
    }
}

/// One record to send. Borrowed: `send` copies it into a batch.
#[derive(Debug, Clone, Copy)]
pub struct ProducerRecord<'a> {
    pub topic: &'a str,
    /// None: chosen by key (murmur2), or sticky for records without a key.
    pub partition: Option<u32>,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    /// None: now.
    pub timestamp_ms: Option<i64>,
    pub headers: &'a [(&'a str, Option<&'a [u8]>)],
}

impl<'a> ProducerRecord<'a> {
    pub fn new(topic: &'a str, value: &'a [u8]) -> Self {
        ProducerRecord {
            topic,
            partition: None,
            key: None,
            value: Some(value),
            timestamp_ms: None,
            headers: &[],
        }
    }

    pub fn with_key(self, key: &'a [u8]) -> Self {
        ProducerRecord {
            key: Some(key),
            ..self
        }
    }

    pub fn with_partition(self, partition: u32) -> Self {
        ProducerRecord {
            partition: Some(partition),
            ..self
        }
    }

    pub fn with_timestamp(self, timestamp_ms: i64) -> Self {
        ProducerRecord {
            timestamp_ms: Some(timestamp_ms),
            ..self
        }
    }

    pub fn with_headers(self, headers: &'a [(&'a str, Option<&'a [u8]>)]) -> Self {
        ProducerRecord { headers, ..self }
    }

    /// What the record costs in the buffer: its bytes plus varint overhead.
    pub(crate) fn size_bytes(&self) -> usize {
        // Worst case of the varints around a record (length, timestamp and
        // offset deltas, key and value lengths, header count) plus attributes.
        const RECORD_OVERHEAD_BYTES: usize = 32;
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.len() + v.map_or(0, <[u8]>::len) + 10)
            .sum();
        self.key.map_or(0, <[u8]>::len)
            + self.value.map_or(0, <[u8]>::len)
            + headers
            + RECORD_OVERHEAD_BYTES
    }
}

/// Where an acknowledged record was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMetadata {
    pub partition: u32,
    /// None with acks=0: the future resolved before the broker answered.
    pub offset: Option<u64>,
    pub timestamp_ms: i64,
}

/// State shared by the producer handle and its sender task.
#[derive(Debug)]
pub(crate) struct ProducerShared {
    pub(crate) config: ProducerConfig,
    /// Each partition's leader and a channel to it. Produce requests go
    /// straight on the leader's channel (see `raw_produce`).
    pub(crate) metadata: ClusterMetadata,
    admin: AdminClient<Channel>,
    pub(crate) accumulator: Mutex<Accumulator>,
    /// Wakes the sender: a batch filled, a new batch started, a request ended.
    pub(crate) wake: Notify,
    /// Signalled whenever no batch is outstanding.
    pub(crate) idle: Notify,
    /// Buffer memory, in bytes: taken by `send`, given back on acknowledgement.
    pub(crate) memory: Semaphore,
}

/// The producer. Cheap to share behind an `Arc`; `send` takes `&self`.
#[derive(Debug)]
pub struct Producer {
    shared: Arc<ProducerShared>,
    sender: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Producer {
    /// Connects to `addr` (one broker, or a bootstrap list `h1:p1,h2:p2`: the
    /// first that answers) and, if idempotent, obtains a producer id. In a
    /// cluster, each partition's batches go to its leader (see
    /// `cluster_metadata`).
    pub async fn connect(addr: &str, config: ProducerConfig) -> Result<Producer, ClientError> {
        let channel = connect(addr).await?;
        let bootstrap = bootstrap_list(addr)?
            .into_iter()
            .map(String::from)
            .collect();
        Producer::start(channel, bootstrap, config).await
    }

    pub async fn from_channel(
        channel: Channel,
        config: ProducerConfig,
    ) -> Result<Producer, ClientError> {
        Producer::start(channel, Vec::new(), config).await
    }

    async fn start(
        channel: Channel,
        bootstrap: Vec<String>,
        config: ProducerConfig,
    ) -> Result<Producer, ClientError> {
        check_config(&config)?;
        let mut client = produce_client(channel.clone());
        let producer_id = if config.idempotent {
            let response = client
                .init_producer_id(InitProducerIdRequest::default())
                .await?
                .into_inner();
            let epoch = i16::try_from(response.producer_epoch).map_err(|_| {
                ClientError::InvalidArgument(format!(
                    "broker returned producer epoch {} outside the i16 range",
                    response.producer_epoch
                ))
            })?;
            Some((response.producer_id, epoch))
        } else {
            None
        };
        let memory_permits = config.buffer_memory_bytes.min(Semaphore::MAX_PERMITS);
        let shared = Arc::new(ProducerShared {
            accumulator: Mutex::new(Accumulator::new(producer_id)),
            metadata: ClusterMetadata::new(channel.clone(), bootstrap),
            admin: AdminClient::new(channel).max_decoding_message_size(RESPONSE_BYTES_MAX),
            wake: Notify::new(),
            idle: Notify::new(),
            memory: Semaphore::new(memory_permits),
            config,
        });
        let sender = tokio::spawn(sender::run(Arc::clone(&shared)));
        Ok(Producer {
            shared,
            sender: Mutex::new(Some(sender)),
        })
    }

    pub fn config(&self) -> &ProducerConfig {
        &self.shared.config
    }

    /// Adds `record` to a batch. Waits only for buffer room (backpressure)
    /// and, the first time a topic is used, for its partition count. The
    /// returned future resolves with the record's partition and offset once
    /// its batch is acknowledged.
    pub async fn send(&self, record: ProducerRecord<'_>) -> Result<DeliveryFuture, ClientError> {
        let size_bytes = record.size_bytes();
        let limit = self
            .shared
            .config
            .request_bytes_max
            .min(self.shared.config.buffer_memory_bytes);
        if size_bytes > limit {
            return Err(ClientError::RecordTooLarge {
                size_bytes,
                max_bytes: limit,
                limit: "the smaller of request_bytes_max and buffer_memory_bytes",
            });
        }
        let permits = u32::try_from(size_bytes).unwrap_or(u32::MAX);
        // The common case, room in the buffer, takes one atomic operation;
        // only a full buffer waits in the semaphore's queue. The permit gives
        // the memory back if the append fails or this future is dropped
        // (a first send to a topic waits for its description).
        let permit = match self.shared.memory.try_acquire_many(permits) {
            Ok(permit) => permit,
            Err(TryAcquireError::Closed) => return Err(ClientError::Closed),
            Err(TryAcquireError::NoPermits) => self
                .shared
                .memory
                .acquire_many(permits)
                .await
                .map_err(|_| ClientError::Closed)?,
        };
        let timestamp_ms = record.timestamp_ms.unwrap_or_else(now_ms);
        let Appended { delivery, wake } = self.append(&record, timestamp_ms, size_bytes).await?;
        // The batch holds the memory now; the sender gives it back on acknowledgement.
        permit.forget();
        if wake {
            self.shared.wake.notify_one();
        }
        Ok(delivery)
    }

    /// Appends under one lock; a topic not seen before is described first.
    async fn append(
        &self,
        record: &ProducerRecord<'_>,
        timestamp_ms: i64,
        size_bytes: usize,
    ) -> Result<Appended, ClientError> {
        let config = &self.shared.config;
        let appended =
            self.lock()?
                .append(config, record, timestamp_ms, size_bytes, Metadata::Cached)?;
        if let Some(appended) = appended {
            return Ok(appended);
        }
        if let Err(error) = self.learn_topic(record.topic).await {
            // A topic already in use keeps its known partitions through a
            // failed refresh, as Kafka's producer does; a new one cannot start.
            let mut accumulator = self.lock()?;
            let Some(known) = accumulator.topics.get_mut(record.topic) else {
                return Err(error);
            };
            known.description_failed();
        }
        self.lock()?
            .append(config, record, timestamp_ms, size_bytes, Metadata::Fresh)?
            .ok_or_else(|| {
                ClientError::InvalidArgument(format!("topic {:?} is not known", record.topic))
            })
    }

    /// Sends every buffered record now and waits until all are acknowledged
    /// or failed.
    pub async fn flush(&self) -> Result<(), ClientError> {
        self.lock()?.flushing += 1;
        self.shared.wake.notify_one();
        let result = self.wait_idle().await;
        if let Ok(mut accumulator) = self.lock() {
            accumulator.flushing -= 1;
        }
        result
    }

    /// Flushes, then stops the sender task. Sends after close fail.
    pub async fn close(&self) -> Result<(), ClientError> {
        self.lock()?.closed = true;
        self.shared.wake.notify_one();
        self.wait_idle().await?;
        let sender = self.sender.lock().map_err(|_| ClientError::Closed)?.take();
        if let Some(sender) = sender {
            let _ = sender.await;
        }
        Ok(())
    }

    async fn wait_idle(&self) -> Result<(), ClientError> {
        loop {
            let idle = self.shared.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.lock()?.outstanding_batches == 0 {
                return Ok(());
            }
            idle.await;
        }
    }

    /// Learns the partition count of `topic`: the first time it is used, and
    /// again when what was learnt is older than `metadata_max_age` or a
    /// record names a partition beyond it.
    async fn learn_topic(&self, topic: &str) -> Result<(), ClientError> {
        let request = DescribeTopicRequest {
            topic: topic.to_string(),
        };
        let mut described = self
            .shared
            .admin
            .clone()
            .describe_topic(request.clone())
            .await;
        // In a cluster any broker describes a topic: when the bootstrap
        // broker cannot be reached (it may have stopped), ask the others.
        if let Err(status) = &described {
            if self.shared.metadata.in_cluster()
                && is_unreachable(&ClientError::from(status.clone()))
            {
                for channel in self.shared.metadata.any_brokers().into_iter().skip(1) {
                    described = AdminClient::new(channel)
                        .max_decoding_message_size(RESPONSE_BYTES_MAX)
                        .describe_topic(request.clone())
                        .await;
                    if described.is_ok() {
                        break;
                    }
                }
            }
        }
        let description = described?.into_inner();
        let partitions = u32::try_from(description.partitions.len()).unwrap_or(u32::MAX);
        if partitions == 0 {
            return Err(ClientError::InvalidArgument(format!(
                "topic {topic:?} has no partitions"
            )));
        }
        self.lock()?
            .topics
            .entry(topic.to_string())
            .and_modify(|known| known.described(partitions))
            .or_insert_with(|| TopicState::new(topic, partitions));
        Ok(())
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Accumulator>, ClientError> {
        self.shared
            .accumulator
            .lock()
            .map_err(|_| ClientError::Closed)
    }
}

impl Drop for Producer {
    /// Buffered records are still sent: the sender task drains them and exits.
    fn drop(&mut self) {
        if let Ok(mut accumulator) = self.shared.accumulator.lock() {
            accumulator.closed = true;
        }
        self.shared.wake.notify_one();
    }
}

/// A client for producer-id requests (produce requests are sent raw).
pub(crate) fn produce_client(channel: Channel) -> ProduceClient<SignallingChannel> {
    ProduceClient::new(SignallingChannel::new(channel))
        .max_decoding_message_size(RESPONSE_BYTES_MAX)
}

fn check_config(config: &ProducerConfig) -> Result<(), ClientError> {
    if config.max_in_flight_requests == 0 {
        return Err(ClientError::InvalidArgument(
            "max in-flight requests must be at least 1".to_string(),
        ));
    }
    if config.batch_size_bytes == 0 || config.batch_size_bytes > config.request_bytes_max {
        return Err(ClientError::InvalidArgument(format!(
            "batch size {} must be between 1 and the request size limit {}",
            config.batch_size_bytes, config.request_bytes_max
        )));
    }
    if config.buffer_memory_bytes < config.batch_size_bytes {
        return Err(ClientError::InvalidArgument(format!(
            "buffer memory {} must be at least the batch size {}",
            config.buffer_memory_bytes, config.batch_size_bytes
        )));
    }
    Ok(())
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
