//! The broker runs retention on its own: old segments go, the log start
//! offset moves, and a fetch below it is out of range.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{batch, TestBroker};
use weir_client::proto::{
    ErrorCode, FetchRequest, PartitionFetchRequest, PartitionProduceData, ProduceRequest,
};

#[tokio::test]
async fn retention_by_size_moves_the_log_start() {
    let data = tempfile::tempdir().unwrap();
    let config = weir_broker::BrokerConfig {
        retention_check_interval_ms: 20,
        ..common::config(data.path().to_path_buf())
    };
    let broker = TestBroker::start_with(config, data).await;
    let configs = BTreeMap::from([
        ("segment.bytes".to_string(), "1024".to_string()),
        ("retention.bytes".to_string(), "2048".to_string()),
    ]);
    broker
        .admin()
        .await
        .create_topic("old", 1, 1, &configs)
        .await
        .unwrap();
    let mut client = broker.produce_client().await;
    let value = "v".repeat(400);
    for _ in 0..20 {
        let response = client
            .produce(ProduceRequest {
                topic: "old".to_string(),
                acks: 0,
                timeout_ms: 1000,
                partitions: vec![PartitionProduceData {
                    partition: 0,
                    batches: batch(&[value.as_str()], 0),
                }],
            })
            .await
            .unwrap();
        let result = &response.into_inner().partitions[0];
        assert_eq!(
            result.error_code(),
            ErrorCode::None,
            "{}",
            result.error_message
        );
    }
    // Bounded wait for the periodic task; the assertion is on the outcome.
    let mut start = 0;
    for _ in 0..500 {
        start = broker
            .admin()
            .await
            .describe_topic("old")
            .await
            .unwrap()
            .partitions[0]
            .log_start_offset;
        if start > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(start > 0, "retention deleted no segment");
    let fetched = broker
        .fetch_client()
        .await
        .fetch(FetchRequest {
            topic: "old".to_string(),
            max_wait_ms: 0,
            min_bytes: 0,
            max_bytes: 1 << 20,
            partitions: vec![PartitionFetchRequest {
                partition: 0,
                offset: 0,
                max_bytes: 0,
            }],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        fetched.partitions[0].error_code(),
        ErrorCode::OffsetOutOfRange
    );
    broker.shutdown().await;
}
