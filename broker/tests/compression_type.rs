//! A topic's `compression.type`: batches produced in another codec are stored in the
//! topic's, over gRPC and over Kafka, with the same records; a topic left at `producer`
//! stores each batch as it came; an idempotent producer's retry of a recompressed batch
//! is still answered as a duplicate.

mod common;
mod kafka_support;

use std::collections::BTreeMap;

use bytes::Bytes;
use weir_client::proto::{ErrorCode, PartitionProduceData as GrpcData, ProduceRequest};
use weir_log::batch::{batches, decode_records, BatchBuilder, Compression};

use kafka_support::{produce_to, start_broker, KafkaWire};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn produced(codec: Compression, sequence: i32, values: &[&str]) -> Bytes {
    let mut builder = BatchBuilder::new(codec).with_producer(1_000, 0, sequence);
    for value in values {
        builder.push(
            now_ms(),
            Some(b"key"),
            Some(value.as_bytes()),
            &[("h", None)],
        );
    }
    builder.build().unwrap()
}

/// Every stored batch of partition 0: its codec and its records' values.
fn stored(data: &std::path::Path, topic: &str) -> Vec<(Compression, Vec<String>)> {
    let dir = weir_broker::partition_dir(data, topic, 0);
    let mut logs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    let bytes: Vec<u8> = logs
        .iter()
        .flat_map(|f| std::fs::read(f).unwrap())
        .collect();
    batches(&bytes)
        .map(|b| {
            let (header, batch) = b.unwrap();
            let values = decode_records(batch)
                .unwrap()
                .into_iter()
                .map(|r| String::from_utf8(r.value.unwrap().to_vec()).unwrap())
                .collect();
            (header.compression().unwrap(), values)
        })
        .collect()
}

#[tokio::test]
async fn batches_are_stored_in_the_topics_codec() {
    let (broker, kafka) = start_broker().await;
    let admin = broker.admin().await;
    let zstd = BTreeMap::from([("compression.type".to_string(), "zstd".to_string())]);
    admin.create_topic("packed", 1, 1, &zstd).await.unwrap();
    admin
        .create_topic("as-sent", 1, 1, &BTreeMap::new())
        .await
        .unwrap();

    let mut client = broker.produce_client().await;
    let request = |topic: &str, batches: Bytes| ProduceRequest {
        topic: topic.to_string(),
        acks: 0,
        timeout_ms: 1_000,
        partitions: vec![GrpcData {
            partition: 0,
            batches,
        }],
    };
    for topic in ["packed", "as-sent"] {
        let first = produced(Compression::Gzip, 0, &["a", "b"]);
        let answer = client
            .produce(request(topic, first.clone()))
            .await
            .unwrap()
            .into_inner()
            .partitions
            .remove(0);
        assert_eq!(
            (answer.error_code(), answer.base_offset),
            (ErrorCode::None, 0)
        );
        // The producer's retry of that batch is a duplicate, stored once.
        let retried = client
            .produce(request(topic, first))
            .await
            .unwrap()
            .into_inner()
            .partitions
            .remove(0);
        assert_eq!(
            (retried.error_code(), retried.base_offset),
            (ErrorCode::None, 0)
        );
    }
    // Over Kafka, an uncompressed batch.
    let mut wire = KafkaWire::connect(kafka).await;
    let answer = wire
        .call(
            9,
            &produce_to("packed", produced(Compression::None, 2, &["c"])),
        )
        .await;
    let partition = &answer.responses[0].partition_responses[0];
    assert_eq!((partition.error_code, partition.base_offset), (0, 2));

    let data = broker.data.path().to_path_buf();
    assert_eq!(
        stored(&data, "packed"),
        [
            (Compression::Zstd, vec!["a".to_string(), "b".to_string()]),
            (Compression::Zstd, vec!["c".to_string()]),
        ]
    );
    assert_eq!(
        stored(&data, "as-sent"),
        [(Compression::Gzip, vec!["a".to_string(), "b".to_string()])]
    );
    // Consumers read the records, whatever the codec.
    let records = common::consume_all(&broker.addr, "packed", &[0], 3).await;
    let values: Vec<_> = records
        .iter()
        .map(|r| (r.offset, r.value.clone().unwrap()))
        .collect();
    assert_eq!(
        values,
        [
            (0, Bytes::from_static(b"a")),
            (1, Bytes::from_static(b"b")),
            (2, Bytes::from_static(b"c"))
        ]
    );
    broker.shutdown().await;
}
