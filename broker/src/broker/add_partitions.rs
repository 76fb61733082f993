//! Adding partitions to a topic, Kafka's CreatePartitions. A topic only
//! grows: its partitions and their records stay where they are, and keyed
//! records produced afterwards may hash to a different partition than before,
//! as in Kafka. Consumer groups see the new count at their coordinator's next
//! operation and rebalance.
//!
//! The new partitions' logs are opened (empty) before `topics.json` names
//! them, so a crash in between leaves directories no registry entry counts:
//! the next start removes them (`topic_deletion::remove_orphaned_partition_dirs`),
//! and a growth that failed to rewrite `topics.json` leaves them to the next
//! growth, which removes them before opening its own.

use std::sync::Arc;

use super::{open_partition, Broker, OnOpenError, Topic, PARTITIONS_MAX};
use crate::error::BrokerError;
use crate::registry::{Registry, TopicRecord};

impl Broker {
    /// Grows topic `name` to `total` partitions; `validate_only` checks the
    /// request without changing anything. In a cluster the new partitions are
    /// placed on the registered brokers and go through the metadata log.
    pub async fn create_partitions(
        &self,
        name: &str,
        total: u32,
        validate_only: bool,
    ) -> Result<(), BrokerError> {
        crate::internal_topics::refuse_internal(name, "add partitions to")?;
        // In a cluster the metadata log is what counts, which this broker
        // may not have applied yet.
        if let Some(link) = self.cluster.get() {
            return link
                .create_partitions(self, name, total, validate_only)
                .await;
        }
        check_growth(name, self.topic(name)?.partition_count(), total)?;
        if validate_only {
            return Ok(());
        }
        if self.config.peers.is_some() {
            return Err(BrokerError::TopicUnavailable {
                topic: name.to_string(),
                reason: "this broker has not joined its cluster yet".to_string(),
            });
        }
        let registry = self.registry.lock().await;
        let Some(record) = registry.topics.get(name) else {
            return Err(BrokerError::UnknownTopic {
                topic: name.to_string(),
            });
        };
        // Again under the lock: another request may have grown it meanwhile.
        check_growth(name, record.partition_count(), total)?;
        let mut grown = record.clone();
        grown.leader_epochs.resize(total as usize, 0);
        self.grow_from_record(registry, grown).await?;
        Ok(())
    }

    /// Grows this broker's topic to the partitions the cluster's metadata
    /// gives it: their leader epochs and whether this broker hosts each.
    /// Does nothing if the topic already has that many.
    pub(crate) async fn grow_from_metadata(
        &self,
        name: &str,
        added: impl Iterator<Item = (i32, bool)>,
        total: u32,
    ) -> Result<(), BrokerError> {
        let registry = self.registry.lock().await;
        let Some(record) = registry.topics.get(name) else {
            return Err(BrokerError::UnknownTopic {
                topic: name.to_string(),
            });
        };
        if record.partition_count() >= total {
            return Ok(());
        }
        let mut grown = record.clone();
        for (epoch, hosted) in added.skip(record.partition_count() as usize) {
            grown.leader_epochs.push(epoch);
            if let Some(flags) = grown.hosted.as_mut() {
                flags.push(hosted);
            }
        }
        debug_assert_eq!(grown.partition_count(), total);
        self.grow_from_record(registry, grown).await?;
        Ok(())
    }

    /// Opens the partitions `record` has beyond the local topic's, records
    /// them in `topics.json`, then serves them. Under the registry lock, which
    /// every change of the topic map holds, so the local topic cannot change
    /// in between.
    async fn grow_from_record(
        &self,
        mut registry: tokio::sync::MutexGuard<'_, Registry>,
        record: TopicRecord,
    ) -> Result<Arc<Topic>, BrokerError> {
        let old = self.topic(&record.name)?;
        let from = old.partition_count();
        let total = record.partition_count();
        debug_assert!(total > from, "a topic only grows");
        let config = self.config.clone();
        let clock = Arc::clone(&self.clock);
        let opened = record.clone();
        let added = self
            .run_blocking(move || {
                let log_config = config
                    .log_config(&opened.configs)
                    .map_err(|e| super::config_error(&opened.name, e))?;
                (from..total)
                    .map(|index| {
                        // Left by a growth that failed before topics.json named it.
                        crate::topic_deletion::remove_stale_partition_dir(
                            &config.data_dir,
                            &opened.name,
                            index,
                        )?;
                        open_partition(
                            &config,
                            &opened,
                            &log_config,
                            index,
                            &clock,
                            OnOpenError::Fail,
                        )
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .await?;
        let mut next = registry.clone();
        next.topics.insert(record.name.clone(), record.clone());
        self.store_registry(next.clone()).await?;
        *registry = next;
        let mut partitions = old.partitions.clone();
        partitions.extend(added);
        let grown = Arc::new(Topic {
            name: old.name.clone(),
            replication_factor: old.replication_factor,
            configs: old.configs.clone(),
            partitions,
            metrics: Arc::clone(&old.metrics),
        });
        self.topics
            .write()
            .map_err(|_| super::lock_poisoned())?
            .insert(record.name.clone(), Arc::clone(&grown));
        tracing::info!(topic = %record.name, from, to = total, "added partitions");
        Ok(grown)
    }
}

/// Refuses a count that would not grow the topic, or grow it past the most a
/// topic may have, with Kafka's INVALID_PARTITIONS.
pub(crate) fn check_growth(name: &str, current: u32, total: u32) -> Result<(), BrokerError> {
    let reason = if total == current {
        format!("the topic already has {current} partitions")
    } else if total < current {
        format!(
            "the topic has {current} partitions, more than the {total} asked for; partitions cannot be removed"
        )
    } else if total > PARTITIONS_MAX {
        format!("partition count {total} is above the most a topic may have, {PARTITIONS_MAX}")
    } else {
        return Ok(());
    };
    Err(BrokerError::InvalidPartitions {
        topic: name.to_string(),
        reason,
    })
}
