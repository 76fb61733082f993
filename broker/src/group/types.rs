//! The coordinator's vocabulary: partitions, assignments, configuration, and the requests
//! and answers that cross its boundary.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use super::error::GroupError;

/// One partition of one topic.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: u32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: u32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// A set of partitions: what a member owns, is told to own, or is targeted to own.
pub type Assignment = BTreeSet<TopicPartition>;

/// Topic name -> partition count, as the broker's metadata knows it.
pub type TopicMetadata = BTreeMap<String, u32>;

/// The built-in server-side assignors (KIP-848 `group.consumer.assignors`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum AssignorKind {
    /// Contiguous ranges per topic, as Kafka's `RangeAssignor`/`range` server assignor.
    Range,
    /// Partitions dealt out in turn over all topics; uniform, not sticky.
    RoundRobin,
    /// Uniform and sticky: Kafka's `uniform` server assignor, its default.
    #[default]
    Sticky,
}

impl AssignorKind {
    pub const ALL: [AssignorKind; 3] = [
        AssignorKind::Range,
        AssignorKind::RoundRobin,
        AssignorKind::Sticky,
    ];

    pub fn name(self) -> &'static str {
        match self {
            AssignorKind::Range => "range",
            AssignorKind::RoundRobin => "round-robin",
            AssignorKind::Sticky => "sticky",
        }
    }
}

impl fmt::Display for AssignorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for AssignorKind {
    type Err = GroupError;

    fn from_str(name: &str) -> Result<Self, GroupError> {
        match name {
            "range" => Ok(AssignorKind::Range),
            "round-robin" | "roundrobin" => Ok(AssignorKind::RoundRobin),
            // Kafka calls its uniform sticky server assignor `uniform`.
            "sticky" | "uniform" => Ok(AssignorKind::Sticky),
            _ => Err(GroupError::UnsupportedAssignor {
                name: name.to_owned(),
            }),
        }
    }
}

/// Broker-wide settings of the coordinator. Defaults are Kafka's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    /// `group.consumer.session.timeout.ms`: a member silent this long is removed.
    pub session_timeout_ms: i64,
    /// `group.consumer.heartbeat.interval.ms`: told to every member in each answer.
    pub heartbeat_interval_ms: i64,
    /// `group.initial.rebalance.delay.ms`: how long an empty group that gets a member waits
    /// before it computes its first assignment, so members starting together are assigned once.
    pub initial_rebalance_delay_ms: i64,
    /// `offset.metadata.max.bytes`.
    pub offset_metadata_bytes_max: usize,
    /// The assignor of a group whose members ask for none.
    pub default_assignor: AssignorKind,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            session_timeout_ms: 45_000,
            heartbeat_interval_ms: 5_000,
            initial_rebalance_delay_ms: 3_000,
            offset_metadata_bytes_max: 4_096,
            default_assignor: AssignorKind::Sticky,
        }
    }
}

/// One heartbeat (KIP-848 `ConsumerGroupHeartbeat`). Member epoch 0 joins; the member id
/// may then be empty (the coordinator names the member) or chosen by the client (KIP-1082).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatRequest {
    pub group_id: String,
    pub member_id: String,
    /// `group.instance.id`: static membership.
    pub group_instance_id: Option<String>,
    pub member_epoch: i32,
    pub subscribed_topics: BTreeSet<String>,
    /// The partitions the member owns now, as it reports them.
    pub owned: Assignment,
    /// `max.poll.interval.ms`: how long the member may take to give up revoked partitions.
    pub rebalance_timeout_ms: i64,
    /// The server assignor the member asks for; the group uses the one most members ask for.
    pub server_assignor: Option<AssignorKind>,
}

/// The answer to a heartbeat: who the member is, its epoch, and what it should own now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatResponse {
    pub member_id: String,
    pub member_epoch: i32,
    pub heartbeat_interval_ms: i64,
    /// Exactly the partitions the member should own after this answer: partitions missing
    /// from it are to be revoked (committed first), new ones may be consumed at once.
    pub assignment: Assignment,
}

/// One committed offset (Kafka's `OffsetAndMetadata`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: u64,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
}

/// One offset to commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommit {
    pub partition: TopicPartition,
    pub offset: u64,
    pub metadata: String,
}

/// A group's state as Kafka's `ConsumerGroupState` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GroupState {
    /// No members (it may hold committed offsets).
    Empty,
    /// Membership changed and the new target assignment is not computed yet.
    Assigning,
    /// Some member has not yet reached the target assignment.
    Reconciling,
    /// Every member owns its target assignment.
    Stable,
    /// The group does not exist (deleted, or never created), as Kafka's classic
    /// `DescribeGroups` reports an unknown group.
    Dead,
}

impl fmt::Display for GroupState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GroupState::Empty => "Empty",
            GroupState::Assigning => "Assigning",
            GroupState::Reconciling => "Reconciling",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        })
    }
}

/// Where a member is on its way to the target assignment (Kafka's `MemberState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MemberState {
    /// The member owns its target assignment.
    Stable,
    /// The member was told to revoke partitions and has not yet reported them gone; its
    /// epoch stays until it does.
    UnrevokedPartitions,
    /// The member is at the target epoch but waits for partitions other members still hold.
    UnreleasedPartitions,
}

/// One group in `list_groups`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    pub group_id: String,
    pub state: GroupState,
    pub members: usize,
}

/// One member in `describe_group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub member_epoch: i32,
    pub state: MemberState,
    /// A static member that left and may come back within the session timeout.
    pub left: bool,
    pub subscribed_topics: BTreeSet<String>,
    pub assignment: Assignment,
    pub pending_revocation: Assignment,
    pub target_assignment: Assignment,
}

/// A group as `describe_group` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub group_id: String,
    pub state: GroupState,
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    pub assignor: AssignorKind,
    pub members: Vec<MemberDescription>,
}
