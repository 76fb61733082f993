//! `GroupCoordinator`: the groups of one coordinator (one `__consumer_offsets` partition's
//! worth), the broker's topic sizes, committed offsets, administration, and the records
//! each change produces.
//!
//! Every mutating call leaves the records of its changes in an outbox (`take_records`);
//! the caller appends them to `__consumer_offsets` before it answers, as Kafka's
//! coordinator writes before it responds. `replay` rebuilds the state from those records.

use std::collections::BTreeMap;

use super::consumer_group::Group;
use super::error::GroupError;
use super::records::{
    apply, corrupt, group_records, member_records, offset_value, GroupRecord, RecordKey,
};
use super::types::{
    CommittedOffset, GroupConfig, GroupDescription, GroupListing, GroupState, HeartbeatRequest,
    HeartbeatResponse, OffsetCommit, TopicMetadata, TopicPartition,
};
use crate::TOPIC_NAME_BYTES_MAX;

/// The longest group, member or instance id accepted. Kafka sets none; ours are stored
/// with a u16 length, and a kilobyte is far past any real id.
pub const ID_BYTES_MAX: usize = 1024;

/// The member epoch of a commit from outside the group (an admin tool, a consumer with
/// manually assigned partitions): Kafka's generation -1.
pub const NO_MEMBER_EPOCH: i32 = -1;

#[derive(Debug)]
pub struct GroupCoordinator {
    config: GroupConfig,
    topics: TopicMetadata,
    groups: BTreeMap<String, Group>,
    /// The group records last put in the outbox, to write only what changed.
    persisted: BTreeMap<String, BTreeMap<Vec<u8>, Vec<u8>>>,
    outbox: Vec<GroupRecord>,
    member_id_state: u64,
}

impl GroupCoordinator {
    /// An empty coordinator. Member ids it names are drawn from `member_id_seed`: give each
    /// coordinator start a different (random) one; tests give a fixed one.
    pub fn new(config: GroupConfig, member_id_seed: u64) -> Self {
        GroupCoordinator {
            config,
            topics: TopicMetadata::new(),
            groups: BTreeMap::new(),
            persisted: BTreeMap::new(),
            outbox: Vec::new(),
            member_id_state: member_id_seed,
        }
    }

    /// Rebuilds a coordinator from the records of its `__consumer_offsets` partition, in log
    /// order. Session and rebalance deadlines, which are not stored, restart at `now_ms`.
    pub fn replay(
        config: GroupConfig,
        member_id_seed: u64,
        records: &[GroupRecord],
        now_ms: i64,
    ) -> Result<Self, GroupError> {
        // Last value per key, as compaction keeps it; a tombstone removes the key.
        let mut latest: BTreeMap<&[u8], (usize, &[u8])> = BTreeMap::new();
        for (index, record) in records.iter().enumerate() {
            match &record.value {
                Some(value) => latest.insert(&record.key, (index, value)),
                None => latest.remove(record.key.as_slice()),
            };
        }
        let mut coordinator = GroupCoordinator::new(config, member_id_seed);
        for (key, (index, value)) in latest {
            let key = RecordKey::decode(key).map_err(|reason| corrupt(index, reason))?;
            let group = coordinator
                .groups
                .entry(key.group().to_owned())
                .or_insert_with(|| Group::new(key.group().to_owned()));
            let session_timeout_ms = coordinator.config.session_timeout_ms;
            apply(group, &key, value, now_ms, session_timeout_ms)
                .map_err(|reason| corrupt(index, reason))?;
        }
        for group in coordinator.groups.values_mut() {
            let holdings: Vec<_> = group
                .members
                .values()
                .map(|m| {
                    (
                        m.id.clone(),
                        m.assigned.clone(),
                        m.pending_revocation.clone(),
                    )
                })
                .collect();
            for (member_id, assigned, pending) in holdings {
                group.set_holdings(&member_id, assigned, pending);
            }
        }
        let ids: Vec<String> = coordinator.groups.keys().cloned().collect();
        for id in ids {
            if let Some(group) = coordinator.groups.get(&id) {
                let records = group_records(group);
                coordinator.persisted.insert(id, records);
            }
        }
        Ok(coordinator)
    }

    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    /// The records of every change since the last call, in order.
    pub fn take_records(&mut self) -> Vec<GroupRecord> {
        std::mem::take(&mut self.outbox)
    }

    /// The broker's topics changed (created, grown, deleted): groups subscribed to a changed
    /// topic get a new epoch and target.
    pub fn set_topics(&mut self, topics: TopicMetadata, now_ms: i64) {
        self.topics = topics;
        let ids: Vec<String> = self.groups.keys().cloned().collect();
        for id in ids {
            let Some(group) = self.groups.get_mut(&id) else {
                continue;
            };
            let shape = group.shape();
            group.topics_changed(now_ms, &self.topics, &self.config);
            if group.shape() != shape {
                self.persist(&id);
            }
        }
    }

    /// One topic was created or grew (Kafka only lets partition counts grow).
    pub fn set_topic_partitions(&mut self, topic: &str, partitions: u32, now_ms: i64) {
        let mut topics = self.topics.clone();
        topics.insert(topic.to_owned(), partitions);
        self.set_topics(topics, now_ms);
    }

    pub fn heartbeat(
        &mut self,
        req: &HeartbeatRequest,
        now_ms: i64,
    ) -> Result<HeartbeatResponse, GroupError> {
        check_id(&req.group_id, "group id", &req.group_id)?;
        check_id(&req.group_id, "member id", &req.member_id)?;
        if let Some(instance_id) = &req.group_instance_id {
            check_id(&req.group_id, "group instance id", instance_id)?;
        }
        if req.group_id.is_empty() {
            return Err(GroupError::InvalidRequest {
                group: String::new(),
                reason: "the group id is empty".to_owned(),
            });
        }
        check_topics(
            &req.group_id,
            req.subscribed_topics.iter().map(String::as_str),
        )?;
        let created = !self.groups.contains_key(&req.group_id);
        if req.member_epoch != 0 && created {
            return Err(GroupError::GroupIdNotFound {
                group: req.group_id.clone(),
            });
        }
        let state = &mut self.member_id_state;
        let mut new_member_id = || next_member_id(state);
        let group = self
            .groups
            .entry(req.group_id.clone())
            .or_insert_with(|| Group::new(req.group_id.clone()));
        let shape = group.shape();
        let result = group.heartbeat(req, now_ms, &self.topics, &self.config, &mut new_member_id);
        let reached_others = group.shape() != shape;
        if result.is_err() && created {
            // A join refused before it did anything leaves no empty group behind.
            self.groups.remove(&req.group_id);
        }
        let (member_id, member_epoch, assignment) = result?;
        if reached_others || created {
            self.persist(&req.group_id);
        } else {
            self.persist_member(&req.group_id, &member_id);
        }
        Ok(HeartbeatResponse {
            member_id,
            member_epoch,
            heartbeat_interval_ms: self.config.heartbeat_interval_ms,
            assignment,
        })
    }

    /// `member_id` leaves `group_id`: a dynamic member's partitions go to the others at
    /// once; a static member keeps them for the session timeout.
    pub fn leave(
        &mut self,
        group_id: &str,
        member_id: &str,
        member_epoch: i32,
        now_ms: i64,
    ) -> Result<(), GroupError> {
        let group = group_in(&mut self.groups, group_id)?;
        let shape = group.shape();
        group.leave(member_id, member_epoch, now_ms, &self.topics, &self.config)?;
        if group.shape() == shape {
            self.persist_member(group_id, member_id);
        } else {
            self.persist(group_id);
        }
        Ok(())
    }

    /// Removes members past their session or rebalance timeout, and computes targets whose
    /// initial delay ended. Returns the removed (group, member) pairs.
    pub fn tick(&mut self, now_ms: i64) -> Vec<(String, String)> {
        let mut removed = Vec::new();
        let ids: Vec<String> = self.groups.keys().cloned().collect();
        for id in ids {
            let Some(group) = self.groups.get_mut(&id) else {
                continue;
            };
            let shape = group.shape();
            let expired = group.expire(now_ms, &self.topics, &self.config);
            removed.extend(expired.into_iter().map(|member| (id.clone(), member)));
            if group.shape() != shape {
                self.persist(&id);
            }
        }
        removed
    }

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

    /// Puts the records of `group_id` that changed since last time in the outbox: new and
    /// changed values, tombstones for keys that went (a removed member's records).
    fn persist(&mut self, group_id: &str) {
        let Some(group) = self.groups.get(group_id) else {
            return;
        };
        let now = group_records(group);
        let before = self.persisted.remove(group_id).unwrap_or_default();
        for key in before.keys().filter(|k| !now.contains_key(*k)) {
            self.outbox.push(GroupRecord {
                key: key.clone(),
                value: None,
            });
        }
        for (key, value) in &now {
            if before.get(key) != Some(value) {
                self.outbox.push(GroupRecord {
                    key: key.clone(),
                    value: Some(value.clone()),
                });
            }
        }
        self.persisted.insert(group_id.to_owned(), now);
    }
}

impl GroupCoordinator {
    /// As `persist`, for a change that touched only `member_id`'s records.
    fn persist_member(&mut self, group_id: &str, member_id: &str) {
        let Some(group) = self.groups.get(group_id) else {
            return;
        };
        let Some(member) = group.members.get(member_id) else {
            return;
        };
        let persisted = self.persisted.entry(group_id.to_owned()).or_default();
        for (key, value) in member_records(group, member) {
            if persisted.get(&key) != Some(&value) {
                self.outbox.push(GroupRecord {
                    key: key.clone(),
                    value: Some(value.clone()),
                });
                persisted.insert(key, value);
            }
        }
        debug_assert_eq!(
            *persisted,
            group_records(group),
            "group {group_id:?}: a change reached beyond member {member_id:?}"
        );
    }
}

fn group_in<'a>(
    groups: &'a mut BTreeMap<String, Group>,
    group_id: &str,
) -> Result<&'a mut Group, GroupError> {
    groups
        .get_mut(group_id)
        .ok_or_else(|| GroupError::GroupIdNotFound {
            group: group_id.to_owned(),
        })
}

fn check_id(group_id: &str, what: &str, id: &str) -> Result<(), GroupError> {
    if id.len() > ID_BYTES_MAX {
        return Err(GroupError::InvalidRequest {
            group: group_id.chars().take(64).collect(),
            reason: format!(
                "the {what} is {} bytes, over the limit of {ID_BYTES_MAX}",
                id.len()
            ),
        });
    }
    Ok(())
}

fn check_topics<'a>(
    group_id: &str,
    mut topics: impl Iterator<Item = &'a str>,
) -> Result<(), GroupError> {
    match topics.find(|t| t.len() > TOPIC_NAME_BYTES_MAX) {
        Some(topic) => Err(GroupError::InvalidRequest {
            group: group_id.to_owned(),
            reason: format!(
                "a topic name of {} bytes is over the limit of {TOPIC_NAME_BYTES_MAX}",
                topic.len()
            ),
        }),
        None => Ok(()),
    }
}

/// 128 bits from a splitmix64 sequence, as 32 hex digits: unique within one coordinator,
/// and across coordinator starts as long as each starts from a different random seed.
fn next_member_id(state: &mut u64) -> String {
    let mut next = || {
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    format!("{:016x}{:016x}", next(), next())
}
