//! CreateTopics (v2-v7) and DeleteTopics (v1-v6), through the same broker
//! functions as gRPC's admin service. A broker in no cluster places no
//! replication factor above 1; in a cluster, up to the registered brokers
//! (through the metadata log). Replicas placed by the request (`assignments`) must
//! name known brokers, the same number for every partition.

use std::collections::BTreeMap;

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::connection::Session;
use super::error_code;
use crate::broker::PARTITIONS_MAX;
use crate::error::BrokerError;

/// Kafka's `default.replication.factor` default, used when a request says -1
/// and for auto-created topics; the partition count is the broker's
/// `num_partitions`.
pub const REPLICATION_FACTOR_DEFAULT: u32 = 1;

/// A refusal: Kafka's code and Weir's message.
type Refusal = (i16, String);

pub async fn create(
    session: &Session,
    request: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.0.as_str().to_string();
        let created = create_one(session, &topic, request.validate_only).await;
        let result = CreatableTopicResult::default().with_name(topic.name.clone());
        results.push(match created {
            Ok((partitions, replication_factor)) => {
                if version >= 5 {
                    result
                        .with_num_partitions(i32::try_from(partitions).unwrap_or(i32::MAX))
                        .with_replication_factor(
                            i16::try_from(replication_factor).unwrap_or(i16::MAX),
                        )
                } else {
                    result
                }
            }
            Err((code, message)) => {
                tracing::debug!(topic = %name, %message, "Kafka CreateTopics refused");
                result
                    .with_error_code(code)
                    .with_error_message(Some(StrBytes::from_string(message)))
            }
        });
    }
    CreateTopicsResponse::default().with_topics(results)
}

async fn create_one(
    session: &Session,
    topic: &CreatableTopic,
    validate_only: bool,
) -> Result<(u32, u32), Refusal> {
    let name = topic.name.0.as_str();
    if !topic.assignments.is_empty() {
        return create_placed(session, topic, validate_only).await;
    }
    let partitions = match topic.num_partitions {
        -1 => session.broker.config().num_partitions,
        n => u32::try_from(n).ok().filter(|n| (1..=PARTITIONS_MAX).contains(n)).ok_or_else(|| {
            (
                ResponseError::InvalidPartitions.code(),
                format!("topic {name:?}: partition count {n} must be between 1 and {PARTITIONS_MAX}"),
            )
        })?,
    };
    let replication_factor = match topic.replication_factor {
        -1 => REPLICATION_FACTOR_DEFAULT,
        n => placeable_replication_factor(session, name, n)?,
    };
    let configs = configs_of(topic);
    let refuse = |error: BrokerError| (error_code::code(&error), error.to_string());
    // The group coordinator creates `__consumer_offsets` itself, with its own settings.
    crate::internal_topics::refuse_internal(name, "create").map_err(refuse)?;
    if validate_only {
        check_new_topic(session, name, &configs)?;
        return Ok((partitions, replication_factor));
    }
    session
        .broker
        .create_topic(name, partitions, replication_factor, configs)
        .await
        .map_err(refuse)?;
    Ok((partitions, replication_factor))
}

/// What a create checks before it writes anything, for `validate_only`: the name, the
/// settings, and that no topic has the name.
fn check_new_topic(
    session: &Session,
    name: &str,
    configs: &BTreeMap<String, String>,
) -> Result<(), Refusal> {
    let refuse = |error: BrokerError| (error_code::code(&error), error.to_string());
    name.parse::<crate::topic_name::TopicName>()
        .map_err(|e| refuse(BrokerError::InvalidTopicName(e)))?;
    session.broker.config().log_config(configs).map_err(|e| {
        (
            ResponseError::InvalidConfig.code(),
            format!("topic {name:?}: {e}"),
        )
    })?;
    if session.broker.topic(name).is_ok() {
        return Err(refuse(BrokerError::TopicExists {
            topic: name.to_string(),
        }));
    }
    Ok(())
}

fn configs_of(topic: &CreatableTopic) -> BTreeMap<String, String> {
    topic
        .configs
        .iter()
        .filter_map(|config| {
            let value = config.value.as_ref()?;
            Some((config.name.as_str().to_string(), value.as_str().to_string()))
        })
        .collect()
}

/// A topic whose replicas the request places (Kafka's `assignments`): partition `i`
/// on the brokers of the entry with `partition_index` `i`, the first leading.
async fn create_placed(
    session: &Session,
    topic: &CreatableTopic,
    validate_only: bool,
) -> Result<(u32, u32), Refusal> {
    let name = topic.name.0.as_str();
    if topic.num_partitions != -1 || topic.replication_factor != -1 {
        return Err((
            ResponseError::InvalidRequest.code(),
            format!("topic {name:?}: a request with replica assignments leaves the partition count and replication factor at -1"),
        ));
    }
    let invalid = |reason: String| {
        (
            ResponseError::InvalidReplicaAssignment.code(),
            format!("topic {name:?}: invalid replica assignment: {reason}"),
        )
    };
    let mut assignments: Vec<_> = topic.assignments.iter().collect();
    assignments.sort_by_key(|a| a.partition_index);
    let mut replicas = Vec::with_capacity(assignments.len());
    for (expected, assignment) in (0..).zip(&assignments) {
        if assignment.partition_index != expected {
            return Err(invalid(format!(
                "partitions must be numbered 0 to {} once each; partition {} is not",
                assignments.len() - 1,
                assignment.partition_index
            )));
        }
        replicas.push(broker_ids(&assignment.broker_ids).map_err(invalid)?);
    }
    let partitions = u32::try_from(replicas.len()).unwrap_or(u32::MAX);
    let replication_factor = u32::try_from(replicas[0].len()).unwrap_or(u32::MAX);
    let configs = configs_of(topic);
    let refuse = |error: BrokerError| (error_code::code(&error), error.to_string());
    crate::internal_topics::refuse_internal(name, "create").map_err(refuse)?;
    if validate_only {
        session
            .broker
            .check_placement(name, &replicas, None)
            .map_err(refuse)?;
        check_new_topic(session, name, &configs)?;
        return Ok((partitions, replication_factor));
    }
    session
        .broker
        .create_topic_placed(name, replicas, configs)
        .await
        .map_err(refuse)?;
    Ok((partitions, replication_factor))
}

/// Kafka's broker ids as node ids; a negative one is not a broker.
pub(super) fn broker_ids(
    ids: &[kafka_protocol::messages::BrokerId],
) -> Result<Vec<crate::cluster::NodeId>, String> {
    ids.iter()
        .map(|id| {
            crate::cluster::NodeId::try_from(id.0)
                .map_err(|_| format!("{} is not a broker id", id.0))
        })
        .collect()
}

/// `n` if there are brokers enough for it; INVALID_REPLICATION_FACTOR, as
/// Kafka answers, otherwise. The cluster's count is checked again when the
/// topic is placed.
fn placeable_replication_factor(session: &Session, name: &str, n: i16) -> Result<u32, Refusal> {
    let refuse = |reason: String| {
        (
            ResponseError::InvalidReplicationFactor.code(),
            format!("topic {name:?}: replication factor {n} {reason}"),
        )
    };
    let Some(link) = session.broker.cluster() else {
        return match n {
            1 => Ok(1),
            _ => Err(refuse("is not 1, the one available broker".to_owned())),
        };
    };
    let registered = link.quorum.metadata().borrow().brokers.len();
    match u32::try_from(n) {
        Ok(n) if n >= 1 && n as usize <= registered => Ok(n),
        _ => Err(refuse(format!(
            "must be between 1 and the {registered} registered brokers"
        ))),
    }
}

pub async fn delete(
    session: &Session,
    request: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    // v6 names topics in `topics` (by name or id), earlier versions in `topic_names`.
    let names: Vec<Option<TopicName>> = if version >= 6 {
        request.topics.into_iter().map(|topic| topic.name).collect()
    } else {
        request.topic_names.into_iter().map(Some).collect()
    };
    let mut responses = Vec::with_capacity(names.len());
    for name in names {
        let Some(name) = name else {
            responses.push(
                DeletableTopicResult::default()
                    .with_error_code(ResponseError::UnknownTopicId.code()),
            );
            continue;
        };
        let topic = name.0.as_str().to_string();
        let deleted = match crate::internal_topics::refuse_internal(&topic, "delete") {
            Ok(()) => session.broker.delete_topic(&topic).await,
            Err(error) => Err(error),
        };
        let result = DeletableTopicResult::default().with_name(Some(name));
        responses.push(match deleted {
            Ok(()) => result,
            Err(error) => {
                tracing::debug!(%topic, %error, "Kafka DeleteTopics refused");
                let result = result.with_error_code(error_code::code(&error));
                if version >= 5 {
                    result.with_error_message(Some(StrBytes::from_string(error.to_string())))
                } else {
                    result
                }
            }
        });
    }
    DeleteTopicsResponse::default().with_responses(responses)
}
