//! The client's error type: every failure names the broker, topic or
//! partition involved, and says whether retrying can help.

use crate::proto::ErrorCode;

/// Why a client call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    #[error("invalid broker address {addr:?}: {reason}")]
    InvalidAddress { addr: String, reason: String },

    #[error("cannot connect to broker at {addr}: {reason}")]
    Connect { addr: String, reason: String },

    /// The broker (or the transport) answered with a gRPC status.
    #[error("{message}")]
    Status { code: tonic::Code, message: String },

    /// The broker's memory stayed full (`queued_request_bytes_max`) until the
    /// request's deadline, so it did not read the request: nothing of it was
    /// stored, and sending it again later may succeed.
    #[error("{message}")]
    MemoryExhausted { message: String },

    /// One partition of a produce or fetch failed.
    #[error("{message}")]
    Partition {
        topic: String,
        partition: u32,
        code: ErrorCode,
        message: String,
    },

    #[error("topic {topic:?} partition {partition} offset {offset}: the batch cannot be decoded: {reason}; seek past it to read on")]
    BadBatch {
        topic: String,
        partition: u32,
        /// The first offset of the bad batch.
        offset: u64,
        reason: String,
    },

    #[error(
        "record of {size_bytes} bytes is larger than the limit of {max_bytes} bytes ({limit})"
    )]
    RecordTooLarge {
        size_bytes: usize,
        max_bytes: usize,
        limit: &'static str,
    },

    /// The group coordinator refused a heartbeat or commit of a member
    /// (fenced, stale epoch, a partition it does not own, ...).
    #[error("{message}")]
    Group {
        group: String,
        code: ErrorCode,
        message: String,
    },

    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    #[error("the producer is closed")]
    Closed,

    /// A produce failed in a way that does not say whether the broker stored
    /// the records (a storage error, a lost answer).
    #[error("{reason} (the records may or may not have been stored)")]
    MaybeStored { reason: String },

    /// The records were never stored: they could not be sent in time.
    #[error("{reason}")]
    NotSent { reason: String },

    #[error("topic {topic:?} partition {partition}: no acknowledgement within {timeout_ms} ms after {attempts} attempts (the records may or may not have been stored): {last_error}")]
    DeliveryTimeout {
        topic: String,
        partition: u32,
        timeout_ms: u64,
        attempts: u32,
        last_error: String,
    },
}

impl ClientError {
    /// Whether sending the same request again may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            ClientError::Status { code, .. } => matches!(
                code,
                tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
            ),
            // NOT_LEADER_OR_FOLLOWER: retriable once the leader is learnt
            // again, as Kafka's clients treat it.
            ClientError::Partition { code, .. } => matches!(
                code,
                ErrorCode::Timeout | ErrorCode::NotEnoughReplicas | ErrorCode::NotLeaderOrFollower
            ),
            ClientError::Connect { .. } | ClientError::MemoryExhausted { .. } => true,
            _ => false,
        }
    }

    /// Whether the broker said the topic does not exist.
    pub fn is_not_found(&self) -> bool {
        self.code() == Some(tonic::Code::NotFound)
    }

    /// The gRPC status code, if the broker answered with one.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            ClientError::Status { code, .. } => Some(*code),
            ClientError::MemoryExhausted { .. } => Some(tonic::Code::ResourceExhausted),
            _ => None,
        }
    }
}

impl From<tonic::Status> for ClientError {
    fn from(status: tonic::Status) -> Self {
        let mut message = status.message().to_string();
        // Transport failures carry their cause as the error source.
        if let Some(source) = std::error::Error::source(&status) {
            message = format!("{message}: {}", chain(source));
        }
        if message.is_empty() {
            message = format!("broker answered {:?}", status.code());
        }
        if status.code() == tonic::Code::ResourceExhausted
            && status
                .metadata()
                .contains_key(crate::proto::MEMORY_EXHAUSTED_METADATA)
        {
            return ClientError::MemoryExhausted { message };
        }
        ClientError::Status {
            code: status.code(),
            message,
        }
    }
}

/// An error and its sources on one line.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_resource_exhausted_marked_as_pool_exhaustion_is_retriable() {
        let mut full_pool = tonic::Status::resource_exhausted("the broker's memory is exhausted");
        full_pool.metadata_mut().insert(
            crate::proto::MEMORY_EXHAUSTED_METADATA,
            tonic::metadata::MetadataValue::from_static("true"),
        );
        let error = ClientError::from(full_pool);
        assert!(
            matches!(error, ClientError::MemoryExhausted { .. }),
            "{error:?}"
        );
        assert!(error.is_retriable());
        assert_eq!(error.code(), Some(tonic::Code::ResourceExhausted));

        let too_large = ClientError::from(tonic::Status::resource_exhausted(
            "a produce request is 20 bytes, more than the 10 allowed (request_bytes_max)",
        ));
        assert!(
            matches!(too_large, ClientError::Status { .. }),
            "{too_large:?}"
        );
        assert!(!too_large.is_retriable());
    }
}
