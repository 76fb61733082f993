//! Requests served, their latency and their errors, per listener and API.
//! Counted once per request (and once per failed partition), never per
//! record; the label values are `&'static str`, so a lookup allocates nothing.

use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use super::Listener;

/// An API's name as Kafka's request metrics spell it (`Produce`, `Fetch`,
/// `Metadata`, ...): a fixed set, never taken from the request.
pub(crate) type Api = &'static str;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    listener: &'static str,
    api: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    listener: &'static str,
    api: &'static str,
    error: &'static str,
}

type LatencyFamily = Family<RequestLabels, Histogram, fn() -> Histogram>;

/// From 0.5 ms, doubling, to 32.8 s: a local append is well under a
/// millisecond, a long poll may last `fetch_wait_ms_max` (30 s by default).
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 17))
}

#[derive(Debug)]
pub(crate) struct RequestMetrics {
    requests: Family<RequestLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    latency: LatencyFamily,
}

impl Default for RequestMetrics {
    fn default() -> Self {
        RequestMetrics {
            requests: Family::default(),
            errors: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
        }
    }
}

/// A request being served; [`RequestTimer::finish`] counts it.
#[derive(Debug)]
#[must_use = "a request is counted when it finishes"]
pub(crate) struct RequestTimer {
    listener: Listener,
    api: Api,
    started: Instant,
}

impl RequestTimer {
    pub(crate) fn finish(self, metrics: &RequestMetrics) {
        let labels = RequestLabels {
            listener: self.listener.as_str(),
            api: self.api,
        };
        metrics.requests.get_or_create(&labels).inc();
        metrics
            .latency
            .get_or_create(&labels)
            .observe(self.started.elapsed().as_secs_f64());
    }
}

impl RequestMetrics {
    pub(crate) fn start(listener: Listener, api: Api) -> RequestTimer {
        RequestTimer {
            listener,
            api,
            started: Instant::now(),
        }
    }

    /// One error answered: a partition's error code, or a whole request's.
    pub(crate) fn error(&self, listener: Listener, api: Api, error: &'static str) {
        self.errors
            .get_or_create(&ErrorLabels {
                listener: listener.as_str(),
                api,
                error,
            })
            .inc();
    }

    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "weir_requests",
            "Requests served, per listener and API",
            self.requests.clone(),
        );
        registry.register(
            "weir_request_errors",
            "Errors answered, per listener, API and error code: one per failed partition, \
             or one for a request refused whole",
            self.errors.clone(),
        );
        registry.register(
            "weir_request_duration_seconds",
            "Time from a request's start to its response being ready, a long poll's wait \
             included, per listener and API",
            self.latency.clone(),
        );
    }
}

/// The name of a gRPC per-partition error code (`STORAGE`,
/// `OUT_OF_ORDER_SEQUENCE`, ...), as Kafka names its errors.
pub(crate) fn grpc_error_name(code: i32) -> &'static str {
    match crate::proto::ErrorCode::try_from(code) {
        Ok(code) => {
            let name = code.as_str_name();
            name.strip_prefix("ERROR_CODE_").unwrap_or(name)
        }
        Err(_) => "UNKNOWN",
    }
}

/// The name of a gRPC status a request was refused with as a whole.
pub(crate) fn grpc_status_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Kafka's name of an error code the Kafka listener answers (see
/// `kafka::error_code`); `UNKNOWN` for any other.
pub(crate) fn kafka_error_name(code: i16) -> &'static str {
    use kafka_protocol::ResponseError as E;
    let Some(error) = E::try_from_code(code) else {
        return "UNKNOWN";
    };
    match error {
        E::UnknownServerError => "UNKNOWN_SERVER_ERROR",
        E::OffsetOutOfRange => "OFFSET_OUT_OF_RANGE",
        E::CorruptMessage => "CORRUPT_MESSAGE",
        E::UnknownTopicOrPartition => "UNKNOWN_TOPIC_OR_PARTITION",
        E::LeaderNotAvailable => "LEADER_NOT_AVAILABLE",
        E::RequestTimedOut => "REQUEST_TIMED_OUT",
        E::MessageTooLarge => "MESSAGE_TOO_LARGE",
        E::InvalidTopicException => "INVALID_TOPIC_EXCEPTION",
        E::InvalidRequiredAcks => "INVALID_REQUIRED_ACKS",
        E::TopicAlreadyExists => "TOPIC_ALREADY_EXISTS",
        E::InvalidRequest => "INVALID_REQUEST",
        E::InvalidConfig => "INVALID_CONFIG",
        E::InvalidTimestamp => "INVALID_TIMESTAMP",
        E::OutOfOrderSequenceNumber => "OUT_OF_ORDER_SEQUENCE_NUMBER",
        E::InvalidProducerEpoch => "INVALID_PRODUCER_EPOCH",
        E::InvalidTxnState => "INVALID_TXN_STATE",
        E::InvalidProducerIdMapping => "INVALID_PRODUCER_ID_MAPPING",
        E::KafkaStorageError => "KAFKA_STORAGE_ERROR",
        E::InvalidRecord => "INVALID_RECORD",
        E::NotLeaderOrFollower => "NOT_LEADER_OR_FOLLOWER",
        E::NotEnoughReplicas => "NOT_ENOUGH_REPLICAS",
        _ => "UNKNOWN",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_are_kafkas_and_unknown_codes_share_one_label() {
        assert_eq!(grpc_error_name(6), "STORAGE");
        assert_eq!(grpc_error_name(4), "OUT_OF_ORDER_SEQUENCE");
        assert_eq!(grpc_error_name(9999), "UNKNOWN");
        assert_eq!(kafka_error_name(56), "KAFKA_STORAGE_ERROR");
        assert_eq!(kafka_error_name(45), "OUT_OF_ORDER_SEQUENCE_NUMBER");
        assert_eq!(kafka_error_name(-7), "UNKNOWN");
        assert_eq!(grpc_status_name(tonic::Code::NotFound), "NOT_FOUND");
    }
}
