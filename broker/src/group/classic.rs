//! Kafka's classic protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup) driving the same
//! groups as KIP-848 heartbeats, the way Kafka 4.0's coordinator keeps classic members
//! inside a consumer group (KIP-848, "upgrade from the classic protocol"):
//!
//! - A JoinGroup is a heartbeat: a new member joins at epoch 0; a known one heartbeats at
//!   its current epoch, reporting as owned the partitions its subscription metadata lists
//!   (a cooperative client lists what it keeps; an eager one has revoked everything and
//!   lists nothing). The member takes one reconciliation step, and its member epoch is the
//!   generation the JoinGroup answers.
//! - The assignment is the coordinator's (the group's server-side assignor): no member is
//!   the leader, and SyncGroup hands each member what it holds after that step. A member
//!   that must revoke partitions gets an assignment without them at its old generation; a
//!   cooperative client then revokes and rejoins, and only that rejoin moves it on.
//! - Heartbeat and SyncGroup check the generation and renew the session. A Heartbeat
//!   answers "rejoin" (REBALANCE_IN_PROGRESS) when the member has a step to take: a newer
//!   target exists, it still holds partitions to revoke, or partitions it waits for were
//!   released. Partitions that stay with a member are never revoked, so a cooperative
//!   client keeps consuming them across the rebalance. A member told to rejoin that does
//!   not within its rebalance timeout is removed, as Kafka's join timeout does.
//! - KIP-394: a dynamic member's first JoinGroup (v4+, no member id) is answered with a new
//!   member id and MEMBER_ID_REQUIRED, and joins with its second. The id is remembered for
//!   the session timeout (Kafka 4.0 remembers nothing and takes any id; Kafka's classic
//!   groups keep the same pending set), so an id the coordinator never issued is still
//!   refused.

use std::collections::BTreeSet;

use super::coordinator::{group_in, next_member_id, GroupCoordinator, StaticLeave};
use super::error::GroupError;
use super::member::Member;
use super::types::{
    Assignment, HeartbeatRequest, HeartbeatResponse, MemberState, TopicMetadata, TopicPartition,
};

/// Kafka's `group.min.session.timeout.ms` and `group.max.session.timeout.ms` defaults.
pub const CLASSIC_SESSION_TIMEOUT_MIN_MS: i64 = 6_000;
pub const CLASSIC_SESSION_TIMEOUT_MAX_MS: i64 = 1_800_000;

/// How long a classic member whose only step is dropping partitions of deleted topics is left
/// to find them gone itself before it is told to rejoin. Kafka's classic group leader notices
/// in its metadata and rejoins, which rebalances everyone; here no member leads, so the
/// coordinator asks once the clients have had time to notice (a fetch from a deleted partition
/// fails and refreshes the client's metadata at once; librdkafka's 0113 `n_wildcard` refreshes
/// every 3 s and reported the partitions lost 2.1–2.6 s after the deletion, in five runs).
pub const DELETED_TOPIC_NOTICE_MS: i64 = 5_000;

/// Member ids issued with MEMBER_ID_REQUIRED and not yet joined, at most this many: a
/// client that only ever sends first joins displaces the oldest, whose owner's second
/// join is then refused and starts over (Kafka bounds them by `group.max.size`).
pub const CLASSIC_PENDING_MEMBERS_MAX: usize = 1_024;

/// A member id issued with MEMBER_ID_REQUIRED: the group it is for, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PendingClassicMember {
    group_id: String,
    deadline_ms: i64,
}

/// A classic JoinGroup held while its rebalance runs (`classic_join_held`): the join, and
/// its answer, taken when the hold ended.
#[derive(Debug)]
pub(super) struct HeldClassicJoin {
    join: ClassicJoin,
    answer: Option<Result<HeartbeatResponse, GroupError>>,
    /// Past its rebalance timeout no connection waits for it (one whose client went
    /// away never takes its answer): forgotten then.
    forget_at_ms: i64,
}

/// One classic JoinGroup, its consumer-protocol subscription already decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassicJoin {
    pub group_id: String,
    /// Empty for a member joining for the first time.
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub subscribed_topics: BTreeSet<String>,
    /// The subscription's owned partitions (consumer protocol v1+; empty before).
    pub owned: Assignment,
    pub session_timeout_ms: i64,
    /// `max.poll.interval.ms`; JoinGroup v0 has none and uses the session timeout.
    pub rebalance_timeout_ms: i64,
}

/// What a classic Heartbeat tells the member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassicHeartbeat {
    /// Nothing to do.
    Stable,
    /// Send a JoinGroup: the member has a reconciliation step to take
    /// (Kafka's REBALANCE_IN_PROGRESS).
    Rejoin,
}

impl GroupCoordinator {
    /// A classic JoinGroup. The answer's epoch is the generation; its assignment is what
    /// SyncGroup at that generation will hand out.
    pub fn classic_join(
        &mut self,
        join: &ClassicJoin,
        now_ms: i64,
    ) -> Result<HeartbeatResponse, GroupError> {
        check_session_timeout(join)?;
        let member_epoch = if join.member_id.is_empty()
            || self.take_pending_classic_member(&join.group_id, &join.member_id, now_ms)
        {
            0
        } else {
            // As Kafka: a member id the group does not know is refused, and the client
            // joins again without one.
            let group = group_in(&mut self.groups, &join.group_id).map_err(|_| {
                GroupError::UnknownMemberId {
                    group: join.group_id.clone(),
                    member: join.member_id.clone(),
                }
            })?;
            match group.members.get(&join.member_id) {
                Some(member) => member.epoch,
                None => return Err(group.unknown_member(&join.member_id)),
            }
        };
        if member_epoch == 0 {
            self.release_static_instance(join);
        }
        let heartbeat = HeartbeatRequest {
            group_id: join.group_id.clone(),
            member_id: join.member_id.clone(),
            group_instance_id: join.group_instance_id.clone(),
            member_epoch,
            subscribed_topics: join.subscribed_topics.clone(),
            owned: join.owned.clone(),
            rebalance_timeout_ms: join.rebalance_timeout_ms,
            server_assignor: None,
        };
        let answer = self.heartbeat(&heartbeat, now_ms)?;
        if let Some(member) = self
            .groups
            .get_mut(&join.group_id)
            .and_then(|g| g.members.get_mut(&answer.member_id))
        {
            member.classic_session_timeout_ms = Some(join.session_timeout_ms);
            member.session_deadline_ms = now_ms.saturating_add(join.session_timeout_ms);
        }
        Ok(answer)
    }

    /// Kafka's classic protocol: a static member's new process joining under an instance
    /// id another member holds takes that member's place at once, with its assignment
    /// and no rebalance, and the other is fenced (FENCED_INSTANCE_ID at its next request).
    /// A consumer-protocol heartbeat instead waits for the holder to leave
    /// (UNRELEASED_INSTANCE_ID): marking the holder as left here lets the join below
    /// replace it.
    fn release_static_instance(&mut self, join: &ClassicJoin) {
        let Some(instance_id) = join.group_instance_id.as_deref() else {
            return;
        };
        let Some(group) = self.groups.get_mut(&join.group_id) else {
            return;
        };
        if let Some(holder) = group
            .members
            .values_mut()
            .find(|m| m.instance_id.as_deref() == Some(instance_id) && m.id != join.member_id)
        {
            holder.left = true;
        }
    }

    /// Whether a classic member's JoinGroup is better held than answered. Kafka's classic
    /// coordinator answers a rebalance's joins together, once every member has rejoined;
    /// a classic client takes each answer as a rebalance of its own. So a join waits while
    /// another member has not rejoined since the group's target moved on (it is behind the
    /// target epoch and has not been told what to revoke). Then an eager member, which
    /// rejoins having revoked everything, has let go of what this one is to have, and this
    /// one's answer carries its whole share; a cooperative member that rejoins still owning
    /// partitions to revoke is answered at once (so it revokes) and ends the wait, and the
    /// partitions it gives up come in a second rebalance, as in Kafka's cooperative
    /// protocol. A member with partitions to revoke itself is never held.
    pub fn classic_join_held(&self, group: &str, member_id: &str) -> bool {
        let Some(group) = self.groups.get(group) else {
            return false;
        };
        let Some(member) = group.members.get(member_id) else {
            return false;
        };
        if member.state == MemberState::UnrevokedPartitions {
            return false;
        }
        group.members.values().any(|other| {
            other.id != member.id
                && !other.left
                && other.epoch < group.target_epoch
                && other.state == MemberState::Stable
                && !self.holds_classic_join(&group.id, &other.id)
        })
    }

    /// Whether `member_id`'s JoinGroup is held, not yet answered: that member has rejoined
    /// and waits too. Two members behind the target each waiting for the other to rejoin
    /// would otherwise hold each other's joins until the rebalance timeout.
    fn holds_classic_join(&self, group: &str, member_id: &str) -> bool {
        self.held_classic_joins
            .get(&(group.to_owned(), member_id.to_owned()))
            .is_some_and(|held| held.answer.is_none())
    }

    /// Holds member `member_id`'s JoinGroup (`join`) until its rebalance ends, when
    /// [`GroupCoordinator::release_held_classic_joins`] answers it.
    pub fn hold_classic_join(&mut self, join: &ClassicJoin, member_id: &str, now_ms: i64) {
        let mut join = join.clone();
        join.member_id = member_id.to_owned();
        let forget_at_ms = now_ms.saturating_add(join.rebalance_timeout_ms);
        self.held_classic_joins.insert(
            (join.group_id.clone(), member_id.to_owned()),
            HeldClassicJoin {
                join,
                answer: None,
                forget_at_ms,
            },
        );
    }

    /// Answers every held JoinGroup whose rebalance has ended: the member joins again at
    /// that moment, and the answer is kept for its connection to take. Run after every
    /// change to the groups, so that an answer is what the member had when the last
    /// member it waited for rejoined (a cooperative member then still owns what it is
    /// giving up, and the one joining gets it in the next rebalance, as in Kafka).
    pub fn release_held_classic_joins(&mut self, now_ms: i64) {
        self.held_classic_joins
            .retain(|_, held| held.forget_at_ms > now_ms);
        let ended: Vec<(String, String)> = self
            .held_classic_joins
            .iter()
            .filter(|(_, held)| held.answer.is_none())
            .filter(|((group, member), _)| !self.classic_join_held(group, member))
            .map(|(key, _)| key.clone())
            .collect();
        for key in ended {
            let join = self.held_classic_joins[&key].join.clone();
            let answer = self.classic_join(&join, now_ms);
            if let Some(held) = self.held_classic_joins.get_mut(&key) {
                held.answer = Some(answer);
            }
        }
    }

    /// The answer of `join`'s held JoinGroup (its member id set) once its hold ended
    /// (forgotten then), or `None` while it is held; a held member's session is renewed
    /// meanwhile, as Kafka does not expire a member waiting in a JoinGroup. A join this
    /// coordinator does not hold (it was rebuilt since) is joined again now.
    pub fn poll_held_classic_join(
        &mut self,
        join: &ClassicJoin,
        now_ms: i64,
    ) -> Option<Result<HeartbeatResponse, GroupError>> {
        let (group, member_id) = (join.group_id.as_str(), join.member_id.as_str());
        let key = (group.to_owned(), member_id.to_owned());
        let Some(held) = self.held_classic_joins.get(&key) else {
            return Some(self.classic_join(join, now_ms));
        };
        if held.answer.is_some() {
            return self.held_classic_joins.remove(&key)?.answer;
        }
        let session_timeout_ms = held.join.session_timeout_ms;
        if let Some(member) = self
            .groups
            .get_mut(group)
            .and_then(|g| g.members.get_mut(member_id))
        {
            member.session_deadline_ms = now_ms.saturating_add(session_timeout_ms);
        }
        None
    }

    /// Forgets a held JoinGroup its connection stopped waiting for.
    pub fn forget_held_classic_join(&mut self, group: &str, member_id: &str) {
        self.held_classic_joins
            .remove(&(group.to_owned(), member_id.to_owned()));
    }

    /// Until when `group`'s initial rebalance delay holds its first assignment back
    /// (`group.initial.rebalance.delay.ms`), if it does now.
    pub fn assignment_delayed_until_ms(&self, group: &str) -> Option<i64> {
        self.groups.get(group)?.assignment_delayed_until_ms
    }

    /// KIP-394: a new member id for a dynamic member's first JoinGroup (v4+), answered with
    /// MEMBER_ID_REQUIRED; the member joins when it sends its next JoinGroup with it within
    /// its session timeout. Nothing is stored in `__consumer_offsets`.
    pub fn classic_member_id_required(
        &mut self,
        join: &ClassicJoin,
        now_ms: i64,
    ) -> Result<String, GroupError> {
        check_session_timeout(join)?;
        if join.group_id.is_empty() {
            return Err(GroupError::InvalidRequest {
                group: String::new(),
                reason: "the group id is empty".to_owned(),
            });
        }
        self.expire_pending_classic_members(now_ms);
        if self.pending_classic_members.len() >= CLASSIC_PENDING_MEMBERS_MAX {
            let oldest = self
                .pending_classic_members
                .iter()
                .min_by_key(|(_, pending)| pending.deadline_ms)
                .map(|(id, _)| id.clone());
            if let Some(oldest) = oldest {
                self.pending_classic_members.remove(&oldest);
            }
        }
        let member_id = next_member_id(&mut self.member_id_state);
        self.pending_classic_members.insert(
            member_id.clone(),
            PendingClassicMember {
                group_id: join.group_id.clone(),
                deadline_ms: now_ms.saturating_add(join.session_timeout_ms),
            },
        );
        debug_assert!(self.pending_classic_members.len() <= CLASSIC_PENDING_MEMBERS_MAX);
        Ok(member_id)
    }

    /// Whether `member_id` was issued for `group_id` and is still pending; it no longer is.
    fn take_pending_classic_member(
        &mut self,
        group_id: &str,
        member_id: &str,
        now_ms: i64,
    ) -> bool {
        match self.pending_classic_members.get(member_id) {
            Some(pending) if pending.group_id == group_id && pending.deadline_ms > now_ms => {
                self.pending_classic_members.remove(member_id);
                true
            }
            _ => false,
        }
    }

    pub(super) fn expire_pending_classic_members(&mut self, now_ms: i64) {
        self.pending_classic_members
            .retain(|_, pending| pending.deadline_ms > now_ms);
    }

    /// A classic SyncGroup: the partitions the member holds at `generation`, the ones it
    /// is revoking left out.
    pub fn classic_sync(
        &mut self,
        group_id: &str,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation: i32,
        now_ms: i64,
    ) -> Result<Assignment, GroupError> {
        self.renew_classic(group_id, member_id, group_instance_id, generation, now_ms)?;
        let group = group_in(&mut self.groups, group_id)?;
        Ok(group
            .members
            .get(member_id)
            .map(|m| m.assigned.clone())
            .unwrap_or_default())
    }

    /// A classic Heartbeat: renews the session and says whether the member must rejoin.
    pub fn classic_heartbeat(
        &mut self,
        group_id: &str,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation: i32,
        now_ms: i64,
    ) -> Result<ClassicHeartbeat, GroupError> {
        self.renew_classic(group_id, member_id, group_instance_id, generation, now_ms)?;
        // Another member's join held: the group is rebalancing, and that join may wait for
        // this member, so nothing is left for later.
        let rebalancing = self
            .held_classic_joins
            .iter()
            .any(|((group, other), held)| {
                group == group_id && other != member_id && held.answer.is_none()
            });
        let group = group_in(&mut self.groups, group_id)?;
        let unknown = group.unknown_member(member_id);
        let Some(member) = group.members.get(member_id) else {
            return Err(unknown);
        };
        let waits_for_released = member.state == MemberState::UnreleasedPartitions
            && group.target.get(member_id).is_some_and(|target| {
                target
                    .iter()
                    .any(|tp| !member.assigned.contains(tp) && !group.owners.contains_key(tp))
            });
        let rejoin = member.epoch < group.target_epoch
            || member.state == MemberState::UnrevokedPartitions
            || waits_for_released;
        if !rejoin {
            return Ok(ClassicHeartbeat::Stable);
        }
        let deferrable = !rebalancing
            && only_deleted_topics_to_drop(member, group.target.get(member_id), &self.topics);
        let target_epoch = group.target_epoch;
        let Some(member) = group.members.get_mut(member_id) else {
            return Err(unknown);
        };
        if deferrable {
            let until_ms = match member.rejoin_deferred {
                Some((epoch, until_ms)) if epoch == target_epoch => until_ms,
                _ => {
                    let until_ms = now_ms.saturating_add(DELETED_TOPIC_NOTICE_MS);
                    member.rejoin_deferred = Some((target_epoch, until_ms));
                    until_ms
                }
            };
            if now_ms < until_ms {
                return Ok(ClassicHeartbeat::Stable);
            }
        }
        // As Kafka's join timeout: a member told to rejoin that does not within its
        // rebalance timeout is removed (the deadline ends at its JoinGroup, unless that
        // leaves it revoking, when the same deadline holds until it confirms).
        let deadline_ms = now_ms.saturating_add(member.rebalance_timeout_ms);
        member.revocation_deadline_ms.get_or_insert(deadline_ms);
        Ok(ClassicHeartbeat::Rejoin)
    }

    /// A classic LeaveGroup names the member by id, or (v3+) by instance id alone. A static
    /// member is removed too, as Kafka's classic coordinator removes it (a consumer that
    /// unsubscribes, or an admin removing the instance): the group rebalances.
    pub fn classic_leave(
        &mut self,
        group_id: &str,
        member_id: &str,
        group_instance_id: Option<&str>,
        now_ms: i64,
    ) -> Result<(), GroupError> {
        let group = group_in(&mut self.groups, group_id)?;
        let member = if member_id.is_empty() {
            group
                .members
                .values()
                .find(|m| m.instance_id.is_some() && m.instance_id.as_deref() == group_instance_id)
        } else {
            group.members.get(member_id)
        };
        let Some(member) = member else {
            return Err(group.unknown_member(member_id));
        };
        if group_instance_id.is_some() && member.instance_id.as_deref() != group_instance_id {
            return Err(GroupError::FencedInstanceId {
                group: group_id.to_owned(),
                instance_id: group_instance_id.unwrap_or_default().to_owned(),
                member: member.id.clone(),
            });
        }
        // A leave is never fenced by epoch (neither protocol's leave carries one).
        let (member_id, epoch) = (member.id.clone(), member.epoch);
        self.leave_as(group_id, &member_id, epoch, now_ms, StaticLeave::Remove)
    }

    /// Checks a classic member's generation and renews its session. A static member
    /// whose instance id another member took is told FENCED_INSTANCE_ID, as Kafka's
    /// classic coordinator tells it.
    fn renew_classic(
        &mut self,
        group_id: &str,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation: i32,
        now_ms: i64,
    ) -> Result<(), GroupError> {
        let session_timeout_ms = self.config.session_timeout_ms;
        let group = group_in(&mut self.groups, group_id)?;
        if let Some(instance_id) = group_instance_id {
            if let Some(holder) = group
                .members
                .values()
                .find(|m| m.instance_id.as_deref() == Some(instance_id) && m.id != member_id)
            {
                return Err(GroupError::FencedInstanceId {
                    group: group_id.to_owned(),
                    instance_id: instance_id.to_owned(),
                    member: holder.id.clone(),
                });
            }
        }
        let unknown = group.unknown_member(member_id);
        let Some(member) = group.members.get_mut(member_id) else {
            return Err(unknown);
        };
        if member.left {
            return Err(unknown);
        }
        if generation != member.epoch {
            return Err(GroupError::IllegalGeneration {
                group: group_id.to_owned(),
                member: member_id.to_owned(),
                generation,
                expected: member.epoch,
            });
        }
        let timeout_ms = member
            .classic_session_timeout_ms
            .unwrap_or(session_timeout_ms);
        member.session_deadline_ms = now_ms.saturating_add(timeout_ms);
        Ok(())
    }
}

/// Whether all that a member's step would change is dropping partitions of topics that no
/// longer exist. Kafka's classic coordinator does not rebalance when a topic is deleted: each
/// client finds the topic gone from its metadata (a fetch from it fails, or the periodic
/// refresh) and reports its partitions lost. Telling the member to rejoin first would make it
/// revoke them instead, as if another member were to take them (librdkafka's 0113
/// `n_wildcard` checks which). Nobody can take them, so nobody waits while the member keeps
/// them for [`DELETED_TOPIC_NOTICE_MS`]; its rejoin, or any step that moves something else,
/// reconciles it as usual, and a topic created again under the name ends the wait.
fn only_deleted_topics_to_drop(
    member: &Member,
    target: Option<&Assignment>,
    topics: &TopicMetadata,
) -> bool {
    let (kept, gone): (Vec<&TopicPartition>, Vec<&TopicPartition>) = member
        .assigned
        .iter()
        .partition(|tp| topics.contains_key(&tp.topic));
    !gone.is_empty()
        && member.state != MemberState::UnrevokedPartitions
        && target.map_or(0, |target| target.len()) == kept.len()
        && kept
            .iter()
            .all(|tp| target.is_some_and(|target| target.contains(*tp)))
}

/// Kafka's bounds on a classic member's session timeout.
fn check_session_timeout(join: &ClassicJoin) -> Result<(), GroupError> {
    if (CLASSIC_SESSION_TIMEOUT_MIN_MS..=CLASSIC_SESSION_TIMEOUT_MAX_MS)
        .contains(&join.session_timeout_ms)
    {
        return Ok(());
    }
    Err(GroupError::InvalidSessionTimeout {
        group: join.group_id.clone(),
        session_timeout_ms: join.session_timeout_ms,
        min_ms: CLASSIC_SESSION_TIMEOUT_MIN_MS,
        max_ms: CLASSIC_SESSION_TIMEOUT_MAX_MS,
    })
}
