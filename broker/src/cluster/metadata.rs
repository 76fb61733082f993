//! The cluster metadata state machine: what every broker agrees on, rebuilt by
//! applying the committed entries of the metadata log in order.
//!
//! `apply` is deterministic (no clock, no randomness, no I/O): every broker
//! that applies the same entries holds the same `ClusterMetadata`. A command
//! that does not fit the state (a topic that exists, a stale leader epoch) is
//! refused by every broker alike and changes nothing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A broker's node id, as given by `--node-id` and in `--peers`.
pub type NodeId = u64;

/// One registered broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRecord {
    pub node_id: NodeId,
    /// Where its gRPC listener is reached.
    pub address: String,
    /// Its Kafka listener, if it has one.
    pub kafka_address: Option<String>,
}

/// One partition's placement and leadership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionAssignment {
    /// The replica set, preferred leader first.
    pub replicas: Vec<NodeId>,
    pub leader: Option<NodeId>,
    pub leader_epoch: i32,
    /// In-sync replicas; always a subset of `replicas` holding the leader.
    pub isr: Vec<NodeId>,
    /// Bumped by every change to this partition (Kafka's `partitionEpoch`,
    /// KIP-497), so a change computed from an older state is refused.
    /// Snapshots written before it existed read as 0.
    #[serde(default)]
    pub partition_epoch: i32,
}

/// One topic as the cluster knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMetadata {
    pub name: String,
    /// Topic config overrides (Kafka names).
    pub configs: BTreeMap<String, String>,
    pub partitions: Vec<PartitionAssignment>,
}

/// A change to the cluster metadata: the payload of one metadata log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MetadataCommand {
    /// A broker announces itself (again after a restart, possibly at a new address).
    RegisterBroker(BrokerRecord),
    CreateTopic(TopicMetadata),
    DeleteTopic {
        name: String,
    },
    /// Topic settings set (an empty value removes the override), key by key, so that
    /// two changes of different keys both stand.
    AlterTopicConfigs {
        topic: String,
        set: BTreeMap<String, String>,
    },
    /// New partitions at the end of a topic that had `existing` (Kafka's
    /// CreatePartitions): refused if another change grew it since.
    AddPartitions {
        topic: String,
        existing: u32,
        partitions: Vec<PartitionAssignment>,
    },
    /// A new leader, epoch or ISR for one partition: leader elections and ISR
    /// shrinks and expands.
    ChangePartition {
        topic: String,
        partition: u32,
        leader: Option<NodeId>,
        leader_epoch: i32,
        isr: Vec<NodeId>,
        /// The partition epoch the change was computed from (Kafka's
        /// AlterPartition `PartitionEpoch`): it applies only if the partition
        /// is still there. `None` in entries written before partition epochs.
        #[serde(default)]
        partition_epoch: Option<i32>,
    },
}

/// Why every broker refused a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataRefusal {
    #[error("topic {0:?} already exists")]
    TopicExists(String),
    #[error("topic {0:?} does not exist")]
    UnknownTopic(String),
    #[error(
        "topic {topic:?} has {current} partitions, not the {expected} the change was computed from"
    )]
    PartitionCountChanged {
        topic: String,
        expected: u32,
        current: u32,
    },
    #[error("topic {topic:?} has no partition {partition}")]
    UnknownPartition { topic: String, partition: u32 },
    #[error("topic {topic:?} partition {partition}: {reason}")]
    InvalidAssignment {
        topic: String,
        partition: u32,
        reason: String,
    },
    #[error(
        "topic {topic:?} partition {partition}: leader epoch {proposed} is older than the current {current}"
    )]
    StaleLeaderEpoch {
        topic: String,
        partition: u32,
        proposed: i32,
        current: i32,
    },
    /// Kafka's INVALID_UPDATE_VERSION: another change applied since the
    /// proposer read the partition.
    #[error(
        "topic {topic:?} partition {partition}: the change was computed from partition epoch {proposed}, but the partition is at {current}"
    )]
    StalePartitionEpoch {
        topic: String,
        partition: u32,
        proposed: i32,
        current: i32,
    },
}

/// Everything the metadata log says, as of `applied_index`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterMetadata {
    /// The index of the last entry applied.
    pub applied_index: u64,
    pub brokers: BTreeMap<NodeId, BrokerRecord>,
    pub topics: BTreeMap<String, TopicMetadata>,
}

impl ClusterMetadata {
    /// Applies the command of entry `index`. Entries come in index order; an
    /// entry with no command (a new leader's empty entry) goes through
    /// [`ClusterMetadata::skip`].
    pub fn apply(&mut self, index: u64, command: &MetadataCommand) -> Result<(), MetadataRefusal> {
        debug_assert!(
            index > self.applied_index,
            "entries are applied in order, once"
        );
        self.applied_index = index;
        match command {
            MetadataCommand::RegisterBroker(record) => {
                self.brokers.insert(record.node_id, record.clone());
                Ok(())
            }
            MetadataCommand::CreateTopic(topic) => {
                if self.topics.contains_key(&topic.name) {
                    return Err(MetadataRefusal::TopicExists(topic.name.clone()));
                }
                for (index, partition) in topic.partitions.iter().enumerate() {
                    check_assignment(&topic.name, index as u32, partition)?;
                }
                self.topics.insert(topic.name.clone(), topic.clone());
                Ok(())
            }
            MetadataCommand::DeleteTopic { name } => match self.topics.remove(name) {
                Some(_) => Ok(()),
                None => Err(MetadataRefusal::UnknownTopic(name.clone())),
            },
            MetadataCommand::AlterTopicConfigs { topic, set } => {
                let Some(meta) = self.topics.get_mut(topic) else {
                    return Err(MetadataRefusal::UnknownTopic(topic.clone()));
                };
                for (key, value) in set {
                    if value.is_empty() {
                        meta.configs.remove(key);
                    } else {
                        meta.configs.insert(key.clone(), value.clone());
                    }
                }
                Ok(())
            }
            MetadataCommand::AddPartitions {
                topic,
                existing,
                partitions,
            } => {
                let Some(meta) = self.topics.get_mut(topic) else {
                    return Err(MetadataRefusal::UnknownTopic(topic.clone()));
                };
                let current = meta.partitions.len() as u32;
                if current != *existing {
                    return Err(MetadataRefusal::PartitionCountChanged {
                        topic: topic.clone(),
                        expected: *existing,
                        current,
                    });
                }
                for (index, partition) in (current..).zip(partitions) {
                    check_assignment(topic, index, partition)?;
                }
                meta.partitions.extend(partitions.iter().cloned());
                Ok(())
            }
            MetadataCommand::ChangePartition {
                topic,
                partition,
                leader,
                leader_epoch,
                isr,
                partition_epoch,
            } => {
                let Some(meta) = self.topics.get_mut(topic) else {
                    return Err(MetadataRefusal::UnknownTopic(topic.clone()));
                };
                let Some(current) = meta.partitions.get_mut(*partition as usize) else {
                    return Err(MetadataRefusal::UnknownPartition {
                        topic: topic.clone(),
                        partition: *partition,
                    });
                };
                // An epoch is never reused for a different leader: a change of
                // leader must raise it, and nothing may lower it.
                let leader_changed = *leader != current.leader;
                if *leader_epoch < current.leader_epoch
                    || (leader_changed && *leader_epoch == current.leader_epoch)
                {
                    return Err(MetadataRefusal::StaleLeaderEpoch {
                        topic: topic.clone(),
                        partition: *partition,
                        proposed: *leader_epoch,
                        current: current.leader_epoch,
                    });
                }
                // A change computed from an older state would undo what
                // applied since: the controller dropping a dead broker from
                // an ISR the leader has just shrunk would put back the
                // replica the leader dropped, behind the high watermark.
                if let Some(proposed) = *partition_epoch {
                    if proposed != current.partition_epoch {
                        return Err(MetadataRefusal::StalePartitionEpoch {
                            topic: topic.clone(),
                            partition: *partition,
                            proposed,
                            current: current.partition_epoch,
                        });
                    }
                }
                // An entry from before partition epochs neither checks nor
                // bumps: brokers whose snapshots (read as epoch 0) were taken
                // at different indexes then agree on every epoch all the same.
                let next_epoch = match partition_epoch {
                    Some(_) => current.partition_epoch + 1,
                    None => current.partition_epoch,
                };
                let next = PartitionAssignment {
                    replicas: current.replicas.clone(),
                    leader: *leader,
                    leader_epoch: *leader_epoch,
                    isr: isr.clone(),
                    partition_epoch: next_epoch,
                };
                check_assignment(topic, *partition, &next)?;
                *current = next;
                Ok(())
            }
        }
    }

    /// Records that entry `index` carried no command.
    pub fn skip(&mut self, index: u64) {
        debug_assert!(
            index > self.applied_index,
            "entries are applied in order, once"
        );
        self.applied_index = index;
    }
}

fn check_assignment(
    topic: &str,
    partition: u32,
    assignment: &PartitionAssignment,
) -> Result<(), MetadataRefusal> {
    let invalid = |reason: &str| MetadataRefusal::InvalidAssignment {
        topic: topic.to_owned(),
        partition,
        reason: reason.to_owned(),
    };
    if assignment.replicas.is_empty() {
        return Err(invalid("no replicas"));
    }
    let mut seen = assignment.replicas.clone();
    seen.sort_unstable();
    seen.dedup();
    if seen.len() != assignment.replicas.len() {
        return Err(invalid("a broker appears twice among the replicas"));
    }
    if let Some(leader) = assignment.leader {
        if !assignment.isr.contains(&leader) {
            return Err(invalid("the leader is not in the ISR"));
        }
    }
    if assignment
        .isr
        .iter()
        .any(|id| !assignment.replicas.contains(id))
    {
        return Err(invalid("an ISR member is not a replica"));
    }
    Ok(())
}

/// Places `partitions` partitions of `replication_factor` replicas on
/// `brokers` (sorted, distinct) the way Kafka's rack-unaware assignment does:
/// leaders round-robin from `start`, and followers shifted by one more broker
/// every time the partitions wrap around the brokers, so that replicas of
/// consecutive partitions do not always pair the same brokers.
pub fn place_replicas(
    brokers: &[NodeId],
    partitions: u32,
    replication_factor: usize,
    start: usize,
) -> Vec<Vec<NodeId>> {
    let n = brokers.len();
    debug_assert!(replication_factor >= 1 && replication_factor <= n);
    (0..partitions as usize)
        .map(|p| {
            let first = (start + p) % n;
            let shift = if n > 1 { (start + p / n) % (n - 1) } else { 0 };
            let mut replicas = vec![brokers[first]];
            for j in 0..replication_factor - 1 {
                let follower = (first + 1 + (shift + j) % (n - 1)) % n;
                replicas.push(brokers[follower]);
            }
            replicas
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str, replicas: &[Vec<NodeId>]) -> TopicMetadata {
        TopicMetadata {
            name: name.into(),
            configs: BTreeMap::new(),
            partitions: replicas
                .iter()
                .map(|r| PartitionAssignment {
                    replicas: r.clone(),
                    leader: Some(r[0]),
                    leader_epoch: 0,
                    isr: r.clone(),
                    partition_epoch: 0,
                })
                .collect(),
        }
    }

    #[test]
    fn placement_spreads_leaders_and_never_repeats_a_broker_in_a_replica_set() {
        let brokers = [1, 2, 3];
        let placed = place_replicas(&brokers, 6, 3, 0);
        for replicas in &placed {
            let mut sorted = replicas.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, vec![1, 2, 3]);
        }
        let leaders: Vec<_> = placed.iter().map(|r| r[0]).collect();
        assert_eq!(leaders, vec![1, 2, 3, 1, 2, 3]);
        // The second replica differs between the first and second lap.
        assert_ne!(placed[0][1], placed[3][1]);
        let placed = place_replicas(&[1, 2, 3, 4, 5], 10, 2, 2);
        let mut per_broker = BTreeMap::new();
        for replicas in &placed {
            assert_ne!(replicas[0], replicas[1]);
            for id in replicas {
                *per_broker.entry(*id).or_insert(0) += 1;
            }
        }
        assert!(
            per_broker.values().all(|&count| count == 4),
            "{per_broker:?}"
        );
    }

    fn change(leader: NodeId, leader_epoch: i32, isr: &[NodeId], from: i32) -> MetadataCommand {
        MetadataCommand::ChangePartition {
            topic: "t".into(),
            partition: 0,
            leader: Some(leader),
            leader_epoch,
            isr: isr.to_vec(),
            partition_epoch: Some(from),
        }
    }

    #[test]
    fn a_change_of_leader_must_raise_the_epoch() {
        let mut meta = ClusterMetadata::default();
        meta.apply(
            1,
            &MetadataCommand::CreateTopic(topic("t", &[vec![1, 2, 3]])),
        )
        .unwrap();
        assert!(matches!(
            meta.apply(2, &change(2, 0, &[1, 2, 3], 0)),
            Err(MetadataRefusal::StaleLeaderEpoch { .. })
        ));
        meta.apply(3, &change(2, 1, &[2, 3], 0)).unwrap();
        // The same leader may shrink its ISR at its own epoch.
        meta.apply(4, &change(2, 1, &[2], 1)).unwrap();
        assert!(matches!(
            meta.apply(5, &change(3, 2, &[2], 2)),
            Err(MetadataRefusal::InvalidAssignment { .. })
        ));
        assert_eq!(meta.topics["t"].partitions[0].isr, vec![2]);
        assert_eq!(meta.topics["t"].partitions[0].partition_epoch, 2);
        assert_eq!(meta.applied_index, 5);
    }

    #[test]
    fn a_change_computed_from_an_older_partition_epoch_is_refused_and_one_from_the_current_applies()
    {
        let mut meta = ClusterMetadata::default();
        meta.apply(
            1,
            &MetadataCommand::CreateTopic(topic("t", &[vec![1, 2, 3]])),
        )
        .unwrap();
        // The leader drops lagging 2 and the controller, from the same
        // state, drops dead 3; the leader's lands first.
        meta.apply(2, &change(1, 0, &[1, 3], 0)).unwrap();
        assert_eq!(
            meta.apply(3, &change(1, 0, &[1, 2], 0)),
            Err(MetadataRefusal::StalePartitionEpoch {
                topic: "t".into(),
                partition: 0,
                proposed: 0,
                current: 1,
            })
        );
        let p = &meta.topics["t"].partitions[0];
        assert_eq!((p.isr.clone(), p.partition_epoch), (vec![1, 3], 1));
        // Computed again from what applied, the controller's change applies.
        meta.apply(4, &change(1, 0, &[1], 1)).unwrap();
        let p = &meta.topics["t"].partitions[0];
        assert_eq!((p.isr.clone(), p.partition_epoch), (vec![1], 2));
        // A change sent again after its first copy applied is refused too.
        assert!(matches!(
            meta.apply(5, &change(1, 0, &[1], 1)),
            Err(MetadataRefusal::StalePartitionEpoch { current: 2, .. })
        ));
    }

    #[test]
    fn entries_and_snapshots_from_before_partition_epochs_still_read_and_apply() {
        let snapshot = r#"{"applied_index":7,"brokers":{},"topics":{"t":{"name":"t","configs":{},
            "partitions":[{"replicas":[1,2],"leader":1,"leader_epoch":3,"isr":[1,2]}]}}}"#;
        let mut meta: ClusterMetadata = serde_json::from_str(snapshot).unwrap();
        assert_eq!(meta.topics["t"].partitions[0].partition_epoch, 0);
        let entry = r#"{"type":"change_partition","topic":"t","partition":0,"leader":1,
            "leader_epoch":3,"isr":[1]}"#;
        let command: MetadataCommand = serde_json::from_str(entry).unwrap();
        assert!(matches!(
            command,
            MetadataCommand::ChangePartition {
                partition_epoch: None,
                ..
            }
        ));
        // Applied unchecked, and the epoch stays where a snapshot taken
        // before or after it, read back as 0, has it.
        meta.apply(8, &command).unwrap();
        let p = &meta.topics["t"].partitions[0];
        assert_eq!((p.isr.clone(), p.partition_epoch), (vec![1], 0));
        meta.apply(9, &change(1, 3, &[1, 2], 0)).unwrap();
        assert_eq!(meta.topics["t"].partitions[0].partition_epoch, 1);
    }

    #[test]
    fn refused_commands_change_nothing_but_the_applied_index() {
        let mut meta = ClusterMetadata::default();
        meta.apply(1, &MetadataCommand::CreateTopic(topic("t", &[vec![1]])))
            .unwrap();
        let before = meta.topics.clone();
        assert!(meta
            .apply(2, &MetadataCommand::CreateTopic(topic("t", &[vec![2]])))
            .is_err());
        assert!(meta
            .apply(3, &MetadataCommand::DeleteTopic { name: "u".into() })
            .is_err());
        assert_eq!(meta.topics, before);
        assert_eq!(meta.applied_index, 3);
    }

    #[test]
    fn partitions_are_added_only_to_the_count_they_were_computed_from() {
        let mut meta = ClusterMetadata::default();
        meta.apply(1, &MetadataCommand::CreateTopic(topic("t", &[vec![1, 2]])))
            .unwrap();
        let add = |existing: u32, replicas: &[Vec<NodeId>]| MetadataCommand::AddPartitions {
            topic: "t".into(),
            existing,
            partitions: topic("t", replicas).partitions,
        };
        meta.apply(2, &add(1, &[vec![2, 1], vec![1, 2]])).unwrap();
        assert_eq!(meta.topics["t"].partitions.len(), 3);
        assert_eq!(meta.topics["t"].partitions[1].replicas, [2, 1]);
        // A second add computed from the old count (a retry, or a race) is refused.
        assert_eq!(
            meta.apply(3, &add(1, &[vec![1, 2]])),
            Err(MetadataRefusal::PartitionCountChanged {
                topic: "t".into(),
                expected: 1,
                current: 3,
            })
        );
        // So is a replica named twice, and a topic that is not there.
        assert!(matches!(
            meta.apply(4, &add(3, &[vec![1, 1]])),
            Err(MetadataRefusal::InvalidAssignment { partition: 3, .. })
        ));
        let missing = MetadataCommand::AddPartitions {
            topic: "u".into(),
            existing: 0,
            partitions: Vec::new(),
        };
        assert_eq!(
            meta.apply(5, &missing),
            Err(MetadataRefusal::UnknownTopic("u".into()))
        );
        assert_eq!(meta.topics["t"].partitions.len(), 3);
    }

    #[test]
    fn settings_change_key_by_key() {
        let mut meta = ClusterMetadata::default();
        meta.apply(1, &MetadataCommand::CreateTopic(topic("t", &[vec![1]])))
            .unwrap();
        let set = |pairs: &[(&str, &str)]| MetadataCommand::AlterTopicConfigs {
            topic: "t".into(),
            set: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        meta.apply(2, &set(&[("retention.ms", "1"), ("segment.ms", "2")]))
            .unwrap();
        // Another change of one key leaves the other; an empty value removes.
        meta.apply(3, &set(&[("retention.ms", "")])).unwrap();
        assert_eq!(
            meta.topics["t"].configs,
            BTreeMap::from([("segment.ms".to_string(), "2".to_string())])
        );
        let missing = MetadataCommand::AlterTopicConfigs {
            topic: "u".into(),
            set: BTreeMap::new(),
        };
        assert_eq!(
            meta.apply(4, &missing),
            Err(MetadataRefusal::UnknownTopic("u".into()))
        );
    }
}
