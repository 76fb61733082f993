//! kafka-python against the Kafka listener: an idempotent producer
//! (InitProducerId, sequenced batches, acks=all) and a consumer reading by
//! partition assignment, without a group.

mod common;
mod kafka_support;

use std::process::Command;

use kafka_support::{start_broker, tools};

const SCRIPT: &str = r#"
import json, sys
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

bootstrap, topic, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
producer = KafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all",
                         linger_ms=5, request_timeout_ms=30000)
futures = [producer.send(topic, key=b"key-%d" % i, value=b"value-%d" % i,
                         headers=[("n", str(i).encode())], partition=i % 2)
           for i in range(count)]
produced = []
for future in futures:
    sent = future.get(timeout=60)
    produced.append([sent.partition, sent.offset])
producer.close()

consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                         auto_offset_reset="earliest", fetch_max_wait_ms=200)
consumer.assign([TopicPartition(topic, 0), TopicPartition(topic, 1)])
consumed = []
for _ in range(300):
    if len(consumed) >= count:
        break
    for records in consumer.poll(timeout_ms=200).values():
        for r in records:
            consumed.append([r.partition, r.offset, r.key.decode(), r.value.decode(),
                             [[k, v.decode()] for k, v in r.headers]])
consumer.close()
print(json.dumps({"produced": produced, "consumed": consumed}))
"#;

#[tokio::test]
async fn kafka_python_idempotent_producer_and_assigned_consumer_round_trip() {
    let (broker, kafka) = start_broker().await;
    broker.create_topic("python", 2).await;
    let count = 200usize;
    let bootstrap = kafka.to_string();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(tools::kafka_python())
            .args(["-c", SCRIPT, &bootstrap, "python", &count.to_string()])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "kafka-python failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();

    // Every send acknowledged, each partition's offsets dense from 0.
    let produced = report["produced"].as_array().unwrap();
    assert_eq!(produced.len(), count);
    for partition in 0..2u64 {
        let mut offsets: Vec<u64> = produced
            .iter()
            .filter(|p| p[0].as_u64() == Some(partition))
            .map(|p| p[1].as_u64().unwrap())
            .collect();
        offsets.sort_unstable();
        assert_eq!(offsets, (0..count as u64 / 2).collect::<Vec<_>>());
    }
    // Read back by assignment: every record once, with its key, value and header.
    let mut consumed = report["consumed"].as_array().unwrap().clone();
    assert_eq!(consumed.len(), count);
    consumed.sort_by_key(|r| (r[0].as_u64(), r[1].as_u64()));
    for record in &consumed {
        let partition = record[0].as_u64().unwrap();
        let offset = record[1].as_u64().unwrap();
        let i = offset * 2 + partition;
        assert_eq!(record[2], format!("key-{i}"));
        assert_eq!(record[3], format!("value-{i}"));
        assert_eq!(record[4], serde_json::json!([["n", i.to_string()]]));
    }
    // The batches were idempotent: each partition remembers the producer.
    let topic = broker
        .running
        .as_ref()
        .unwrap()
        .broker()
        .topic("python")
        .unwrap();
    for partition in &topic.partitions {
        assert_eq!(partition.producer_count().unwrap(), 1);
    }
    drop(topic);
    broker.shutdown().await;
}
