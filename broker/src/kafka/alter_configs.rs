//! IncrementalAlterConfigs (v0-v1, KIP-339) of topics, through the same
//! broker function as gRPC's `Admin.AlterConfigs` (`Broker::alter_configs`):
//! SET and DELETE a topic's overrides; APPEND and SUBTRACT an item of a
//! comma-separated list (the value in force: the override, else the broker's
//! `topic_defaults`, else the built-in default, `topic_configs`). A resource's
//! changes are checked together and applied together, or not at all;
//! `validate_only` checks them alone. A broker resource has no dynamic settings
//! here and is refused, as is `__consumer_offsets`.
//!
//! AlterConfigs (v0-v2), the older API, replaces a topic's overrides with the
//! ones it names: a setting it leaves out goes back to its default.

use std::collections::BTreeMap;

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse as LegacyResourceResponse;
use kafka_protocol::messages::incremental_alter_configs_request::AlterConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::connection::Session;
use super::error_code;
use crate::error::BrokerError;

/// Kafka's `ConfigResource.Type` for a topic.
const RESOURCE_TOPIC: i8 = 2;

/// Kafka's `AlterConfigOp.OpType` codes.
const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

/// A refusal: Kafka's code and Weir's message.
type Refusal = (i16, String);

pub async fn handle(
    session: &Session,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let response = AlterConfigsResourceResponse::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name.clone());
        responses.push(
            match alter(session, &resource, request.validate_only).await {
                Ok(()) => response,
                Err((code, message)) => {
                    tracing::debug!(resource = %resource.resource_name, %message, "Kafka IncrementalAlterConfigs refused");
                    response
                        .with_error_code(code)
                        .with_error_message(Some(StrBytes::from_string(message)))
                }
            },
        );
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

async fn alter(
    session: &Session,
    resource: &AlterConfigsResource,
    validate_only: bool,
) -> Result<(), Refusal> {
    let name = resource.resource_name.as_str();
    let topic = topic_to_alter(session, resource.resource_type, name)?;
    let broker = &session.broker;
    let in_force = |key: &str| {
        crate::topic_configs::value_in_force(broker.config(), &topic.configs, key)
            .unwrap_or_default()
    };
    // Key -> new value, empty to remove the override (`alter_configs`' rule).
    let mut changes: BTreeMap<String, String> = BTreeMap::new();
    for config in &resource.configs {
        let key = config.name.as_str().to_string();
        if changes.contains_key(&key) {
            return Err((
                ResponseError::InvalidRequest.code(),
                format!("topic {name:?}: config {key:?} is altered twice in one request"),
            ));
        }
        let value = config.value.as_ref().map(|v| v.as_str()).unwrap_or("");
        let current = || changes.get(&key).cloned().unwrap_or_else(|| in_force(&key));
        let next = match config.config_operation {
            SET if value.is_empty() => {
                return Err((
                    ResponseError::InvalidConfig.code(),
                    format!("topic {name:?}: config {key:?} cannot be set to nothing; DELETE removes it"),
                ))
            }
            SET => value.to_string(),
            DELETE => String::new(),
            APPEND => {
                let mut items = list(&current());
                for item in list(value) {
                    if !items.contains(&item) {
                        items.push(item);
                    }
                }
                items.join(",")
            }
            SUBTRACT => {
                let remove = list(value);
                let items: Vec<String> = list(&current())
                    .into_iter()
                    .filter(|item| !remove.contains(item))
                    .collect();
                items.join(",")
            }
            other => {
                return Err((
                    ResponseError::InvalidRequest.code(),
                    format!("topic {name:?}: config operation {other} is not SET (0), DELETE (1), APPEND (2) or SUBTRACT (3)"),
                ))
            }
        };
        changes.insert(key, next);
    }
    apply(session, &topic, changes, validate_only).await
}

/// AlterConfigs (v0-v2): each resource's overrides become exactly the ones named.
pub async fn handle_replace(
    session: &Session,
    request: AlterConfigsRequest,
) -> AlterConfigsResponse {
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let response = LegacyResourceResponse::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name.clone());
        let named: Vec<(String, String)> = resource
            .configs
            .iter()
            .map(|c| {
                let value = c.value.as_ref().map(|v| v.to_string()).unwrap_or_default();
                (c.name.to_string(), value)
            })
            .collect();
        let replaced = replace(
            session,
            resource.resource_type,
            resource.resource_name.as_str(),
            &named,
            request.validate_only,
        )
        .await;
        responses.push(match replaced {
            Ok(()) => response,
            Err((code, message)) => {
                tracing::debug!(resource = %resource.resource_name, %message, "Kafka AlterConfigs refused");
                response
                    .with_error_code(code)
                    .with_error_message(Some(StrBytes::from_string(message)))
            }
        });
    }
    AlterConfigsResponse::default().with_responses(responses)
}

async fn replace(
    session: &Session,
    resource_type: i8,
    name: &str,
    named: &[(String, String)],
    validate_only: bool,
) -> Result<(), Refusal> {
    let topic = topic_to_alter(session, resource_type, name)?;
    // Every override the request does not name is removed (an empty value).
    let mut changes: BTreeMap<String, String> = topic
        .configs
        .keys()
        .map(|key| (key.clone(), String::new()))
        .collect();
    let mut seen = std::collections::BTreeSet::new();
    for (key, value) in named {
        if !seen.insert(key) {
            return Err((
                ResponseError::InvalidRequest.code(),
                format!("topic {name:?}: config {key:?} is named twice in one request"),
            ));
        }
        if value.is_empty() {
            return Err((
                ResponseError::InvalidConfig.code(),
                format!("topic {name:?}: config {key:?} has no value; leave it out to remove it"),
            ));
        }
        changes.insert(key.clone(), value.clone());
    }
    apply(session, &topic, changes, validate_only).await
}

/// The topic a resource of an alter names: topics only, not the internal ones.
fn topic_to_alter(
    session: &Session,
    resource_type: i8,
    name: &str,
) -> Result<std::sync::Arc<crate::broker::Topic>, Refusal> {
    let refuse = |error: BrokerError| (error_code::code(&error), error.to_string());
    if resource_type != RESOURCE_TOPIC {
        return Err((
            ResponseError::InvalidRequest.code(),
            format!("resource type {resource_type} cannot be altered; topics (2) can"),
        ));
    }
    crate::internal_topics::refuse_internal(name, "alter the configs of").map_err(refuse)?;
    session.broker.topic(name).map_err(refuse)
}

/// Applies `changes` (key to new value, empty to remove the override) to `topic`,
/// or with `validate_only` checks what they would leave.
async fn apply(
    session: &Session,
    topic: &crate::broker::Topic,
    changes: BTreeMap<String, String>,
    validate_only: bool,
) -> Result<(), Refusal> {
    let broker = &session.broker;
    let name = topic.name.as_str();
    if validate_only {
        let after = crate::broker::overrides_after(&topic.configs, &changes);
        broker.config().log_config(&after).map_err(|error| {
            (
                ResponseError::InvalidConfig.code(),
                format!("topic {name:?}: {error}"),
            )
        })?;
        return Ok(());
    }
    broker
        .alter_configs(name, changes)
        .await
        .map_err(|error| (error_code::code(&error), error.to_string()))?;
    Ok(())
}

/// The items of a comma-separated list value, trimmed, empty ones dropped.
fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::list;

    #[test]
    fn lists_are_split_trimmed_and_empty_items_dropped() {
        assert_eq!(list("delete, compact,,"), ["delete", "compact"]);
        assert!(list("").is_empty());
    }
}
