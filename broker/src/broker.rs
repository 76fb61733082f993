//! The broker's state: the topics it leads, their partitions, and the
//! registry file that makes them survive a restart. Admin changes are
//! serialized by the registry lock; produce and fetch only take the topic map's
//! read lock long enough to clone an `Arc`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Mutex};

use bytes::BytesMut;
use weir_log::{DirLock, LockMode};

use crate::append_queue::{self, AppendResult};
use crate::clock::{system_clock, SharedClock};
use crate::config::{BrokerConfig, IoMode};
use crate::error::BrokerError;
use crate::memory_pool::MemoryPool;
use crate::metrics::{BrokerMetrics, TopicMetrics};
use crate::partition::{Cleaned, Partition};
use crate::registry::{partition_dir, Registry, TopicRecord};
use crate::topic_deletion;
use crate::topic_name::TopicName;

mod add_partitions;
mod manual_placement;
pub(crate) use add_partitions::check_growth;

/// Most partitions one topic may have.
pub const PARTITIONS_MAX: u32 = 10_000;
/// How long a delete or shutdown waits for in-flight
/// requests to let go of a partition.
const RETIRE_WAIT_MS_MAX: u64 = 60_000;

/// One topic: its settings and its partitions, index = partition number.
#[derive(Debug)]
pub struct Topic {
    pub name: String,
    pub replication_factor: u32,
    pub configs: BTreeMap<String, String>,
    pub partitions: Vec<Arc<Partition>>,
    /// Bytes and records in and out, counted by produce and fetch without a lookup.
    pub(crate) metrics: Arc<TopicMetrics>,
}

impl Topic {
    /// The partition `index`, or an error naming the topic's partition count.
    pub fn partition(&self, index: u32) -> Result<&Arc<Partition>, BrokerError> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.partitions.get(i))
            .ok_or_else(|| BrokerError::PartitionOutOfRange {
                topic: self.name.clone(),
                partition: index,
                partitions: self.partition_count(),
            })
    }

    pub fn partition_count(&self) -> u32 {
        u32::try_from(self.partitions.len()).unwrap_or(u32::MAX)
    }
}

/// A broker: topics, partitions and their registry under one data directory.
#[derive(Debug)]
pub struct Broker {
    config: BrokerConfig,
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    registry: Mutex<Registry>,
    closing: AtomicBool,
    /// Flips to true when shutdown begins, waking long polls.
    closing_signal: watch::Sender<bool>,
    /// Dates producers' appends (producer-id expiry).
    clock: SharedClock,
    /// The epoch each producer id was last given by `InitProducerId` since
    /// the broker started, and when (the broker's clock, ms): forgotten after
    /// `producer_id_expiration_ms` by `clean_all`, as partitions forget idle
    /// producers, so the map holds only the bumps of the last expiry period.
    producer_epochs: std::sync::Mutex<HashMap<i64, HandedOutEpoch>>,
    /// Bounds the request and fetch-response bytes held at once.
    memory: Arc<MemoryPool>,
    /// Partition reads done by fetches, for tests and metrics.
    fetch_partition_reads: AtomicU64,
    /// What produce, fetch and the listeners count as they serve (see `metrics`).
    metrics: BrokerMetrics,
    /// Set once the broker is in a cluster (see `replication::manager`).
    cluster: std::sync::OnceLock<crate::replication::ClusterLink>,
    /// One broker per data directory: held exclusively for the broker's life.
    _data_dir_lock: DirLock,
}

/// An epoch bump `InitProducerId` answered.
#[derive(Debug, Clone, Copy)]
struct HandedOutEpoch {
    epoch: i16,
    at_ms: i64,
}

/// What `InitProducerId` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProducerIdRequest {
    /// A new producer id, epoch 0.
    New,
    /// The next epoch of a producer id the broker handed out (KIP-360).
    Bump {
        producer_id: i64,
        producer_epoch: i16,
    },
}

impl Broker {
    /// Opens the data directory (creating it if needed), locks it (a second broker on
    /// it fails here, naming the holder), reads the registry and reopens every
    /// partition, recovering logs that were not closed cleanly. A partition that does
    /// not open goes offline; the others are served.
    /// Blocking: call before starting the server or from `spawn_blocking`.
    pub fn open(config: BrokerConfig) -> Result<Broker, BrokerError> {
        Broker::open_with_clock(config, system_clock())
    }

    /// [`Broker::open`] with the clock that dates producers' appends.
    pub fn open_with_clock(
        config: BrokerConfig,
        clock: SharedClock,
    ) -> Result<Broker, BrokerError> {
        crate::metrics::observe_fsyncs();
        std::fs::create_dir_all(&config.data_dir).map_err(|source| BrokerError::Io {
            op: "create data directory",
            path: config.data_dir.clone(),
            source,
        })?;
        let data_dir_lock = DirLock::acquire(&config.data_dir, LockMode::Exclusive)
            .map_err(BrokerError::DataDir)?;
        let mut registry = Registry::load(&config.data_dir)?;
        if Registry::exists(&config.data_dir) {
            topic_deletion::finish_interrupted_deletions(&config.data_dir, &mut registry)?;
            topic_deletion::remove_orphaned_partition_dirs(&config.data_dir, &registry)?;
        }
        let mut topics = HashMap::new();
        for record in registry.topics.values() {
            let topic = open_topic(&config, record, &clock, OnOpenError::Offline)?;
            tracing::info!(
                topic = %record.name,
                partitions = record.partition_count(),
                "opened topic"
            );
            topics.insert(record.name.clone(), Arc::new(topic));
        }
        Ok(Broker {
            memory: MemoryPool::new(config.queued_request_bytes_max),
            fetch_partition_reads: AtomicU64::new(0),
            metrics: BrokerMetrics::default(),
            config,
            topics: RwLock::new(topics),
            registry: Mutex::new(registry),
            closing: AtomicBool::new(false),
            closing_signal: watch::channel(false).0,
            clock,
            producer_epochs: std::sync::Mutex::new(HashMap::new()),
            cluster: std::sync::OnceLock::new(),
            _data_dir_lock: data_dir_lock,
        })
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// The broker-wide bound on request and fetch-response bytes in memory.
    pub fn memory_pool(&self) -> &Arc<MemoryPool> {
        &self.memory
    }

    /// The metrics updated as requests are served.
    pub fn metrics(&self) -> &BrokerMetrics {
        &self.metrics
    }

    /// True once shutdown has begun.
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// How many partition reads fetches have done since the broker started.
    pub fn fetch_partition_reads(&self) -> u64 {
        self.fetch_partition_reads.load(Ordering::Relaxed)
    }

    pub(crate) fn count_fetch_partition_reads(&self, reads: u64) {
        self.fetch_partition_reads
            .fetch_add(reads, Ordering::Relaxed);
    }

    /// The topic named `name`, ready for produce and fetch.
    pub fn topic(&self, name: &str) -> Result<Arc<Topic>, BrokerError> {
        if self.closing.load(Ordering::Acquire) {
            return Err(BrokerError::ShuttingDown);
        }
        let topics = self.topics.read().map_err(|_| lock_poisoned())?;
        topics
            .get(name)
            .map(Arc::clone)
            .ok_or_else(|| BrokerError::UnknownTopic {
                topic: name.to_string(),
            })
    }

    /// Every ready topic, sorted by name.
    pub fn topics(&self) -> Result<Vec<Arc<Topic>>, BrokerError> {
        let topics = self.topics.read().map_err(|_| lock_poisoned())?;
        let mut ready: Vec<Arc<Topic>> = topics.values().map(Arc::clone).collect();
        ready.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(ready)
    }

    /// Runs blocking storage work where the configured [`IoMode`] says.
    pub async fn run_io<T, F>(&self, work: F) -> Result<T, BrokerError>
    where
        F: FnOnce() -> Result<T, BrokerError> + Send + 'static,
        T: Send + 'static,
    {
        match self.config.io_mode {
            IoMode::Blocking => tokio::task::spawn_blocking(work)
                .await
                .map_err(|e| BrokerError::TaskFailed(e.to_string()))?,
            IoMode::Inline => work(),
        }
    }

    /// Appends a produce request's batches to `partition`: through the
    /// partition's append queue on the blocking pool, or inline.
    pub(crate) async fn append(
        &self,
        partition: &Arc<Partition>,
        mut buf: BytesMut,
    ) -> Result<AppendResult, BrokerError> {
        match self.config.io_mode {
            IoMode::Blocking => append_queue::append(partition, buf).await,
            IoMode::Inline => {
                let result = partition.append_produced(&mut buf);
                Ok((result, buf))
            }
        }
    }

    /// Creates a topic with `partitions` partitions, each an empty log.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        replication_factor: u32,
        configs: BTreeMap<String, String>,
    ) -> Result<Arc<Topic>, BrokerError> {
        let name: TopicName = name.parse()?;
        let invalid = |reason: String| BrokerError::InvalidRequest {
            topic: name.to_string(),
            reason,
        };
        if partitions == 0 || partitions > PARTITIONS_MAX {
            return Err(invalid(format!(
                "partition count {partitions} must be between 1 and {PARTITIONS_MAX}"
            )));
        }
        self.config
            .log_config(&configs)
            .map_err(|e| config_error(name.as_str(), e))?;
        if let Some(link) = self.cluster.get() {
            return link
                .create_topic(self, name.as_str(), partitions, replication_factor, configs)
                .await;
        }
        if self.config.peers.is_some() {
            // A broker of a cluster, before it joined (its Kafka listener is up a moment
            // earlier): a topic made here alone would be one the cluster never placed.
            return Err(BrokerError::TopicUnavailable {
                topic: name.to_string(),
                reason: "this broker has not joined its cluster yet".to_string(),
            });
        }
        // One broker: a replication factor above 1 cannot be placed.
        let replication_factor = replication_factor.max(1);
        if replication_factor > 1 {
            return Err(invalid(format!(
                "replication factor {replication_factor} is larger than the 1 available broker"
            )));
        }

        let registry = self.registry.lock().await;
        if registry.topics.contains_key(name.as_str()) {
            return Err(BrokerError::TopicExists {
                topic: name.to_string(),
            });
        }
        let record = TopicRecord {
            name: name.to_string(),
            replication_factor,
            configs,
            leader_epochs: vec![0; usize::try_from(partitions).unwrap_or(0)],
            hosted: None,
        };
        self.create_from_record(registry, record).await
    }

    /// Creates the local replicas of a topic whose record is settled (by the
    /// checks above, or by the cluster's metadata log), under the registry lock.
    pub(crate) async fn create_from_record(
        &self,
        mut registry: tokio::sync::MutexGuard<'_, Registry>,
        record: TopicRecord,
    ) -> Result<Arc<Topic>, BrokerError> {
        let name = record.name.clone();
        let partitions = record.partition_count();
        let config = self.config.clone();
        let clock = Arc::clone(&self.clock);
        let opened = record.clone();
        let topic = self
            .run_blocking(move || {
                // Directories left by a delete that crashed half-way hold no topic.
                topic_deletion::remove_marked(&config.data_dir, &opened.name)?;
                for index in 0..opened.partition_count() {
                    topic_deletion::remove_stale_partition_dir(
                        &config.data_dir,
                        &opened.name,
                        index,
                    )?;
                }
                open_topic(&config, &opened, &clock, OnOpenError::Fail)
            })
            .await?;
        let mut next = registry.clone();
        next.topics.insert(record.name.clone(), record);
        self.store_registry(next.clone()).await?;
        *registry = next;
        let topic = Arc::new(topic);
        self.topics
            .write()
            .map_err(|_| lock_poisoned())?
            .insert(name.to_string(), Arc::clone(&topic));
        tracing::info!(topic = %name, partitions, "created topic");
        Ok(topic)
    }

    /// Whether `name` was created through the cluster's metadata log.
    pub(crate) async fn is_cluster_topic(&self, name: &str) -> bool {
        self.registry
            .lock()
            .await
            .topics
            .get(name)
            .is_some_and(|record| record.hosted.is_some())
    }

    /// The registry, for changes made on the cluster's behalf.
    pub(crate) async fn lock_registry(&self) -> tokio::sync::MutexGuard<'_, Registry> {
        self.registry.lock().await
    }

    /// The cluster this broker is in; `None` for a broker on its own.
    pub(crate) fn cluster(&self) -> Option<&crate::replication::ClusterLink> {
        self.cluster.get()
    }

    /// Joins the broker to its cluster: topic changes go through the
    /// metadata log from now on. Set once, at start.
    pub(crate) fn join_cluster(&self, link: crate::replication::ClusterLink) {
        let _ = self.cluster.set(link);
    }

    /// Deletes a topic and all its data.
    pub async fn delete_topic(&self, name: &str) -> Result<(), BrokerError> {
        if let Some(link) = self.cluster.get() {
            if !crate::internal_topics::is_internal(name) {
                return link.delete_topic(name).await;
            }
        }
        self.delete_local_topic(name).await
    }

    /// Deletes this broker's replicas of a topic and its registry entry.
    pub(crate) async fn delete_local_topic(&self, name: &str) -> Result<(), BrokerError> {
        let mut registry = self.registry.lock().await;
        if !registry.topics.contains_key(name) {
            return Err(BrokerError::UnknownTopic {
                topic: name.to_string(),
            });
        }
        let partition_count = registry.topics[name].partition_count();
        let mut next = registry.clone();
        next.topics.remove(name);
        match self.store_registry(next.clone()).await {
            Ok(()) => {}
            Err(error) if topic_deletion::is_storage_full(&error) => {
                tracing::warn!(topic = %name, %error, "disk full: freeing the topic's space before rewriting topics.json");
                return self
                    .delete_topic_on_full_disk(name, partition_count, next, &mut registry)
                    .await;
            }
            Err(error) => return Err(error),
        }
        *registry = next;
        let removed = self
            .topics
            .write()
            .map_err(|_| lock_poisoned())?
            .remove(name);
        if let Some(topic) = removed {
            let partitions = retire(topic).await?;
            self.run_blocking(move || partitions.into_iter().try_for_each(Partition::delete))
                .await?;
        }
        tracing::info!(topic = %name, "deleted topic");
        Ok(())
    }

    /// The second half of [`Broker::delete_topic`] when `topics.json` cannot be
    /// rewritten for want of space: the topic leaves service, its directories
    /// are marked deleted and emptied (see `topic_deletion`), then `topics.json`
    /// is rewritten. Should that still fail, the marks finish the deletion at the
    /// next start, and a repeated delete tries again.
    async fn delete_topic_on_full_disk(
        &self,
        name: &str,
        partition_count: u32,
        next: Registry,
        registry: &mut Registry,
    ) -> Result<(), BrokerError> {
        let removed = self
            .topics
            .write()
            .map_err(|_| lock_poisoned())?
            .remove(name);
        let partitions = match removed {
            Some(topic) => retire(topic).await?,
            None => Vec::new(),
        };
        let data_dir = self.config.data_dir.clone();
        let topic = name.to_string();
        self.run_blocking(move || {
            // Closing the logs releases their directory locks before the rename.
            drop(partitions);
            topic_deletion::mark_and_empty(&data_dir, &topic, partition_count)
        })
        .await?;
        self.store_registry(next.clone()).await?;
        *registry = next;
        let data_dir = self.config.data_dir.clone();
        let topic = name.to_string();
        self.run_blocking(move || topic_deletion::remove_marked(&data_dir, &topic))
            .await?;
        tracing::info!(topic = %name, "deleted topic");
        Ok(())
    }

    /// Sets (or, with an empty value, removes) topic config overrides and
    /// applies the result to every partition log at once. Returns the
    /// overrides now in force.
    pub async fn alter_configs(
        &self,
        name: &str,
        set: BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, BrokerError> {
        // In a cluster a topic's settings are the metadata log's, so that every replica
        // (and the next leader) has them; each broker applies them as the entry applies.
        if let Some(link) = self.cluster.get() {
            if !crate::internal_topics::is_internal(name) {
                return link.alter_configs(self, name, set).await;
            }
        }
        self.alter_local_configs(name, |current| overrides_after(current, &set))
            .await
    }

    /// Sets this broker's topic `name` to exactly `configs`, as the cluster's metadata
    /// has them.
    pub(crate) async fn replace_local_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, BrokerError> {
        self.alter_local_configs(name, |_| configs).await
    }

    async fn alter_local_configs(
        &self,
        name: &str,
        next: impl FnOnce(&BTreeMap<String, String>) -> BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, BrokerError> {
        let mut registry = self.registry.lock().await;
        let Some(current) = registry.topics.get(name) else {
            return Err(BrokerError::UnknownTopic {
                topic: name.to_string(),
            });
        };
        let mut record = current.clone();
        record.configs = next(&record.configs);
        let log_config = self
            .config
            .log_config(&record.configs)
            .map_err(|e| config_error(name, e))?;
        let mut next = registry.clone();
        next.topics.insert(name.to_string(), record.clone());
        self.store_registry(next.clone()).await?;
        *registry = next;

        let mut topics = self.topics.write().map_err(|_| lock_poisoned())?;
        if let Some(old) = topics.get(name) {
            for partition in &old.partitions {
                partition.set_config(log_config.clone());
            }
            // The partitions stay; only the topic's view of its overrides changes.
            let altered = Topic {
                name: old.name.clone(),
                replication_factor: old.replication_factor,
                configs: record.configs.clone(),
                partitions: old.partitions.clone(),
                metrics: Arc::clone(&old.metrics),
            };
            topics.insert(name.to_string(), Arc::new(altered));
        }
        drop(topics);
        tracing::info!(topic = %name, "altered topic configs");
        Ok(record.configs)
    }

    /// Hands out a new producer id (epoch 0), persisted so it is never
    /// reused, or bumps the epoch of one handed out before (KIP-360).
    ///
    /// A bump of the current epoch gives the same id with epoch + 1; its
    /// batches start again at sequence 0, and the partitions refuse the older
    /// epoch's batches from then on. An older epoch than the current one is
    /// fenced (another instance bumped it). The current epoch is the higher
    /// of the last one handed out since the broker started and the newest
    /// any partition stored a batch with (which is all a restart leaves); an
    /// epoch above both is taken as current, since a bump that wrote nothing
    /// before a restart leaves no trace. Past `i16::MAX` the producer gets a
    /// new id, as in Kafka.
    pub async fn init_producer_id(
        &self,
        request: ProducerIdRequest,
    ) -> Result<(i64, i16), BrokerError> {
        if let ProducerIdRequest::Bump {
            producer_id,
            producer_epoch,
        } = request
        {
            // The registry lock only for the id check: reading every
            // partition's producer state must not stall topic changes.
            let next_producer_id = self.registry.lock().await.next_producer_id;
            // In a cluster another broker may have handed the id out.
            let unknown_here = self.cluster.get().is_none() && producer_id >= next_producer_id;
            if producer_id < 0 || unknown_here || producer_epoch < 0 {
                return Err(BrokerError::UnknownProducerId {
                    producer_id,
                    producer_epoch,
                });
            }
            let stored = self.stored_producer_epoch(producer_id).await?;
            // Checked and recorded under one lock of the handed-out epochs,
            // so of two bumps from the same epoch only the first succeeds.
            let mut handed_out = self.lock_producer_epochs()?;
            let current = match (handed_out.get(&producer_id), stored) {
                (Some(given), Some(stored)) => Some(given.epoch.max(stored)),
                (Some(given), None) => Some(given.epoch),
                (None, stored) => stored,
            };
            if let Some(current_epoch) = current.filter(|current| producer_epoch < *current) {
                return Err(BrokerError::ProducerIdFenced {
                    producer_id,
                    producer_epoch,
                    current_epoch,
                });
            }
            if let Some(next_epoch) = producer_epoch.checked_add(1) {
                let at_ms = self.clock.now_ms();
                handed_out.insert(
                    producer_id,
                    HandedOutEpoch {
                        epoch: next_epoch,
                        at_ms,
                    },
                );
                return Ok((producer_id, next_epoch));
            }
            // Epochs are exhausted: a new id below.
        }
        let mut registry = self.registry.lock().await;
        let mut next = registry.clone();
        let counter = next.next_producer_id;
        let exhausted = || BrokerError::TaskFailed("producer ids are exhausted".to_string());
        next.next_producer_id = counter.checked_add(1).ok_or_else(exhausted)?;
        // In a cluster each broker hands out its own stripe of ids (the id
        // modulo NODE_IDS is its node id), so two brokers never give out the
        // same one, as Kafka's controller hands each broker its own blocks.
        let producer_id = match self.cluster.get() {
            Some(link) => counter
                .checked_mul(crate::cluster::NODE_IDS as i64)
                .and_then(|id| id.checked_add(link.node_id as i64))
                .ok_or_else(exhausted)?,
            None => counter,
        };
        self.store_registry(next.clone()).await?;
        *registry = next;
        Ok((producer_id, 0))
    }

    /// The newest epoch of `producer_id` any partition stored.
    /// Runs on the blocking pool: each partition's producer state is behind
    /// the lock its appends hold, fsync included.
    async fn stored_producer_epoch(&self, producer_id: i64) -> Result<Option<i16>, BrokerError> {
        let partitions: Vec<Arc<Partition>> = self
            .topics()?
            .iter()
            .flat_map(|topic| topic.partitions.iter().map(Arc::clone))
            .collect();
        self.run_blocking(move || {
            let mut current: Option<i16> = None;
            for partition in partitions {
                if let Some(epoch) = partition.producer_epoch(producer_id)? {
                    current = Some(current.map_or(epoch, |c| c.max(epoch)));
                }
            }
            Ok(current)
        })
        .await
    }

    fn lock_producer_epochs(
        &self,
    ) -> Result<std::sync::MutexGuard<'_, HashMap<i64, HandedOutEpoch>>, BrokerError> {
        self.producer_epochs.lock().map_err(|_| lock_poisoned())
    }

    /// How many producer ids' epoch bumps the broker remembers.
    pub fn remembered_epoch_bumps(&self) -> usize {
        self.producer_epochs.lock().map_or(0, |epochs| epochs.len())
    }

    /// Forgets the epoch bumps older than `producer_id_expiration_ms`. A
    /// producer that bumped and then wrote nothing for that long is treated
    /// as one whose bump left no trace (as after a restart): its partitions
    /// forget it after the same time.
    fn expire_epoch_bumps(&self, now_ms: i64) -> usize {
        let expiration_ms =
            i64::try_from(self.config.producer_id_expiration_ms).unwrap_or(i64::MAX);
        let Ok(mut epochs) = self.producer_epochs.lock() else {
            return 0;
        };
        let before = epochs.len();
        epochs.retain(|_, given| now_ms.saturating_sub(given.at_ms) < expiration_ms);
        before - epochs.len()
    }

    /// Runs retention, compaction and producer-id expiry on every partition, one partition at a
    /// time on the blocking pool. A failing partition is logged; the others still run.
    pub async fn clean_all(&self, now_ms: i64) {
        let expired = self.expire_epoch_bumps(now_ms);
        if expired > 0 {
            tracing::info!(expired, "forgot idle producers' epoch bumps");
        }
        let Ok(topics) = self.topics() else {
            return;
        };
        for topic in topics {
            for partition in &topic.partitions {
                let partition = Arc::clone(partition);
                let index = partition.index();
                let expiration_ms = self.config().producer_id_expiration_ms;
                match self
                    .run_blocking(move || partition.clean(now_ms, expiration_ms))
                    .await
                {
                    Ok(cleaned) if cleaned == Cleaned::default() => {}
                    Ok(cleaned) => tracing::info!(
                        topic = %topic.name,
                        partition = index,
                        segments_deleted = cleaned.segments_deleted,
                        segments_compacted = cleaned.segments_compacted,
                        producers_expired = cleaned.producers_expired,
                        "cleaned partition"
                    ),
                    Err(error) => tracing::warn!(%error, "retention or compaction failed"),
                }
            }
        }
    }

    /// A receiver that changes when shutdown begins.
    pub fn closing_signal(&self) -> watch::Receiver<bool> {
        self.closing_signal.subscribe()
    }

    /// Refuses new requests and wakes long polls so they answer now.
    pub fn begin_shutdown(&self) {
        self.closing.store(true, Ordering::Release);
        self.closing_signal.send_replace(true);
    }

    /// Refuses new requests, waits for in-flight ones to let go of their
    /// partitions, and closes every log so it writes its clean checkpoint.
    pub async fn close(&self) -> Result<(), BrokerError> {
        self.begin_shutdown();
        let _registry = self.registry.lock().await;
        let topics: Vec<Arc<Topic>> = self
            .topics
            .write()
            .map_err(|_| lock_poisoned())?
            .drain()
            .map(|(_, topic)| topic)
            .collect();
        let mut first_error = None;
        for topic in topics {
            let name = topic.name.clone();
            let closed = match retire(topic).await {
                Ok(partitions) => {
                    self.run_blocking(move || partitions.into_iter().try_for_each(Partition::close))
                        .await
                }
                Err(e) => Err(e),
            };
            match closed {
                Ok(()) => tracing::info!(topic = %name, "closed topic"),
                Err(e) => {
                    tracing::error!(topic = %name, error = %e, "failed to close topic");
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn store_registry(&self, registry: Registry) -> Result<(), BrokerError> {
        let data_dir = self.config.data_dir.clone();
        self.run_blocking(move || registry.store(&data_dir)).await
    }

    /// Admin work always leaves the executor: it fsyncs.
    async fn run_blocking<T, F>(&self, work: F) -> Result<T, BrokerError>
    where
        F: FnOnce() -> Result<T, BrokerError> + Send + 'static,
        T: Send + 'static,
    {
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| BrokerError::TaskFailed(e.to_string()))?
    }
}

/// What a partition that fails to open becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnOpenError {
    /// At start: the partition goes offline, the broker serves the others.
    Offline,
    /// A new topic: the create fails.
    Fail,
}

fn open_topic(
    config: &BrokerConfig,
    record: &TopicRecord,
    clock: &SharedClock,
    on_error: OnOpenError,
) -> Result<Topic, BrokerError> {
    let log_config = config
        .log_config(&record.configs)
        .map_err(|e| config_error(&record.name, e))?;
    let partitions = (0..record.partition_count())
        .map(|index| open_partition(config, record, &log_config, index, clock, on_error))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Topic {
        name: record.name.clone(),
        replication_factor: record.replication_factor,
        configs: record.configs.clone(),
        partitions,
        metrics: Arc::default(),
    })
}

/// Opens partition `index` of the topic `record` describes: its log if this
/// broker hosts it, else a placeholder that knows only the leader.
fn open_partition(
    config: &BrokerConfig,
    record: &TopicRecord,
    log_config: &weir_log::LogConfig,
    index: u32,
    clock: &SharedClock,
    on_error: OnOpenError,
) -> Result<Arc<Partition>, BrokerError> {
    let epoch = record.leader_epochs[index as usize];
    let dir = partition_dir(&config.data_dir, &record.name, index);
    let hosted = record
        .hosted
        .as_ref()
        .is_none_or(|hosted| hosted.get(index as usize).copied().unwrap_or(false));
    if !hosted {
        // The cluster's metadata names the leader once it applies.
        return Ok(Arc::new(Partition::not_hosted(
            &dir,
            &record.name,
            index,
            epoch,
            None,
        )));
    }
    let open = match record.hosted {
        // A replica of a cluster topic takes no produce and serves
        // no consumer until the cluster's metadata makes it leader.
        Some(_) => Partition::open_replica,
        None => Partition::open_with_clock,
    };
    match open(
        &dir,
        &record.name,
        index,
        log_config.clone(),
        epoch,
        Arc::clone(clock),
    ) {
        Ok(partition) => Ok(Arc::new(partition)),
        Err(error) if on_error == OnOpenError::Offline => {
            let cause = offline_cause(error);
            tracing::error!(
                topic = %record.name,
                partition = index,
                %cause,
                "partition is offline"
            );
            Ok(Arc::new(Partition::offline(
                &dir,
                &record.name,
                index,
                epoch,
                cause,
            )))
        }
        Err(error) => Err(error),
    }
}

/// The cause of a failed open, without the topic and partition the offline error names.
fn offline_cause(error: BrokerError) -> String {
    match error {
        BrokerError::Log { source, .. } => source.to_string(),
        BrokerError::ProducerState { reason, .. } => {
            format!("cannot rebuild the idempotent-producer state: {reason}")
        }
        other => other.to_string(),
    }
}

/// Waits until no request holds the topic's partitions, then owns them.
async fn retire(mut topic: Arc<Topic>) -> Result<Vec<Partition>, BrokerError> {
    let deadline = Instant::now() + Duration::from_millis(RETIRE_WAIT_MS_MAX);
    let name = topic.name.clone();
    let mut topic = loop {
        match Arc::try_unwrap(topic) {
            Ok(topic) => break topic,
            Err(shared) if Instant::now() < deadline => {
                topic = shared;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            Err(_) => return Err(retire_timeout(&name)),
        }
    };
    let mut owned = Vec::with_capacity(topic.partitions.len());
    for mut partition in topic.partitions.drain(..) {
        loop {
            match Arc::try_unwrap(partition) {
                Ok(partition) => break owned.push(partition),
                Err(shared) if Instant::now() < deadline => {
                    partition = shared;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Err(_) => return Err(retire_timeout(&name)),
            }
        }
    }
    Ok(owned)
}

fn retire_timeout(topic: &str) -> BrokerError {
    BrokerError::TopicUnavailable {
        topic: topic.to_string(),
        reason: format!("requests still held its partitions after {RETIRE_WAIT_MS_MAX} ms"),
    }
}

/// A topic's config overrides after `set`: each key set to its value, or
/// removed where the value is empty (`Broker::alter_configs`' rule).
pub(crate) fn overrides_after(
    overrides: &BTreeMap<String, String>,
    set: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut after = overrides.clone();
    for (key, value) in set {
        if value.is_empty() {
            after.remove(key);
        } else {
            after.insert(key.clone(), value.clone());
        }
    }
    after
}

pub(crate) fn config_error(topic: &str, error: weir_log::LogError) -> BrokerError {
    match error {
        weir_log::LogError::Config { key, value, reason } => BrokerError::InvalidConfig {
            topic: topic.to_string(),
            key,
            value,
            reason,
        },
        other => BrokerError::InvalidRequest {
            topic: topic.to_string(),
            reason: other.to_string(),
        },
    }
}

fn lock_poisoned() -> BrokerError {
    BrokerError::TaskFailed("the topic map lock was poisoned by an earlier panic".to_string())
}
