//! Runs a pipeline as one worker: a group member that polls, runs every record
//! through the stages, sends the outputs, and commits only what they cover.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use weir_client::{
    ClientError, ConsumerRecord, GroupConsumer, GroupConsumerConfig, Producer, ProducerConfig,
    ProducerRecord,
};

use super::{Context, Runnable};

/// How long one poll waits for records before the worker checks for shutdown.
const POLL_TIMEOUT: Duration = Duration::from_millis(200);

/// How often a worker commits the positions its outputs cover (Kafka Streams'
/// `commit.interval.ms` for at-least-once).
const COMMIT_INTERVAL: Duration = Duration::from_secs(5);

/// Serialized outputs: key and value of each.
type Outputs = Vec<(Option<Vec<u8>>, Vec<u8>)>;

/// The stages and a closure that takes their outputs.
pub(crate) type ForEachSink = Box<dyn FnMut(ConsumerRecord, &Context) + Send>;

/// The stages and their serializer: one input record's outputs, serialized.
pub(crate) type TopicSink = Box<dyn FnMut(ConsumerRecord, &Context, &mut Outputs) + Send>;

pub(crate) enum Sink {
    ForEach(ForEachSink),
    Topic { topic: String, serialize: TopicSink },
}

/// Why a worker stopped before it was asked to.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Reading the input, sending an output or committing failed; nothing past the
    /// last commit is lost, and a restarted worker goes on from there.
    #[error("pipeline on {topics:?} (group {group:?}): {source}")]
    Client {
        topics: Vec<String>,
        group: String,
        #[source]
        source: ClientError,
    },
}

/// What a worker did, when it stopped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunStats {
    pub records_in: u64,
    /// Outputs stored in the output topic (0 for a `for_each` sink).
    pub records_out: u64,
}

impl Runnable {
    /// Joins the group at the broker at `addr` and processes the partitions it gives
    /// this worker until `shutdown` completes; then sends what is pending, commits,
    /// and leaves the group so the others take its partitions at once.
    pub async fn run(
        self,
        addr: &str,
        shutdown: impl Future<Output = ()>,
    ) -> Result<RunStats, PipelineError> {
        let group = self.group.clone().unwrap_or_else(|| self.topics.join(","));
        let topics = self.topics.clone();
        let failed = |source: ClientError| PipelineError::Client {
            topics: topics.clone(),
            group: group.clone(),
            source,
        };
        let topic_refs: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        let config = GroupConsumerConfig {
            // Commits are made here, after the outputs they cover.
            enable_auto_commit: false,
            ..GroupConsumerConfig::new(&group)
        };
        let mut consumer = GroupConsumer::subscribe(addr, &topic_refs, config)
            .await
            .map_err(&failed)?;
        let producer = match &self.sink {
            Sink::Topic { .. } => Some(
                Producer::connect(addr, ProducerConfig::default())
                    .await
                    .map_err(&failed)?,
            ),
            Sink::ForEach(_) => None,
        };
        let mut worker = Worker {
            sink: self.sink,
            producer,
            stats: RunStats::default(),
            outputs: Vec::new(),
        };
        tokio::pin!(shutdown);
        let mut next_commit = Instant::now() + COMMIT_INTERVAL;
        loop {
            let records = tokio::select! {
                records = consumer.poll(POLL_TIMEOUT) => records.map_err(&failed)?,
                _ = &mut shutdown => break,
            };
            // Every output of this round is acknowledged before the next poll, in
            // which a revoked partition's position is committed.
            worker.process(records).await.map_err(&failed)?;
            if Instant::now() >= next_commit {
                next_commit = Instant::now() + COMMIT_INTERVAL;
                consumer.commit().await.map_err(&failed)?;
            }
        }
        if let Some(producer) = &worker.producer {
            producer.close().await.map_err(&failed)?;
        }
        consumer.close().await.map_err(&failed)?;
        Ok(worker.stats)
    }
}

struct Worker {
    sink: Sink,
    producer: Option<Producer>,
    stats: RunStats,
    outputs: Outputs,
}

impl Worker {
    /// Runs `records` through the stages and waits until every output is stored.
    async fn process(&mut self, records: Vec<ConsumerRecord>) -> Result<(), ClientError> {
        let mut deliveries = Vec::new();
        for record in records {
            self.stats.records_in += 1;
            let context = Context {
                topic: Arc::clone(&record.topic),
                partition: record.partition,
                offset: record.offset,
                timestamp_ms: record.timestamp_ms,
            };
            match &mut self.sink {
                Sink::ForEach(f) => f(record, &context),
                Sink::Topic { topic, serialize } => {
                    serialize(record, &context, &mut self.outputs);
                    let producer = self.producer.as_ref().expect("a topic sink has a producer");
                    for (key, value) in self.outputs.drain(..) {
                        let mut out = ProducerRecord::new(topic, &value);
                        if let Some(key) = key.as_deref() {
                            out = out.with_key(key);
                        }
                        deliveries.push(producer.send(out).await?);
                    }
                }
            }
        }
        for delivery in deliveries {
            delivery.await?;
            self.stats.records_out += 1;
        }
        Ok(())
    }
}
