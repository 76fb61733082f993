//! CreatePartitions over the Kafka listener: a topic grows, Metadata and
//! Produce see the new partitions, `validate_only` changes nothing, and each
//! refusal carries Kafka's code and Weir's message.

mod common;
mod kafka_support;

use kafka_protocol::messages::create_partitions_request::{
    CreatePartitionsAssignment, CreatePartitionsTopic,
};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    BrokerId, CreatePartitionsRequest, CreateTopicsRequest, MetadataRequest, ProduceRequest,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;

use kafka_support::{start_broker, KafkaWire};

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

fn grow(topic: &str, count: i32) -> CreatePartitionsTopic {
    CreatePartitionsTopic::default()
        .with_name(name(topic))
        .with_count(count)
}

async fn partition_count(wire: &mut KafkaWire, topic: &str) -> usize {
    let metadata = wire
        .call(
            12,
            &MetadataRequest::default().with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(name(topic)))
            ])),
        )
        .await;
    metadata.topics[0].partitions.len()
}

/// (code, message) of each result, in request order.
fn outcomes(
    response: &kafka_protocol::messages::CreatePartitionsResponse,
) -> Vec<(String, i16, String)> {
    response
        .results
        .iter()
        .map(|r| {
            (
                r.name.0.to_string(),
                r.error_code,
                r.error_message
                    .as_ref()
                    .map(|m| m.to_string())
                    .unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test]
async fn topics_grow_over_kafka_and_bad_counts_get_kafkas_codes() {
    let (broker, kafka) = start_broker().await;
    let mut wire = KafkaWire::connect(kafka).await;
    let created = wire
        .call(
            7,
            &CreateTopicsRequest::default().with_topics(vec![
                CreatableTopic::default()
                    .with_name(name("orders"))
                    .with_num_partitions(2)
                    .with_replication_factor(1),
                CreatableTopic::default()
                    .with_name(name("views"))
                    .with_num_partitions(1)
                    .with_replication_factor(1),
                CreatableTopic::default()
                    .with_name(name("shrunk"))
                    .with_num_partitions(1)
                    .with_replication_factor(1),
                CreatableTopic::default()
                    .with_name(name("placed"))
                    .with_num_partitions(1)
                    .with_replication_factor(1),
            ]),
        )
        .await;
    assert!(created.topics.iter().all(|t| t.error_code == 0));

    // validate_only checks and changes nothing.
    let checked = wire
        .call(
            3,
            &CreatePartitionsRequest::default()
                .with_validate_only(true)
                .with_topics(vec![grow("orders", 4), grow("views", 1)]),
        )
        .await;
    let checked = outcomes(&checked);
    assert_eq!((checked[0].1, checked[1].1), (0, 37), "{checked:?}");
    assert_eq!(partition_count(&mut wire, "orders").await, 2);

    for version in [0, 3] {
        let count = if version == 0 { 3 } else { 4 };
        let grown = wire
            .call(
                version,
                &CreatePartitionsRequest::default()
                    .with_timeout_ms(5_000)
                    .with_topics(vec![grow("orders", count)]),
            )
            .await;
        assert_eq!(outcomes(&grown)[0].1, 0, "v{version}: {grown:?}");
        assert_eq!(partition_count(&mut wire, "orders").await, count as usize);
    }

    // The new partition takes a produce.
    let batch = {
        let mut builder = weir_log::batch::BatchBuilder::new(weir_log::batch::Compression::None);
        builder.push(1_000, None, Some(b"v"), &[]);
        builder.build().unwrap()
    };
    let produced = wire
        .call(
            9,
            &ProduceRequest::default()
                .with_acks(-1)
                .with_timeout_ms(5_000)
                .with_topic_data(vec![TopicProduceData::default()
                    .with_name(name("orders"))
                    .with_partition_data(vec![PartitionProduceData::default()
                        .with_index(3)
                        .with_records(Some(batch))])]),
        )
        .await;
    let partition = &produced.responses[0].partition_responses[0];
    assert_eq!((partition.error_code, partition.base_offset), (0, 0));

    let refused = wire
        .call(
            2,
            &CreatePartitionsRequest::default().with_topics(vec![
                grow("orders", 4),
                grow("orders", 9),
                grow("views", 0),
                grow("shrunk", -1),
                grow("nowhere", 2),
                grow("__consumer_offsets", 60),
                CreatePartitionsTopic::default()
                    .with_name(name("placed"))
                    .with_count(2)
                    .with_assignments(Some(vec![
                        CreatePartitionsAssignment::default().with_broker_ids(vec![BrokerId(7)])
                    ])),
            ]),
        )
        .await;
    let refused = outcomes(&refused);
    let codes: Vec<i16> = refused.iter().map(|(_, code, _)| *code).collect();
    // INVALID_REQUEST for a topic named twice, INVALID_PARTITIONS,
    // UNKNOWN_TOPIC_OR_PARTITION, INVALID_TOPIC_EXCEPTION, INVALID_REPLICA_ASSIGNMENT.
    assert_eq!(codes, [42, 42, 37, 37, 3, 17, 39], "{refused:?}");
    assert!(refused[2].2.contains("cannot be removed"), "{refused:?}");
    assert!(refused[3].2.contains("negative"), "{refused:?}");
    assert!(refused[6].2.contains("broker 7"), "{refused:?}");
    // Placed by hand on this broker, the only one there is.
    let placed = wire
        .call(
            3,
            &CreatePartitionsRequest::default().with_topics(vec![CreatePartitionsTopic::default()
                .with_name(name("placed"))
                .with_count(3)
                .with_assignments(Some(vec![
                    CreatePartitionsAssignment::default().with_broker_ids(vec![BrokerId(0)]),
                    CreatePartitionsAssignment::default().with_broker_ids(vec![BrokerId(0)]),
                ]))]),
        )
        .await;
    assert_eq!(outcomes(&placed)[0].1, 0, "{placed:?}");
    assert_eq!(partition_count(&mut wire, "placed").await, 3);
    let miscounted = wire
        .call(
            3,
            &CreatePartitionsRequest::default().with_topics(vec![CreatePartitionsTopic::default()
                .with_name(name("placed"))
                .with_count(5)
                .with_assignments(Some(vec![
                    CreatePartitionsAssignment::default().with_broker_ids(vec![BrokerId(0)])
                ]))]),
        )
        .await;
    let miscounted = outcomes(&miscounted);
    assert_eq!(miscounted[0].1, 39, "{miscounted:?}");
    assert!(
        miscounted[0]
            .2
            .contains("1 assignments for 2 new partitions"),
        "{miscounted:?}"
    );
    assert_eq!(partition_count(&mut wire, "orders").await, 4);
    broker.shutdown().await;
}
