//! What the producer does when a batch fails for good. A batch the broker
//! validated and refused gives its sequences back; one refused as out of
//! order behind a failed batch is sent again under a bumped epoch (KIP-360),
//! first in its partition, so what was acknowledged is exactly the log: no
//! record lost behind the failure, none stored twice. A batch whose request
//! timed out fails as maybe stored, and what follows goes out under a new
//! epoch.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use common::{consume_all, TestBroker};
use weir_broker::{Clock, RunningBroker, SystemClock};
use weir_client::proto::{ErrorCode, FetchRequest, PartitionFetchRequest};
use weir_client::{ClientError, DeliveryFuture, Producer, ProducerConfig, ProducerRecord};
use weir_log::batch::BatchHeader;

/// Records larger than this are refused by the topic.
const MESSAGE_BYTES_MAX: usize = 3000;

async fn limited_topic(broker: &TestBroker) {
    let configs: BTreeMap<String, String> = [(
        "max.message.bytes".to_string(),
        MESSAGE_BYTES_MAX.to_string(),
    )]
    .into_iter()
    .collect();
    broker
        .admin()
        .await
        .create_topic("limited", 1, 1, &configs)
        .await
        .unwrap();
}

fn config() -> ProducerConfig {
    ProducerConfig {
        linger: Duration::ZERO,
        // Every small record fills its own batch; an oversized one goes alone.
        batch_size_bytes: 512,
        request_bytes_max: 4096,
        max_in_flight_requests: 5,
        // The broker waits half of this for an earlier batch that never comes.
        request_timeout: Duration::from_secs(2),
        ..ProducerConfig::default()
    }
}

fn value(i: usize, big: bool) -> Vec<u8> {
    let len = if big { MESSAGE_BYTES_MAX + 500 } else { 600 };
    let mut value = format!("{i:06}").into_bytes();
    value.resize(len, b'.');
    value
}

/// Queues `record` and returns its future without waiting for delivery.
async fn send(producer: &Producer, value: &[u8]) -> DeliveryFuture {
    let record = ProducerRecord::new("limited", value).with_partition(0);
    producer.send(record).await.unwrap()
}

/// Every stored batch's header, in log order.
async fn stored_headers(broker: &TestBroker) -> Vec<BatchHeader> {
    let mut client = broker.fetch_client().await;
    let response = client
        .fetch(FetchRequest {
            topic: "limited".to_string(),
            max_wait_ms: 0,
            min_bytes: 0,
            max_bytes: 16 << 20,
            partitions: vec![PartitionFetchRequest {
                partition: 0,
                offset: 0,
                max_bytes: 16 << 20,
            }],
        })
        .await
        .unwrap()
        .into_inner();
    weir_log::batch::batches(&response.partitions[0].batches)
        .map(|batch| batch.unwrap().0)
        .collect()
}

fn producer_fields(header: &BatchHeader) -> (i64, i16, i32) {
    (
        header.producer_id,
        header.producer_epoch,
        header.base_sequence,
    )
}

#[tokio::test]
async fn a_batch_refused_by_validation_gives_its_sequences_back_without_an_epoch_bump() {
    let broker = TestBroker::start().await;
    limited_topic(&broker).await;
    let producer = Producer::connect(&broker.addr, config()).await.unwrap();

    let first = send(&producer, &value(0, false)).await.await.unwrap();
    let refused = send(&producer, &value(1, true)).await.await.unwrap_err();
    assert!(
        matches!(
            refused,
            ClientError::Partition {
                code: ErrorCode::BatchTooLarge,
                ..
            }
        ),
        "{refused}"
    );
    let next = send(&producer, &value(2, false)).await.await.unwrap();
    assert_eq!((first.offset, next.offset), (Some(0), Some(1)));
    producer.close().await.unwrap();

    let headers = stored_headers(&broker).await;
    assert_eq!(headers.len(), 2);
    let (pid, epoch, sequence) = producer_fields(&headers[1]);
    assert_eq!(
        (pid, epoch, sequence),
        (headers[0].producer_id, 0, 1),
        "the refused batch's sequence went to the next one, same epoch"
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn batches_refused_out_of_order_behind_a_failed_one_are_stored_once_under_a_bumped_epoch() {
    const RECORDS: usize = 30;
    const BIG: usize = 2;
    let broker = TestBroker::start().await;
    limited_topic(&broker).await;
    let producer = Producer::connect(&broker.addr, config()).await.unwrap();
    let values: Vec<Vec<u8>> = (0..RECORDS).map(|i| value(i, i == BIG)).collect();

    // Once the first record is stored the producer pipelines. The test
    // runtime has one thread and `send` does not yield, so every later
    // record is queued before the sender looks: the oversized batch goes out
    // with the batches behind it already in flight, which the broker then
    // refuses as out of order.
    let first = send(&producer, &values[0]).await.await.unwrap();
    assert_eq!(first.offset, Some(0));
    let mut deliveries = Vec::new();
    for value in &values[1..] {
        deliveries.push(send(&producer, value).await);
    }
    let mut acknowledged = vec![(0u64, values[0].clone())];
    for (i, delivery) in (1..RECORDS).zip(deliveries) {
        match delivery.await {
            Ok(metadata) => acknowledged.push((metadata.offset.unwrap(), values[i].clone())),
            Err(error) => assert_eq!(i, BIG, "record {i} failed: {error}"),
        }
    }
    producer.close().await.unwrap();
    assert_eq!(
        acknowledged.len(),
        RECORDS - 1,
        "only the oversized record failed"
    );

    // What was acknowledged is exactly the log, in the order it was sent.
    let offsets: Vec<u64> = acknowledged.iter().map(|(offset, _)| *offset).collect();
    assert_eq!(offsets, (0..RECORDS as u64 - 1).collect::<Vec<_>>());
    let read: Vec<Vec<u8>> = consume_all(&broker.addr, "limited", &[0], RECORDS - 1)
        .await
        .into_iter()
        .map(|r| r.value.unwrap().to_vec())
        .collect();
    let expected: Vec<Vec<u8>> = acknowledged.into_iter().map(|(_, v)| v).collect();
    assert_eq!(read, expected, "each record once, in order");

    // The batches after the refused one went out again under epoch 1, from
    // sequence 0.
    let headers = stored_headers(&broker).await;
    let pid = headers[0].producer_id;
    assert_eq!(producer_fields(&headers[0]), (pid, 0, 0));
    assert_eq!(producer_fields(&headers[1]), (pid, 0, 1));
    assert_eq!(producer_fields(&headers[2]), (pid, 1, 0));
    assert!(headers[2..].iter().all(|h| h.producer_epoch == 1));
    broker.shutdown().await;
}

/// The system clock, except that while stalled a read blocks. The broker
/// reads its clock during an append, after the log write and under the
/// partition's producer-state lock: a stalled read is an append that stays
/// stuck there (as behind a slow fsync) with its batch already in the log.
#[derive(Debug, Default)]
struct StallingClock {
    stalled: Mutex<bool>,
    released: Condvar,
    /// Signalled when a read starts waiting.
    entered: tokio::sync::Notify,
}

impl StallingClock {
    fn stall(&self) {
        *self.stalled.lock().unwrap() = true;
    }

    fn release(&self) {
        *self.stalled.lock().unwrap() = false;
        self.released.notify_all();
    }
}

impl Clock for StallingClock {
    fn now_ms(&self) -> i64 {
        let mut stalled = self.stalled.lock().unwrap();
        if *stalled {
            self.entered.notify_one();
        }
        while *stalled {
            stalled = self.released.wait(stalled).unwrap();
        }
        SystemClock.now_ms()
    }
}

#[tokio::test]
async fn a_request_that_timed_out_fails_as_maybe_stored_and_the_rest_go_out_under_a_new_epoch() {
    let clock = Arc::new(StallingClock::default());
    let data = tempfile::tempdir().unwrap();
    let running = RunningBroker::start_with_clock(
        common::config(data.path().to_path_buf()),
        Arc::clone(&clock) as weir_broker::SharedClock,
    )
    .await
    .unwrap();
    let broker = TestBroker {
        addr: running.local_addr().to_string(),
        running: Some(running),
        data,
    };
    limited_topic(&broker).await;
    let producer = Producer::connect(
        &broker.addr,
        ProducerConfig {
            retries: 0,
            request_timeout: Duration::from_millis(500),
            ..config()
        },
    )
    .await
    .unwrap();
    let values: Vec<Vec<u8>> = (0..6).map(|i| value(i, false)).collect();
    let first = send(&producer, &values[0]).await.await.unwrap();
    assert_eq!(first.offset, Some(0));

    // The next append is written to the log, then stalls under the lock
    // past the request timeout: the producer cannot know it was stored.
    clock.stall();
    let stalled = send(&producer, &values[1]).await;
    tokio::time::timeout(Duration::from_secs(30), clock.entered.notified())
        .await
        .expect("the append reached the broker's clock");
    let error = stalled.await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("may or may not have been stored"),
        "{error}"
    );
    clock.release();

    let mut deliveries = Vec::new();
    for value in &values[2..] {
        deliveries.push(send(&producer, value).await);
    }
    let mut offsets = Vec::new();
    for delivery in deliveries {
        offsets.push(delivery.await.unwrap().offset.unwrap());
    }
    producer.close().await.unwrap();
    // The stalled batch was stored once (its answer was lost); everything
    // acknowledged is at its offset, in order, nothing twice.
    assert_eq!(offsets, [2, 3, 4, 5]);
    let read: Vec<Vec<u8>> = consume_all(&broker.addr, "limited", &[0], 6)
        .await
        .into_iter()
        .map(|r| r.value.unwrap().to_vec())
        .collect();
    assert_eq!(read, values);
    let headers = stored_headers(&broker).await;
    let pid = headers[0].producer_id;
    let fields: Vec<_> = headers.iter().map(producer_fields).collect();
    assert_eq!(
        fields,
        [
            (pid, 0, 0),
            (pid, 0, 1),
            (pid, 1, 0),
            (pid, 1, 1),
            (pid, 1, 2),
            (pid, 1, 3)
        ],
        "after the timeout the producer went on under epoch 1 from sequence 0"
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn with_the_broker_gone_batches_waiting_for_the_epoch_bump_fail_as_not_sent() {
    let broker = TestBroker::start().await;
    limited_topic(&broker).await;
    let producer = Producer::connect(
        &broker.addr,
        ProducerConfig {
            retries: 0,
            delivery_timeout: Duration::from_millis(300),
            ..config()
        },
    )
    .await
    .unwrap();
    send(&producer, &value(0, false)).await.await.unwrap();
    broker.shutdown().await;

    let lost = send(&producer, &value(1, false)).await.await.unwrap_err();
    assert!(
        lost.to_string().contains("may or may not have been stored"),
        "{lost}"
    );
    // The epoch bump cannot reach the broker: the next record waits for it,
    // then fails as never stored once its delivery timeout has passed.
    let waiting = send(&producer, &value(2, false)).await.await.unwrap_err();
    assert!(matches!(waiting, ClientError::NotSent { .. }), "{waiting}");
    tokio::time::timeout(Duration::from_secs(60), producer.close())
        .await
        .expect("close returns with nothing left to send")
        .unwrap();
}
