//! Topic administration over gRPC: create, list, describe, alter, delete, and
//! every way a request can be refused.

mod common;

use std::collections::BTreeMap;

use common::TestBroker;
use tonic::Code;
use weir_client::ClientError;

fn code(result: Result<impl std::fmt::Debug, ClientError>) -> (Code, String) {
    match result {
        Err(ClientError::Status { code, message }) => (code, message),
        other => panic!("expected a gRPC status, got {other:?}"),
    }
}

#[tokio::test]
async fn create_list_describe_alter_delete() {
    let broker = TestBroker::start().await;
    let admin = broker.admin().await;
    let configs = BTreeMap::from([("retention.ms".to_string(), "60000".to_string())]);
    admin.create_topic("clicks", 3, 1, &configs).await.unwrap();
    admin
        .create_topic("views", 1, 1, &BTreeMap::new())
        .await
        .unwrap();

    let topics = admin.list_topics().await.unwrap();
    let names: Vec<_> = topics
        .iter()
        .map(|t| (t.topic.as_str(), t.partition_count))
        .collect();
    assert_eq!(names, [("clicks", 3), ("views", 1)]);

    let described = admin.describe_topic("clicks").await.unwrap();
    assert_eq!(described.partition_count, 3);
    assert_eq!(described.configs, configs);
    for (i, partition) in described.partitions.iter().enumerate() {
        assert_eq!(partition.partition, i as u32);
        assert_eq!(partition.leader, 0);
        assert_eq!(partition.leader_epoch, 0);
        assert_eq!(partition.isr, [0]);
        assert_eq!(partition.high_watermark, 0);
        assert_eq!(partition.log_end_offset, 0);
    }

    let altered = admin
        .alter_configs(
            "clicks",
            &BTreeMap::from([
                ("retention.ms".to_string(), String::new()),
                ("segment.bytes".to_string(), "1048576".to_string()),
            ]),
        )
        .await
        .unwrap();
    assert_eq!(
        altered,
        BTreeMap::from([("segment.bytes".to_string(), "1048576".to_string())])
    );
    assert_eq!(
        admin.describe_topic("clicks").await.unwrap().configs,
        altered
    );

    admin.delete_topic("clicks").await.unwrap();
    assert!(!broker.data.path().join("clicks-0").exists());
    let (c, message) = code(admin.describe_topic("clicks").await);
    assert_eq!(c, Code::NotFound);
    assert!(message.contains("clicks"), "{message}");
    // The name is free again.
    admin
        .create_topic("clicks", 1, 1, &BTreeMap::new())
        .await
        .unwrap();
    broker.shutdown().await;
}

#[tokio::test]
async fn topics_survive_a_restart() {
    let broker = TestBroker::start().await;
    broker.create_topic("orders", 2).await;
    let broker = broker.restart().await;
    let described = broker.admin().await.describe_topic("orders").await.unwrap();
    assert_eq!(described.partition_count, 2);
    broker.shutdown().await;
}

#[tokio::test]
async fn refuses_bad_admin_requests_with_clear_statuses() {
    let broker = TestBroker::start().await;
    let admin = broker.admin().await;
    let none = BTreeMap::new();
    admin.create_topic("t", 1, 1, &none).await.unwrap();

    let (c, m) = code(admin.create_topic("t", 1, 1, &none).await);
    assert_eq!(c, Code::AlreadyExists, "{m}");

    let (c, m) = code(admin.create_topic("bad/name", 1, 1, &none).await);
    assert_eq!(c, Code::InvalidArgument);
    assert!(m.contains("'/'"), "{m}");

    let (c, m) = code(admin.create_topic(&"x".repeat(250), 1, 1, &none).await);
    assert_eq!(c, Code::InvalidArgument);
    assert!(m.contains("249"), "{m}");

    let (c, m) = code(admin.create_topic("zero", 0, 1, &none).await);
    assert_eq!(c, Code::InvalidArgument);
    assert!(m.contains("partition count 0"), "{m}");

    let (c, m) = code(admin.create_topic("rf", 1, 3, &none).await);
    assert_eq!(c, Code::InvalidArgument);
    assert!(m.contains("replication factor 3"), "{m}");

    let bad = BTreeMap::from([("segment.bytes".to_string(), "lots".to_string())]);
    let (c, m) = code(admin.create_topic("cfg", 1, 1, &bad).await);
    assert_eq!(c, Code::InvalidArgument);
    assert!(m.contains("segment.bytes") && m.contains("cfg"), "{m}");
    let (c, _) = code(admin.describe_topic("cfg").await);
    assert_eq!(c, Code::NotFound, "a refused create leaves no topic");

    let unknown = BTreeMap::from([("no.such.key".to_string(), "1".to_string())]);
    let (c, m) = code(admin.alter_configs("t", &unknown).await);
    assert_eq!(c, Code::InvalidArgument);
    assert!(m.contains("no.such.key"), "{m}");

    let (c, m) = code(admin.delete_topic("missing").await);
    assert_eq!(c, Code::NotFound);
    assert!(m.contains("missing"), "{m}");
    broker.shutdown().await;
}
