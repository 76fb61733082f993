//! The consumer's position moves only past records `poll` handed out: what
//! `max_poll_records` leaves behind comes with the next poll, and a batch
//! that cannot be decoded is reported (topic, partition, offset) after the
//! records decoded around it, holding only its own partition at the batch.

mod common;

use std::time::Duration;

use common::TestBroker;
use weir_broker::partition_dir;
use weir_client::proto::{PartitionProduceData, ProduceRequest};
use weir_client::{ClientError, Consumer, ConsumerConfig, OffsetReset, SeekTo};

/// Stores `batches` of two records each in `partition`; returns the batches'
/// sizes in bytes.
async fn produce(broker: &TestBroker, partition: u32, batches: usize) -> Vec<usize> {
    let mut client = broker.produce_client().await;
    let mut sizes = Vec::new();
    for i in 0..batches {
        let a = format!("p{partition}-{}", 2 * i);
        let b = format!("p{partition}-{}", 2 * i + 1);
        let batch = common::batch(&[&a, &b], 1_000);
        sizes.push(batch.len());
        client
            .produce(ProduceRequest {
                topic: "c".to_string(),
                acks: 0,
                timeout_ms: 1000,
                partitions: vec![PartitionProduceData {
                    partition,
                    batches: batch,
                }],
            })
            .await
            .unwrap();
    }
    sizes
}

async fn consumer(broker: &TestBroker, max_poll_records: usize) -> Consumer {
    let config = ConsumerConfig {
        offset_reset: OffsetReset::Earliest,
        fetch_max_wait: Duration::from_millis(50),
        max_poll_records,
        ..ConsumerConfig::default()
    };
    let mut consumer = Consumer::connect(&broker.addr, config).await.unwrap();
    consumer.assign("c", &[0, 1]);
    consumer
}

fn values(records: &[weir_client::ConsumerRecord], partition: u32) -> Vec<(u64, String)> {
    records
        .iter()
        .filter(|r| r.partition == partition)
        .map(|r| {
            let value = String::from_utf8(r.value.as_deref().unwrap().to_vec()).unwrap();
            (r.offset, value)
        })
        .collect()
}

fn expected(partition: u32, offsets: std::ops::Range<u64>) -> Vec<(u64, String)> {
    offsets.map(|o| (o, format!("p{partition}-{o}"))).collect()
}

#[tokio::test]
async fn records_past_max_poll_records_come_with_the_next_poll() {
    let broker = TestBroker::start().await;
    broker.create_topic("c", 2).await;
    produce(&broker, 0, 5).await;
    produce(&broker, 1, 5).await;
    let mut consumer = consumer(&broker, 3).await;
    let mut records = Vec::new();
    for _ in 0..100 {
        if records.len() == 20 {
            break;
        }
        let polled = consumer.poll(Duration::from_millis(50)).await.unwrap();
        assert!(polled.len() <= 3, "{} records in one poll", polled.len());
        records.extend(polled);
        // The position is the next record the caller has not seen.
        for partition in [0, 1] {
            let next = records
                .iter()
                .filter(|r| r.partition == partition)
                .map(|r| r.offset + 1)
                .max()
                .unwrap_or(0);
            assert_eq!(consumer.position(partition).await.unwrap(), next);
        }
    }
    assert_eq!(values(&records, 0), expected(0, 0..10));
    assert_eq!(values(&records, 1), expected(1, 0..10));
    broker.shutdown().await;
}

#[tokio::test]
async fn a_corrupt_batch_is_reported_with_its_offset_and_costs_no_other_record() {
    let broker = TestBroker::start().await;
    broker.create_topic("c", 2).await;
    produce(&broker, 0, 4).await;
    let sizes = produce(&broker, 1, 3).await;
    // Flip a byte inside the records of partition 1's second batch (offsets
    // 2 and 3): its CRC no longer matches.
    let broker = broker
        .restart_after(|data| {
            let segment = partition_dir(data, "c", 1).join("00000000000000000000.log");
            let mut bytes = std::fs::read(&segment).unwrap();
            bytes[sizes[0] + weir_log::batch::BATCH_HEADER_BYTES + 3] ^= 0xff;
            std::fs::write(&segment, bytes).unwrap();
        })
        .await;

    let mut consumer = consumer(&broker, 500).await;
    let mut records = Vec::new();
    let mut errors = Vec::new();
    for _ in 0..100 {
        if values(&records, 0).len() == 8 && !errors.is_empty() {
            break;
        }
        match consumer.poll(Duration::from_millis(50)).await {
            Ok(polled) => records.extend(polled),
            Err(error) => errors.push(error),
        }
    }
    assert_eq!(
        values(&records, 0),
        expected(0, 0..8),
        "every record of partition 0, once"
    );
    assert_eq!(
        values(&records, 1),
        expected(1, 0..2),
        "partition 1 up to the bad batch"
    );
    let Some(ClientError::BadBatch {
        topic,
        partition,
        offset,
        ..
    }) = errors.first()
    else {
        panic!("expected a bad batch error, got {errors:?}");
    };
    assert_eq!((topic.as_str(), *partition, *offset), ("c", 1, 2));
    assert!(errors[0].to_string().contains("offset 2"), "{}", errors[0]);
    assert_eq!(
        consumer.position(1).await.unwrap(),
        2,
        "held at the bad batch"
    );

    // Past it, partition 1 reads on.
    consumer.seek(1, SeekTo::Offset(4)).unwrap();
    let mut after = Vec::new();
    for _ in 0..100 {
        if after.len() == 2 {
            break;
        }
        after.extend(consumer.poll(Duration::from_millis(50)).await.unwrap());
    }
    assert_eq!(values(&after, 1), expected(1, 4..6));
    broker.shutdown().await;
}
