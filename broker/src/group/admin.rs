//! What `weir group list / describe / delete` and Kafka's DeleteGroups and OffsetDelete
//! need of the coordinator.

use super::consumer_group::Group;
use super::coordinator::{group_in, GroupCoordinator};
use super::error::GroupError;
use super::rebalance_durations::RebalanceDurations;
use super::records::{GroupRecord, RecordKey};
use std::collections::BTreeSet;

use super::types::{GroupDescription, GroupListing, GroupState, TopicPartition};

impl GroupCoordinator {
    pub fn list_groups(&self) -> Vec<GroupListing> {
        self.groups
            .values()
            .map(|g| GroupListing {
                group_id: g.id.clone(),
                state: g.state(),
                members: g.members.len(),
            })
            .collect()
    }

    pub fn describe_group(&self, group_id: &str) -> Result<GroupDescription, GroupError> {
        self.groups
            .get(group_id)
            .map(|g| g.describe(&self.config))
            .ok_or_else(|| GroupError::GroupIdNotFound {
                group: group_id.to_owned(),
            })
    }

    /// How long `group_id`'s rebalances took since this coordinator started.
    pub fn rebalance_durations(&self, group_id: &str) -> Option<&RebalanceDurations> {
        self.groups.get(group_id).map(|g| &g.rebalances)
    }

    /// A group's state; `Dead` for one that does not exist.
    pub fn group_state(&self, group_id: &str) -> GroupState {
        self.groups
            .get(group_id)
            .map_or(GroupState::Dead, Group::state)
    }

    /// Deletes an empty group with its offsets (tombstones for all its records).
    pub fn delete_group(&mut self, group_id: &str) -> Result<(), GroupError> {
        let group = group_in(&mut self.groups, group_id)?;
        if group.active_members() > 0 {
            return Err(GroupError::NonEmptyGroup {
                group: group_id.to_owned(),
                members: group.active_members(),
                operation: "deleting it",
            });
        }
        let offsets: Vec<TopicPartition> = group.offsets.keys().cloned().collect();
        self.groups.remove(group_id);
        for partition in offsets {
            let key = RecordKey::OffsetCommit {
                group: group_id.to_owned(),
                partition,
            };
            self.outbox.push(GroupRecord {
                key: key.encode(),
                value: None,
            });
        }
        for key in self
            .persisted
            .remove(group_id)
            .unwrap_or_default()
            .into_keys()
        {
            self.outbox.push(GroupRecord { key, value: None });
        }
        Ok(())
    }

    /// Deletes the committed offsets of `partitions` (Kafka's OffsetDelete), tombstones in
    /// `__consumer_offsets`; a partition without one is not an error. As in Kafka, the
    /// partitions of a topic a member of the group subscribes to keep theirs and are
    /// returned, to be answered GROUP_SUBSCRIBED_TO_TOPIC.
    pub fn delete_offsets(
        &mut self,
        group_id: &str,
        partitions: &[TopicPartition],
    ) -> Result<BTreeSet<TopicPartition>, GroupError> {
        let group = group_in(&mut self.groups, group_id)?;
        let subscribed: BTreeSet<&str> = group
            .members
            .values()
            .flat_map(|member| member.subscribed.iter().map(String::as_str))
            .collect();
        let mut refused = BTreeSet::new();
        let mut deleted = Vec::new();
        for partition in partitions {
            if subscribed.contains(partition.topic.as_str()) {
                refused.insert(partition.clone());
            } else if group.offsets.remove(partition).is_some() {
                deleted.push(partition.clone());
            }
        }
        for partition in deleted {
            let key = RecordKey::OffsetCommit {
                group: group_id.to_owned(),
                partition,
            };
            self.outbox.push(GroupRecord {
                key: key.encode(),
                value: None,
            });
        }
        Ok(refused)
    }
}
