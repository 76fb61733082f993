//! Committed offsets: commits from members (fenced by member epoch, limited to partitions
//! the member holds), from outside an empty group, resets, and fetches.

use std::collections::BTreeMap;

use super::consumer_group::Group;
use super::coordinator::{check_id, check_topics, group_in, GroupCoordinator, NO_MEMBER_EPOCH};
use super::error::GroupError;
use super::records::{offset_value, GroupRecord, RecordKey};
use super::types::{CommittedOffset, OffsetCommit, TopicPartition};

impl GroupCoordinator {
    /// Commits offsets for `member_id` at `member_epoch`, all or none. A member commits only
    /// partitions it holds (including those it is revoking, so it can commit before it
    /// lets go). An empty member id with epoch -1 commits from outside the group, which
    /// only an empty group accepts.
    pub fn commit_offsets(
        &mut self,
        group_id: &str,
        member_id: &str,
        member_epoch: i32,
        offsets: &[OffsetCommit],
        now_ms: i64,
    ) -> Result<(), GroupError> {
        self.check_commits(group_id, offsets)?;
        if member_id.is_empty() && member_epoch == NO_MEMBER_EPOCH {
            let group = self
                .groups
                .entry(group_id.to_owned())
                .or_insert_with(|| Group::new(group_id.to_owned()));
            if group.active_members() > 0 {
                return Err(GroupError::NonEmptyGroup {
                    group: group_id.to_owned(),
                    members: group.active_members(),
                    operation: "a commit from outside the group",
                });
            }
        } else {
            let group = group_in(&mut self.groups, group_id)?;
            let Some(member) = group.members.get(member_id) else {
                return Err(group.unknown_member(member_id));
            };
            if member.left || member_epoch > member.epoch {
                return Err(GroupError::FencedMemberEpoch {
                    group: group_id.to_owned(),
                    member: member_id.to_owned(),
                    epoch: member_epoch,
                    expected: member.epoch,
                });
            }
            if member_epoch < member.epoch {
                return Err(GroupError::StaleMemberEpoch {
                    group: group_id.to_owned(),
                    member: member_id.to_owned(),
                    epoch: member_epoch,
                    expected: member.epoch,
                });
            }
            if let Some(commit) = offsets.iter().find(|c| {
                !member.assigned.contains(&c.partition)
                    && !member.pending_revocation.contains(&c.partition)
            }) {
                return Err(GroupError::PartitionNotAssigned {
                    group: group_id.to_owned(),
                    member: member_id.to_owned(),
                    topic: commit.partition.topic.clone(),
                    partition: commit.partition.partition,
                });
            }
        }
        self.write_offsets(group_id, offsets, now_ms)
    }

    /// Refuses, before anything changes, offsets of partitions the broker does not have
    /// (Kafka's `UNKNOWN_TOPIC_OR_PARTITION`) and metadata over the limit.
    fn check_commits(&self, group_id: &str, offsets: &[OffsetCommit]) -> Result<(), GroupError> {
        check_id(group_id, "group id", group_id)?;
        check_topics(group_id, offsets.iter().map(|c| c.partition.topic.as_str()))?;
        // Stored with a u16 length.
        let bytes_max = self
            .config
            .offset_metadata_bytes_max
            .min(usize::from(u16::MAX - 1));
        for commit in offsets {
            let tp = &commit.partition;
            if self
                .topics
                .get(&tp.topic)
                .is_none_or(|&count| tp.partition >= count)
            {
                return Err(GroupError::UnknownTopicOrPartition {
                    group: group_id.to_owned(),
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                });
            }
            if commit.metadata.len() > bytes_max {
                return Err(GroupError::OffsetMetadataTooLarge {
                    group: group_id.to_owned(),
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    bytes: commit.metadata.len(),
                    bytes_max,
                });
            }
        }
        Ok(())
    }

    /// Committed offsets of `group_id`, of the given partitions or all. A group that does
    /// not exist has none (Kafka answers an unknown group's offset fetch the same way).
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<&[TopicPartition]>,
    ) -> BTreeMap<TopicPartition, CommittedOffset> {
        let Some(group) = self.groups.get(group_id) else {
            return BTreeMap::new();
        };
        match partitions {
            None => group.offsets.clone(),
            Some(wanted) => wanted
                .iter()
                .filter_map(|tp| group.offsets.get(tp).map(|o| (tp.clone(), o.clone())))
                .collect(),
        }
    }

    /// Sets committed offsets of an empty group (`weir group reset-offsets`); the offsets
    /// themselves (earliest, latest, by time) are the caller's to find.
    pub fn reset_offsets(
        &mut self,
        group_id: &str,
        offsets: &[OffsetCommit],
        now_ms: i64,
    ) -> Result<(), GroupError> {
        self.check_commits(group_id, offsets)?;
        let group = group_in(&mut self.groups, group_id)?;
        if group.active_members() > 0 {
            return Err(GroupError::NonEmptyGroup {
                group: group_id.to_owned(),
                members: group.active_members(),
                operation: "resetting its offsets",
            });
        }
        self.write_offsets(group_id, offsets, now_ms)
    }

    fn write_offsets(
        &mut self,
        group_id: &str,
        offsets: &[OffsetCommit],
        now_ms: i64,
    ) -> Result<(), GroupError> {
        let group = group_in(&mut self.groups, group_id)?;
        for commit in offsets {
            let offset = CommittedOffset {
                offset: commit.offset,
                metadata: commit.metadata.clone(),
                commit_timestamp_ms: now_ms,
            };
            let key = RecordKey::OffsetCommit {
                group: group_id.to_owned(),
                partition: commit.partition.clone(),
            };
            self.outbox.push(GroupRecord {
                key: key.encode(),
                value: Some(offset_value(&offset)),
            });
            group.offsets.insert(commit.partition.clone(), offset);
        }
        if !self.persisted.contains_key(group_id) {
            // Offsets committed from outside created the group.
            self.persist(group_id);
        }
        Ok(())
    }
}
