//! The group coordinator served by the broker: one [`GroupCoordinator`] per partition of
//! `__consumer_offsets` this broker leads, each behind its own lock, whose changes are
//! appended to that partition before any answer leaves.
//!
//! A group lives on the partition its id hashes to, and its coordinator is that
//! partition's leader, as in Kafka: a broker in no cluster leads them all; in a cluster the
//! topic is replicated like any other, a broker rebuilds a partition's groups from its log
//! when it becomes that partition's leader (and again at each new leader epoch, since
//! another leader may have written in between), and drops them when it stops leading. A
//! request for a group coordinated elsewhere is refused with
//! [`BrokerError::NotCoordinator`], which clients answer by finding the coordinator again.
//!
//! Owns: the locks around the coordinators, which partitions are loaded, the records' way
//! into and out of the log (`log.rs`), the topic sizes they are fed, and the clock they are
//! driven by. Does not own the rules of groups (`group/`) or the wire (`rpc/group.rs`,
//! `kafka/groups.rs`).
//!
//! Invariant: what a coordinator answers is in its partition's log, and in a cluster on
//! every in-sync replica of it. Each operation runs under its partition's lock, its records
//! are appended (fsynced per the topic's flush policy, and replicated to the ISR) while the
//! lock is held, and only then is the answer returned. The groups of other partitions are
//! served meanwhile: a commit waiting up to 5 s for a slow follower holds up the groups that
//! share its partition (and the sweep and listings, which visit every partition in turn),
//! not the calls of other groups, as Kafka's coordinator serves each partition apart. When an append fails the
//! coordinator is ahead of the log; it is then rebuilt from the log before the next
//! operation is served, rather than undoing the change in memory: the log is the one
//! truth, and an append that failed is then reflected exactly as it was stored.

mod log;

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::Mutex;

use crate::broker::Broker;
use crate::cluster::NodeId;
use crate::error::BrokerError;
use crate::group::{
    offsets_partition_for, GroupConfig, GroupCoordinator, GroupError, TopicMetadata,
    CONSUMER_OFFSETS_TOPIC,
};
use crate::replication::RoleKind;

/// The broker's group coordinators.
#[derive(Debug)]
pub struct GroupService {
    broker: Arc<Broker>,
    config: GroupConfig,
    /// Whether the broker is in a cluster, where the metadata log says who leads
    /// `__consumer_offsets` (before it has, this broker coordinates nothing).
    in_cluster: bool,
    /// One lock per `__consumer_offsets` partition, by index, holding its coordinator
    /// while this broker leads it. The map's own lock is held only to look one up.
    partitions: std::sync::Mutex<BTreeMap<u32, Arc<Mutex<Option<Loaded>>>>>,
    topics: std::sync::Mutex<Topics>,
}

/// The broker's topic sizes as last read, and a version that moves when they change:
/// read once per operation or tick, not once per coordinator.
#[derive(Debug, Default, Clone)]
struct Topics {
    sizes: Arc<TopicMetadata>,
    version: u64,
}

#[derive(Debug)]
struct Loaded {
    coordinator: GroupCoordinator,
    /// The partition's leader epoch when it was rebuilt (`None` in no cluster, where it
    /// never changes hands).
    epoch: Option<i32>,
    /// The `Topics::version` last given to `set_topics` (0: none yet).
    topics_version: u64,
    /// An append failed after the coordinator changed: rebuild it from the log first.
    ahead_of_log: bool,
}

/// Who coordinates the groups of one `__consumer_offsets` partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coordination {
    /// This broker, at this leader epoch (`None` in no cluster).
    Here { epoch: Option<i32> },
    /// Another broker, or none known yet.
    Elsewhere { leader: Option<NodeId> },
}

impl GroupService {
    /// Rebuilds the groups of every `__consumer_offsets` partition this broker leads now
    /// (in no cluster, all of them; none before the first group change creates the topic).
    /// In a cluster the partitions it comes to lead are rebuilt by `tick`.
    pub async fn start(broker: Arc<Broker>, config: GroupConfig) -> Result<Self, BrokerError> {
        let in_cluster = broker.config().peers.is_some();
        let service = GroupService {
            broker,
            config,
            in_cluster,
            partitions: std::sync::Mutex::new(BTreeMap::new()),
            topics: std::sync::Mutex::new(Topics::default()),
        };
        // Topics may have changed while the broker was down: groups that subscribe to
        // them get a new assignment in the first tick.
        service.refresh().await?;
        Ok(service)
    }

    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    /// The `__consumer_offsets` partition `group` lives on. In a cluster the topic is
    /// created here if no group made it yet, as Kafka's FindCoordinator does.
    pub async fn partition_of(&self, group: &str) -> Result<u32, BrokerError> {
        let partitions = match self.broker.topic(CONSUMER_OFFSETS_TOPIC) {
            Ok(topic) => topic.partition_count(),
            Err(BrokerError::UnknownTopic { .. }) if self.in_cluster => {
                crate::internal_topics::ensure_offsets_topic(&self.broker).await?
            }
            // Created at the first change, with the count the setting says.
            Err(BrokerError::UnknownTopic { .. }) => self.broker.config().offsets_topic_partitions,
            Err(error) => return Err(error),
        };
        Ok(offsets_partition_for(group, partitions))
    }

    /// Who coordinates the groups of partition `index` now.
    pub fn coordination(&self, index: u32) -> Coordination {
        let Ok(topic) = self.broker.topic(CONSUMER_OFFSETS_TOPIC) else {
            return if self.in_cluster {
                Coordination::Elsewhere { leader: None }
            } else {
                Coordination::Here { epoch: None }
            };
        };
        let Ok(partition) = topic.partition(index) else {
            return Coordination::Elsewhere { leader: None };
        };
        match partition.replica.kind() {
            RoleKind::Leader => Coordination::Here {
                epoch: Some(partition.leader_epoch()),
            },
            RoleKind::Solo if !self.in_cluster => Coordination::Here { epoch: None },
            // In a cluster a replica is Solo only until the metadata log gives it a role.
            RoleKind::Solo => Coordination::Elsewhere { leader: None },
            RoleKind::Follower | RoleKind::NotHosted => Coordination::Elsewhere {
                leader: partition.replica.leader(),
            },
        }
    }

    /// Who coordinates `group`: the leader of its partition.
    pub async fn coordinator_of(&self, group: &str) -> Result<Coordination, BrokerError> {
        let index = self.partition_of(group).await?;
        Ok(self.coordination(index))
    }

    /// Which broker coordinates `group` (this one: `None`), or `NotCoordinator` with no
    /// broker while its partition has no leader. In a cluster the answer is the leader the
    /// metadata log names, which a broker knows before its own replica has taken its new
    /// role; this broker answers itself only once its replica leads.
    pub async fn coordinator_broker(&self, group: &str) -> Result<Option<NodeId>, BrokerError> {
        let index = self.partition_of(group).await?;
        let unknown = || BrokerError::NotCoordinator {
            group: group.to_string(),
            coordinator: None,
        };
        let Some(link) = self.broker.cluster() else {
            return match self.coordination(index) {
                Coordination::Here { .. } => Ok(None),
                Coordination::Elsewhere { .. } => Err(unknown()),
            };
        };
        let leader = {
            let metadata = link.quorum.metadata().borrow().clone();
            metadata
                .topics
                .get(CONSUMER_OFFSETS_TOPIC)
                .and_then(|topic| topic.partitions.get(index as usize))
                .and_then(|assignment| assignment.leader)
        };
        match leader {
            Some(leader) if self.is_self(leader) => match self.coordination(index) {
                Coordination::Here { .. } => Ok(None),
                // Named leader by the metadata, not yet by the replica's role.
                Coordination::Elsewhere { .. } => Err(unknown()),
            },
            Some(leader) => Ok(Some(leader)),
            None => Err(unknown()),
        }
    }

    fn is_self(&self, node: NodeId) -> bool {
        u64::try_from(self.broker.config().node_id) == Ok(node)
    }

    /// The broker this service runs in.
    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// The lock of partition `index`, made on first use.
    fn partition_lock(&self, index: u32) -> Arc<Mutex<Option<Loaded>>> {
        let mut partitions = self.partitions.lock().expect("not poisoned");
        Arc::clone(partitions.entry(index).or_default())
    }

    /// The broker's topic sizes now, with the version that says whether they changed.
    fn note_topics(&self) -> Result<Topics, BrokerError> {
        // Read under the lock: sizes read earlier must not land after newer ones, with a
        // newer version.
        let mut topics = self.topics.lock().expect("not poisoned");
        let sizes = self.topic_metadata()?;
        if sizes != *topics.sizes {
            topics.sizes = Arc::new(sizes);
            topics.version += 1;
        }
        Ok(topics.clone())
    }

    /// Runs `operation` on the coordinator of `group` and appends the records it left
    /// before returning its result. A refused operation's records (it should leave none)
    /// are appended too, so memory and log never part.
    pub async fn mutate<T>(
        &self,
        group: &str,
        operation: impl FnOnce(&mut GroupCoordinator, i64) -> Result<T, GroupError>,
    ) -> Result<T, BrokerError> {
        let index = self.partition_of(group).await?;
        let topics = self.note_topics()?;
        let lock = self.partition_lock(index);
        let mut slot = lock.lock().await;
        self.mutate_loaded(&mut slot, &topics, index, group, operation)
            .await
    }

    async fn mutate_loaded<T>(
        &self,
        slot: &mut Option<Loaded>,
        topics: &Topics,
        index: u32,
        group: &str,
        operation: impl FnOnce(&mut GroupCoordinator, i64) -> Result<T, GroupError>,
    ) -> Result<T, BrokerError> {
        let loaded = self.loaded(slot, index, group).await?;
        let now_ms = now_ms();
        // Versions only grow: an operation that read the sizes before another's must
        // not hand the coordinator the older ones.
        if topics.version > loaded.topics_version {
            loaded
                .coordinator
                .set_topics(TopicMetadata::clone(&topics.sizes), now_ms);
            loaded.topics_version = topics.version;
        }
        let result = operation(&mut loaded.coordinator, now_ms);
        // Any change may end the rebalance a held classic JoinGroup waits on.
        loaded.coordinator.release_held_classic_joins(now_ms);
        let records = loaded.coordinator.take_records();
        if !records.is_empty() {
            if let Err(error) =
                log::append(&self.broker, index, loaded.epoch, records, now_ms).await
            {
                tracing::warn!(%error, partition = index, "cannot append group records; the coordinator will be rebuilt from the log");
                loaded.ahead_of_log = true;
                return Err(match error {
                    // It stopped leading the partition while appending.
                    BrokerError::NotLeader { leader, .. } => BrokerError::NotCoordinator {
                        group: group.to_string(),
                        coordinator: leader,
                    },
                    other => other,
                });
            }
        }
        result.map_err(BrokerError::from)
    }

    /// Runs `query` on the coordinator of `group`, which it cannot change.
    pub async fn read<T>(
        &self,
        group: &str,
        query: impl FnOnce(&GroupCoordinator) -> T,
    ) -> Result<T, BrokerError> {
        let index = self.partition_of(group).await?;
        let lock = self.partition_lock(index);
        let mut slot = lock.lock().await;
        let loaded = self.loaded(&mut slot, index, group).await?;
        Ok(query(&loaded.coordinator))
    }

    /// The locks of every partition known here, in order.
    fn partition_locks(&self) -> Vec<(u32, Arc<Mutex<Option<Loaded>>>)> {
        let partitions = self.partitions.lock().expect("not poisoned");
        partitions
            .iter()
            .map(|(index, lock)| (*index, Arc::clone(lock)))
            .collect()
    }

    /// Runs `query` on every coordinator this broker holds (the groups it coordinates:
    /// in a cluster, a listing of every group asks every broker, as Kafka's admin does).
    pub async fn read_all<T>(
        &self,
        mut query: impl FnMut(&GroupCoordinator) -> Vec<T>,
    ) -> Result<Vec<T>, BrokerError> {
        self.refresh().await?;
        let mut all = Vec::new();
        for (_, lock) in self.partition_locks() {
            if let Some(loaded) = lock.lock().await.as_ref() {
                all.extend(query(&loaded.coordinator));
            }
        }
        Ok(all)
    }

    /// The coordinator of partition `index`, rebuilt from the log first when it is not
    /// loaded, was loaded at an older leader epoch, or is ahead of its log; refused when
    /// another broker leads the partition.
    async fn loaded<'a>(
        &self,
        slot: &'a mut Option<Loaded>,
        index: u32,
        group: &str,
    ) -> Result<&'a mut Loaded, BrokerError> {
        let epoch = match self.coordination(index) {
            Coordination::Here { epoch } => epoch,
            Coordination::Elsewhere { leader } => {
                *slot = None;
                return Err(BrokerError::NotCoordinator {
                    group: group.to_string(),
                    coordinator: leader,
                });
            }
        };
        let current = slot
            .as_ref()
            .is_some_and(|loaded| loaded.epoch == epoch && !loaded.ahead_of_log);
        if !current {
            let coordinator = log::replay(&self.broker, &self.config, index).await?;
            if slot.is_some() {
                tracing::info!(
                    partition = index,
                    ?epoch,
                    "rebuilt a group coordinator from __consumer_offsets"
                );
            }
            *slot = Some(Loaded {
                coordinator,
                epoch,
                topics_version: 0,
                ahead_of_log: false,
            });
        }
        Ok(slot.as_mut().expect("loaded above"))
    }

    /// Loads the partitions this broker has come to lead and drops those it no longer
    /// does, so that their members' timeouts run here and only here.
    async fn refresh(&self) -> Result<(), BrokerError> {
        let partitions = match self.broker.topic(CONSUMER_OFFSETS_TOPIC) {
            Ok(topic) => topic.partition_count(),
            Err(BrokerError::UnknownTopic { .. }) => return Ok(()),
            Err(error) => return Err(error),
        };
        for index in 0..partitions {
            match self.coordination(index) {
                Coordination::Here { .. } => {
                    let lock = self.partition_lock(index);
                    let mut slot = lock.lock().await;
                    self.loaded(&mut slot, index, CONSUMER_OFFSETS_TOPIC)
                        .await?;
                }
                Coordination::Elsewhere { .. } => {
                    let lock = self
                        .partitions
                        .lock()
                        .expect("not poisoned")
                        .get(&index)
                        .cloned();
                    let Some(lock) = lock else {
                        continue;
                    };
                    if lock.lock().await.take().is_some() {
                        tracing::info!(
                            partition = index,
                            "no longer leads this __consumer_offsets partition: its groups are coordinated elsewhere"
                        );
                    }
                }
            }
        }
        self.partitions
            .lock()
            .expect("not poisoned")
            .retain(|&index, _| index < partitions);
        Ok(())
    }

    /// Removes members past their timeouts and computes delayed assignments in every
    /// coordinator held here, persisting what that changed. Returns the removed (group,
    /// member) pairs. Each partition is ticked under its own lock, one after another.
    pub async fn tick(&self) -> Result<Vec<(String, String)>, BrokerError> {
        self.refresh().await?;
        let topics = self.note_topics()?;
        let mut removed = Vec::new();
        for (index, lock) in self.partition_locks() {
            let mut slot = lock.lock().await;
            if slot.is_none() {
                continue;
            }
            match self
                .mutate_loaded(
                    &mut slot,
                    &topics,
                    index,
                    CONSUMER_OFFSETS_TOPIC,
                    |c, now_ms| Ok(c.tick(now_ms)),
                )
                .await
            {
                Ok(gone) => removed.extend(gone),
                // Said here, partition by partition; the others are still ticked, and
                // this one again at the next tick.
                Err(error) => {
                    tracing::warn!(%error, partition = index, "group coordinator tick failed")
                }
            }
        }
        Ok(removed)
    }

    /// The broker's topics and their partition counts, the internal ones left out: no
    /// group subscribes to them.
    fn topic_metadata(&self) -> Result<TopicMetadata, BrokerError> {
        Ok(self
            .broker
            .topics()?
            .iter()
            .filter(|topic| !crate::internal_topics::is_internal(&topic.name))
            .map(|topic| (topic.name.clone(), topic.partition_count()))
            .collect())
    }
}

/// How often the coordinator looks for expired members and ended rebalance delays, and
/// for `__consumer_offsets` partitions it has come to lead or stopped leading. Kafka's
/// coordinator schedules a timer per deadline; a 100 ms sweep bounds the lateness the same
/// way at this scale.
const TICK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// Ticks `service` every [`TICK_INTERVAL`] until shutdown begins.
pub async fn tick_periodically(
    service: Arc<GroupService>,
    mut closing: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(TICK_INTERVAL) => {}
            _ = closing.changed() => return,
        }
        match service.tick().await {
            Ok(removed) => {
                for (group, member) in removed {
                    tracing::info!(%group, %member, "removed a group member past its timeout");
                }
            }
            Err(error) => tracing::warn!(%error, "group coordinator tick failed"),
        }
    }
}

/// Wall-clock milliseconds: group deadlines and commit times.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
