//! KIP-360 on the broker: `InitProducerId` with a producer id and its current
//! epoch bumps the epoch; a stale epoch is fenced, also after a restart;
//! batches of an older epoch are refused once the new one wrote; a new epoch
//! starts again at sequence 0; past `i16::MAX` the producer gets a new id. Of
//! two bumps racing from one epoch exactly one wins, and bumps are forgotten
//! after `producer_id_expiration_ms`.

mod common;

use common::{sequenced_batch, TestBroker};
use weir_client::proto::produce_client::ProduceClient;
use weir_client::proto::{
    ErrorCode, InitProducerIdRequest, PartitionProduceData, PartitionProduceResult, ProduceRequest,
};

type Client = ProduceClient<tonic::transport::Channel>;

async fn produce(client: &mut Client, batch: bytes::Bytes) -> PartitionProduceResult {
    let request = ProduceRequest {
        topic: "t".to_string(),
        acks: 0,
        // The broker waits half of this for a gap to fill.
        timeout_ms: 200,
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

async fn bump(
    client: &mut Client,
    producer_id: i64,
    producer_epoch: i32,
) -> Result<(i64, i32), tonic::Status> {
    let request = InitProducerIdRequest {
        producer_id: Some(producer_id),
        producer_epoch: Some(producer_epoch),
        ..Default::default()
    };
    let response = client.init_producer_id(request).await?.into_inner();
    Ok((response.producer_id, response.producer_epoch))
}

#[tokio::test]
async fn a_bump_gives_the_next_epoch_and_fences_the_old_one() {
    let broker = TestBroker::start().await;
    broker.create_topic("t", 1).await;
    let mut client = broker.produce_client().await;
    let pid = client
        .init_producer_id(InitProducerIdRequest::default())
        .await
        .unwrap()
        .into_inner()
        .producer_id;
    let stored = produce(&mut client, sequenced_batch(pid, 0, 0, &["a", "b"])).await;
    assert_eq!(stored.error_code(), ErrorCode::None);

    assert_eq!(bump(&mut client, pid, 0).await.unwrap(), (pid, 1));
    let stale = bump(&mut client, pid, 0).await.unwrap_err();
    assert_eq!(stale.code(), tonic::Code::FailedPrecondition, "{stale:?}");
    assert!(stale.message().contains("fenced"), "{}", stale.message());

    // The new epoch restarts at sequence 0: anything else is out of order.
    let skipped = produce(&mut client, sequenced_batch(pid, 1, 2, &["c"])).await;
    assert_eq!(skipped.error_code(), ErrorCode::OutOfOrderSequence);
    let first = produce(&mut client, sequenced_batch(pid, 1, 0, &["c"])).await;
    assert_eq!(
        (first.error_code(), first.base_offset),
        (ErrorCode::None, 2)
    );
    // The old epoch's next batch is refused now that the new one wrote.
    let old = produce(&mut client, sequenced_batch(pid, 0, 2, &["x"])).await;
    assert_eq!(old.error_code(), ErrorCode::ProducerFenced);

    // An id never handed out is refused.
    let unknown = bump(&mut client, pid + 100, 0).await.unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::InvalidArgument);

    // After a restart the partitions still know epoch 1: epoch 0 stays fenced.
    let broker = broker.restart().await;
    let mut client = broker.produce_client().await;
    let stale = bump(&mut client, pid, 0).await.unwrap_err();
    assert_eq!(stale.code(), tonic::Code::FailedPrecondition);
    assert_eq!(bump(&mut client, pid, 1).await.unwrap(), (pid, 2));
    broker.shutdown().await;
}

#[tokio::test]
async fn past_the_largest_epoch_the_producer_gets_a_new_id() {
    let broker = TestBroker::start().await;
    broker.create_topic("t", 1).await;
    let mut client = broker.produce_client().await;
    let pid = client
        .init_producer_id(InitProducerIdRequest::default())
        .await
        .unwrap()
        .into_inner()
        .producer_id;
    let max = i32::from(i16::MAX);
    // A bump that wrote nothing before a restart leaves no trace, so an
    // epoch above what the broker knows is taken as current.
    assert_eq!(bump(&mut client, pid, max - 1).await.unwrap(), (pid, max));
    let (new_id, epoch) = bump(&mut client, pid, max).await.unwrap();
    assert_ne!(new_id, pid);
    assert_eq!(epoch, 0);
    broker.shutdown().await;
}

#[tokio::test]
async fn epoch_bumps_are_forgotten_after_the_producer_id_expiration() {
    use std::sync::Arc;
    use weir_broker::{Broker, BrokerError, Clock, ManualClock, ProducerIdRequest};
    const DAY_MS: i64 = 86_400_000;

    let data = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(100 * DAY_MS));
    let broker =
        Broker::open_with_clock(common::config(data.path().to_path_buf()), clock.clone()).unwrap();
    let (producer_id, epoch) = broker
        .init_producer_id(ProducerIdRequest::New)
        .await
        .unwrap();
    assert_eq!(epoch, 0);
    let bump = |producer_epoch| ProducerIdRequest::Bump {
        producer_id,
        producer_epoch,
    };
    assert_eq!(
        broker.init_producer_id(bump(0)).await.unwrap(),
        (producer_id, 1)
    );
    assert_eq!(broker.remembered_epoch_bumps(), 1);

    // Within the expiration the bump is remembered: the old epoch is fenced.
    clock.advance(DAY_MS / 2);
    broker.clean_all(clock.now_ms()).await;
    assert_eq!(broker.remembered_epoch_bumps(), 1);
    assert!(matches!(
        broker.init_producer_id(bump(0)).await,
        Err(BrokerError::ProducerIdFenced {
            current_epoch: 1,
            ..
        })
    ));

    // Idle past it, the bump is forgotten, as the partitions forget the producer.
    clock.advance(DAY_MS);
    broker.clean_all(clock.now_ms()).await;
    assert_eq!(broker.remembered_epoch_bumps(), 0);
    broker.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_concurrent_bumps_from_one_epoch_exactly_one_succeeds() {
    use std::sync::Arc;
    use weir_broker::{Broker, BrokerError, ProducerIdRequest};

    let data = tempfile::tempdir().unwrap();
    let broker = Arc::new(Broker::open(common::config(data.path().to_path_buf())).unwrap());
    broker
        .create_topic("t", 4, 1, Default::default())
        .await
        .unwrap();
    for round in 0..20i16 {
        let (producer_id, _) = broker
            .init_producer_id(ProducerIdRequest::New)
            .await
            .unwrap();
        let bump = ProducerIdRequest::Bump {
            producer_id,
            producer_epoch: 0,
        };
        let first = tokio::spawn({
            let broker = Arc::clone(&broker);
            async move { broker.init_producer_id(bump).await }
        });
        let second = tokio::spawn({
            let broker = Arc::clone(&broker);
            async move { broker.init_producer_id(bump).await }
        });
        let outcomes = [first.await.unwrap(), second.await.unwrap()];
        let bumped = outcomes
            .iter()
            .filter(|o| matches!(o, Ok((id, 1)) if *id == producer_id))
            .count();
        let fenced = outcomes
            .iter()
            .filter(|o| {
                matches!(
                    o,
                    Err(BrokerError::ProducerIdFenced {
                        current_epoch: 1,
                        ..
                    })
                )
            })
            .count();
        assert_eq!((bumped, fenced), (1, 1), "round {round}: {outcomes:?}");
    }
    broker.close().await.unwrap();
}
