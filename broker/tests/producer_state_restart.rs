//! Idempotence survives a restart: after a clean shutdown (from the
//! `producer-state` snapshot) and without a usable snapshot (from the batch
//! headers of the log tail), a retried batch is answered with its original
//! offsets and stored once, and the next sequence is accepted.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::TestBroker;
use weir_client::proto::produce_client::ProduceClient;
use weir_client::proto::{
    ErrorCode, InitProducerIdRequest, PartitionProduceData, PartitionProduceResult, ProduceRequest,
};

type Client = ProduceClient<tonic::transport::Channel>;

/// A batch of an idempotent producer with each value padded to 600 bytes, so that no
/// two batches fit in one segment of the smallest `segment.bytes` (1024).
fn sequenced_batch(producer_id: i64, epoch: i16, sequence: i32, values: &[&str]) -> bytes::Bytes {
    let padded: Vec<String> = values.iter().map(|v| format!("{v:-<600}")).collect();
    let padded: Vec<&str> = padded.iter().map(String::as_str).collect();
    common::sequenced_batch(producer_id, epoch, sequence, &padded)
}

async fn produce(client: &mut Client, batch: bytes::Bytes) -> PartitionProduceResult {
    let request = ProduceRequest {
        topic: "t".to_string(),
        acks: 1,
        timeout_ms: 1000,
        partitions: vec![PartitionProduceData {
            partition: 0,
            batches: batch,
        }],
    };
    client
        .produce(request)
        .await
        .unwrap()
        .into_inner()
        .partitions
        .remove(0)
}

async fn producer_id(client: &mut Client) -> i64 {
    client
        .init_producer_id(InitProducerIdRequest::default())
        .await
        .unwrap()
        .into_inner()
        .producer_id
}

fn snapshot_file(broker: &TestBroker) -> PathBuf {
    broker.data.path().join("t-0").join("producer-state")
}

async fn log_end(broker: &TestBroker) -> u64 {
    let described = broker.admin().await.describe_topic("t").await.unwrap();
    described.partitions[0].log_end_offset
}

/// Producer `a` writes batches of sequences 0..7 (one record each, offsets
/// 0..7 in between `b`'s), `b` one batch of two records first. Returns both ids.
async fn write_two_producers(broker: &TestBroker) -> (i64, i64) {
    let mut client = broker.produce_client().await;
    let a = producer_id(&mut client).await;
    let b = producer_id(&mut client).await;
    let stored = produce(&mut client, sequenced_batch(b, 0, 0, &["b0", "b1"])).await;
    assert_eq!((stored.base_offset, stored.last_offset), (0, 1));
    for sequence in 0..7 {
        let value = format!("a{sequence}");
        let stored = produce(&mut client, sequenced_batch(a, 0, sequence, &[&value])).await;
        assert_eq!(stored.error_code(), ErrorCode::None);
        assert_eq!(stored.base_offset, 2 + sequence as u64);
    }
    (a, b)
}

/// After a restart: `a`'s last five batches and `b`'s only batch are
/// duplicates with their offsets, older ones are out of order, and the next
/// sequences are stored.
async fn assert_state_survived(broker: &TestBroker, a: i64, b: i64) {
    let mut client = broker.produce_client().await;
    for sequence in 2..7 {
        let value = format!("a{sequence}");
        let retry = produce(&mut client, sequenced_batch(a, 0, sequence, &[&value])).await;
        assert_eq!(
            retry.error_code(),
            ErrorCode::None,
            "{}",
            retry.error_message
        );
        assert!(retry.duplicate, "sequence {sequence} was stored again");
        assert_eq!(retry.base_offset, 2 + sequence as u64);
    }
    let retry = produce(&mut client, sequenced_batch(b, 0, 0, &["b0", "b1"])).await;
    assert!(retry.duplicate);
    assert_eq!((retry.base_offset, retry.last_offset), (0, 1));
    assert_eq!(log_end(broker).await, 9, "no retry was written");

    let too_old = produce(&mut client, sequenced_batch(a, 0, 1, &["a1"])).await;
    assert_eq!(too_old.error_code(), ErrorCode::OutOfOrderSequence);
    let gap = produce(&mut client, sequenced_batch(a, 0, 8, &["a8"])).await;
    assert_eq!(gap.error_code(), ErrorCode::OutOfOrderSequence);
    assert!(
        gap.error_message.contains("expected 7"),
        "{}",
        gap.error_message
    );

    let next = produce(&mut client, sequenced_batch(a, 0, 7, &["a7"])).await;
    assert_eq!(next.error_code(), ErrorCode::None);
    assert_eq!((next.base_offset, next.duplicate), (9, false));
    let next = produce(&mut client, sequenced_batch(b, 0, 2, &["b2"])).await;
    assert_eq!((next.base_offset, next.duplicate), (10, false));
    assert_eq!(log_end(broker).await, 11);
}

async fn start_with_segments_of_one_batch() -> TestBroker {
    let broker = TestBroker::start().await;
    // The smallest allowed; every batch here is larger than half of it.
    let configs = BTreeMap::from([("segment.bytes".to_string(), "1024".to_string())]);
    broker
        .admin()
        .await
        .create_topic("t", 1, 1, &configs)
        .await
        .unwrap();
    broker
}

#[tokio::test]
async fn retry_after_clean_restart_is_deduplicated_from_the_snapshot() {
    let broker = TestBroker::start().await;
    broker.create_topic("t", 1).await;
    let (a, b) = write_two_producers(&broker).await;
    let broker = broker.restart().await;
    assert!(snapshot_file(&broker).exists());
    assert_state_survived(&broker, a, b).await;

    // The state written by the restarted broker survives the next restart too.
    let broker = broker.restart().await;
    let mut client = broker.produce_client().await;
    let retry = produce(&mut client, sequenced_batch(a, 0, 7, &["a7"])).await;
    assert_eq!((retry.base_offset, retry.duplicate), (9, true));
    broker.shutdown().await;
}

#[tokio::test]
async fn retry_without_snapshot_is_deduplicated_from_the_log_tail() {
    let broker = start_with_segments_of_one_batch().await;
    let (a, b) = write_two_producers(&broker).await;
    // The open must rebuild the state from nine one-batch segments.
    let broker = broker
        .restart_after(|data| std::fs::remove_file(data.join("t-0/producer-state")).unwrap())
        .await;
    assert_state_survived(&broker, a, b).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn corrupt_snapshot_falls_back_to_the_log_tail() {
    let broker = TestBroker::start().await;
    broker.create_topic("t", 1).await;
    let (a, b) = write_two_producers(&broker).await;
    let broker = broker
        .restart_after(|data| {
            let path = data.join("t-0/producer-state");
            let mut bytes = std::fs::read(&path).unwrap();
            bytes[30] ^= 0xff;
            std::fs::write(&path, bytes).unwrap();
        })
        .await;
    assert_state_survived(&broker, a, b).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn stale_snapshot_is_completed_from_the_batches_after_it() {
    let broker = start_with_segments_of_one_batch().await;
    let mut client = broker.produce_client().await;
    let a = producer_id(&mut client).await;
    let b = producer_id(&mut client).await;
    assert_eq!(
        produce(&mut client, sequenced_batch(b, 0, 0, &["b0", "b1"]))
            .await
            .base_offset,
        0
    );
    for sequence in 0..3 {
        produce(&mut client, sequenced_batch(a, 0, sequence, &["a"])).await;
    }
    // A clean shutdown leaves a snapshot at offset 5 ...
    let broker = broker.restart().await;
    let stale = std::fs::read(snapshot_file(&broker)).unwrap();
    let mut client = broker.produce_client().await;
    for sequence in 3..7 {
        let value = format!("a{sequence}");
        produce(&mut client, sequenced_batch(a, 0, sequence, &[&value])).await;
    }
    // ... which is all a crash right now would leave behind: put it back, as
    // if the broker had been killed before its next snapshot.
    let broker = broker
        .restart_after(|data| std::fs::write(data.join("t-0/producer-state"), stale).unwrap())
        .await;
    assert_state_survived(&broker, a, b).await;
    broker.shutdown().await;
}

/// The offset a `producer-state` file covers (bytes 16..24 of its layout, after
/// the magic, version and producer count), if the file is there.
fn snapshot_offset(broker: &TestBroker) -> Option<u64> {
    let bytes = std::fs::read(snapshot_file(broker)).ok()?;
    assert_eq!(&bytes[..8], b"WEIRPSTA");
    Some(u64::from_le_bytes(bytes[16..24].try_into().unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_is_written_in_the_background_once_64_mib_are_appended() {
    let broker = TestBroker::start().await;
    broker.create_topic("t", 1).await;
    let mut client = broker.produce_client().await;
    let a = producer_id(&mut client).await;
    // Batches of two 400 KiB records: the 81st crosses 64 MiB.
    let value = "v".repeat(400 * 1024);
    let mut batch_bytes = 0;
    let mut crossed_at = None;
    for sequence in 0..82 {
        let batch = common::sequenced_batch(a, 0, sequence * 2, &[&value, &value]);
        batch_bytes += batch.len() as u64;
        let stored = produce(&mut client, batch).await;
        assert_eq!(
            stored.error_code(),
            ErrorCode::None,
            "{}",
            stored.error_message
        );
        if crossed_at.is_none() && batch_bytes >= weir_broker::SNAPSHOT_INTERVAL_BYTES {
            crossed_at = Some(stored.last_offset + 1);
        }
    }
    let crossed_at = crossed_at.expect("64 MiB appended");
    // Written by its own thread: the appends above never waited for it.
    let mut waited = 0;
    while snapshot_offset(&broker) != Some(crossed_at) {
        assert!(
            waited < 1000,
            "no snapshot at offset {crossed_at}: {:?}",
            snapshot_offset(&broker)
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        waited += 1;
    }
    // A clean stop replaces it with the state at the log end.
    let broker = broker.restart().await;
    assert_eq!(snapshot_offset(&broker), Some(164));
    let mut client = broker.produce_client().await;
    let retry = produce(
        &mut client,
        common::sequenced_batch(a, 0, 162, &[&value, &value]),
    )
    .await;
    assert_eq!((retry.base_offset, retry.duplicate), (162, true));
    broker.shutdown().await;
}
