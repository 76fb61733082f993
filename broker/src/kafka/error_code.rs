//! Weir's errors as Kafka error codes. The message itself travels in the
//! response's `error_message` where the API version has that field.

use kafka_protocol::ResponseError;
use weir_log::batch::BatchError;
use weir_log::LogError;

use crate::error::BrokerError;

/// The Kafka error code of `error`, as Kafka's broker would answer it.
pub fn code(error: &BrokerError) -> i16 {
    kind(error).code()
}

fn kind(error: &BrokerError) -> ResponseError {
    match error {
        BrokerError::UnknownTopic { .. } | BrokerError::PartitionOutOfRange { .. } => {
            ResponseError::UnknownTopicOrPartition
        }
        BrokerError::TopicExists { .. } => ResponseError::TopicAlreadyExists,
        // Kafka refuses writes to internal topics with INVALID_TOPIC_EXCEPTION.
        BrokerError::InternalTopic { .. } | BrokerError::InvalidTopicName(_) => {
            ResponseError::InvalidTopicException
        }
        BrokerError::DuplicatePartition { .. } | BrokerError::InvalidRequest { .. } => {
            ResponseError::InvalidRequest
        }
        BrokerError::InvalidConfig { .. } => ResponseError::InvalidConfig,
        BrokerError::InvalidPartitions { .. } => ResponseError::InvalidPartitions,
        BrokerError::InvalidReplicaAssignment { .. } => ResponseError::InvalidReplicaAssignment,
        BrokerError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        BrokerError::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
        // A produce or a bump from an older epoch: Kafka's answer to both.
        BrokerError::ProducerFenced { .. } | BrokerError::ProducerIdFenced { .. } => {
            ResponseError::InvalidProducerEpoch
        }
        BrokerError::UnknownProducerId { .. } => ResponseError::InvalidProducerIdMapping,
        BrokerError::Log { source, .. } => log_kind(source),
        BrokerError::PartitionOffline { .. } => ResponseError::KafkaStorageError,
        BrokerError::NotLeader { .. } => ResponseError::NotLeaderOrFollower,
        BrokerError::NotEnoughReplicas { .. } => ResponseError::NotEnoughReplicas,
        BrokerError::ReplicationTimedOut { .. } => ResponseError::RequestTimedOut,
        // Retriable: the client refreshes its metadata and tries again.
        BrokerError::ShuttingDown | BrokerError::TopicUnavailable { .. } => {
            ResponseError::LeaderNotAvailable
        }
        BrokerError::MemoryExhausted { .. } => ResponseError::RequestTimedOut,
        BrokerError::LargerThanMemoryPool { .. } => ResponseError::MessageTooLarge,
        _ => ResponseError::UnknownServerError,
    }
}

fn log_kind(error: &LogError) -> ResponseError {
    match error {
        LogError::MessageTooLarge { .. } => ResponseError::MessageTooLarge,
        LogError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        LogError::Config { .. } => ResponseError::InvalidConfig,
        LogError::BatchAt {
            source: BatchError::TimestampOutOfRange { .. },
            ..
        } => ResponseError::InvalidTimestamp,
        LogError::BatchAt {
            source: BatchError::TransactionalBatch { .. },
            ..
        } => ResponseError::InvalidTxnState,
        LogError::BatchAt {
            source: BatchError::KeylessRecords { .. } | BatchError::ControlBatch { .. },
            ..
        } => ResponseError::InvalidRecord,
        LogError::Batch(_)
        | LogError::BatchAt { .. }
        | LogError::EmptyAppend
        | LogError::InvalidOffsetDelta { .. } => ResponseError::CorruptMessage,
        _ => ResponseError::KafkaStorageError,
    }
}

/// The code of a produce's failed append: a request-level refusal of its
/// bytes (no batch, retried batches mixed with new ones) is a corrupt
/// message there, as on gRPC.
pub fn produce_code(error: &BrokerError) -> i16 {
    match error {
        BrokerError::InvalidRequest { .. } => ResponseError::CorruptMessage.code(),
        other => code(other),
    }
}

pub const NONE: i16 = 0;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_errors_get_kafkas_codes() {
        let unknown = BrokerError::UnknownTopic {
            topic: "t".to_string(),
        };
        assert_eq!(code(&unknown), 3);
        let internal = BrokerError::InternalTopic {
            topic: "__consumer_offsets".to_string(),
            operation: "produce to",
        };
        assert_eq!(code(&internal), 17);
        let sequence = BrokerError::OutOfOrderSequence {
            topic: "t".to_string(),
            partition: 0,
            producer_id: 1,
            producer_epoch: 0,
            sequence: 5,
            expected: 0,
        };
        assert_eq!(code(&sequence), 45);
        let bad = BrokerError::InvalidRequest {
            topic: "t".to_string(),
            reason: "no batch".to_string(),
        };
        assert_eq!(produce_code(&bad), 2);
        assert_eq!(code(&bad), 42);
    }
}
