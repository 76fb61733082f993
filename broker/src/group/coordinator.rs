//! `GroupCoordinator`: the groups of one coordinator (one `__consumer_offsets` partition's
//! worth), the broker's topic sizes, membership (heartbeat, leave, tick), and the records
//! each change produces. Offsets are in `offsets.rs`, administration in `admin.rs`.
//!
//! Every mutating call leaves the records of its changes in an outbox (`take_records`);
//! the caller appends them to `__consumer_offsets` before it answers, as Kafka's
//! coordinator writes before it responds. `replay` rebuilds the state from those records.

use std::collections::BTreeMap;

use super::classic::{HeldClassicJoin, PendingClassicMember};
use super::consumer_group::Group;
use super::error::GroupError;
use super::records::{apply, corrupt, group_records, member_records, GroupRecord, RecordKey};
use super::types::{GroupConfig, HeartbeatRequest, HeartbeatResponse, TopicMetadata};
use crate::TOPIC_NAME_BYTES_MAX;

/// The longest group, member or instance id accepted. Kafka sets none; ours are stored
/// with a u16 length, and a kilobyte is far past any real id.
pub const ID_BYTES_MAX: usize = 1024;

/// The member epoch of a commit from outside the group (an admin tool, a consumer with
/// manually assigned partitions): Kafka's generation -1.
pub const NO_MEMBER_EPOCH: i32 = -1;

#[derive(Debug)]
pub struct GroupCoordinator {
    pub(super) config: GroupConfig,
    pub(super) topics: TopicMetadata,
    pub(super) groups: BTreeMap<String, Group>,
    /// The group records last put in the outbox, to write only what changed.
    pub(super) persisted: BTreeMap<String, BTreeMap<Vec<u8>, Vec<u8>>>,
    pub(super) outbox: Vec<GroupRecord>,
    pub(super) member_id_state: u64,
    /// Member ids handed out with MEMBER_ID_REQUIRED, not yet joined (`classic.rs`).
    pub(super) pending_classic_members: BTreeMap<String, PendingClassicMember>,
    /// Classic JoinGroups held while their rebalance runs, by (group, member), and each
    /// one's answer once the hold ended (`classic.rs`). In memory only: a JoinGroup held
    /// when the coordinator moves is answered by the client's retry.
    pub(super) held_classic_joins: BTreeMap<(String, String), HeldClassicJoin>,
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
            pending_classic_members: BTreeMap::new(),
            held_classic_joins: BTreeMap::new(),
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
            group.settle_rebalance(now_ms);
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
        group.settle_rebalance(now_ms);
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
        self.leave_as(
            group_id,
            member_id,
            member_epoch,
            now_ms,
            StaticLeave::StepOut,
        )
    }

    /// A leave; `static_leave` says what a static member's leave does.
    pub(super) fn leave_as(
        &mut self,
        group_id: &str,
        member_id: &str,
        member_epoch: i32,
        now_ms: i64,
        static_leave: StaticLeave,
    ) -> Result<(), GroupError> {
        let group = group_in(&mut self.groups, group_id)?;
        let shape = group.shape();
        group.leave(
            member_id,
            member_epoch,
            now_ms,
            static_leave,
            &self.topics,
            &self.config,
        )?;
        group.settle_rebalance(now_ms);
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
        self.expire_pending_classic_members(now_ms);
        let mut removed = Vec::new();
        let ids: Vec<String> = self.groups.keys().cloned().collect();
        for id in ids {
            let Some(group) = self.groups.get_mut(&id) else {
                continue;
            };
            let shape = group.shape();
            let expired = group.expire(now_ms, &self.topics, &self.config);
            group.settle_rebalance(now_ms);
            removed.extend(expired.into_iter().map(|member| (id.clone(), member)));
            if group.shape() != shape {
                self.persist(&id);
            }
        }
        // A member that timed out may have been what a held JoinGroup waited for.
        self.release_held_classic_joins(now_ms);
        removed
    }

    /// Puts the records of `group_id` that changed since last time in the outbox: new and
    /// changed values, tombstones for keys that went (a removed member's records).
    pub(super) fn persist(&mut self, group_id: &str) {
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

pub(super) fn group_in<'a>(
    groups: &'a mut BTreeMap<String, Group>,
    group_id: &str,
) -> Result<&'a mut Group, GroupError> {
    groups
        .get_mut(group_id)
        .ok_or_else(|| GroupError::GroupIdNotFound {
            group: group_id.to_owned(),
        })
}

pub(super) fn check_id(group_id: &str, what: &str, id: &str) -> Result<(), GroupError> {
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

pub(super) fn check_topics<'a>(
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
pub(super) fn next_member_id(state: &mut u64) -> String {
    let mut next = || {
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    format!("{:016x}{:016x}", next(), next())
}

/// What a static member's leave does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StaticLeave {
    /// KIP-848's member epoch -2: the member steps out and keeps its assignment for the
    /// session timeout, so its next process takes it back without a rebalance.
    StepOut,
    /// Kafka's classic LeaveGroup (a consumer that unsubscribes): removed at once, and
    /// the group rebalances.
    Remove,
}
