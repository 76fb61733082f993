//! A compacted topic keeps the latest record per key, so, as in Kafka, a
//! record without a key is refused there: over gRPC with
//! `ERROR_CODE_INVALID_RECORD` naming each such record, to the Rust producer
//! as a delivery error it does not retry, and over Kafka with INVALID_RECORD
//! and one `record_errors` entry per keyless record (v8+). Nothing of a
//! refused batch is stored; keyed records and non-compacted topics are
//! untouched.

mod common;
mod kafka_support;

use std::collections::BTreeMap;

use bytes::Bytes;
use weir_client::proto::{ErrorCode, PartitionProduceData as GrpcData, ProduceRequest};
use weir_client::{ClientError, Producer, ProducerConfig, ProducerRecord};
use weir_log::batch::{BatchBuilder, Compression};

use kafka_support::{produce_to, start_broker, KafkaWire};

/// Ten records; those at `keyless` have no key, the others key "k<i>".
fn batch(keyless: &[usize]) -> Bytes {
    let mut builder = BatchBuilder::new(Compression::None);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    for i in 0..10 {
        let key = format!("k{i}");
        let key = (!keyless.contains(&i)).then_some(key.as_bytes());
        builder.push(now_ms, key, Some(b"v"), &[]);
    }
    builder.build().unwrap()
}

#[tokio::test]
async fn keyless_records_are_refused_by_a_compacted_topic_on_every_path() {
    let (broker, kafka) = start_broker().await;
    let admin = broker.admin().await;
    let compact = BTreeMap::from([("cleanup.policy".to_string(), "compact,delete".to_string())]);
    admin.create_topic("state", 1, 1, &compact).await.unwrap();
    admin
        .create_topic("events", 1, 1, &BTreeMap::new())
        .await
        .unwrap();

    // gRPC.
    let mut client = broker.produce_client().await;
    let produce = |topic: &str, batches: Bytes| ProduceRequest {
        topic: topic.to_string(),
        acks: 0,
        timeout_ms: 1_000,
        partitions: vec![GrpcData {
            partition: 0,
            batches,
        }],
    };
    let refused = client
        .produce(produce("state", batch(&[0, 5])))
        .await
        .unwrap()
        .into_inner()
        .partitions
        .remove(0);
    assert_eq!(refused.error_code(), ErrorCode::InvalidRecord);
    assert!(
        refused.error_message.contains("records 0, 5 of the batch"),
        "{}",
        refused.error_message
    );
    for (topic, keyless) in [("state", &[][..]), ("events", &[0, 5][..])] {
        let stored = client
            .produce(produce(topic, batch(keyless)))
            .await
            .unwrap()
            .into_inner()
            .partitions
            .remove(0);
        assert_eq!(
            (stored.error_code(), stored.base_offset),
            (ErrorCode::None, 0),
            "{topic}"
        );
    }

    // The Rust producer: refused at once, not retried.
    let producer = Producer::connect(&broker.addr, ProducerConfig::default())
        .await
        .unwrap();
    let failed = producer
        .send(ProducerRecord::new("state", b"no key"))
        .await
        .unwrap()
        .await
        .unwrap_err();
    assert!(
        matches!(
            &failed,
            ClientError::Partition {
                code: ErrorCode::InvalidRecord,
                ..
            }
        ),
        "{failed:?}"
    );
    producer.close().await.unwrap();

    // Kafka: v9 lists each keyless record, v7 has only the code.
    let mut wire = KafkaWire::connect(kafka).await;
    let answer = wire.call(9, &produce_to("state", batch(&[2, 7, 9]))).await;
    let partition = &answer.responses[0].partition_responses[0];
    assert_eq!(partition.error_code, 87, "INVALID_RECORD: {partition:?}");
    let indexes: Vec<i32> = partition
        .record_errors
        .iter()
        .map(|e| e.batch_index)
        .collect();
    assert_eq!(indexes, [2, 7, 9]);
    assert!(partition.record_errors[0]
        .batch_index_error_message
        .as_ref()
        .is_some_and(|m| m.contains("no key")));
    let message = partition.error_message.as_ref().unwrap().to_string();
    assert!(message.contains("records 2, 7, 9"), "{message}");
    let answer = wire.call(7, &produce_to("state", batch(&[1]))).await;
    assert_eq!(answer.responses[0].partition_responses[0].error_code, 87);

    let described = admin.describe_topic("state").await.unwrap();
    assert_eq!(
        described.partitions[0].log_end_offset, 10,
        "only the all-keyed batch was stored"
    );
    broker.shutdown().await;
}
