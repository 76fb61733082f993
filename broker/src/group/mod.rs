//! The consumer-group coordinator, as a state machine independent of the wire (KIP-848).
//!
//! Owns: groups, their members and member epochs, the target assignment and each member's
//! way to it, committed offsets, and their records in the compacted `__consumer_offsets`
//! topic. A group epoch moves when membership, subscriptions or the subscribed topics
//! change; the group's assignor (`range`, `round-robin`, or `sticky`, the default) then
//! computes a target assignment; each member converges to its part one heartbeat at a time,
//! and a partition that moves goes to its new owner only after the old owner's heartbeat
//! shows it gave it up. Partitions that stay are never revoked. Member epochs fence
//! zombies: a heartbeat or commit from an old epoch is refused.
//!
//! Does not own: time (every call takes `now_ms`), I/O (changes come out as
//! [`GroupRecord`]s for the caller to append, and [`GroupCoordinator::replay`] takes them
//! back), the wire (the gRPC heartbeat and Kafka's JoinGroup/SyncGroup both drive it), or
//! finding offsets for a reset (the caller resolves earliest/latest/by time).
//!
//! Invariant: a partition is held (assigned, or pending revocation) by at most one member
//! of a group; `Group::set_holdings` is the only place holdings change and asserts it.

mod admin;
mod assignor;
mod classic;
mod consumer_group;
mod coordinator;
mod error;
mod member;
mod offsets;
mod placement;
mod rebalance_durations;
mod records;
mod sticky;
mod types;

#[cfg(test)]
mod tests;

pub use assignor::{assign, AssignorMember};
pub use classic::{
    ClassicHeartbeat, ClassicJoin, CLASSIC_PENDING_MEMBERS_MAX, CLASSIC_SESSION_TIMEOUT_MAX_MS,
    CLASSIC_SESSION_TIMEOUT_MIN_MS, DELETED_TOPIC_NOTICE_MS,
};
pub use coordinator::{GroupCoordinator, ID_BYTES_MAX, NO_MEMBER_EPOCH};
pub use error::GroupError;
pub use placement::{
    java_string_hash, offsets_partition_for, CONSUMER_OFFSETS_PARTITIONS_DEFAULT,
    CONSUMER_OFFSETS_TOPIC,
};
pub use rebalance_durations::{RebalanceDurations, REBALANCE_BUCKET_BOUNDS_MS};
pub use records::GroupRecord;
pub use types::{
    Assignment, AssignorKind, CommittedOffset, GroupConfig, GroupDescription, GroupListing,
    GroupState, HeartbeatRequest, HeartbeatResponse, MemberDescription, MemberState, OffsetCommit,
    TopicMetadata, TopicPartition,
};
