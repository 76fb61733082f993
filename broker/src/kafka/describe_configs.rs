//! DescribeConfigs (v1-v4) of topics: every setting a topic takes, with the value in
//! force and where it comes from (Kafka's `ConfigSource`): the topic's override
//! (TOPIC_CONFIG), the broker's `topic_defaults` (STATIC_BROKER_CONFIG) or the built-in
//! default (DEFAULT_CONFIG), as Kafka's `kafka-configs --describe --all` lists them
//! (`topic_configs`). A broker resource has no dynamic settings to show: its list is
//! empty.

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::connection::Session;
use super::error_code;
use crate::topic_configs::{self, ConfigSource, TopicConfigValue};

/// Kafka's `ConfigResource.Type` and `ConfigSource` codes.
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const SOURCE_TOPIC_CONFIG: i8 = 1;
const SOURCE_STATIC_BROKER_CONFIG: i8 = 4;
const SOURCE_DEFAULT_CONFIG: i8 = 5;

pub fn handle(
    session: &Session,
    request: DescribeConfigsRequest,
    version: i16,
) -> DescribeConfigsResponse {
    let results = request
        .resources
        .into_iter()
        .map(|resource| {
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone())
                .with_error_message(None);
            // Null or empty: every config.
            let wanted = |key: &str| {
                resource
                    .configuration_keys
                    .as_ref()
                    .filter(|keys| !keys.is_empty())
                    .is_none_or(|keys| keys.iter().any(|k| k.as_str() == key))
            };
            match resource.resource_type {
                RESOURCE_TOPIC => match session.broker.topic(resource.resource_name.as_str()) {
                    Ok(topic) => {
                        let entries =
                            topic_configs::in_force(session.broker.config(), &topic.configs)
                                .into_iter()
                                .filter(|setting| wanted(&setting.name))
                                .map(|setting| entry(&setting, version))
                                .collect();
                        result.with_configs(entries)
                    }
                    Err(error) => result
                        .with_error_code(error_code::code(&error))
                        .with_error_message(Some(StrBytes::from_string(error.to_string()))),
                },
                RESOURCE_BROKER => result,
                other => result
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(StrBytes::from_string(format!(
                        "resource type {other} is not described; topics (2) and brokers (4) are"
                    )))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

fn entry(setting: &TopicConfigValue, version: i16) -> DescribeConfigsResourceResult {
    debug_assert!(version >= 1);
    let source = match setting.source {
        ConfigSource::Topic => SOURCE_TOPIC_CONFIG,
        ConfigSource::Broker => SOURCE_STATIC_BROKER_CONFIG,
        ConfigSource::Default => SOURCE_DEFAULT_CONFIG,
    };
    let entry = DescribeConfigsResourceResult::default()
        .with_name(StrBytes::from_string(setting.name.clone()))
        .with_value(Some(StrBytes::from_string(setting.value.clone())))
        .with_config_source(source);
    // The type exists from v3 (a field set on a version without it fails to encode).
    if version >= 3 {
        entry.with_config_type(config_type(&setting.name))
    } else {
        entry
    }
}

/// Kafka's `ConfigType` of a topic setting.
fn config_type(name: &str) -> i8 {
    const BOOLEAN: i8 = 1;
    const STRING: i8 = 2;
    const INT: i8 = 3;
    const LONG: i8 = 5;
    const DOUBLE: i8 = 6;
    const LIST: i8 = 7;
    match name {
        "cleanup.policy" => LIST,
        "unclean.leader.election.enable" => BOOLEAN,
        "min.cleanable.dirty.ratio" => DOUBLE,
        "segment.bytes"
        | "index.interval.bytes"
        | "max.message.bytes"
        | "segment.index.bytes"
        | "min.insync.replicas" => INT,
        "delete.retention.ms"
        | "flush.messages"
        | "flush.ms"
        | "message.timestamp.after.max.ms"
        | "message.timestamp.before.max.ms"
        | "min.compaction.lag.ms"
        | "retention.bytes"
        | "retention.ms"
        | "segment.ms" => LONG,
        _ => STRING,
    }
}
