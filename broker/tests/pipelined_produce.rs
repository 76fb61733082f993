//! A producer with several requests in flight per partition: the broker
//! appends them in the order they were sent, so every record's offset is its
//! position in the stream, whatever order the requests reached the log in.

mod common;

use std::time::Duration;

use common::TestBroker;
use weir_broker::client::{
    Consumer, ConsumerConfig, OffsetReset, Producer, ProducerConfig, ProducerRecord,
};

#[tokio::test]
async fn records_sent_through_pipelined_requests_keep_their_order() {
    const RECORDS: u64 = 20_000;
    let broker = TestBroker::start().await;
    broker.create_topic("ordered", 1).await;
    let producer = Producer::connect(
        &broker.addr,
        ProducerConfig {
            linger: Duration::ZERO,
            // Small batches, one per request: many requests in flight.
            batch_size_bytes: 2048,
            request_bytes_max: 2048,
            max_in_flight_requests: 5,
            ..ProducerConfig::default()
        },
    )
    .await
    .unwrap();
    let mut deliveries = Vec::with_capacity(RECORDS as usize);
    for i in 0..RECORDS {
        let value = format!("{i:08}");
        let record = ProducerRecord::new("ordered", value.as_bytes()).with_partition(0);
        deliveries.push(producer.send(record).await.unwrap());
    }
    for (i, delivery) in (0..RECORDS).zip(deliveries) {
        let metadata = delivery.await.unwrap();
        assert_eq!(metadata.offset, Some(i), "record {i}");
    }
    producer.close().await.unwrap();

    let mut consumer = Consumer::connect(
        &broker.addr,
        ConsumerConfig {
            offset_reset: OffsetReset::Earliest,
            ..ConsumerConfig::default()
        },
    )
    .await
    .unwrap();
    consumer.assign("ordered", &[0]);
    let mut next = 0u64;
    while next < RECORDS {
        let records = consumer.poll(Duration::from_secs(5)).await.unwrap();
        assert!(!records.is_empty(), "stopped at offset {next}");
        for record in records {
            assert_eq!(record.offset, next);
            assert_eq!(
                record.value.as_deref(),
                Some(format!("{next:08}").as_bytes())
            );
            next += 1;
        }
    }
    let described = broker
        .admin()
        .await
        .describe_topic("ordered")
        .await
        .unwrap();
    assert_eq!(
        described.partitions[0].log_end_offset, RECORDS,
        "nothing twice"
    );
    broker.shutdown().await;
}
