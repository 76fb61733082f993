//! `ClusterLink`: how a broker in a cluster changes topics — through the
//! metadata log, never on its own. Creating a topic places its replicas on
//! the registered brokers and proposes it; every broker then creates its own
//! replicas when the entry applies (`manager.rs`), this one included, and the
//! call returns once the local topic exists.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::broker::{Broker, Topic};
use crate::cluster::{
    place_replicas, ClusterError, MetadataCommand, MetadataRefusal, NodeId, PartitionAssignment,
    QuorumHandle, TopicMetadata,
};
use crate::error::BrokerError;

/// How long a topic change waits to commit and apply here.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Clone)]
pub struct ClusterLink {
    pub(crate) node_id: NodeId,
    pub(crate) quorum: QuorumHandle,
    /// `replica.lag.time.max.ms`.
    pub(crate) replica_lag_time_max_ms: i64,
    /// Whether this broker's registration of this run has applied here.
    pub(crate) registered: tokio::sync::watch::Receiver<bool>,
}

impl std::fmt::Debug for ClusterLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterLink")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

impl ClusterLink {
    pub(crate) async fn create_topic(
        &self,
        broker: &Broker,
        name: &str,
        partitions: u32,
        replication_factor: u32,
        configs: BTreeMap<String, String>,
    ) -> Result<Arc<Topic>, BrokerError> {
        let metadata = self.quorum.metadata().borrow().clone();
        if metadata.topics.contains_key(name) {
            return Err(BrokerError::TopicExists {
                topic: name.to_owned(),
            });
        }
        let brokers: Vec<NodeId> = metadata.brokers.keys().copied().collect();
        let replication_factor = replication_factor.max(1) as usize;
        if replication_factor > brokers.len() {
            return Err(BrokerError::InvalidRequest {
                topic: name.to_owned(),
                reason: format!(
                    "replication factor {replication_factor} is larger than the {} registered brokers",
                    brokers.len()
                ),
            });
        }
        let replicas = place_replicas(
            &brokers,
            partitions,
            replication_factor,
            placement_start(name, brokers.len()),
        );
        self.create_topic_placed(broker, name, replicas, configs)
            .await?;
        broker.topic(name)
    }

    /// Proposes topic `name` with one partition on each list of `replicas` (checked
    /// against the registered brokers by the caller); returns once this broker has it.
    pub(crate) async fn create_topic_placed(
        &self,
        broker: &Broker,
        name: &str,
        replicas: Vec<Vec<NodeId>>,
        configs: BTreeMap<String, String>,
    ) -> Result<(), BrokerError> {
        let command = MetadataCommand::CreateTopic(TopicMetadata {
            name: name.to_owned(),
            configs,
            partitions: replicas.into_iter().map(new_partition).collect(),
        });
        match self.quorum.propose(command, CHANGE_TIMEOUT).await {
            Ok(_) => {}
            Err(ClusterError::Refused(MetadataRefusal::TopicExists(topic))) => {
                return Err(BrokerError::TopicExists { topic })
            }
            Err(e) => return Err(e.into()),
        }
        self.wait_local(broker, name, true).await
    }

    /// Places `total - existing` new partitions the way the topic's first
    /// ones were placed, continuing the round, and proposes them; returns once
    /// this broker serves them.
    pub(crate) async fn create_partitions(
        &self,
        broker: &Broker,
        name: &str,
        total: u32,
        validate_only: bool,
    ) -> Result<(), BrokerError> {
        let metadata = self.quorum.metadata().borrow().clone();
        let Some(topic) = metadata.topics.get(name) else {
            return Err(BrokerError::UnknownTopic {
                topic: name.to_owned(),
            });
        };
        let existing = topic.partitions.len() as u32;
        crate::broker::check_growth(name, existing, total)?;
        let brokers: Vec<NodeId> = metadata.brokers.keys().copied().collect();
        let replication_factor = topic.partitions.first().map_or(1, |p| p.replicas.len());
        if replication_factor > brokers.len() {
            return Err(BrokerError::InvalidPartitions {
                topic: name.to_owned(),
                reason: format!(
                    "the topic's replication factor {replication_factor} is larger than the {} registered brokers",
                    brokers.len()
                ),
            });
        }
        if validate_only {
            return Ok(());
        }
        let replicas = place_replicas(
            &brokers,
            total,
            replication_factor,
            placement_start(name, brokers.len()),
        )
        .into_iter()
        .skip(existing as usize)
        .collect();
        self.propose_partitions(broker, name, existing, replicas)
            .await
    }

    /// Proposes new partitions of topic `name` on the lists of `replicas` (checked
    /// against the registered brokers by the caller); returns once this broker has them.
    pub(crate) async fn create_partitions_placed(
        &self,
        broker: &Broker,
        name: &str,
        replicas: Vec<Vec<NodeId>>,
    ) -> Result<(), BrokerError> {
        let existing = self.topic_metadata(name)?.partitions.len() as u32;
        let total = existing.saturating_add(replicas.len() as u32);
        crate::broker::check_growth(name, existing, total)?;
        self.propose_partitions(broker, name, existing, replicas)
            .await
    }

    async fn propose_partitions(
        &self,
        broker: &Broker,
        name: &str,
        existing: u32,
        replicas: Vec<Vec<NodeId>>,
    ) -> Result<(), BrokerError> {
        let total = existing.saturating_add(replicas.len() as u32);
        let command = MetadataCommand::AddPartitions {
            topic: name.to_owned(),
            existing,
            partitions: replicas.into_iter().map(new_partition).collect(),
        };
        match self.quorum.propose(command, CHANGE_TIMEOUT).await {
            Ok(_) => {}
            Err(ClusterError::Refused(MetadataRefusal::UnknownTopic(topic))) => {
                return Err(BrokerError::UnknownTopic { topic })
            }
            Err(ClusterError::Refused(refusal @ MetadataRefusal::PartitionCountChanged { .. })) => {
                return Err(BrokerError::InvalidPartitions {
                    topic: name.to_owned(),
                    reason: format!("{refusal}; another change added partitions meanwhile"),
                })
            }
            Err(e) => return Err(e.into()),
        }
        // The local topic may not exist yet: this broker's applier may lag.
        wait_until(|| {
            broker
                .topic(name)
                .is_ok_and(|topic| topic.partition_count() >= total)
        })
        .await
    }

    /// Proposes topic `name`'s settings change and returns the overrides in force once
    /// this broker applied it. Checked first against the metadata as this broker has it.
    pub(crate) async fn alter_configs(
        &self,
        broker: &Broker,
        name: &str,
        set: BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, BrokerError> {
        let current = self.topic_metadata(name)?.configs;
        let expected = crate::broker::overrides_after(&current, &set);
        broker
            .config()
            .log_config(&expected)
            .map_err(|e| crate::broker::config_error(name, e))?;
        let index = match self
            .quorum
            .propose(
                MetadataCommand::AlterTopicConfigs {
                    topic: name.to_owned(),
                    set,
                },
                CHANGE_TIMEOUT,
            )
            .await
        {
            Ok(index) => index,
            Err(ClusterError::Refused(MetadataRefusal::UnknownTopic(topic))) => {
                return Err(BrokerError::UnknownTopic { topic })
            }
            Err(e) => return Err(e.into()),
        };
        // The entry applied here; the local topic follows when the applier reaches it.
        let mut applied = BTreeMap::new();
        wait_until(|| {
            let metadata = self.quorum.metadata().borrow().clone();
            match metadata.topics.get(name) {
                Some(topic) if metadata.applied_index >= index => {
                    applied.clone_from(&topic.configs);
                    broker.topic(name).is_ok_and(|t| t.configs == topic.configs)
                }
                _ => false,
            }
        })
        .await?;
        Ok(applied)
    }

    /// The brokers registered in the cluster's metadata as this broker applied it.
    pub(crate) fn registered_brokers(&self) -> std::collections::BTreeSet<NodeId> {
        self.quorum
            .metadata()
            .borrow()
            .brokers
            .keys()
            .copied()
            .collect()
    }

    /// The replication factor of topic `name` in the cluster's metadata.
    pub(crate) fn replication_factor(&self, name: &str) -> Result<usize, BrokerError> {
        Ok(self
            .topic_metadata(name)?
            .partitions
            .first()
            .map_or(1, |p| p.replicas.len()))
    }

    pub(crate) async fn delete_topic(&self, name: &str) -> Result<(), BrokerError> {
        match self
            .quorum
            .propose(
                MetadataCommand::DeleteTopic {
                    name: name.to_owned(),
                },
                CHANGE_TIMEOUT,
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(ClusterError::Refused(MetadataRefusal::UnknownTopic(topic))) => {
                Err(BrokerError::UnknownTopic { topic })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Waits until the local topic exists (or is gone), as the metadata
    /// applier makes it.
    async fn wait_local(
        &self,
        broker: &Broker,
        name: &str,
        exists: bool,
    ) -> Result<(), BrokerError> {
        wait_until(|| broker.topic(name).is_ok() == exists).await
    }

    /// The topic `name` as this broker's applied metadata has it.
    fn topic_metadata(&self, name: &str) -> Result<TopicMetadata, BrokerError> {
        self.quorum
            .metadata()
            .borrow()
            .topics
            .get(name)
            .cloned()
            .ok_or_else(|| BrokerError::UnknownTopic {
                topic: name.to_owned(),
            })
    }
}

/// Polls `done` until it holds, up to [`CHANGE_TIMEOUT`]: how a change proposed here
/// waits for this broker's applier to act on it.
async fn wait_until(mut done: impl FnMut() -> bool) -> Result<(), BrokerError> {
    let deadline = tokio::time::Instant::now() + CHANGE_TIMEOUT;
    while !done() {
        if tokio::time::Instant::now() >= deadline {
            return Err(BrokerError::Cluster(ClusterError::ProposalTimedOut {
                timeout_ms: CHANGE_TIMEOUT.as_millis() as u64,
            }));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// Where a topic's replica placement starts. Kafka starts at a random broker;
/// a hash of the name spreads leaders alike and places a topic the same way on
/// every retry.
fn placement_start(name: &str, brokers: usize) -> usize {
    name.bytes()
        .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize))
        % brokers
}

/// A new partition on `replicas`, led by the first.
fn new_partition(replicas: Vec<NodeId>) -> PartitionAssignment {
    PartitionAssignment {
        leader: replicas.first().copied(),
        leader_epoch: 0,
        isr: replicas.clone(),
        replicas,
        // Kafka's PartitionRecord starts every partition at epoch 0.
        partition_epoch: 0,
    }
}
