//! An idempotent producer the broker forgot (idle past producer_id_expiration_ms)
//! gets its next batch refused as out of order; the client sends it again under a
//! bumped epoch, so the send succeeds and the record is stored once.

mod common;

use std::time::Duration;

use common::{config, consume_all, TestBroker};
use weir_client::{Producer, ProducerConfig, ProducerRecord};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forgotten_producer_sends_again_under_a_new_epoch_and_loses_nothing() {
    let data = tempfile::tempdir().unwrap();
    let mut config = config(data.path().to_path_buf());
    config.producer_id_expiration_ms = 50;
    config.retention_check_interval_ms = 20;
    let broker = TestBroker::start_with(config, data).await;
    broker.create_topic("t", 1).await;
    let producer = Producer::connect(&broker.addr, ProducerConfig::default())
        .await
        .unwrap();
    let send = |value: &'static str| {
        let producer = &producer;
        async move {
            producer
                .send(ProducerRecord {
                    partition: Some(0),
                    ..ProducerRecord::new("t", value.as_bytes())
                })
                .await
                .unwrap()
                .await
        }
    };
    send("before").await.unwrap();
    // Idle until a retention pass has forgotten the producer.
    let partition = std::sync::Arc::clone(
        broker
            .running
            .as_ref()
            .unwrap()
            .broker()
            .topic("t")
            .unwrap()
            .partition(0)
            .unwrap(),
    );
    tokio::time::timeout(Duration::from_secs(60), async {
        while partition.producer_count().unwrap() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the idle producer is forgotten");
    drop(partition);
    let after = send("after")
        .await
        .expect("the batch is sent again, not failed");
    assert_eq!(after.offset, Some(1));
    producer.close().await.unwrap();
    let records = consume_all(&broker.addr, "t", &[0], 2).await;
    let values: Vec<_> = records
        .iter()
        .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap()).into_owned())
        .collect();
    assert_eq!(values, ["before", "after"]);
    broker.shutdown().await;
}
