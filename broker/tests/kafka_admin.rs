//! The Kafka listener's admin and offset APIs: CreateTopics, Metadata,
//! DescribeConfigs, DeleteTopics, ListOffsets, and InitProducerId with the
//! idempotence it buys.

mod common;
mod kafka_support;

use bytes::Bytes;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest, GroupId,
    InitProducerIdRequest, ListOffsetsRequest, MetadataRequest, OffsetCommitRequest,
    ProduceRequest, ProducerId, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use weir_log::batch::{BatchBuilder, Compression};

use kafka_support::{start_broker, KafkaWire};

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

fn create(topic: &str, partitions: i32, replication_factor: i16) -> CreatableTopic {
    CreatableTopic::default()
        .with_name(name(topic))
        .with_num_partitions(partitions)
        .with_replication_factor(replication_factor)
}

fn produce(topic: &str, batch: Bytes) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch))])])
}

/// (error code, base offset) of a one-partition produce.
async fn produce_result(wire: &mut KafkaWire, topic: &str, batch: Bytes) -> (i16, i64) {
    let response = wire.call(9, &produce(topic, batch)).await;
    let partition = &response.responses[0].partition_responses[0];
    (partition.error_code, partition.base_offset)
}

fn sequenced(producer_id: i64, epoch: i16, sequence: i32, timestamps_ms: &[i64]) -> Bytes {
    let mut builder =
        BatchBuilder::new(Compression::None).with_producer(producer_id, epoch, sequence);
    for &timestamp in timestamps_ms {
        builder.push(timestamp, None, Some(b"v"), &[]);
    }
    builder.build().unwrap()
}

#[tokio::test]
async fn topics_are_created_described_listed_and_deleted_over_kafka() {
    let (broker, kafka) = start_broker().await;
    let mut wire = KafkaWire::connect(kafka).await;
    let retention = CreatableTopicConfig::default()
        .with_name(StrBytes::from_static_str("retention.ms"))
        .with_value(Some(StrBytes::from_static_str("3600000")));
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(5_000)
        .with_topics(vec![
            create("orders", 3, 1).with_configs(vec![retention]),
            create("defaults", -1, -1),
            create("replicated", 1, 3),
            create("bad name!", 1, 1),
        ]);
    let created = wire.call(7, &request).await;
    let codes: Vec<(String, i16)> = created
        .topics
        .iter()
        .map(|t| (t.name.0.to_string(), t.error_code))
        .collect();
    assert_eq!(
        codes,
        [
            ("orders".to_string(), 0),
            ("defaults".to_string(), 0),
            ("replicated".to_string(), 38),
            ("bad name!".to_string(), 17),
        ]
    );
    assert_eq!(created.topics[0].num_partitions, 3);
    assert_eq!(created.topics[1].num_partitions, 1);
    let message = created.topics[2]
        .error_message
        .as_ref()
        .unwrap()
        .to_string();
    assert!(message.contains("replication factor 3"), "{message}");
    let again = wire
        .call(
            2,
            &CreateTopicsRequest::default().with_topics(vec![create("orders", 1, 1)]),
        )
        .await;
    assert_eq!(again.topics[0].error_code, 36, "TOPIC_ALREADY_EXISTS");

    // Metadata names this broker at the address the client reached.
    let metadata = wire
        .call(
            12,
            &MetadataRequest::default().with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(name("orders"))),
                MetadataRequestTopic::default().with_name(Some(name("nowhere"))),
            ])),
        )
        .await;
    assert_eq!(metadata.brokers.len(), 1);
    assert_eq!(metadata.brokers[0].host.to_string(), kafka.ip().to_string());
    assert_eq!(metadata.brokers[0].port, i32::from(kafka.port()));
    let orders = &metadata.topics[0];
    assert_eq!((orders.error_code, orders.partitions.len()), (0, 3));
    assert!(orders
        .partitions
        .iter()
        .all(|p| p.leader_id == metadata.brokers[0].node_id));
    assert_eq!(metadata.topics[1].error_code, 3);
    // The first group change creates `__consumer_offsets`: a commit from outside a group.
    let committed = wire
        .call(
            8,
            &OffsetCommitRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("admin")))
                .with_generation_id_or_member_epoch(-1)
                .with_topics(vec![OffsetCommitRequestTopic::default()
                    .with_name(name("orders"))
                    .with_partitions(vec![
                        OffsetCommitRequestPartition::default().with_committed_offset(0)
                    ])]),
        )
        .await;
    assert_eq!(committed.topics[0].partitions[0].error_code, 0);
    // Every topic, the internal one flagged, in v0 (an empty list) and v1+ (null).
    for (version, topics) in [(0, Some(Vec::new())), (4, None)] {
        let all = wire
            .call(version, &MetadataRequest::default().with_topics(topics))
            .await;
        let offsets = all
            .topics
            .iter()
            .find(|t| t.name == Some(name("__consumer_offsets")))
            .unwrap();
        assert!(version == 0 || offsets.is_internal);
        assert!(all.topics.iter().any(|t| t.name == Some(name("defaults"))));
    }

    let described = wire
        .call(
            4,
            &DescribeConfigsRequest::default().with_resources(vec![
                DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_static_str("orders")),
                DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_static_str("nowhere")),
            ]),
        )
        .await;
    let configs = &described.results[0].configs;
    let retention = configs
        .iter()
        .find(|c| c.name.as_str() == "retention.ms")
        .unwrap();
    assert_eq!(retention.value.as_ref().unwrap().as_str(), "3600000");
    assert_eq!(retention.config_source, 1, "TOPIC_CONFIG");
    assert_eq!(described.results[1].error_code, 3);

    let deleted = wire
        .call(
            6,
            &DeleteTopicsRequest::default().with_topics(vec![
                DeleteTopicState::default().with_name(Some(name("orders"))),
                DeleteTopicState::default().with_name(Some(name("__consumer_offsets"))),
                DeleteTopicState::default().with_name(Some(name("nowhere"))),
            ]),
        )
        .await;
    let codes: Vec<i16> = deleted.responses.iter().map(|r| r.error_code).collect();
    assert_eq!(codes, [0, 17, 3]);
    let old = wire
        .call(
            1,
            &DeleteTopicsRequest::default().with_topic_names(vec![name("defaults")]),
        )
        .await;
    assert_eq!(old.responses[0].error_code, 0);
    let gone = broker.admin().await.list_topics().await.unwrap();
    assert!(gone
        .iter()
        .all(|t| t.topic != "orders" && t.topic != "defaults"));
    broker.shutdown().await;
}

#[tokio::test]
async fn list_offsets_finds_the_earliest_the_latest_and_by_timestamp() {
    let (broker, kafka) = start_broker().await;
    broker.create_topic("offsets", 1).await;
    let mut wire = KafkaWire::connect(kafka).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut builder = BatchBuilder::new(Compression::None);
    for i in 0..4 {
        builder.push(now + i * 1000, None, Some(b"v"), &[]);
    }
    assert_eq!(
        produce_result(&mut wire, "offsets", builder.build().unwrap())
            .await
            .0,
        0
    );
    for version in [1, 4, 6] {
        let query = |timestamp: i64| {
            ListOffsetsRequest::default()
                .with_replica_id((-1).into())
                .with_topics(vec![ListOffsetsTopic::default()
                    .with_name(name("offsets"))
                    .with_partitions(vec![ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_timestamp(timestamp)])])
        };
        let mut found = Vec::new();
        for timestamp in [-2, -1, now + 1500, now + 60_000] {
            let response = wire.call(version, &query(timestamp)).await;
            let partition = &response.topics[0].partitions[0];
            assert_eq!(partition.error_code, 0, "v{version} {timestamp}");
            found.push((partition.offset, partition.timestamp));
        }
        // By time: the first record at or after it, with its own timestamp.
        assert_eq!(
            found,
            [(0, -1), (4, -1), (2, now + 2000), (-1, -1)],
            "v{version}"
        );
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn an_idempotent_producer_s_retry_is_stored_once_and_a_gap_is_refused() {
    let (broker, kafka) = start_broker().await;
    broker.create_topic("once", 1).await;
    let mut wire = KafkaWire::connect(kafka).await;
    let given = wire
        .call(
            4,
            &InitProducerIdRequest::default().with_transaction_timeout_ms(60_000),
        )
        .await;
    assert_eq!(given.error_code, 0);
    assert!(given.producer_id.0 >= 0);
    assert_eq!(given.producer_epoch, 0);
    let (id, epoch) = (given.producer_id.0, given.producer_epoch);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let first = sequenced(id, epoch, 0, &[now, now]);
    assert_eq!(
        produce_result(&mut wire, "once", first.clone()).await,
        (0, 0)
    );
    // The retry answers with the original offset and stores nothing.
    assert_eq!(produce_result(&mut wire, "once", first).await, (0, 0));
    assert_eq!(
        produce_result(&mut wire, "once", sequenced(id, epoch, 2, &[now])).await,
        (0, 2)
    );
    // A gap: OUT_OF_ORDER_SEQUENCE_NUMBER once the wait for earlier batches ends.
    let gap = wire
        .call(
            9,
            &produce("once", sequenced(id, epoch, 9, &[now])).with_timeout_ms(200),
        )
        .await;
    assert_eq!(gap.responses[0].partition_responses[0].error_code, 45);
    // An epoch bump (KIP-360) fences the old epoch.
    let bumped = wire
        .call(
            4,
            &InitProducerIdRequest::default()
                .with_producer_id(ProducerId(id))
                .with_producer_epoch(epoch),
        )
        .await;
    assert_eq!((bumped.error_code, bumped.producer_epoch), (0, epoch + 1));
    assert_eq!(
        produce_result(&mut wire, "once", sequenced(id, epoch + 1, 0, &[now])).await,
        (0, 3)
    );
    let fenced = produce_result(&mut wire, "once", sequenced(id, epoch, 3, &[now])).await;
    assert_eq!(fenced.0, 47, "INVALID_PRODUCER_EPOCH");
    broker.shutdown().await;
}

#[tokio::test]
async fn every_served_version_of_every_api_is_answered() {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::FetchRequest;

    let (broker, kafka) = start_broker().await;
    broker.create_topic("versions", 1).await;
    let mut wire = KafkaWire::connect(kafka).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    for version in 3..=9 {
        let mut builder = BatchBuilder::new(Compression::None);
        builder.push(now, Some(b"k"), Some(b"v"), &[("h", Some(b"x"))]);
        let (code, offset) = produce_result_at(&mut wire, version, builder.build().unwrap()).await;
        assert_eq!(
            (code, offset),
            (0, i64::from(version) - 3),
            "Produce v{version}"
        );
    }
    for version in 4..=12 {
        let request = FetchRequest::default()
            .with_max_bytes(1 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic(name("versions"))
                .with_partitions(vec![FetchPartition::default()
                    .with_fetch_offset(2)
                    .with_partition_max_bytes(1 << 20)])]);
        let response = wire.call(version, &request).await;
        let partition = &response.responses[0].partitions[0];
        assert_eq!(partition.error_code, 0, "Fetch v{version}");
        assert_eq!(partition.high_watermark, 7, "Fetch v{version}");
        assert!(
            !partition.records.as_ref().unwrap().is_empty(),
            "Fetch v{version}"
        );
    }
    for version in 0..=12 {
        let request = MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(name("versions"))),
        ]));
        let response = wire.call(version, &request).await;
        assert_eq!(
            response.topics[0].partitions.len(),
            1,
            "Metadata v{version}"
        );
    }
    for version in 1..=6 {
        let request = ListOffsetsRequest::default()
            .with_replica_id((-1).into())
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(name("versions"))
                .with_partitions(vec![
                    ListOffsetsPartition::default().with_timestamp(-1)
                ])]);
        let response = wire.call(version, &request).await;
        assert_eq!(
            response.topics[0].partitions[0].offset, 7,
            "ListOffsets v{version}"
        );
    }
    for version in 0..=4 {
        let response = wire.call(version, &InitProducerIdRequest::default()).await;
        assert_eq!(response.error_code, 0, "InitProducerId v{version}");
    }
    for version in 2..=7 {
        let topic = format!("created-v{version}");
        let request = CreateTopicsRequest::default()
            .with_timeout_ms(5_000)
            .with_topics(vec![create(&topic, 1, 1)]);
        let response = wire.call(version, &request).await;
        assert_eq!(response.topics[0].error_code, 0, "CreateTopics v{version}");
        let described = wire
            .call(
                (version - 1).min(4),
                &DescribeConfigsRequest::default().with_resources(vec![
                    DescribeConfigsResource::default()
                        .with_resource_type(2)
                        .with_resource_name(StrBytes::from_string(topic.clone())),
                ]),
            )
            .await;
        assert_eq!(described.results[0].error_code, 0, "DescribeConfigs");
    }
    for version in 1..=6 {
        let topic = name(&format!("created-v{}", version + 1));
        let request = if version >= 6 {
            DeleteTopicsRequest::default()
                .with_topics(vec![DeleteTopicState::default().with_name(Some(topic))])
        } else {
            DeleteTopicsRequest::default().with_topic_names(vec![topic])
        };
        let response = wire.call(version, &request).await;
        assert_eq!(
            response.responses[0].error_code, 0,
            "DeleteTopics v{version}"
        );
    }
    broker.shutdown().await;
}

async fn produce_result_at(wire: &mut KafkaWire, version: i16, batch: Bytes) -> (i16, i64) {
    let response = wire.call(version, &produce("versions", batch)).await;
    let partition = &response.responses[0].partition_responses[0];
    (partition.error_code, partition.base_offset)
}

#[tokio::test]
async fn metadata_creates_a_missing_topic_when_the_broker_and_the_request_allow_it() {
    let data = tempfile::tempdir().unwrap();
    let mut config = common::config(data.path().to_path_buf());
    config.kafka_listen = Some("127.0.0.1:0".parse().unwrap());
    config.auto_create_topics = true;
    config.num_partitions = 2;
    let (_broker, kafka) = kafka_support::start_broker_with(config, data).await;
    let mut wire = KafkaWire::connect(kafka).await;
    let ask = |topic: &str, allow: bool| {
        MetadataRequest::default()
            .with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(name(topic)))
            ]))
            .with_allow_auto_topic_creation(allow)
    };

    // A consumer's request (v4+, not allowed) creates nothing.
    let refused = wire.call(12, &ask("wanted", false)).await;
    assert_eq!(
        refused.topics[0].error_code, 3,
        "UNKNOWN_TOPIC_OR_PARTITION"
    );
    let still = wire.call(12, &ask("wanted", false)).await;
    assert_eq!(still.topics[0].error_code, 3, "nothing was created");

    // A producer's creates it with `num_partitions`, led by this broker.
    let created = wire.call(12, &ask("wanted", true)).await;
    let wanted = &created.topics[0];
    assert_eq!((wanted.error_code, wanted.partitions.len()), (0, 2));
    assert!(wanted
        .partitions
        .iter()
        .all(|p| p.leader_id == created.brokers[0].node_id));
    // Asked again, it is the same topic.
    let again = wire.call(12, &ask("wanted", true)).await;
    assert_eq!(again.topics[0].partitions.len(), 2);

    // Before v4 the request has no such field, and every one allows it.
    let old = wire.call(1, &ask("older", true)).await;
    assert_eq!(
        (old.topics[0].error_code, old.topics[0].partitions.len()),
        (0, 2)
    );

    // A name no topic can have, and an internal topic, are not created.
    let invalid = wire.call(12, &ask("no spaces", true)).await;
    assert_eq!(invalid.topics[0].error_code, 17, "INVALID_TOPIC_EXCEPTION");
    // (`__consumer_offsets` is made by the first group change, with its own settings.)
    let internal = wire.call(12, &ask("__consumer_offsets", true)).await;
    assert_eq!(internal.topics[0].error_code, 3);
    let listed = wire
        .call(12, &MetadataRequest::default().with_topics(None))
        .await;
    let mut names: Vec<String> = listed
        .topics
        .iter()
        .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
        .filter(|n| !n.starts_with("__consumer"))
        .collect();
    names.sort();
    assert_eq!(names, ["older", "wanted"]);

    // CreateTopics with -1 partitions takes `num_partitions` too.
    let made = wire
        .call(
            7,
            &CreateTopicsRequest::default()
                .with_topics(vec![create("defaulted", -1, -1)])
                .with_timeout_ms(5_000),
        )
        .await;
    assert_eq!(made.topics[0].error_code, 0);
    assert_eq!(made.topics[0].num_partitions, 2);
}

#[tokio::test]
async fn topics_created_with_replica_assignments_are_placed_as_named() {
    use kafka_protocol::messages::create_topics_request::CreatableReplicaAssignment;
    use kafka_protocol::messages::BrokerId;
    let (broker, kafka) = start_broker().await;
    let mut wire = KafkaWire::connect(kafka).await;
    let assigned = |partitions: &[(i32, &[i32])]| {
        partitions
            .iter()
            .map(|(index, brokers)| {
                CreatableReplicaAssignment::default()
                    .with_partition_index(*index)
                    .with_broker_ids(brokers.iter().map(|b| BrokerId(*b)).collect())
            })
            .collect::<Vec<_>>()
    };
    let request = CreateTopicsRequest::default().with_topics(vec![
        create("placed", -1, -1).with_assignments(assigned(&[(1, &[0]), (0, &[0])])),
        create("elsewhere", -1, -1).with_assignments(assigned(&[(0, &[3])])),
        create("twice", -1, -1).with_assignments(assigned(&[(0, &[0, 0])])),
        create("gap", -1, -1).with_assignments(assigned(&[(0, &[0]), (2, &[0])])),
        create("both", 2, -1).with_assignments(assigned(&[(0, &[0])])),
    ]);
    let created = wire.call(7, &request).await;
    let outcomes: Vec<(String, i16, String)> = created
        .topics
        .iter()
        .map(|t| {
            let message = t
                .error_message
                .as_ref()
                .map(|m| m.to_string())
                .unwrap_or_default();
            (t.name.0.to_string(), t.error_code, message)
        })
        .collect();
    // INVALID_REPLICA_ASSIGNMENT (39) for brokers that cannot hold them or partitions
    // numbered with a gap; INVALID_REQUEST (42) beside a partition count.
    let codes: Vec<i16> = outcomes.iter().map(|o| o.1).collect();
    assert_eq!(codes, [0, 39, 39, 39, 42], "{outcomes:?}");
    assert!(outcomes[1].2.contains("broker 3"), "{outcomes:?}");
    assert_eq!(created.topics[0].num_partitions, 2);
    assert_eq!(created.topics[0].replication_factor, 1);
    let metadata = wire
        .call(
            12,
            &MetadataRequest::default().with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(name("placed"))),
                MetadataRequestTopic::default().with_name(Some(name("elsewhere"))),
            ])),
        )
        .await;
    assert_eq!(metadata.topics[0].partitions.len(), 2);
    assert_eq!(
        metadata.topics[1].error_code, 3,
        "a refused topic is not created"
    );
    broker.shutdown().await;
}
