//! One member and the KIP-848 reconciliation step (Kafka's `CurrentAssignmentBuilder`): how a
//! member's current assignment moves towards its target without a partition ever having two
//! owners.

use std::collections::BTreeSet;

use super::types::{Assignment, AssignorKind, MemberState, TopicPartition};

/// A member as the coordinator keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub subscribed: BTreeSet<String>,
    pub server_assignor: Option<AssignorKind>,
    pub rebalance_timeout_ms: i64,
    /// The epoch of the assignment the member was last given; never decreases.
    pub epoch: i32,
    /// The epoch before `epoch`: a heartbeat whose answer was lost arrives with it.
    pub previous_epoch: i32,
    pub state: MemberState,
    /// What the member is told to own.
    pub assigned: Assignment,
    /// What the member was told to give up and has not yet reported gone. Still its own:
    /// nobody else gets these until it reports them revoked (or is removed).
    pub pending_revocation: Assignment,
    /// A static member that left (Kafka's member epoch -2): it keeps its assignment until
    /// its session times out, so it can come back without a rebalance.
    pub left: bool,
    /// Not persisted: restarted from the load time on replay, as Kafka does.
    pub session_deadline_ms: i64,
    /// Set while the member holds partitions it was told to revoke.
    pub revocation_deadline_ms: Option<i64>,
    /// A member that joined with Kafka's classic JoinGroup: its own session timeout, which
    /// its Heartbeat and SyncGroup renew. Not persisted: after a restart the member is
    /// held to the group's session timeout, and its next JoinGroup sets it again.
    pub classic_session_timeout_ms: Option<i64>,
    /// A classic member whose only step towards the target of this epoch is dropping
    /// partitions of deleted topics is left until this time to find them gone itself
    /// (`classic_heartbeat`). Not persisted.
    pub rejoin_deferred: Option<(i32, i64)>,
}

impl Member {
    pub fn new(id: String, instance_id: Option<String>) -> Self {
        Member {
            id,
            instance_id,
            subscribed: BTreeSet::new(),
            server_assignor: None,
            rebalance_timeout_ms: 0,
            epoch: 0,
            previous_epoch: -1,
            state: MemberState::Stable,
            assigned: Assignment::new(),
            pending_revocation: Assignment::new(),
            left: false,
            session_deadline_ms: 0,
            revocation_deadline_ms: None,
            classic_session_timeout_ms: None,
            rejoin_deferred: None,
        }
    }

    /// Everything the member may hold right now.
    pub fn holds(&self) -> impl Iterator<Item = &TopicPartition> {
        self.assigned.iter().chain(&self.pending_revocation)
    }
}

/// A member's next position on its way to the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Reconciled {
    pub epoch: i32,
    pub previous_epoch: i32,
    pub state: MemberState,
    pub assigned: Assignment,
    pub pending_revocation: Assignment,
}

/// The next step of `member` towards `target` at `target_epoch`, given what it reports it
/// `owned` and which partitions no other member holds (`is_free`).
///
/// Partitions to revoke are revoked first, with the member kept at its epoch; only once
/// its heartbeat shows none of them does it move to the target epoch and get new
/// partitions, and of those only the ones no other member holds. Partitions in both the
/// current and the target assignment are never revoked.
pub(super) fn reconcile(
    member: &Member,
    owned: &Assignment,
    target_epoch: i32,
    target: &Assignment,
    is_free: impl Fn(&TopicPartition) -> bool,
) -> Reconciled {
    let current = Reconciled {
        epoch: member.epoch,
        previous_epoch: member.previous_epoch,
        state: member.state,
        assigned: member.assigned.clone(),
        pending_revocation: member.pending_revocation.clone(),
    };
    match member.state {
        MemberState::UnrevokedPartitions => {
            if !owned.is_disjoint(&member.pending_revocation) {
                return current;
            }
        }
        MemberState::Stable if member.epoch == target_epoch => return current,
        MemberState::Stable | MemberState::UnreleasedPartitions => {}
    }
    let kept: Assignment = member.assigned.intersection(target).cloned().collect();
    let revoke: Assignment = member.assigned.difference(target).cloned().collect();
    // A member that no longer reports a partition has already let it go: no need to wait.
    if !revoke.is_disjoint(owned) {
        return Reconciled {
            state: MemberState::UnrevokedPartitions,
            assigned: kept,
            pending_revocation: revoke,
            ..current
        };
    }
    let wanted: Vec<&TopicPartition> = target.difference(&member.assigned).collect();
    let mut assigned = kept;
    let mut unreleased = false;
    for tp in wanted {
        if is_free(tp) {
            assigned.insert(tp.clone());
        } else {
            unreleased = true;
        }
    }
    let moved = member.epoch != target_epoch;
    debug_assert!(target_epoch >= member.epoch, "member epochs never go back");
    Reconciled {
        epoch: target_epoch,
        previous_epoch: if moved {
            member.epoch
        } else {
            member.previous_epoch
        },
        state: if unreleased {
            MemberState::UnreleasedPartitions
        } else {
            MemberState::Stable
        },
        assigned,
        pending_revocation: Assignment::new(),
    }
}
