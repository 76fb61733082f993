//! A producer with several requests in flight per partition: the broker
//! appends them in the order they were sent, so every record's offset is its
//! position in the stream, whatever order the requests reached the log in.

mod common;

use std::time::Duration;

use common::{consume_all, TestBroker};
use weir_client::{Producer, ProducerConfig, ProducerRecord};

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

    let records = consume_all(&broker.addr, "ordered", &[0], RECORDS as usize).await;
    assert_eq!(records.len() as u64, RECORDS);
    for (next, record) in (0..RECORDS).zip(&records) {
        assert_eq!(record.offset, next);
        assert_eq!(
            record.value.as_deref(),
            Some(format!("{next:08}").as_bytes())
        );
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

#[tokio::test]
async fn a_batch_refused_mid_stream_fails_alone_and_the_producer_carries_on_in_order() {
    let broker = TestBroker::start().await;
    let configs = [("max.message.bytes".to_string(), "3000".to_string())]
        .into_iter()
        .collect();
    broker
        .admin()
        .await
        .create_topic("limited", 1, 1, &configs)
        .await
        .unwrap();
    let producer = Producer::connect(
        &broker.addr,
        ProducerConfig {
            linger: Duration::ZERO,
            batch_size_bytes: 1024,
            request_bytes_max: 4096,
            max_in_flight_requests: 5,
            // The broker waits half of this for a gap to fill.
            request_timeout: Duration::from_secs(2),
            ..ProducerConfig::default()
        },
    )
    .await
    .unwrap();
    let small = [b's'; 500];
    let big = [b'B'; 3500];
    let mut sent = Vec::new();
    for i in 0..400u32 {
        let value: Vec<u8> = if i == 200 {
            big.to_vec()
        } else {
            let mut v = i.to_be_bytes().to_vec();
            v.extend_from_slice(&small);
            v
        };
        let record = ProducerRecord::new("limited", &value).with_partition(0);
        sent.push((value.clone(), producer.send(record).await.unwrap()));
    }
    let mut stored = Vec::new();
    for (i, (value, delivery)) in sent.into_iter().enumerate() {
        match delivery.await {
            Ok(metadata) => {
                assert_ne!(i, 200, "the oversized batch was refused");
                stored.push((metadata.offset.unwrap(), value));
            }
            // Batches behind it in flight were refused as out of order and
            // sent again under a bumped epoch; none fails with it.
            Err(error) => assert_eq!(i, 200, "record {i} failed: {error}"),
        }
    }
    producer.close().await.unwrap();
    assert_eq!(stored.len(), 399);

    // What was acknowledged is exactly the log, in the order it was sent.
    let offsets: Vec<u64> = stored.iter().map(|(offset, _)| *offset).collect();
    assert_eq!(offsets, (0..stored.len() as u64).collect::<Vec<_>>());
    let read: Vec<Vec<u8>> = consume_all(&broker.addr, "limited", &[0], stored.len())
        .await
        .into_iter()
        .map(|r| r.value.unwrap().to_vec())
        .collect();
    let expected: Vec<Vec<u8>> = stored.into_iter().map(|(_, v)| v).collect();
    assert_eq!(read, expected);
    broker.shutdown().await;
}
