//! `__consumer_offsets`: created at the first group change with the configured
//! partition count, compacted, listed as internal, and closed to client creates,
//! writes, deletes and alters.

mod common;

use std::collections::HashMap;

use common::{batch, config, TestBroker};
use weir_client::proto::admin_client::AdminClient;
use weir_client::proto::group_client::GroupClient;
use weir_client::proto::produce_client::ProduceClient;
use weir_client::proto::{
    AlterConfigsRequest, CreateTopicRequest, DeleteTopicRequest, DescribeTopicRequest,
    ListTopicsRequest, OffsetCommitPartition, OffsetCommitRequest, OffsetCommitTopic,
    PartitionProduceData, ProduceRequest,
};

const OFFSETS: &str = "__consumer_offsets";

async fn start(offsets_topic_partitions: u32, data: tempfile::TempDir) -> TestBroker {
    let mut config = config(data.path().to_path_buf());
    config.offsets_topic_partitions = offsets_topic_partitions;
    TestBroker::start_with(config, data).await
}

async fn admin(broker: &TestBroker) -> AdminClient<tonic::transport::Channel> {
    AdminClient::new(weir_client::connect(&broker.addr).await.unwrap())
}

/// A commit from outside any member: the group's first change.
async fn first_group_change(broker: &TestBroker) {
    let mut groups = GroupClient::new(weir_client::connect(&broker.addr).await.unwrap());
    groups
        .offset_commit(OffsetCommitRequest {
            group_id: "g".to_string(),
            member_id: String::new(),
            member_epoch: -1,
            topics: vec![OffsetCommitTopic {
                topic: "clicks".to_string(),
                partitions: vec![OffsetCommitPartition {
                    partition: 0,
                    offset: 0,
                    metadata: String::new(),
                }],
            }],
        })
        .await
        .unwrap();
}

async fn stored_records(admin: &mut AdminClient<tonic::transport::Channel>) -> u64 {
    admin
        .describe_topic(DescribeTopicRequest {
            topic: OFFSETS.to_string(),
        })
        .await
        .unwrap()
        .into_inner()
        .partitions
        .iter()
        .map(|p| p.log_end_offset)
        .sum()
}

async fn internal_topics(broker: &TestBroker) -> Vec<(String, u32)> {
    admin(broker)
        .await
        .list_topics(ListTopicsRequest {
            list_internal: true,
        })
        .await
        .unwrap()
        .into_inner()
        .topics
        .into_iter()
        .filter(|t| t.internal)
        .map(|t| (t.topic, t.partitions))
        .collect()
}

#[tokio::test]
async fn offsets_topic_is_created_only_by_the_first_group_change() {
    let broker = start(3, tempfile::tempdir().unwrap()).await;
    broker.create_topic("clicks", 1).await;
    assert_eq!(internal_topics(&broker).await, []);
    let mut stopped = broker;
    stopped.running.take().unwrap().shutdown().await.unwrap();
    let broker = start(3, stopped.data).await;
    assert_eq!(
        internal_topics(&broker).await,
        [],
        "a restart creates nothing either"
    );
    first_group_change(&broker).await;
    assert_eq!(internal_topics(&broker).await, [(OFFSETS.to_string(), 3)]);
    broker.shutdown().await;
}

#[tokio::test]
async fn offsets_topic_is_created_compacted_and_listed_only_as_internal() {
    let broker = start(3, tempfile::tempdir().unwrap()).await;
    broker.create_topic("clicks", 1).await;
    first_group_change(&broker).await;
    let mut admin = admin(&broker).await;

    let listed = admin
        .list_topics(ListTopicsRequest {
            list_internal: false,
        })
        .await
        .unwrap()
        .into_inner();
    let names: Vec<_> = listed.topics.iter().map(|t| t.topic.as_str()).collect();
    assert_eq!(names, ["clicks"]);

    let listed = admin
        .list_topics(ListTopicsRequest {
            list_internal: true,
        })
        .await
        .unwrap()
        .into_inner();
    let summary: Vec<_> = listed
        .topics
        .iter()
        .map(|t| (t.topic.as_str(), t.partitions, t.internal))
        .collect();
    assert_eq!(summary, [(OFFSETS, 3, true), ("clicks", 1, false)]);

    let described = admin
        .describe_topic(DescribeTopicRequest {
            topic: OFFSETS.to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(described.internal);
    assert_eq!(described.partitions.len(), 3);
    let configs: HashMap<_, _> = described.configs.into_iter().collect();
    assert_eq!(configs["cleanup.policy"], "compact");
    assert_eq!(configs["segment.bytes"], (100 * 1024 * 1024).to_string());
    broker.shutdown().await;
}

#[tokio::test]
async fn clients_cannot_create_produce_to_delete_or_alter_the_offsets_topic() {
    let broker = start(2, tempfile::tempdir().unwrap()).await;
    let mut admin = admin(&broker).await;
    let created = admin
        .create_topic(CreateTopicRequest {
            topic: OFFSETS.to_string(),
            partitions: 1,
            replication_factor: 1,
            ..CreateTopicRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(created.code(), tonic::Code::InvalidArgument);
    assert!(created.message().contains(OFFSETS), "{}", created.message());
    broker.create_topic("clicks", 1).await;
    first_group_change(&broker).await;
    let stored_before = stored_records(&mut admin).await;
    let mut produce = ProduceClient::new(weir_client::connect(&broker.addr).await.unwrap());

    let produced = produce
        .produce(ProduceRequest {
            topic: OFFSETS.to_string(),
            partitions: vec![PartitionProduceData {
                partition: 0,
                batches: batch(&["forged"], 1_000),
            }],
            ..ProduceRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(produced.code(), tonic::Code::InvalidArgument);
    assert!(
        produced.message().contains(OFFSETS) && produced.message().contains("produce to"),
        "{}",
        produced.message()
    );

    let deleted = admin
        .delete_topic(DeleteTopicRequest {
            topic: OFFSETS.to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(deleted.code(), tonic::Code::InvalidArgument);
    assert!(deleted.message().contains(OFFSETS), "{}", deleted.message());

    let altered = admin
        .alter_configs(AlterConfigsRequest {
            topic: OFFSETS.to_string(),
            set: [("cleanup.policy".to_string(), "delete".to_string())].into(),
        })
        .await
        .unwrap_err();
    assert_eq!(altered.code(), tonic::Code::InvalidArgument);
    assert!(altered.message().contains(OFFSETS), "{}", altered.message());

    let described = admin
        .describe_topic(DescribeTopicRequest {
            topic: OFFSETS.to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(described.configs["cleanup.policy"], "compact");
    assert_eq!(
        stored_records(&mut admin).await,
        stored_before,
        "the forged batch was not stored"
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn an_existing_offsets_topic_keeps_its_partition_count_across_restarts() {
    let broker = start(2, tempfile::tempdir().unwrap()).await;
    broker.create_topic("clicks", 1).await;
    first_group_change(&broker).await;
    let mut running = broker;
    running.running.take().unwrap().shutdown().await.unwrap();
    let restarted = start(5, running.data).await;
    let described = admin(&restarted)
        .await
        .describe_topic(DescribeTopicRequest {
            topic: OFFSETS.to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(described.partitions.len(), 2);
    restarted.shutdown().await;
}
