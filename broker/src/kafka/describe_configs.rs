//! DescribeConfigs (v1-v4) of topics: the topic's own overrides (source
//! TOPIC_CONFIG) and the broker's `topic_defaults` it inherits (source
//! STATIC_BROKER_CONFIG), with Kafka's names. Settings left at Weir's
//! built-in defaults are not listed. A broker resource has no dynamic
//! settings to show: its list is empty.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::connection::Session;
use super::error_code;

/// Kafka's `ConfigResource.Type` and `ConfigSource` codes.
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const SOURCE_TOPIC_CONFIG: i8 = 1;
const SOURCE_STATIC_BROKER_CONFIG: i8 = 4;

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
                        let mut configs: BTreeMap<&str, (&str, i8)> = BTreeMap::new();
                        for (key, value) in &session.broker.config().topic_defaults {
                            configs.insert(key, (value, SOURCE_STATIC_BROKER_CONFIG));
                        }
                        for (key, value) in &topic.configs {
                            configs.insert(key, (value, SOURCE_TOPIC_CONFIG));
                        }
                        let entries = configs
                            .into_iter()
                            .filter(|(key, _)| wanted(key))
                            .map(|(key, (value, source))| entry(key, value, source, version))
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

fn entry(key: &str, value: &str, source: i8, version: i16) -> DescribeConfigsResourceResult {
    let entry = DescribeConfigsResourceResult::default()
        .with_name(StrBytes::from_string(key.to_string()))
        .with_value(Some(StrBytes::from_string(value.to_string())))
        .with_config_source(source);
    debug_assert!(version >= 1);
    entry
}
