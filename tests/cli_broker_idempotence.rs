//! Idempotence survives kill -9 of the broker: after the restart, a retried
//! batch is answered with its original offsets and stored once, and the
//! next sequence is accepted. Covered twice: with no snapshot at all (the
//! state comes from the log tail) and with a snapshot from an earlier clean
//! shutdown (the state comes from it plus the batches after it).

#[path = "cli_broker_common/mod.rs"]
mod common;

use bytes::Bytes;
use common::{data_dir, BrokerChild};
use weir::client::proto::produce_client::ProduceClient;
use weir::client::proto::{
    ErrorCode, InitProducerIdRequest, PartitionProduceData, PartitionProduceResult, ProduceRequest,
};
use weir::log::batch::{BatchBuilder, Compression};

type Client = ProduceClient<weir::client::Channel>;

fn batch(producer_id: i64, sequence: i32, records: i32) -> Bytes {
    let mut builder = BatchBuilder::new(Compression::None).with_producer(producer_id, 0, sequence);
    for i in 0..records {
        let value = format!("{producer_id}-{}", sequence + i);
        builder.push(1_000, None, Some(value.as_bytes()), &[]);
    }
    builder.build().unwrap()
}

async fn client(addr: &str) -> Client {
    ProduceClient::new(weir::client::connect(addr).await.unwrap())
}

async fn produce(client: &mut Client, batch: Bytes) -> PartitionProduceResult {
    let request = ProduceRequest {
        topic: "idem".to_string(),
        acks: 1,
        timeout_ms: 5_000,
        partitions: vec![PartitionProduceData {
            partition: 0,
            batches: batch,
        }],
    };
    let mut response = client.produce(request).await.unwrap().into_inner();
    response.partitions.remove(0)
}

/// Sends batches of 3 records with sequences `from..to` (step 3); returns
/// their base offsets.
async fn send_batches(client: &mut Client, producer_id: i64, from: i32, to: i32) -> Vec<u64> {
    let mut offsets = Vec::new();
    for sequence in (from..to).step_by(3) {
        let stored = produce(client, batch(producer_id, sequence, 3)).await;
        assert_eq!(
            stored.error_code(),
            ErrorCode::None,
            "{}",
            stored.error_message
        );
        assert!(!stored.duplicate);
        offsets.push(stored.base_offset);
    }
    offsets
}

/// Retries the last five batches (sequences `next - 15 .. next`), which must
/// come back as duplicates at `offsets`, then sends `next`, which must be new.
async fn assert_retries_deduplicated(
    client: &mut Client,
    producer_id: i64,
    next: i32,
    offsets: &[u64],
) -> u64 {
    let retried = offsets.len() - 5..offsets.len();
    for (i, sequence) in retried.zip((next - 15..next).step_by(3)) {
        let retry = produce(client, batch(producer_id, sequence, 3)).await;
        assert_eq!(
            retry.error_code(),
            ErrorCode::None,
            "{}",
            retry.error_message
        );
        assert!(retry.duplicate, "sequence {sequence} was stored twice");
        assert_eq!(retry.base_offset, offsets[i]);
    }
    let fresh = produce(client, batch(producer_id, next, 3)).await;
    assert_eq!(
        fresh.error_code(),
        ErrorCode::None,
        "{}",
        fresh.error_message
    );
    assert!(!fresh.duplicate);
    assert_eq!(fresh.base_offset, offsets[offsets.len() - 1] + 3);
    fresh.base_offset
}

#[test]
fn retry_after_sigkill_is_stored_once() {
    let root = tempfile::tempdir().unwrap();
    let data = data_dir(root.path());
    let runtime = tokio::runtime::Runtime::new().unwrap();

    // Round 1: no snapshot has ever been written when the broker dies.
    let broker = BrokerChild::start(&data, &[]);
    let addr = broker.addr.clone();
    let (producer_id, offsets) = runtime.block_on(async {
        let admin = weir::client::Admin::connect(&addr).await.unwrap();
        admin
            .create_topic("idem", 1, 1, &Default::default())
            .await
            .unwrap();
        let mut client = client(&addr).await;
        let producer_id = client
            .init_producer_id(InitProducerIdRequest::default())
            .await
            .unwrap()
            .into_inner()
            .producer_id;
        (
            producer_id,
            send_batches(&mut client, producer_id, 0, 30).await,
        )
    });
    broker.kill();
    assert!(!data.join("idem-0/producer-state").exists());

    let broker = BrokerChild::start(&data, &[]);
    let addr = broker.addr.clone();
    runtime.block_on(async {
        let mut client = client(&addr).await;
        assert_retries_deduplicated(&mut client, producer_id, 30, &offsets).await;
    });
    // Round 2: a clean stop leaves a snapshot, then more batches, then kill -9.
    let (status, log) = broker.terminate();
    assert!(status.success(), "{log}");
    assert!(data.join("idem-0/producer-state").exists());

    let broker = BrokerChild::start(&data, &[]);
    let addr = broker.addr.clone();
    let offsets = runtime.block_on(async {
        let mut client = client(&addr).await;
        send_batches(&mut client, producer_id, 33, 63).await
    });
    broker.kill();

    let broker = BrokerChild::start(&data, &[]);
    let addr = broker.addr.clone();
    let last = runtime.block_on(async {
        let mut client = client(&addr).await;
        assert_retries_deduplicated(&mut client, producer_id, 63, &offsets).await
    });
    assert_eq!(last, 63, "every sequence is stored exactly once");
    let (status, log) = broker.terminate();
    assert!(status.success(), "{log}");
}
