//! One consumer group: its members, its epochs, its target assignment and who holds which
//! partition. Every change of what a member holds goes through `Group::set_holdings`, which
//! keeps the one-owner-per-partition invariant.

use std::collections::BTreeMap;

use super::assignor::{assign, AssignorMember};
use super::coordinator::StaticLeave;
use super::error::GroupError;
use super::member::{reconcile, Member};
use super::rebalance_durations::RebalanceDurations;
use super::types::{
    Assignment, AssignorKind, CommittedOffset, GroupConfig, GroupDescription, GroupState,
    HeartbeatRequest, MemberDescription, MemberState, TopicMetadata, TopicPartition,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Group {
    pub id: String,
    /// Bumped whenever membership, subscriptions or the subscribed topics change.
    pub epoch: i32,
    pub members: BTreeMap<String, Member>,
    /// The group epoch the target assignment was computed at; at most `epoch`.
    pub target_epoch: i32,
    pub target: BTreeMap<String, Assignment>,
    /// The subscribed topics' partition counts as of `epoch`.
    pub topic_view: TopicMetadata,
    /// While set, the initial rebalance delay runs: no target is computed before it.
    pub assignment_delayed_until_ms: Option<i64>,
    /// Who holds each partition (assigned or pending revocation). Derived from `members`.
    pub owners: BTreeMap<TopicPartition, String>,
    pub offsets: BTreeMap<TopicPartition, CommittedOffset>,
    /// Counts members added, removed or renamed; not persisted. With the two epochs it
    /// tells whether a change reached beyond one member's records.
    pub membership_changes: u64,
    /// The rebalance under way and how long past ones took; not persisted.
    pub rebalances: RebalanceDurations,
}

impl Group {
    pub fn new(id: String) -> Self {
        Group {
            id,
            epoch: 0,
            members: BTreeMap::new(),
            target_epoch: 0,
            target: BTreeMap::new(),
            topic_view: TopicMetadata::new(),
            assignment_delayed_until_ms: None,
            owners: BTreeMap::new(),
            offsets: BTreeMap::new(),
            membership_changes: 0,
            rebalances: RebalanceDurations::default(),
        }
    }

    /// What changes when a change reaches beyond one member's records.
    pub fn shape(&self) -> (i32, i32, u64) {
        (self.epoch, self.target_epoch, self.membership_changes)
    }

    pub fn state(&self) -> GroupState {
        if self.members.is_empty() {
            GroupState::Empty
        } else if self.epoch > self.target_epoch || self.assignment_delayed_until_ms.is_some() {
            GroupState::Assigning
        } else if self
            .members
            .values()
            .any(|m| m.epoch != self.target_epoch || m.state != MemberState::Stable)
        {
            GroupState::Reconciling
        } else {
            GroupState::Stable
        }
    }

    /// The assignor most members ask for; ties and silence go to the configured default
    /// (Kafka picks the most requested of the configured assignors the same way).
    pub fn assignor(&self, default: AssignorKind) -> AssignorKind {
        let mut votes: BTreeMap<AssignorKind, usize> = BTreeMap::new();
        for kind in self.members.values().filter_map(|m| m.server_assignor) {
            *votes.entry(kind).or_default() += 1;
        }
        let best = votes.values().copied().max().unwrap_or(0);
        if best == 0 || votes.get(&default) == Some(&best) {
            return default;
        }
        votes
            .into_iter()
            .find(|&(_, count)| count == best)
            .map_or(default, |(kind, _)| kind)
    }

    fn subscribed_view(&self, topics: &TopicMetadata) -> TopicMetadata {
        topics
            .iter()
            .filter(|(topic, _)| self.members.values().any(|m| m.subscribed.contains(*topic)))
            .map(|(topic, &count)| (topic.clone(), count))
            .collect()
    }

    fn bump_epoch(&mut self, topics: &TopicMetadata, now_ms: i64) {
        self.epoch += 1;
        self.topic_view = self.subscribed_view(topics);
        self.rebalances.started(now_ms);
    }

    /// Ends the rebalance under way once every member holds its target, or no member is
    /// left. Called after every change to the group.
    pub fn settle_rebalance(&mut self, now_ms: i64) {
        match self.state() {
            GroupState::Stable => self.rebalances.settled(now_ms, true),
            GroupState::Empty => self.rebalances.settled(now_ms, false),
            _ => {}
        }
    }

    /// Computes the target assignment if the group epoch moved past it and no initial
    /// rebalance delay holds it back.
    pub fn maybe_compute_target(&mut self, now_ms: i64, config: &GroupConfig) {
        if let Some(until_ms) = self.assignment_delayed_until_ms {
            if now_ms < until_ms {
                return;
            }
            self.assignment_delayed_until_ms = None;
            // The empty target handed out during the delay had this epoch: the real one
            // needs a newer one. The join that started the delay started the rebalance.
            self.epoch += 1;
            self.rebalances.started(now_ms);
        }
        if self.epoch <= self.target_epoch {
            return;
        }
        let no_previous = Assignment::new();
        let inputs: Vec<AssignorMember<'_>> = self
            .members
            .values()
            .map(|m| AssignorMember {
                member_id: &m.id,
                sort_key: m.instance_id.as_deref().unwrap_or(&m.id),
                subscribed: &m.subscribed,
                previous: self.target.get(&m.id).unwrap_or(&no_previous),
            })
            .collect();
        let kind = self.assignor(config.default_assignor);
        self.target = assign(kind, &inputs, &self.topic_view);
        self.target_epoch = self.epoch;
    }

    /// Replaces what `member_id` holds. The one place ownership changes.
    pub fn set_holdings(&mut self, member_id: &str, assigned: Assignment, pending: Assignment) {
        let Some(member) = self.members.get_mut(member_id) else {
            return;
        };
        for tp in member.holds() {
            self.owners.remove(tp);
        }
        for tp in assigned.iter().chain(&pending) {
            let previous = self.owners.insert(tp.clone(), member_id.to_owned());
            debug_assert!(
                previous.is_none(),
                "group {:?}: partition {tp} given to member {member_id:?} while {previous:?} holds it",
                self.id
            );
        }
        member.assigned = assigned;
        member.pending_revocation = pending;
    }

    pub fn remove_member(&mut self, member_id: &str) {
        self.set_holdings(member_id, Assignment::new(), Assignment::new());
        self.members.remove(member_id);
        self.target.remove(member_id);
        self.membership_changes += 1;
    }

    fn member_by_instance(&self, instance_id: &str) -> Option<&Member> {
        self.members
            .values()
            .find(|m| m.instance_id.as_deref() == Some(instance_id))
    }

    /// One heartbeat: join or check the member, record its subscription, move the group
    /// epoch and target if needed, and take the member one reconciliation step.
    pub fn heartbeat(
        &mut self,
        req: &HeartbeatRequest,
        now_ms: i64,
        topics: &TopicMetadata,
        config: &GroupConfig,
        new_member_id: &mut dyn FnMut() -> String,
    ) -> Result<(String, i32, Assignment), GroupError> {
        if req.rebalance_timeout_ms <= 0 {
            return Err(self.invalid(format!(
                "rebalance timeout must be positive, got {} ms",
                req.rebalance_timeout_ms
            )));
        }
        let member_id = match req.member_epoch {
            0 => self.join(req, now_ms, topics, config, new_member_id)?,
            epoch if epoch > 0 => self.check_member(req)?,
            epoch => {
                return Err(self.invalid(format!(
                    "member epoch {epoch} is not valid in a heartbeat; leave the group instead"
                )))
            }
        };
        let Some(member) = self.members.get_mut(&member_id) else {
            return Err(self.unknown_member(&member_id));
        };
        member.session_deadline_ms = now_ms.saturating_add(config.session_timeout_ms);
        member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        member.left = false;
        let changed = member.subscribed != req.subscribed_topics
            || member.server_assignor != req.server_assignor;
        if changed {
            member.subscribed.clone_from(&req.subscribed_topics);
            member.server_assignor = req.server_assignor;
            self.bump_epoch(topics, now_ms);
        }
        self.maybe_compute_target(now_ms, config);
        self.reconcile_member(&member_id, &req.owned, now_ms);
        let member = &self.members[&member_id];
        Ok((member_id, member.epoch, member.assigned.clone()))
    }

    fn join(
        &mut self,
        req: &HeartbeatRequest,
        now_ms: i64,
        topics: &TopicMetadata,
        config: &GroupConfig,
        new_member_id: &mut dyn FnMut() -> String,
    ) -> Result<String, GroupError> {
        if let Some(instance_id) = &req.group_instance_id {
            if let Some(existing) = self.member_by_instance(instance_id) {
                if existing.id == req.member_id {
                    return Ok(existing.id.clone());
                }
                // As Kafka: replaced only once the previous process left. Two live processes
                // with one instance id would both consume; one that crashed without leaving
                // frees its instance id when its session times out.
                if !existing.left {
                    return Err(GroupError::UnreleasedInstanceId {
                        group: self.id.clone(),
                        instance_id: instance_id.clone(),
                        member: existing.id.clone(),
                    });
                }
                let old_id = existing.id.clone();
                let new_id = self.fresh_member_id(&req.member_id, new_member_id)?;
                self.replace_member(&old_id, new_id.clone());
                return Ok(new_id);
            }
        }
        if let Some(existing) = self.members.get(&req.member_id) {
            // A member that was fenced rejoins under its id (KIP-1082); it keeps what the
            // coordinator still holds for it, which it has already given up locally.
            if existing.instance_id != req.group_instance_id {
                return Err(self.invalid(format!(
                    "member {:?} has instance id {:?}, the heartbeat says {:?}",
                    existing.id, existing.instance_id, req.group_instance_id
                )));
            }
            return Ok(existing.id.clone());
        }
        let was_empty = self.members.is_empty();
        let id = self.fresh_member_id(&req.member_id, new_member_id)?;
        let mut member = Member::new(id.clone(), req.group_instance_id.clone());
        member.subscribed.clone_from(&req.subscribed_topics);
        member.server_assignor = req.server_assignor;
        self.members.insert(id.clone(), member);
        self.membership_changes += 1;
        self.bump_epoch(topics, now_ms);
        if was_empty && config.initial_rebalance_delay_ms > 0 {
            // Hand out nothing until the delay ends, at an epoch of its own, so members
            // that start together are assigned once (`group.initial.rebalance.delay.ms`).
            self.target.clear();
            self.target_epoch = self.epoch;
            self.assignment_delayed_until_ms =
                Some(now_ms.saturating_add(config.initial_rebalance_delay_ms));
        }
        Ok(id)
    }

    fn fresh_member_id(
        &self,
        requested: &str,
        new_member_id: &mut dyn FnMut() -> String,
    ) -> Result<String, GroupError> {
        if requested.is_empty() {
            return Ok(new_member_id());
        }
        if self.members.contains_key(requested) {
            return Err(self.invalid(format!(
                "member id {requested:?} is already taken by another member"
            )));
        }
        Ok(requested.to_owned())
    }

    /// A static member comes back under a new member id: it takes the old member's epoch,
    /// assignment and target, and the group epoch does not move.
    fn replace_member(&mut self, old_id: &str, new_id: String) {
        let Some(mut member) = self.members.remove(old_id) else {
            return;
        };
        for tp in member.holds() {
            self.owners.insert(tp.clone(), new_id.clone());
        }
        if let Some(target) = self.target.remove(old_id) {
            self.target.insert(new_id.clone(), target);
        }
        member.id.clone_from(&new_id);
        member.left = false;
        self.members.insert(new_id, member);
        self.membership_changes += 1;
    }

    fn check_member(&self, req: &HeartbeatRequest) -> Result<String, GroupError> {
        let Some(member) = self.members.get(&req.member_id) else {
            if let Some(other) = req
                .group_instance_id
                .as_deref()
                .and_then(|id| self.member_by_instance(id))
            {
                return Err(GroupError::FencedInstanceId {
                    group: self.id.clone(),
                    instance_id: other.instance_id.clone().unwrap_or_default(),
                    member: other.id.clone(),
                });
            }
            return Err(self.unknown_member(&req.member_id));
        };
        if member.instance_id != req.group_instance_id {
            return Err(self.invalid(format!(
                "member {:?} has instance id {:?}, the heartbeat says {:?}",
                member.id, member.instance_id, req.group_instance_id
            )));
        }
        self.check_epoch(member, req.member_epoch, &req.owned)?;
        Ok(member.id.clone())
    }

    /// The member's current epoch is accepted; so is the previous one when the member owns
    /// no more than it is assigned (the answer that moved it on was lost). Anything else
    /// is a zombie (Kafka's `throwIfMemberEpochIsInvalid`).
    pub fn check_epoch(
        &self,
        member: &Member,
        epoch: i32,
        owned: &Assignment,
    ) -> Result<(), GroupError> {
        let lost_answer = epoch == member.previous_epoch && owned.is_subset(&member.assigned);
        if member.left || epoch > member.epoch || (epoch < member.epoch && !lost_answer) {
            return Err(GroupError::FencedMemberEpoch {
                group: self.id.clone(),
                member: member.id.clone(),
                epoch,
                expected: member.epoch,
            });
        }
        Ok(())
    }

    fn reconcile_member(&mut self, member_id: &str, owned: &Assignment, now_ms: i64) {
        let Some(member) = self.members.get(member_id) else {
            return;
        };
        let no_target = Assignment::new();
        let target = self.target.get(member_id).unwrap_or(&no_target);
        let owners = &self.owners;
        let next = reconcile(member, owned, self.target_epoch, target, |tp| {
            owners.get(tp).is_none_or(|owner| owner == member_id)
        });
        let revocation_deadline_ms = match (next.state, member.revocation_deadline_ms) {
            (MemberState::UnrevokedPartitions, Some(deadline_ms)) => Some(deadline_ms),
            (MemberState::UnrevokedPartitions, None) => {
                Some(now_ms.saturating_add(member.rebalance_timeout_ms))
            }
            _ => None,
        };
        self.set_holdings(member_id, next.assigned, next.pending_revocation);
        if let Some(member) = self.members.get_mut(member_id) {
            debug_assert!(next.epoch >= member.epoch, "member epochs never go back");
            member.epoch = next.epoch;
            member.previous_epoch = next.previous_epoch;
            member.state = next.state;
            member.revocation_deadline_ms = revocation_deadline_ms;
        }
    }

    /// A member leaves. A static member stepping out (`StaticLeave::StepOut`) keeps its
    /// assignment for the session timeout (Kafka's member epoch -2) and gives up nothing
    /// but what it was revoking, since a closed consumer owns nothing. Anyone else is
    /// removed at once.
    pub fn leave(
        &mut self,
        member_id: &str,
        epoch: i32,
        now_ms: i64,
        static_leave: StaticLeave,
        topics: &TopicMetadata,
        config: &GroupConfig,
    ) -> Result<(), GroupError> {
        let Some(member) = self.members.get(member_id) else {
            return Err(self.unknown_member(member_id));
        };
        self.check_epoch(member, epoch, &Assignment::new())?;
        if member.instance_id.is_some() && static_leave == StaticLeave::StepOut {
            self.reconcile_member(member_id, &Assignment::new(), now_ms);
            if let Some(member) = self.members.get_mut(member_id) {
                member.left = true;
                member.session_deadline_ms = now_ms.saturating_add(config.session_timeout_ms);
                member.revocation_deadline_ms = None;
            }
            return Ok(());
        }
        self.remove_member(member_id);
        self.bump_epoch(topics, now_ms);
        self.maybe_compute_target(now_ms, config);
        Ok(())
    }

    /// Removes members silent past the session timeout, and members still holding revoked
    /// partitions past their rebalance timeout (`max.poll.interval.ms`). Returns their ids.
    pub fn expire(
        &mut self,
        now_ms: i64,
        topics: &TopicMetadata,
        config: &GroupConfig,
    ) -> Vec<String> {
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                now_ms >= m.session_deadline_ms
                    || m.revocation_deadline_ms.is_some_and(|d| now_ms >= d)
            })
            .map(|m| m.id.clone())
            .collect();
        for member_id in &expired {
            self.remove_member(member_id);
        }
        if !expired.is_empty() {
            self.bump_epoch(topics, now_ms);
        }
        self.maybe_compute_target(now_ms, config);
        expired
    }

    /// The broker's topics changed: a new epoch if a subscribed topic appeared, grew or went.
    pub fn topics_changed(&mut self, now_ms: i64, topics: &TopicMetadata, config: &GroupConfig) {
        if self.subscribed_view(topics) != self.topic_view {
            self.bump_epoch(topics, now_ms);
            self.maybe_compute_target(now_ms, config);
        }
    }

    /// Members that count against `delete` and offset resets: all, including static members
    /// that stepped out and may return.
    pub fn active_members(&self) -> usize {
        self.members.len()
    }

    pub fn describe(&self, config: &GroupConfig) -> GroupDescription {
        let no_target = Assignment::new();
        GroupDescription {
            group_id: self.id.clone(),
            state: self.state(),
            group_epoch: self.epoch,
            assignment_epoch: self.target_epoch,
            assignor: self.assignor(config.default_assignor),
            members: self
                .members
                .values()
                .map(|m| MemberDescription {
                    member_id: m.id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    member_epoch: m.epoch,
                    state: m.state,
                    left: m.left,
                    subscribed_topics: m.subscribed.clone(),
                    assignment: m.assigned.clone(),
                    pending_revocation: m.pending_revocation.clone(),
                    target_assignment: self.target.get(&m.id).unwrap_or(&no_target).clone(),
                })
                .collect(),
        }
    }

    pub fn unknown_member(&self, member_id: &str) -> GroupError {
        GroupError::UnknownMemberId {
            group: self.id.clone(),
            member: member_id.to_owned(),
        }
    }

    pub fn invalid(&self, reason: String) -> GroupError {
        GroupError::InvalidRequest {
            group: self.id.clone(),
            reason,
        }
    }
}
