//! Runs a pipeline as one worker: a group member that polls, runs every record
//! through the stages, sends the outputs, and commits only what they cover.
//!
//! Order of a round, which the at-least-once rule rests on: poll (partitions that
//! move are handed over inside it); rebuild the state of partitions assigned (from
//! their commit's metadata, then from the snapshot it names or by replaying from the
//! committed offset); run the records and the tick of time through the stages; wait
//! until every output and late record is acknowledged; then, when due, save the
//! changelogs' snapshots and commit each partition at the oldest offset an open window
//! still holds (its consumed position when none is open, or with a changelog). What a
//! commit holds and how it is read back is `commits`.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use weir_client::{
    Admin, ClientError, GroupConsumer, GroupConsumerConfig, GroupCoordinator, Producer,
    ProducerConfig, ProducerRecord, Rebalance,
};

mod commits;

use commits::Member;

use super::chain::{Chain, Env, Restored};
use super::changelog::{ChangelogError, Changelogs};
use super::metrics::{LagGauges, MetricsServer, PipelineMetrics, STATE_REFRESH};
use super::{Context, Runnable};

/// How long one poll waits for records before the worker checks for shutdown and
/// moves idle partitions' time on.
const POLL_TIMEOUT: Duration = Duration::from_millis(200);

/// How often a worker commits the positions its outputs cover (Kafka Streams'
/// `commit.interval.ms` for at-least-once).
pub(crate) const COMMIT_INTERVAL: Duration = Duration::from_secs(5);

/// How often a worker stopping tries its last commit.
const FINAL_COMMIT_ATTEMPTS: u32 = 3;

/// The state group of group `g` is `g` with this suffix.
pub(crate) const STATE_GROUP_SUFFIX: &str = ".window-state";

/// The member epoch of a commit from outside a group.
const NO_MEMBER_EPOCH: i32 = -1;

/// A serialized output: key and value.
pub(crate) type Serialized = (Option<Vec<u8>>, Vec<u8>);

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
    /// The pipeline was built with a setting that cannot work (a window spec, a
    /// stage name, a top-K budget); nothing was read.
    #[error("pipeline on {topics:?}: {reason}")]
    Invalid { topics: Vec<String>, reason: String },
    /// A partition's state could not be restored from its stage's changelog (a
    /// snapshot the commit names is missing or does not read); nothing was processed
    /// for it.
    #[error("pipeline on {topics:?} (group {group:?}): cannot restore window state: {reason}")]
    Restore {
        topics: Vec<String>,
        group: String,
        reason: String,
    },
    /// A stage could not go on (an item it cannot write); nothing from the round of
    /// records it failed in was committed.
    #[error("pipeline on {topics:?} (group {group:?}): {reason}")]
    Stage {
        topics: Vec<String>,
        group: String,
        reason: String,
    },
    /// A stage's state could not be saved to its changelog (the broker refused a
    /// snapshot's chunk, or did not acknowledge it); the partitions were not committed
    /// past their last snapshot stored, and a restarted worker goes on from there.
    #[error(
        "pipeline on {topics:?} (group {group:?}): cannot save window state: {snapshot}: {source}"
    )]
    Changelog {
        topics: Vec<String>,
        group: String,
        /// Whose snapshot failed, and in which changelog partition.
        snapshot: String,
        #[source]
        source: ClientError,
    },
    /// The metrics listener could not be bound or started.
    #[error("cannot serve pipeline metrics on {addr}: {source}")]
    MetricsListen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

/// What a worker did, when it stopped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunStats {
    pub records_in: u64,
    /// Outputs stored in the output topic (0 for a `for_each` sink).
    pub records_out: u64,
    /// Items that came after all their windows had closed, so were counted in
    /// none (replays of records counted before excluded).
    pub records_late: u64,
    /// Late records written to side topics.
    pub records_late_out: u64,
    /// Items written to repartition topics (and read back from them as input:
    /// `records_in` counts those too).
    pub records_repartitioned: u64,
}

impl Runnable {
    /// Joins the group at the broker at `addr` and processes the partitions it gives
    /// this worker until `shutdown` completes; then sends what is pending, commits,
    /// and leaves the group so the others take its partitions at once.
    ///
    /// The metrics listener of [`Runnable::metrics_listen`] serves from the start
    /// of the run to its end.
    pub async fn run(
        mut self,
        addr: &str,
        shutdown: impl Future<Output = ()>,
    ) -> Result<RunStats, PipelineError> {
        if let Some(reason) = self.invalid.take() {
            return Err(PipelineError::Invalid {
                topics: self.topics,
                reason,
            });
        }
        let server = match self.metrics_listener.take() {
            Some(listener) => {
                let bound = listener.local_addr().map_or_else(
                    |_| "the metrics_listen address".to_string(),
                    |a| a.to_string(),
                );
                let listen = |source| PipelineError::MetricsListen {
                    addr: bound.clone(),
                    source,
                };
                let listener = tokio::net::TcpListener::from_std(listener).map_err(listen)?;
                Some(MetricsServer::start(listener, self.metrics.clone()).map_err(listen)?)
            }
            None => None,
        };
        let outcome = self.work(addr, shutdown).await;
        if let Some(server) = server {
            server.stop().await;
        }
        outcome
    }

    async fn work(
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
        let mut chain = self.chain;
        let mut internal = Vec::new();
        chain.internal_topics(&group, &mut internal);
        if !internal.is_empty() {
            create_internal_topics(addr, &self.topics, &internal)
                .await
                .map_err(&failed)?;
        }
        let mut changelog_stages = Vec::new();
        chain.changelog_stages(&mut changelog_stages);
        let changelogs = if changelog_stages.is_empty() {
            Changelogs::none()
        } else {
            let admin = Admin::connect(addr).await.map_err(&failed)?;
            let inputs: Vec<String> = self.topics.iter().chain(&internal).cloned().collect();
            let partitions = widest(&admin, &inputs).await.map_err(&failed)?;
            let stages = changelog_stages
                .into_iter()
                .map(|stage| stage.name)
                .collect();
            Changelogs::create(&admin, &group, stages, partitions)
                .await
                .map_err(&failed)?
        };
        let round_failed = |error: RoundError| match error {
            RoundError::Client(source) => failed(source),
            RoundError::Restore(reason) => PipelineError::Restore {
                topics: topics.clone(),
                group: group.clone(),
                reason,
            },
            RoundError::Stage(reason) => PipelineError::Stage {
                topics: topics.clone(),
                group: group.clone(),
                reason,
            },
            RoundError::Changelog { snapshot, source } => PipelineError::Changelog {
                topics: topics.clone(),
                group: group.clone(),
                snapshot,
                source,
            },
        };
        let topic_refs: Vec<&str> = self
            .topics
            .iter()
            .chain(&internal)
            .map(String::as_str)
            .collect();
        let mut config = GroupConsumerConfig {
            // Commits are made here, after the outputs they cover.
            enable_auto_commit: false,
            ..GroupConsumerConfig::new(&group)
        };
        config.consumer.offset_reset = self.offset_reset;
        let mut consumer = GroupConsumer::subscribe(addr, &topic_refs, config)
            .await
            .map_err(&failed)?;
        let rebalances: Arc<Mutex<Vec<Rebalance>>> = Arc::default();
        consumer.on_rebalance({
            let rebalances = Arc::clone(&rebalances);
            move |event| rebalances.lock().expect("not poisoned").push(event.clone())
        });
        let producer = Producer::connect(addr, ProducerConfig::default())
            .await
            .map_err(&failed)?;
        let stateful = chain.is_stateful();
        let group_label: Arc<str> = Arc::from(group.as_str());
        chain.bind_metrics(&self.metrics, &group_label);
        let mut operators = Vec::new();
        chain.operators(&mut operators);
        let mut worker = Worker {
            chain,
            output_topic: self.output_topic,
            producer,
            coordinator: GroupCoordinator::for_group(consumer.channel(), &group),
            state_coordinator: GroupCoordinator::for_group(
                consumer.channel(),
                &format!("{group}{STATE_GROUP_SUFFIX}"),
            ),
            group: group.clone(),
            state_group: format!("{group}{STATE_GROUP_SUFFIX}"),
            stats: RunStats::default(),
            outputs: Vec::new(),
            ticked: Vec::new(),
            lags: LagGauges::new(self.metrics.clone(), Arc::clone(&group_label)),
            window_operators: operators
                .into_iter()
                .filter_map(|(name, stateful)| stateful.then_some(name))
                .collect(),
            restoring: Vec::new(),
            changelogs,
            addr: addr.to_string(),
            metrics: self.metrics,
            group_label,
            next_state_measure: Instant::now(),
        };
        tokio::pin!(shutdown);
        let mut next_commit = Instant::now() + self.commit_interval;
        loop {
            let records = tokio::select! {
                records = consumer.poll(POLL_TIMEOUT) => records.map_err(&failed)?,
                _ = &mut shutdown => break,
            };
            let events = std::mem::take(&mut *rebalances.lock().expect("not poisoned"));
            let rewound = worker
                .rebalanced(events, &mut consumer)
                .await
                .map_err(&round_failed)?;
            // Records of a partition moved back to its state's oldest offset are read
            // again from there.
            let mut records = records;
            if !rewound.is_empty() {
                records.retain(|r| !rewound.contains(&(r.topic.to_string(), r.partition)));
            }
            // Every output of this round is acknowledged before the next poll, in
            // which a revoked partition's position is committed.
            worker
                .process(records, false)
                .await
                .map_err(&round_failed)?;
            worker.publish_metrics(&consumer);
            if Instant::now() >= next_commit {
                next_commit = Instant::now() + self.commit_interval;
                match worker.commit(Member::of(&consumer)).await {
                    Ok(()) => {}
                    // Refused during a rebalance (a stale epoch, a partition just
                    // given up): Kafka retries at the next interval too.
                    Err(RoundError::Client(error @ ClientError::Group { .. })) => {
                        tracing::warn!(%group, %error, "commit refused; retried at the next interval")
                    }
                    Err(error) => return Err(round_failed(error)),
                }
            }
        }
        // A last round with no records, in which stages that emit open windows
        // periodically emit them once more; its outputs are stored before the
        // commit below.
        worker
            .process(Vec::new(), true)
            .await
            .map_err(&round_failed)?;
        worker.publish_metrics(&consumer);
        // The last commit may meet a rebalance that other workers stopping started
        // (a stale epoch): it is tried again with the member's newer epoch, and if
        // still refused the previous commit stands, which replays more but loses
        // nothing (as a Kafka Streams task whose commit fails on close).
        for attempt in 1..=FINAL_COMMIT_ATTEMPTS {
            match worker.commit(Member::of(&consumer)).await {
                Ok(()) => break,
                Err(RoundError::Client(error @ ClientError::Group { .. })) => {
                    tracing::warn!(%group, %error, attempt, "last commit refused");
                    tokio::time::sleep(POLL_TIMEOUT).await;
                }
                Err(error) => return Err(round_failed(error)),
            }
        }
        worker.producer.close().await.map_err(&failed)?;
        if stateful {
            // `close` would commit the consumed positions, past records open windows
            // still hold; dropping leaves the group without a commit, and the commit
            // above stands.
            drop(consumer);
        } else {
            consumer.close().await.map_err(&failed)?;
        }
        Ok(worker.stats)
    }
}

/// A partition whose window state is being rebuilt.
struct Restoring {
    topic: String,
    partition: u32,
    /// Records before this offset had been processed when the commit was made.
    processed_below: u64,
    assigned_at: std::time::Instant,
}

/// Why a round (a rebalance taken in, records processed) could not be completed.
pub(super) enum RoundError {
    Client(ClientError),
    /// A partition's state did not restore: the sentence says which and why.
    Restore(String),
    /// A stage could not go on: the sentence says which and why.
    Stage(String),
    /// A snapshot was not stored in its changelog: `snapshot` says whose and where.
    Changelog {
        snapshot: String,
        source: ClientError,
    },
}

impl From<ClientError> for RoundError {
    fn from(error: ClientError) -> Self {
        RoundError::Client(error)
    }
}

impl From<ChangelogError> for RoundError {
    fn from(error: ChangelogError) -> Self {
        match error {
            ChangelogError::Client(error) => RoundError::Client(error),
            ChangelogError::Missing(reason) => RoundError::Restore(reason),
            ChangelogError::Unwritable(reason) => RoundError::Stage(reason),
            ChangelogError::Write { snapshot, source } => {
                RoundError::Changelog { snapshot, source }
            }
        }
    }
}

struct Worker {
    chain: Box<dyn Chain<Serialized>>,
    output_topic: Option<String>,
    producer: Producer,
    /// The coordinators of the group and of its state group (each group has its own).
    coordinator: GroupCoordinator,
    state_coordinator: GroupCoordinator,
    group: String,
    /// Where each commit of a windowed pipeline is copied (see `Worker::commit`).
    state_group: String,
    stats: RunStats,
    outputs: Vec<Serialized>,
    ticked: Vec<(Context, Serialized)>,
    metrics: PipelineMetrics,
    group_label: Arc<str>,
    lags: LagGauges,
    /// The names of the window operators, whose state a restore rebuilds.
    window_operators: Vec<String>,
    restoring: Vec<Restoring>,
    /// Where stages with a changelog save and find their state.
    changelogs: Changelogs,
    /// The broker, for reading changelogs.
    addr: String,
    next_state_measure: Instant,
}

impl Worker {
    /// Drops the state of partitions given up and rebuilds that of partitions
    /// assigned from their commits. Returns the partitions moved back to an older
    /// offset than the group consumer started them at.
    async fn rebalanced(
        &mut self,
        events: Vec<Rebalance>,
        consumer: &mut GroupConsumer,
    ) -> Result<Vec<(String, u32)>, RoundError> {
        let mut rewound = Vec::new();
        for event in events {
            match event {
                Rebalance::Revoked(partitions) | Rebalance::Lost(partitions) => {
                    for (topic, partition) in partitions {
                        self.chain.revoke(&topic, partition);
                        self.changelogs.forget(&topic, partition);
                        self.restoring
                            .retain(|r| (&r.topic, r.partition) != (&topic, partition));
                    }
                }
                Rebalance::Assigned(partitions) => {
                    let assigned_at = std::time::Instant::now();
                    let restored = self.fetch_restored(&partitions).await?;
                    let (mut assigned, rewinds): (Vec<_>, Vec<_>) = partitions
                        .iter()
                        .zip(restored)
                        .map(|((topic, partition), (restored, rewind_to))| {
                            ((topic.clone(), *partition, restored), rewind_to)
                        })
                        .unzip();
                    for (topic, partition, restored) in &assigned {
                        self.warn_of_snapshots_not_restored(topic, *partition, restored);
                    }
                    if !self.changelogs.is_empty() {
                        self.changelogs
                            .restore(&self.addr, &self.producer, &mut assigned)
                            .await?;
                    }
                    let now = std::time::Instant::now();
                    for ((topic, partition, restored), rewind_to) in assigned.iter().zip(&rewinds) {
                        if let Some(processed_below) = restored.position {
                            self.restoring.push(Restoring {
                                topic: topic.clone(),
                                partition: *partition,
                                processed_below,
                                assigned_at,
                            });
                        }
                        if let Some(offset) = rewind_to {
                            consumer.seek(topic, *partition, *offset)?;
                            rewound.push((topic.clone(), *partition));
                        }
                        self.chain
                            .assign(topic, *partition, restored, now)
                            .map_err(RoundError::Restore)?;
                    }
                }
            }
        }
        Ok(rewound)
    }

    /// A commit naming a snapshot of a stage that keeps no changelog now (told
    /// `.without_changelog()`, or its default dropped since) was made past the open
    /// windows the snapshot holds: they are not rebuilt, and their results will lack
    /// what came before the commit. Said once per partition assigned, not refused: the
    /// pipeline was changed on purpose, and a refusal would leave no way forward but
    /// deleting the group's commits, which loses as much.
    fn warn_of_snapshots_not_restored(&self, topic: &str, partition: u32, restored: &Restored) {
        let lost: Vec<&str> = restored
            .snapshots
            .keys()
            .map(String::as_str)
            .filter(|stage| {
                !self.changelogs.keeps(stage) && self.window_operators.iter().any(|w| w == stage)
            })
            .collect();
        if !lost.is_empty() {
            tracing::warn!(
                %topic,
                partition,
                stages = ?lost,
                "the partition's commit names snapshots of window stages that keep no \
                 changelog now: their windows open at the commit start empty"
            );
        }
    }

    /// Runs `records` and a tick of time through the stages and waits until every
    /// output is stored.
    async fn process(
        &mut self,
        records: Vec<weir_client::ConsumerRecord>,
        stopping: bool,
    ) -> Result<(), RoundError> {
        let mut env = Env {
            now: std::time::Instant::now(),
            side: Vec::new(),
            late: 0,
            stopping,
            failure: None,
        };
        let mut deliveries = Vec::new();
        for record in records {
            self.stats.records_in += 1;
            let context = Context {
                topic: Arc::clone(&record.topic),
                partition: record.partition,
                offset: record.offset,
                timestamp_ms: record.timestamp_ms,
                raw: Some((record.key.clone(), record.value.clone())),
            };
            self.chain
                .record(record, &context, &mut env, &mut self.outputs);
            self.send_outputs(&mut deliveries).await?;
        }
        self.chain.tick(&mut env, &mut self.ticked);
        self.outputs
            .extend(self.ticked.drain(..).map(|(_, out)| out));
        self.send_outputs(&mut deliveries).await?;
        if let Some(reason) = env.failure.take() {
            return Err(RoundError::Stage(reason));
        }
        self.stats.records_late += env.late;
        let mut late_deliveries = Vec::new();
        let mut repartition_deliveries = Vec::new();
        for side in env.side.drain(..) {
            let value = side.value.as_deref().unwrap_or_default();
            let mut out = ProducerRecord::new(&side.topic, value).with_timestamp(side.timestamp_ms);
            if let Some(key) = side.key.as_deref() {
                out = out.with_key(key);
            }
            let delivery = self.producer.send(out).await?;
            if side.late {
                late_deliveries.push(delivery);
            } else {
                repartition_deliveries.push(delivery);
            }
        }
        for delivery in deliveries {
            delivery.await?;
            self.stats.records_out += 1;
        }
        for delivery in late_deliveries {
            delivery.await?;
            self.stats.records_late_out += 1;
        }
        for delivery in repartition_deliveries {
            delivery.await?;
            self.stats.records_repartitioned += 1;
        }
        Ok(())
    }

    async fn send_outputs(
        &mut self,
        deliveries: &mut Vec<weir_client::DeliveryFuture>,
    ) -> Result<(), ClientError> {
        let Some(topic) = &self.output_topic else {
            self.outputs.clear();
            return Ok(());
        };
        for (key, value) in self.outputs.drain(..) {
            let mut out = ProducerRecord::new(topic, &value);
            if let Some(key) = key.as_deref() {
                out = out.with_key(key);
            }
            deliveries.push(self.producer.send(out).await?);
        }
        Ok(())
    }

    /// Moves the round's counts into the metrics, the lag of every owned
    /// partition, and the restore time of partitions whose replay is done.
    fn publish_metrics(&mut self, consumer: &GroupConsumer) {
        let measure_state = Instant::now() >= self.next_state_measure;
        if measure_state {
            self.next_state_measure = Instant::now() + STATE_REFRESH;
        }
        self.chain.publish_metrics(measure_state);
        self.lags.update(&consumer.current_lags());
        if self.restoring.is_empty() {
            return;
        }
        let positions = consumer.positions();
        let (metrics, group, operators) =
            (&self.metrics, &self.group_label, &self.window_operators);
        self.restoring.retain(|restoring| {
            let done = positions.iter().any(|(topic, partition, position)| {
                (topic, *partition) == (&restoring.topic, restoring.partition)
                    && *position >= restoring.processed_below
            });
            if done {
                for operator in operators {
                    metrics.restored(group, operator, restoring.assigned_at.elapsed());
                }
            }
            !done
        });
    }
}

/// Creates each repartition topic that does not exist, with as many partitions as the
/// input topic with the most (Kafka Streams' rule), so its keys spread as widely.
async fn create_internal_topics(
    addr: &str,
    inputs: &[String],
    internal: &[String],
) -> Result<(), ClientError> {
    let admin = Admin::connect(addr).await?;
    let partitions = widest(&admin, inputs).await?;
    for topic in internal {
        match admin.describe_topic(topic).await {
            Ok(info) if info.partition_count != partitions => tracing::warn!(
                %topic,
                partitions = info.partition_count,
                wanted = partitions,
                "the repartition topic exists with another partition count; it is used as it is"
            ),
            Ok(_) => {}
            Err(error) if error.is_not_found() => {
                if let Err(error) = admin
                    .create_topic(topic, partitions, 1, &Default::default())
                    .await
                {
                    // Another worker of the group made it first.
                    if admin.describe_topic(topic).await.is_err() {
                        return Err(error);
                    }
                }
            }
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// The most partitions any of `topics` has (at least 1).
async fn widest(admin: &Admin, topics: &[String]) -> Result<u32, ClientError> {
    let mut partitions = 1;
    for topic in topics {
        partitions = partitions.max(admin.describe_topic(topic).await?.partition_count);
    }
    Ok(partitions)
}
