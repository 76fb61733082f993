//! Replicas placed by hand: a CreateTopics or CreatePartitions that names each partition's
//! brokers (Kafka's `replicaAssignment`), instead of leaving the placement to the broker.
//! The first broker of each list leads. Every list must hold the same number of distinct,
//! known brokers: the registered brokers of the cluster, or this broker alone.

use std::collections::BTreeSet;

use super::{Broker, PARTITIONS_MAX};
use crate::cluster::NodeId;
use crate::error::BrokerError;

impl Broker {
    /// Creates topic `name` with one partition per entry of `replicas`, each on the brokers
    /// it names.
    pub async fn create_topic_placed(
        &self,
        name: &str,
        replicas: Vec<Vec<NodeId>>,
        configs: std::collections::BTreeMap<String, String>,
    ) -> Result<(), BrokerError> {
        let partitions = u32::try_from(replicas.len()).unwrap_or(u32::MAX);
        if partitions == 0 || partitions > PARTITIONS_MAX {
            return Err(BrokerError::InvalidReplicaAssignment {
                topic: name.to_string(),
                reason: format!(
                    "{partitions} partitions assigned; a topic has between 1 and {PARTITIONS_MAX}"
                ),
            });
        }
        check_assignment(name, &replicas, &self.known_brokers(), None)?;
        if let Some(link) = self.cluster.get() {
            name.parse::<crate::topic_name::TopicName>()?;
            self.config
                .log_config(&configs)
                .map_err(|e| super::config_error(name, e))?;
            return link
                .create_topic_placed(self, name, replicas, configs)
                .await;
        }
        // This broker alone: every list is [this broker], which is the automatic placement.
        self.create_topic(name, partitions, 1, configs).await?;
        Ok(())
    }

    /// Grows topic `name` by one partition per entry of `replicas`, each on the brokers it
    /// names; `validate_only` checks without changing anything.
    pub async fn create_partitions_placed(
        &self,
        name: &str,
        replicas: Vec<Vec<NodeId>>,
        validate_only: bool,
    ) -> Result<(), BrokerError> {
        crate::internal_topics::refuse_internal(name, "add partitions to")?;
        let Some(link) = self.cluster.get() else {
            let current = self.topic(name)?.partition_count();
            check_assignment(name, &replicas, &self.known_brokers(), Some(1))?;
            let total = current.saturating_add(u32::try_from(replicas.len()).unwrap_or(u32::MAX));
            return self.create_partitions(name, total, validate_only).await;
        };
        let replication_factor = link.replication_factor(name)?;
        check_assignment(
            name,
            &replicas,
            &self.known_brokers(),
            Some(replication_factor),
        )?;
        if validate_only {
            return Ok(());
        }
        link.create_partitions_placed(self, name, replicas).await
    }

    /// Checks `replicas` as a create (`replication_factor` None) or a growth would.
    pub(crate) fn check_placement(
        &self,
        name: &str,
        replicas: &[Vec<NodeId>],
        replication_factor: Option<usize>,
    ) -> Result<(), BrokerError> {
        check_assignment(name, replicas, &self.known_brokers(), replication_factor)
    }

    /// The brokers a replica may be placed on: the cluster's registered ones, or this one.
    fn known_brokers(&self) -> BTreeSet<NodeId> {
        match self.cluster.get() {
            Some(link) => link.registered_brokers(),
            None => BTreeSet::from([NodeId::try_from(self.config.node_id).unwrap_or(0)]),
        }
    }
}

/// Refuses an assignment Kafka would refuse with INVALID_REPLICA_ASSIGNMENT: an empty
/// list, a broker named twice in one list or not known, lists of different lengths, or
/// (growing a topic) lists of another length than the topic's replication factor.
fn check_assignment(
    topic: &str,
    replicas: &[Vec<NodeId>],
    known: &BTreeSet<NodeId>,
    replication_factor: Option<usize>,
) -> Result<(), BrokerError> {
    let invalid = |reason: String| BrokerError::InvalidReplicaAssignment {
        topic: topic.to_string(),
        reason,
    };
    if replicas.is_empty() {
        return Err(invalid("no partition is assigned".to_string()));
    }
    let expected = replication_factor.unwrap_or(replicas[0].len());
    for (index, brokers) in replicas.iter().enumerate() {
        if brokers.is_empty() {
            return Err(invalid(format!("assignment {index} names no broker")));
        }
        if brokers.len() != expected {
            return Err(invalid(format!(
                "assignment {index} names {} brokers; every partition needs {expected}",
                brokers.len()
            )));
        }
        let distinct: BTreeSet<&NodeId> = brokers.iter().collect();
        if distinct.len() != brokers.len() {
            return Err(invalid(format!(
                "assignment {index} names a broker twice: {brokers:?}"
            )));
        }
        if let Some(unknown) = brokers.iter().find(|b| !known.contains(b)) {
            return Err(invalid(format!(
                "assignment {index} names broker {unknown}, which is not one of {known:?}"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_kafka_refuses_are_refused() {
        let known = BTreeSet::from([1, 2, 3]);
        let check = |replicas: &[Vec<NodeId>], rf| check_assignment("t", replicas, &known, rf);
        check(&[vec![1, 2], vec![2, 3], vec![3, 1]], None).unwrap();
        check(&[vec![2, 3]], Some(2)).unwrap();
        for (replicas, rf, says) in [
            (vec![], None, "no partition"),
            (vec![vec![]], None, "names no broker"),
            (vec![vec![1, 2], vec![3]], None, "every partition needs 2"),
            (vec![vec![1, 1]], None, "twice"),
            (vec![vec![1, 4]], None, "broker 4"),
            (vec![vec![1]], Some(2), "every partition needs 2"),
        ] {
            let refused = check(&replicas, rf).unwrap_err().to_string();
            assert!(refused.contains(says), "{replicas:?}: {refused}");
        }
    }
}
