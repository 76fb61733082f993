//! CreatePartitions (v0-v3): grows topics through the same broker function as
//! gRPC's `Admin.CreatePartitions`. The new partitions are placed as the
//! topic's first ones were, or on the brokers the request names for each.

use std::collections::BTreeMap;

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::connection::Session;
use super::error_code;
use crate::error::BrokerError;

/// A refusal: Kafka's code and Weir's message.
type Refusal = (i16, String);

pub async fn handle(
    session: &Session,
    request: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    // Kafka answers every entry of a topic named twice with INVALID_REQUEST.
    let mut named: BTreeMap<&str, usize> = BTreeMap::new();
    for topic in &request.topics {
        *named.entry(topic.name.0.as_str()).or_default() += 1;
    }
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let name = topic.name.0.as_str();
        let outcome = if named[name] > 1 {
            Err((
                ResponseError::InvalidRequest.code(),
                format!("topic {name:?} is named more than once in the request"),
            ))
        } else {
            grow(session, topic, request.validate_only).await
        };
        let result = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
        results.push(match outcome {
            Ok(()) => result,
            Err((code, message)) => {
                tracing::debug!(topic = %name, %message, "Kafka CreatePartitions refused");
                result
                    .with_error_code(code)
                    .with_error_message(Some(StrBytes::from_string(message)))
            }
        });
    }
    CreatePartitionsResponse::default().with_results(results)
}

async fn grow(
    session: &Session,
    topic: &CreatePartitionsTopic,
    validate_only: bool,
) -> Result<(), Refusal> {
    let name = topic.name.0.as_str();
    let count = u32::try_from(topic.count).map_err(|_| {
        (
            ResponseError::InvalidPartitions.code(),
            format!(
                "topic {name:?}: partition count {} is negative",
                topic.count
            ),
        )
    })?;
    let refuse = |error: BrokerError| (error_code::code(&error), error.to_string());
    // Null (librdkafka, the Java client) or empty: the broker places them.
    let Some(assignments) = topic.assignments.as_ref().filter(|a| !a.is_empty()) else {
        return session
            .broker
            .create_partitions(name, count, validate_only)
            .await
            .map_err(refuse);
    };
    let current = session
        .broker
        .topic(name)
        .map_err(refuse)?
        .partition_count();
    crate::broker::check_growth(name, current, count).map_err(refuse)?;
    let invalid = |reason: String| {
        (
            ResponseError::InvalidReplicaAssignment.code(),
            format!("topic {name:?}: invalid replica assignment: {reason}"),
        )
    };
    if assignments.len() as u64 != u64::from(count - current) {
        return Err(invalid(format!(
            "{} assignments for {} new partitions",
            assignments.len(),
            count - current
        )));
    }
    let replicas = assignments
        .iter()
        .map(|a| super::topics::broker_ids(&a.broker_ids))
        .collect::<Result<Vec<_>, _>>()
        .map_err(invalid)?;
    session
        .broker
        .create_partitions_placed(name, replicas, validate_only)
        .await
        .map_err(refuse)
}
