//! The topic settings a topic has in force, each with where its value comes from: the
//! topic's own override, the broker's `topic_defaults`, or the built-in default. What
//! Kafka's DescribeConfigs lists, and what IncrementalAlterConfigs' APPEND and SUBTRACT
//! start from. The log's settings are `weir_log::LogConfig`'s; the broker adds the
//! replication ones and a Kafka key it takes without acting on it.

use std::collections::BTreeMap;

use weir_log::LogConfig;

use crate::config::{
    BrokerConfig, MIN_INSYNC_REPLICAS_CONFIG, UNCLEAN_LEADER_ELECTION_ENABLE_CONFIG,
};

/// Kafka 3's `message.format.version`: taken and ignored, as Kafka 3 ignores it once
/// every broker writes RecordBatch v2 (Weir writes nothing else); Kafka 4 removed it.
pub const MESSAGE_FORMAT_VERSION_CONFIG: &str = "message.format.version";
const MESSAGE_FORMAT_VERSION_DEFAULT: &str = "3.0-IV1";

/// Where a setting's value comes from (Kafka's `ConfigSource`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    /// The topic's own override (TOPIC_CONFIG).
    Topic,
    /// The broker's `topic_defaults` (STATIC_BROKER_CONFIG).
    Broker,
    /// Built in (DEFAULT_CONFIG).
    Default,
}

/// One setting as a topic has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicConfigValue {
    pub name: String,
    pub value: String,
    pub source: ConfigSource,
}

/// The built-in value of every setting a topic takes, by Kafka name.
pub fn built_in_defaults() -> BTreeMap<&'static str, String> {
    let mut defaults: BTreeMap<&'static str, String> =
        LogConfig::default().kafka_values().into_iter().collect();
    defaults.insert(MIN_INSYNC_REPLICAS_CONFIG, "1".to_string());
    defaults.insert(UNCLEAN_LEADER_ELECTION_ENABLE_CONFIG, "false".to_string());
    defaults.insert(
        MESSAGE_FORMAT_VERSION_CONFIG,
        MESSAGE_FORMAT_VERSION_DEFAULT.to_string(),
    );
    defaults
}

/// Every setting of a topic with `overrides`, by name: the built-in ones, and any other
/// key the topic or the broker sets (`value.format`, Weir's `fsync`).
pub fn in_force(
    config: &BrokerConfig,
    overrides: &BTreeMap<String, String>,
) -> Vec<TopicConfigValue> {
    let mut values: BTreeMap<String, TopicConfigValue> = built_in_defaults()
        .into_iter()
        .map(|(name, value)| {
            let value = TopicConfigValue {
                name: name.to_string(),
                value,
                source: ConfigSource::Default,
            };
            (name.to_string(), value)
        })
        .collect();
    let set = config
        .topic_defaults
        .iter()
        .map(|(k, v)| (k, v, ConfigSource::Broker))
        .chain(overrides.iter().map(|(k, v)| (k, v, ConfigSource::Topic)));
    for (name, value, source) in set {
        values.insert(
            name.clone(),
            TopicConfigValue {
                name: name.clone(),
                value: value.clone(),
                source,
            },
        );
    }
    values.into_values().collect()
}

/// The value of `key` in force for a topic with `overrides`, if the topic takes it.
pub fn value_in_force(
    config: &BrokerConfig,
    overrides: &BTreeMap<String, String>,
    key: &str,
) -> Option<String> {
    overrides
        .get(key)
        .or_else(|| config.topic_defaults.get(key))
        .cloned()
        .or_else(|| built_in_defaults().get(key).cloned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_value_names_where_it_comes_from() {
        let config = BrokerConfig {
            topic_defaults: BTreeMap::from([
                ("retention.ms".to_string(), "1000".to_string()),
                ("segment.ms".to_string(), "2000".to_string()),
            ]),
            ..BrokerConfig::default()
        };
        let overrides = BTreeMap::from([
            ("segment.ms".to_string(), "3000".to_string()),
            ("value.format".to_string(), "json".to_string()),
        ]);
        let values = in_force(&config, &overrides);
        let find = |name: &str| values.iter().find(|v| v.name == name).unwrap().clone();
        assert_eq!(
            (find("segment.ms").value, find("segment.ms").source),
            ("3000".to_string(), ConfigSource::Topic)
        );
        assert_eq!(find("retention.ms").source, ConfigSource::Broker);
        assert_eq!(
            (find("cleanup.policy").value, find("cleanup.policy").source),
            ("delete".to_string(), ConfigSource::Default)
        );
        assert_eq!(find("value.format").source, ConfigSource::Topic);
        assert_eq!(find("min.insync.replicas").value, "1");
        // Every built-in default is a value the broker takes for a topic.
        let defaults: BTreeMap<String, String> = built_in_defaults()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        config.log_config(&defaults).unwrap();
        assert_eq!(
            value_in_force(&config, &overrides, "cleanup.policy").as_deref(),
            Some("delete")
        );
        assert_eq!(value_in_force(&config, &overrides, "no.such.key"), None);
    }
}
