//! The one error type of the group coordinator. Variants carry Kafka's error names, so a
//! Kafka-protocol listener maps them onto its error codes one for one.

/// Why a coordinator operation was refused. Each message is a sentence naming the group,
/// and the member, topic and partition where one is involved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    #[error("group {group:?} does not exist")]
    GroupIdNotFound { group: String },

    #[error("group {group:?} has no member {member:?}: it left or was removed; rejoin with member epoch 0")]
    UnknownMemberId { group: String, member: String },

    #[error("group {group:?} member {member:?} sent member epoch {epoch}, but its epoch is {expected}: it was fenced; rejoin with member epoch 0")]
    FencedMemberEpoch {
        group: String,
        member: String,
        epoch: i32,
        expected: i32,
    },

    #[error("group {group:?} member {member:?} committed with member epoch {epoch}, but its epoch is {expected}; heartbeat, then commit again")]
    StaleMemberEpoch {
        group: String,
        member: String,
        epoch: i32,
        expected: i32,
    },

    #[error("group {group:?} member {member:?} sent generation {generation}, but its generation is {expected}; rejoin the group")]
    IllegalGeneration {
        group: String,
        member: String,
        generation: i32,
        expected: i32,
    },

    #[error("group {group:?}: a session timeout of {session_timeout_ms} ms is outside {min_ms} to {max_ms} ms")]
    InvalidSessionTimeout {
        group: String,
        session_timeout_ms: i64,
        min_ms: i64,
        max_ms: i64,
    },

    #[error("group {group:?}: instance id {instance_id:?} is still held by member {member:?}, which has not left the group")]
    UnreleasedInstanceId {
        group: String,
        instance_id: String,
        member: String,
    },

    #[error("group {group:?}: instance id {instance_id:?} now belongs to member {member:?}; this member was replaced")]
    FencedInstanceId {
        group: String,
        instance_id: String,
        member: String,
    },

    #[error("group {group:?} has {members} active member(s); {operation} needs an empty group")]
    NonEmptyGroup {
        group: String,
        members: usize,
        operation: &'static str,
    },

    #[error("group {group:?} member {member:?} does not own topic {topic:?} partition {partition}, so it may not commit its offset")]
    PartitionNotAssigned {
        group: String,
        member: String,
        topic: String,
        partition: u32,
    },

    #[error("group {group:?}: topic {topic:?} has no partition {partition}")]
    UnknownTopicOrPartition {
        group: String,
        topic: String,
        partition: u32,
    },

    #[error("group {group:?} topic {topic:?} partition {partition}: offset metadata of {bytes} bytes is over the limit of {bytes_max}")]
    OffsetMetadataTooLarge {
        group: String,
        topic: String,
        partition: u32,
        bytes: usize,
        bytes_max: usize,
    },

    #[error("group {group:?}: {reason}")]
    InvalidRequest { group: String, reason: String },

    #[error(
        "unknown partition assignor {name:?}; the built-in ones are range, round-robin and sticky"
    )]
    UnsupportedAssignor { name: String },

    #[error("__consumer_offsets record at position {index} is damaged: {reason}")]
    CorruptRecord { index: usize, reason: String },
}
