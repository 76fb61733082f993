//! The idempotent producer: a retried batch is acknowledged with its original
//! offsets and stored once; a batch that overtook an earlier one waits for
//! it; a gap that is never filled is refused once the request times out.

mod common;

use common::{sequenced_batch, TestBroker};
use weir_client::proto::{
    ErrorCode, InitProducerIdRequest, PartitionProduceData, ProduceRequest, ProduceResponse,
};

fn request(batches: bytes::Bytes) -> ProduceRequest {
    ProduceRequest {
        topic: "t".to_string(),
        acks: 0,
        timeout_ms: 1000,
        partitions: vec![PartitionProduceData {
            partition: 0,
            batches,
        }],
    }
}

fn only(response: tonic::Response<ProduceResponse>) -> weir_client::proto::PartitionProduceResult {
    response.into_inner().partitions.remove(0)
}

#[tokio::test]
async fn retried_batch_is_stored_once_with_its_original_offsets() {
    let broker = TestBroker::start().await;
    broker.create_topic("t", 1).await;
    let mut client = broker.produce_client().await;
    let ids = client
        .init_producer_id(InitProducerIdRequest::default())
        .await
        .unwrap()
        .into_inner();
    let again = client
        .init_producer_id(InitProducerIdRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_ne!(
        ids.producer_id, again.producer_id,
        "producer ids are unique"
    );
    let pid = ids.producer_id;

    let first = sequenced_batch(pid, 0, 0, &["a", "b", "c"]);
    let second = sequenced_batch(pid, 0, 3, &["d"]);
    let r1 = only(client.produce(request(first.clone())).await.unwrap());
    assert_eq!(
        (r1.base_offset, r1.last_offset, r1.duplicate),
        (0, 2, false)
    );
    let r2 = only(client.produce(request(second)).await.unwrap());
    assert_eq!((r2.base_offset, r2.duplicate), (3, false));

    let retry = only(client.produce(request(first)).await.unwrap());
    assert_eq!(retry.error_code(), ErrorCode::None);
    assert_eq!(
        (retry.base_offset, retry.last_offset, retry.duplicate),
        (0, 2, true)
    );

    let described = broker.admin().await.describe_topic("t").await.unwrap();
    assert_eq!(
        described.partitions[0].log_end_offset, 4,
        "the retry was not written again"
    );

    let gap = only(
        client
            .produce(request(sequenced_batch(pid, 0, 9, &["x"])))
            .await
            .unwrap(),
    );
    assert_eq!(gap.error_code(), ErrorCode::OutOfOrderSequence);
    assert!(
        gap.error_message.contains("sequence 9") && gap.error_message.contains("expected 4"),
        "{}",
        gap.error_message
    );
    let described = broker.admin().await.describe_topic("t").await.unwrap();
    assert_eq!(described.partitions[0].log_end_offset, 4);
    broker.shutdown().await;
}

#[tokio::test]
async fn producer_ids_are_not_reused_after_restart() {
    let broker = TestBroker::start().await;
    let mut client = broker.produce_client().await;
    let before = client
        .init_producer_id(InitProducerIdRequest::default())
        .await
        .unwrap()
        .into_inner();
    let broker = broker.restart().await;
    let mut client = broker.produce_client().await;
    let after = client
        .init_producer_id(InitProducerIdRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(after.producer_id > before.producer_id);
    broker.shutdown().await;
}

#[tokio::test]
async fn a_batch_that_overtakes_the_one_before_it_waits_and_the_log_keeps_sequence_order() {
    let broker = TestBroker::start().await;
    broker.create_topic("t", 1).await;
    let mut client = broker.produce_client().await;
    let pid = client
        .init_producer_id(InitProducerIdRequest::default())
        .await
        .unwrap()
        .into_inner()
        .producer_id;
    // The broker knows the producer once its first batch is stored.
    let first = only(
        client
            .produce(request(sequenced_batch(pid, 0, 0, &["a"])))
            .await
            .unwrap(),
    );
    assert_eq!(first.base_offset, 0);

    // Sequence 3 arrives before sequences 1 and 2, as two requests in flight
    // on different HTTP/2 streams can.
    let mut overtaking = client.clone();
    let later = tokio::spawn(async move {
        // A long timeout: the broker waits half of it for the gap to fill,
        // far more than this test needs even on a loaded machine.
        let mut overtaking_request = request(sequenced_batch(pid, 0, 3, &["d"]));
        overtaking_request.timeout_ms = 20_000;
        overtaking.produce(overtaking_request).await.unwrap()
    });
    // The later request holds its bytes in the broker's memory pool from the
    // moment it was read until it is answered: once they are counted, it is
    // at the partition (or about to be), ahead of the earlier one.
    let running = broker.running.as_ref().unwrap().broker();
    let mut arrived = false;
    for _ in 0..2_000 {
        if running.memory_pool().in_use_bytes() > 0 {
            arrived = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert!(arrived, "the later request never reached the broker");
    assert!(
        !later.is_finished(),
        "the later batch waits for the earlier one"
    );
    let earlier = only(
        client
            .produce(request(sequenced_batch(pid, 0, 1, &["b", "c"])))
            .await
            .unwrap(),
    );
    assert_eq!(earlier.error_code(), ErrorCode::None);
    assert_eq!((earlier.base_offset, earlier.last_offset), (1, 2));
    let later = only(later.await.unwrap());
    assert_eq!(later.error_code(), ErrorCode::None);
    assert_eq!(
        later.base_offset, 3,
        "appended after the batch sent before it"
    );
    broker.shutdown().await;
}
