//! The broker's error type and its mapping onto gRPC statuses and per-partition
//! error codes. Every message is a sentence naming the topic, the partition
//! and the cause.

use std::path::PathBuf;

use weir_log::batch::BatchError;
use weir_log::LogError;

use crate::group::GroupError;
use crate::proto::ErrorCode;
use crate::topic_name::TopicNameError;

/// Why a broker operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("topic {topic:?} does not exist")]
    UnknownTopic { topic: String },

    #[error("topic {topic:?} already exists")]
    TopicExists { topic: String },

    /// Only the broker writes its internal topics; Kafka refuses these with
    /// INVALID_TOPIC_EXCEPTION.
    #[error("topic {topic:?} is internal to the broker: clients cannot {operation} it")]
    InternalTopic {
        topic: String,
        operation: &'static str,
    },

    #[error("invalid topic name: {0}")]
    InvalidTopicName(#[from] TopicNameError),

    #[error("topic {topic:?} has {partitions} partitions; partition {partition} is out of range")]
    PartitionOutOfRange {
        topic: String,
        partition: u32,
        partitions: u32,
    },

    #[error("topic {topic:?}: partition {partition} is named twice in one request")]
    DuplicatePartition { topic: String, partition: u32 },

    #[error("topic {topic:?} partition {partition}: this broker is not its leader{}", match leader {
        Some(id) => format!(" (broker {id} is)"),
        None => " (none is known)".to_owned(),
    })]
    NotLeader {
        topic: String,
        partition: u32,
        leader: Option<u64>,
    },

    #[error("topic {topic:?} partition {partition}: {isr} in-sync replicas, fewer than min.insync.replicas = {min_isr}")]
    NotEnoughReplicas {
        topic: String,
        partition: u32,
        isr: usize,
        min_isr: usize,
    },

    #[error("topic {topic:?} partition {partition}: offset {offset} was written by the leader but not copied by every in-sync replica in time; it may still be")]
    ReplicationTimedOut {
        topic: String,
        partition: u32,
        offset: u64,
    },

    /// The group's coordinator is the leader of its `__consumer_offsets` partition,
    /// which is another broker (or none yet): find the coordinator again and retry there.
    #[error("this broker is not the coordinator of group {group:?}{}", match coordinator {
        Some(id) => format!(" (broker {id} is)"),
        None => " (none is elected yet)".to_owned(),
    })]
    NotCoordinator {
        group: String,
        coordinator: Option<u64>,
    },

    #[error("cluster: {0}")]
    Cluster(#[from] crate::cluster::ClusterError),

    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),

    #[error("topic {topic:?}: {reason}")]
    InvalidRequest { topic: String, reason: String },

    /// A partition count that does not grow the topic (Kafka's INVALID_PARTITIONS).
    #[error("topic {topic:?}: {reason}")]
    InvalidPartitions { topic: String, reason: String },

    /// Replicas placed by hand on brokers that cannot hold them (Kafka's
    /// INVALID_REPLICA_ASSIGNMENT).
    #[error("topic {topic:?}: invalid replica assignment: {reason}")]
    InvalidReplicaAssignment { topic: String, reason: String },

    #[error("topic {topic:?}: config {key} = {value:?} is invalid: {reason}")]
    InvalidConfig {
        topic: String,
        key: String,
        value: String,
        reason: String,
    },

    #[error("topic {topic:?} partition {partition}: offset {offset} is out of range; valid offsets are {log_start}..={high_watermark}")]
    OffsetOutOfRange {
        topic: String,
        partition: u32,
        offset: u64,
        log_start: u64,
        high_watermark: u64,
    },

    #[error("topic {topic:?} partition {partition}: producer {producer_id} epoch {producer_epoch} sent sequence {sequence}, expected {expected}")]
    OutOfOrderSequence {
        topic: String,
        partition: u32,
        producer_id: i64,
        producer_epoch: i16,
        sequence: i32,
        expected: i32,
    },

    #[error("topic {topic:?} partition {partition}: producer {producer_id} epoch {producer_epoch} is fenced by epoch {current_epoch}")]
    ProducerFenced {
        topic: String,
        partition: u32,
        producer_id: i64,
        producer_epoch: i16,
        current_epoch: i16,
    },

    #[error("producer {producer_id} epoch {producer_epoch} is fenced: its current epoch is {current_epoch}")]
    ProducerIdFenced {
        producer_id: i64,
        producer_epoch: i16,
        current_epoch: i16,
    },

    #[error("producer {producer_id} epoch {producer_epoch} was never handed out by this broker; ask for a new producer id")]
    UnknownProducerId {
        producer_id: i64,
        producer_epoch: i16,
    },

    #[error("topic {topic:?} partition {partition}: {source}")]
    Log {
        topic: String,
        partition: u32,
        #[source]
        source: LogError,
    },

    /// The partition's log did not open at start; the broker serves its other partitions.
    #[error("topic {topic:?} partition {partition} is offline: {cause}")]
    PartitionOffline {
        topic: String,
        partition: u32,
        cause: String,
    },

    #[error("topic {topic:?} partition {partition}: cannot rebuild the idempotent-producer state: {reason}")]
    ProducerState {
        topic: String,
        partition: u32,
        reason: String,
    },

    #[error("failed to {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("failed to listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },

    #[error("the gRPC server stopped: {reason}")]
    Serve { reason: String },

    #[error("topic registry {} is corrupt: {reason}", path.display())]
    CorruptRegistry { path: PathBuf, reason: String },

    #[error("topic {topic:?} is unavailable: {reason}; retry")]
    TopicUnavailable { topic: String, reason: String },

    #[error("the broker is shutting down")]
    ShuttingDown,

    /// The memory pool stayed full until the request's deadline; the request
    /// was not read, and may be sent again.
    #[error("the broker's request memory is exhausted: {reason}; retry later")]
    MemoryExhausted { reason: String },

    /// More memory than the whole pool holds: no retry can succeed.
    #[error("{reason}")]
    LargerThanMemoryPool { reason: String },
    /// The data directory is locked by another broker (or a tool reading it).
    #[error(transparent)]
    DataDir(LogError),

    #[error("a blocking storage task failed: {0}")]
    TaskFailed(String),

    /// The group coordinator refused the operation.
    #[error(transparent)]
    Group(#[from] GroupError),
}

impl BrokerError {
    /// Wraps a log error with the partition it happened in.
    pub fn log(topic: &str, partition: u32, source: LogError) -> BrokerError {
        BrokerError::Log {
            topic: topic.to_string(),
            partition,
            source,
        }
    }

    /// The per-partition error code of produce and fetch responses.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            BrokerError::PartitionOutOfRange { .. } | BrokerError::UnknownTopic { .. } => {
                ErrorCode::UnknownPartition
            }
            BrokerError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
            BrokerError::OutOfOrderSequence { .. } => ErrorCode::OutOfOrderSequence,
            BrokerError::ProducerFenced { .. } | BrokerError::ProducerIdFenced { .. } => {
                ErrorCode::ProducerFenced
            }
            BrokerError::NotLeader { .. } => ErrorCode::NotLeaderOrFollower,
            BrokerError::NotEnoughReplicas { .. } => ErrorCode::NotEnoughReplicas,
            BrokerError::ReplicationTimedOut { .. } => ErrorCode::Timeout,
            BrokerError::Log { source, .. } => match source {
                LogError::MessageTooLarge { .. } => ErrorCode::BatchTooLarge,
                LogError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
                LogError::BatchAt {
                    source: BatchError::TimestampOutOfRange { .. },
                    ..
                } => ErrorCode::InvalidTimestamp,
                LogError::BatchAt {
                    source: BatchError::TransactionalBatch { .. },
                    ..
                } => ErrorCode::InvalidTxnState,
                LogError::BatchAt {
                    source: BatchError::KeylessRecords { .. },
                    ..
                } => ErrorCode::InvalidRecord,
                source if is_bad_batch(source) => ErrorCode::CorruptBatch,
                _ => ErrorCode::Storage,
            },
            BrokerError::InvalidRequest { .. } => ErrorCode::CorruptBatch,
            _ => ErrorCode::Storage,
        }
    }

    /// The gRPC status code this error maps to.
    pub fn status_code(&self) -> tonic::Code {
        use tonic::Code;
        match self {
            BrokerError::UnknownTopic { .. } => Code::NotFound,
            BrokerError::TopicExists { .. } => Code::AlreadyExists,
            BrokerError::InvalidTopicName(_)
            | BrokerError::PartitionOutOfRange { .. }
            | BrokerError::DuplicatePartition { .. }
            | BrokerError::InternalTopic { .. }
            | BrokerError::InvalidRequest { .. }
            | BrokerError::InvalidPartitions { .. }
            | BrokerError::InvalidReplicaAssignment { .. }
            | BrokerError::InvalidConfig { .. } => Code::InvalidArgument,
            BrokerError::OffsetOutOfRange { .. } => Code::OutOfRange,
            BrokerError::OutOfOrderSequence { .. }
            | BrokerError::ProducerFenced { .. }
            | BrokerError::ProducerIdFenced { .. } => Code::FailedPrecondition,
            BrokerError::UnknownProducerId { .. } => Code::InvalidArgument,
            BrokerError::Log { source, .. } => match source {
                LogError::OffsetOutOfRange { .. } => Code::OutOfRange,
                LogError::Config { .. } => Code::InvalidArgument,
                LogError::MessageTooLarge { .. } => Code::InvalidArgument,
                source if is_bad_batch(source) => Code::InvalidArgument,
                _ => Code::Internal,
            },
            // Kafka's KAFKA_STORAGE_ERROR is retriable too: a repair and restart brings it back.
            BrokerError::ShuttingDown
            | BrokerError::TopicUnavailable { .. }
            | BrokerError::PartitionOffline { .. } => Code::Unavailable,
            BrokerError::MemoryExhausted { .. } | BrokerError::LargerThanMemoryPool { .. } => {
                Code::ResourceExhausted
            }
            BrokerError::Group(error) => group_status_code(error),
            BrokerError::Io { .. }
            | BrokerError::DataDir(_)
            | BrokerError::Bind { .. }
            | BrokerError::Serve { .. }
            | BrokerError::CorruptRegistry { .. }
            | BrokerError::ProducerState { .. }
            | BrokerError::TaskFailed(_) => Code::Internal,
            BrokerError::Config(_) => Code::InvalidArgument,
            BrokerError::NotLeader { .. }
            | BrokerError::NotCoordinator { .. }
            | BrokerError::NotEnoughReplicas { .. }
            | BrokerError::ReplicationTimedOut { .. } => Code::Unavailable,
            BrokerError::Cluster(error) => match error {
                crate::cluster::ClusterError::NotController { .. }
                | crate::cluster::ClusterError::ProposalTimedOut { .. }
                | crate::cluster::ClusterError::Busy
                | crate::cluster::ClusterError::Stopped => Code::Unavailable,
                crate::cluster::ClusterError::Refused(_)
                | crate::cluster::ClusterError::InvalidPeers { .. } => Code::FailedPrecondition,
                _ => Code::Internal,
            },
        }
    }
}

/// The gRPC status of a group error, for the calls that answer with a status rather
/// than an error code in the response.
fn group_status_code(error: &GroupError) -> tonic::Code {
    use tonic::Code;
    match error {
        GroupError::GroupIdNotFound { .. } | GroupError::UnknownTopicOrPartition { .. } => {
            Code::NotFound
        }
        GroupError::UnknownMemberId { .. }
        | GroupError::FencedMemberEpoch { .. }
        | GroupError::StaleMemberEpoch { .. }
        | GroupError::IllegalGeneration { .. }
        | GroupError::UnreleasedInstanceId { .. }
        | GroupError::FencedInstanceId { .. }
        | GroupError::NonEmptyGroup { .. }
        | GroupError::PartitionNotAssigned { .. } => Code::FailedPrecondition,
        GroupError::OffsetMetadataTooLarge { .. }
        | GroupError::InvalidRequest { .. }
        | GroupError::InvalidSessionTimeout { .. }
        | GroupError::UnsupportedAssignor { .. } => Code::InvalidArgument,
        GroupError::CorruptRecord { .. } => Code::Internal,
    }
}

/// Errors caused by the bytes a client sent, as opposed to the broker's storage.
fn is_bad_batch(error: &LogError) -> bool {
    matches!(
        error,
        LogError::Batch(_)
            | LogError::BatchAt { .. }
            | LogError::EmptyAppend
            | LogError::InvalidOffsetDelta { .. }
            | LogError::MessageTooLarge { .. }
    )
}

impl From<BrokerError> for tonic::Status {
    fn from(error: BrokerError) -> tonic::Status {
        let mut status = tonic::Status::new(error.status_code(), error.to_string());
        if matches!(error, BrokerError::MemoryExhausted { .. }) {
            // Tells clients this RESOURCE_EXHAUSTED is worth a retry, unlike
            // a request over `request_bytes_max`.
            status.metadata_mut().insert(
                crate::proto::MEMORY_EXHAUSTED_METADATA,
                tonic::metadata::MetadataValue::from_static("true"),
            );
        }
        status
    }
}
