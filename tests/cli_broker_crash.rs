//! kill -9 of a broker child while a producer is sending: after a restart,
//! every acknowledged record (acks=1, fsync always) is there, at the offset
//! it was acknowledged with, and each key's records are in send order.

#[path = "cli_broker_common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{data_dir, BrokerChild};
use weir::client::{
    Acks, Admin, Consumer, ConsumerConfig, OffsetReset, Producer, ProducerConfig, ProducerRecord,
};

const KEYS: u32 = 8;
const PARTITIONS: u32 = 3;
/// Each phase (produce and crash, read back) fails after this instead of
/// hanging the test run.
const PHASE_TIMEOUT: Duration = Duration::from_secs(120);
/// Connection attempts to a broker child before giving up.
const CONNECT_ATTEMPTS: u32 = 50;
/// Polls in a row that return nothing before reading back gives up.
const EMPTY_POLLS_MAX: u32 = 20;

async fn within_phase_timeout<T>(
    work: impl std::future::Future<Output = T>,
) -> Result<T, tokio::time::error::Elapsed> {
    common::within(PHASE_TIMEOUT, work).await
}

/// Runs `connect` until it succeeds, at most [`CONNECT_ATTEMPTS`] times.
async fn connect_with_retry<
    T,
    E: std::fmt::Display,
    F: std::future::Future<Output = Result<T, E>>,
>(
    what: &str,
    mut connect: impl FnMut() -> F,
) -> T {
    let mut last_error = String::new();
    for _ in 0..CONNECT_ATTEMPTS {
        match connect().await {
            Ok(connected) => return connected,
            Err(error) => last_error = error.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("cannot connect the {what} after {CONNECT_ATTEMPTS} attempts: {last_error}");
}

#[test]
fn sigkill_loses_no_acknowledged_record() {
    let root = tempfile::tempdir().unwrap();
    let data = data_dir(root.path());
    let broker = BrokerChild::start(&data, &["--fsync", "always"]);
    let runtime = tokio::runtime::Runtime::new().unwrap();

    let addr = broker.addr.clone();
    let produced = runtime.block_on(within_phase_timeout(async move {
        let admin = connect_with_retry("admin client", || Admin::connect(&addr)).await;
        admin
            .create_topic("crash", PARTITIONS, 1, &Default::default())
            .await
            .unwrap();
        let producer = connect_with_retry("producer", || {
            Producer::connect(
                &addr,
                ProducerConfig {
                    acks: Acks::Leader,
                    linger: Duration::from_millis(1),
                    batch_size_bytes: 2048,
                    retries: 0,
                    delivery_timeout: Duration::from_secs(5),
                    request_timeout: Duration::from_secs(5),
                    ..ProducerConfig::default()
                },
            )
        })
        .await;
        let mut deliveries = Vec::new();
        let mut broker = Some(broker);
        for seq in 0..20_000u32 {
            let key = format!("key-{}", seq % KEYS);
            let value = format!("{seq}");
            match producer
                .send(ProducerRecord::new("crash", value.as_bytes()).with_key(key.as_bytes()))
                .await
            {
                Ok(delivery) => deliveries.push((key, value, delivery)),
                Err(_) => break,
            }
            if seq == 5_000 {
                // Let some batches be acknowledged, then crash the broker mid-stream.
                let (_, _, first) = deliveries.remove(0);
                first.await.unwrap();
                broker.take().unwrap().kill();
            }
            if seq % 500 == 0 {
                tokio::task::yield_now().await;
            }
        }
        let mut acknowledged = Vec::new();
        for (key, value, delivery) in deliveries {
            if let Ok(metadata) = delivery.await {
                acknowledged.push((key, value, metadata.partition, metadata.offset.unwrap()));
            }
        }
        drop(producer);
        (acknowledged, broker)
    }));
    let (acknowledged, broker) =
        produced.expect("producing and crashing the broker did not finish in time");
    assert!(broker.is_none());
    assert!(
        !acknowledged.is_empty(),
        "some records were acknowledged before the crash"
    );

    let broker = BrokerChild::start(&data, &["--fsync", "always"]);
    let addr = broker.addr.clone();
    let stored = runtime
        .block_on(within_phase_timeout(async move {
            let mut consumer = connect_with_retry("consumer", || {
                Consumer::connect(
                    &addr,
                    ConsumerConfig {
                        offset_reset: OffsetReset::Earliest,
                        ..ConsumerConfig::default()
                    },
                )
            })
            .await;
            consumer.assign("crash", &(0..PARTITIONS).collect::<Vec<_>>());
            let ends = consumer.end_offsets().await.unwrap();
            let total: u64 = ends.iter().map(|(_, end)| end).sum();
            let mut stored = HashMap::new();
            let mut empty_polls = 0;
            while (stored.len() as u64) < total {
                let records = consumer.poll(Duration::from_millis(500)).await.unwrap();
                empty_polls = if records.is_empty() {
                    empty_polls + 1
                } else {
                    0
                };
                assert!(
                    empty_polls < EMPTY_POLLS_MAX,
                    "read {} of the {total} records below the end offsets after the restart, \
                 then {EMPTY_POLLS_MAX} polls returned nothing",
                    stored.len()
                );
                for record in records {
                    let key = String::from_utf8(record.key.unwrap().to_vec()).unwrap();
                    let value = String::from_utf8(record.value.unwrap().to_vec()).unwrap();
                    stored.insert((record.partition, record.offset), (key, value));
                }
            }
            stored
        }))
        .expect("reading back after the restart did not finish in time");
    for (key, value, partition, offset) in &acknowledged {
        assert_eq!(
            stored.get(&(*partition, *offset)),
            Some(&(key.clone(), value.clone())),
            "acknowledged record {key}={value} at {partition}/{offset} is missing after the crash"
        );
    }
    // Per key, offsets increase with the send sequence.
    let mut by_key: HashMap<&str, Vec<(u64, u32)>> = HashMap::new();
    for ((_, offset), (key, value)) in &stored {
        by_key
            .entry(key)
            .or_default()
            .push((*offset, value.parse().unwrap()));
    }
    for (key, mut records) in by_key {
        records.sort_unstable();
        let sequence: Vec<u32> = records.iter().map(|(_, seq)| *seq).collect();
        assert!(
            sequence.windows(2).all(|w| w[0] < w[1]),
            "key {key} out of order: {sequence:?}"
        );
    }
    broker.terminate();
}
