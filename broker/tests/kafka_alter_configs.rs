//! IncrementalAlterConfigs over the Kafka listener: SET, DELETE, APPEND and
//! SUBTRACT of a topic's overrides, seen by DescribeConfigs; a bad value
//! refuses the resource's changes whole; `validate_only` changes nothing.
//! DescribeConfigs lists every setting with its source, and the older
//! AlterConfigs replaces a topic's overrides with the ones it names.

mod common;
mod kafka_support;

use kafka_protocol::messages::alter_configs_request::{
    AlterConfigsResource as LegacyResource, AlterableConfig as LegacyConfig,
};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    AlterConfigsRequest, CreateTopicsRequest, DescribeConfigsRequest,
    IncrementalAlterConfigsRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use kafka_support::{start_broker, KafkaWire};

const INVALID_CONFIG: i16 = 40;
const INVALID_TOPIC_EXCEPTION: i16 = 17;

fn op(key: &str, operation: i8, value: Option<&str>) -> AlterableConfig {
    AlterableConfig::default()
        .with_name(StrBytes::from_string(key.to_string()))
        .with_config_operation(operation)
        .with_value(value.map(|v| StrBytes::from_string(v.to_string())))
}

fn alter(
    topic: &str,
    configs: Vec<AlterableConfig>,
    validate_only: bool,
) -> IncrementalAlterConfigsRequest {
    IncrementalAlterConfigsRequest::default()
        .with_validate_only(validate_only)
        .with_resources(vec![AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_string(topic.to_string()))
            .with_configs(configs)])
}

/// The topic's own overrides (source TOPIC_CONFIG), as DescribeConfigs lists them.
async fn overrides(wire: &mut KafkaWire, topic: &str) -> Vec<(String, String)> {
    let described = wire
        .call(
            4,
            &DescribeConfigsRequest::default().with_resources(vec![
                DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_string(topic.to_string())),
            ]),
        )
        .await;
    described.results[0]
        .configs
        .iter()
        .filter(|c| c.config_source == 1)
        .map(|c| (c.name.to_string(), c.value.as_ref().unwrap().to_string()))
        .collect()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn topic_configs_are_set_appended_subtracted_and_deleted() {
    let (broker, kafka) = start_broker().await;
    let mut wire = KafkaWire::connect(kafka).await;
    let created = wire
        .call(
            7,
            &CreateTopicsRequest::default()
                .with_timeout_ms(5_000)
                .with_topics(vec![CreatableTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str("tuned")))
                    .with_num_partitions(1)
                    .with_replication_factor(1)]),
        )
        .await;
    assert_eq!(created.topics[0].error_code, 0);

    // SET, and APPEND to a list from Kafka's default (`delete`).
    for version in [0, 1] {
        let answer = wire
            .call(
                version,
                &alter(
                    "tuned",
                    vec![
                        op("retention.ms", 0, Some("60000")),
                        op("cleanup.policy", 2, Some("compact")),
                    ],
                    false,
                ),
            )
            .await;
        assert_eq!(answer.responses[0].error_code, 0, "v{version}: {answer:?}");
    }
    assert_eq!(
        overrides(&mut wire, "tuned").await,
        pairs(&[
            ("cleanup.policy", "delete,compact"),
            ("retention.ms", "60000")
        ])
    );

    // A bad value refuses the whole resource: the SUBTRACT beside it is not applied.
    let refused = wire
        .call(
            1,
            &alter(
                "tuned",
                vec![
                    op("cleanup.policy", 3, Some("delete")),
                    op("retention.ms", 0, Some("soon")),
                ],
                false,
            ),
        )
        .await;
    assert_eq!(refused.responses[0].error_code, INVALID_CONFIG);
    assert!(refused.responses[0].error_message.is_some());
    // validate_only checks and changes nothing.
    let checked = wire
        .call(
            1,
            &alter("tuned", vec![op("cleanup.policy", 3, Some("delete"))], true),
        )
        .await;
    assert_eq!(checked.responses[0].error_code, 0);
    assert_eq!(
        overrides(&mut wire, "tuned").await,
        pairs(&[
            ("cleanup.policy", "delete,compact"),
            ("retention.ms", "60000")
        ])
    );

    // SUBTRACT and DELETE.
    let answer = wire
        .call(
            1,
            &alter(
                "tuned",
                vec![
                    op("cleanup.policy", 3, Some("delete")),
                    op("retention.ms", 1, None),
                ],
                false,
            ),
        )
        .await;
    assert_eq!(answer.responses[0].error_code, 0);
    assert_eq!(
        overrides(&mut wire, "tuned").await,
        pairs(&[("cleanup.policy", "compact")])
    );

    // Unknown topics, the internal topic and broker resources are refused.
    let missing = wire
        .call(
            1,
            &alter("nowhere", vec![op("retention.ms", 0, Some("1"))], false),
        )
        .await;
    assert_eq!(missing.responses[0].error_code, 3);
    let internal = wire
        .call(
            1,
            &alter(
                "__consumer_offsets",
                vec![op("retention.ms", 0, Some("1"))],
                false,
            ),
        )
        .await;
    assert_eq!(internal.responses[0].error_code, INVALID_TOPIC_EXCEPTION);
    let mut for_broker = alter("0", vec![op("log.retention.ms", 0, Some("1"))], false);
    for_broker.resources[0].resource_type = 4;
    let refused = wire.call(1, &for_broker).await;
    assert_ne!(refused.responses[0].error_code, 0);
    broker.shutdown().await;
}

/// Every setting of `topic` at DescribeConfigs `version`: (name, value, source, type).
async fn described(
    wire: &mut KafkaWire,
    topic: &str,
    version: i16,
) -> Vec<(String, String, i8, i8)> {
    let answer = wire
        .call(
            version,
            &DescribeConfigsRequest::default().with_resources(vec![
                DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_string(topic.to_string()))
                    .with_configuration_keys(None),
            ]),
        )
        .await;
    assert_eq!(answer.results[0].error_code, 0);
    answer.results[0]
        .configs
        .iter()
        .map(|c| {
            (
                c.name.to_string(),
                c.value.as_ref().unwrap().to_string(),
                c.config_source,
                c.config_type,
            )
        })
        .collect()
}

#[tokio::test]
async fn every_setting_is_described_and_the_older_alter_configs_replaces_the_overrides() {
    let (broker, kafka) = start_broker().await;
    let mut wire = KafkaWire::connect(kafka).await;
    let created = wire
        .call(
            7,
            &CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("all")))
                .with_num_partitions(1)
                .with_replication_factor(1)]),
        )
        .await;
    assert_eq!(created.topics[0].error_code, 0);

    // Defaults too, as `kafka-configs --describe --all` shows them: source DEFAULT_CONFIG (5).
    let all = described(&mut wire, "all", 4).await;
    let find = |all: &[(String, String, i8, i8)], name: &str| {
        all.iter()
            .find(|c| c.0 == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} not described: {all:?}"))
    };
    assert_eq!(
        find(&all, "cleanup.policy"),
        ("cleanup.policy".into(), "delete".into(), 5, 7)
    );
    assert_eq!(find(&all, "retention.ms").1, "604800000");
    assert_eq!(find(&all, "retention.bytes").1, "-1");
    assert_eq!(find(&all, "min.insync.replicas").1, "1");
    assert_eq!(find(&all, "compression.type").1, "producer");
    assert!(all.len() >= 18, "{all:?}");
    // v1 has no config type (the field would not encode).
    assert!(described(&mut wire, "all", 1)
        .await
        .iter()
        .all(|c| c.3 == 0));

    // The older AlterConfigs sets exactly what it names; message.format.version is
    // taken (and ignored, as Kafka 3 does).
    let replace = |configs: &[(&str, &str)], validate_only: bool| {
        AlterConfigsRequest::default()
            .with_validate_only(validate_only)
            .with_resources(vec![LegacyResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("all"))
                .with_configs(
                    configs
                        .iter()
                        .map(|(k, v)| {
                            LegacyConfig::default()
                                .with_name(StrBytes::from_string(k.to_string()))
                                .with_value(Some(StrBytes::from_string(v.to_string())))
                        })
                        .collect(),
                )])
    };
    for version in [0, 1, 2] {
        let answer = wire
            .call(
                version,
                &replace(
                    &[
                        ("retention.ms", "1000"),
                        ("message.format.version", "0.10.0"),
                    ],
                    false,
                ),
            )
            .await;
        assert_eq!(answer.responses[0].error_code, 0, "v{version}: {answer:?}");
    }
    assert_eq!(
        overrides(&mut wire, "all").await,
        pairs(&[
            ("message.format.version", "0.10.0"),
            ("retention.ms", "1000")
        ])
    );
    let answer = wire
        .call(0, &replace(&[("segment.ms", "60000")], false))
        .await;
    assert_eq!(answer.responses[0].error_code, 0);
    assert_eq!(
        overrides(&mut wire, "all").await,
        pairs(&[("segment.ms", "60000")]),
        "what the request leaves out goes back to its default"
    );
    assert_eq!(
        find(&described(&mut wire, "all", 4).await, "retention.ms").2,
        5
    );

    let refused = wire
        .call(1, &replace(&[("compression.type", "brotli")], false))
        .await;
    assert_eq!(refused.responses[0].error_code, INVALID_CONFIG);
    let message = refused.responses[0]
        .error_message
        .as_ref()
        .unwrap()
        .to_string();
    assert!(
        message.contains("producer, uncompressed, gzip"),
        "{message}"
    );
    let checked = wire
        .call(1, &replace(&[("compression.type", "lz4")], true))
        .await;
    assert_eq!(checked.responses[0].error_code, 0);
    assert_eq!(
        overrides(&mut wire, "all").await,
        pairs(&[("segment.ms", "60000")]),
        "validate_only changes nothing"
    );
    broker.shutdown().await;
}
