//! The whole cluster killed at once: three `weir broker` processes with
//! `--fsync always`, an idempotent `acks=all` producer writing numbered
//! records to three partitions of a topic with three replicas, and every
//! broker SIGKILLed together mid-stream. After all three restart, the
//! topic is still there (its metadata came back from each broker's Raft
//! log), every partition elects a leader again, and every record the
//! producer had acknowledged is read back exactly once, in the order sent.

mod cli_broker_common;
mod cli_cluster_common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cli_cluster_common::{wait_for, ProcessCluster};
use weir_client::{
    Consumer, ConsumerConfig, OffsetReset, Producer, ProducerConfig, ProducerRecord,
};

const TOPIC: &str = "durable";
const PARTITIONS: u32 = 3;

#[test]
fn a_cluster_killed_whole_loses_no_acknowledged_record() {
    let mut cluster = ProcessCluster::start(&["--fsync", "always"]);
    let bootstrap = cluster.bootstrap();
    cluster.create_topic(TOPIC, PARTITIONS);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    // Per partition, the numbers acknowledged, in the order sent.
    let acknowledged = Arc::new(Mutex::new(BTreeMap::<u32, Vec<u64>>::new()));
    let producing = runtime.spawn({
        let (stop, acknowledged, bootstrap) =
            (stop.clone(), acknowledged.clone(), bootstrap.clone());
        async move {
            let producer = Producer::connect(
                &bootstrap,
                ProducerConfig {
                    request_timeout: Duration::from_secs(5),
                    delivery_timeout: Duration::from_secs(10),
                    ..ProducerConfig::default()
                },
            )
            .await
            .unwrap();
            let mut next = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let mut deliveries = Vec::new();
                for _ in 0..30 {
                    let partition = (next % u64::from(PARTITIONS)) as u32;
                    let value = format!("{next:010}");
                    let record = ProducerRecord {
                        partition: Some(partition),
                        ..ProducerRecord::new(TOPIC, value.as_bytes())
                    };
                    match producer.send(record).await {
                        Ok(delivery) => deliveries.push((partition, next, delivery)),
                        Err(_) => break,
                    }
                    next += 1;
                }
                for (partition, n, delivery) in deliveries {
                    if delivery.await.is_ok() {
                        acknowledged
                            .lock()
                            .unwrap()
                            .entry(partition)
                            .or_default()
                            .push(n);
                    }
                }
            }
            // The brokers are gone: whatever is still buffered fails.
            let _ = tokio::time::timeout(Duration::from_secs(15), producer.close()).await;
        }
    });
    let acked = || -> usize { acknowledged.lock().unwrap().values().map(Vec::len).sum() };
    wait_for("records acknowledged", Duration::from_secs(120), || {
        acked() >= 3_000
    });
    cluster.kill_all();
    stop.store(true, Ordering::Relaxed);
    runtime.block_on(producing).unwrap();
    // Answers that arrived before the kill may be counted after it.
    let acked_at_kill = acked();

    for id in 1..=3 {
        cluster.start_node(id);
    }
    cluster.wait_in_sync(TOPIC, PARTITIONS, Duration::from_secs(120));

    let acknowledged = acknowledged.lock().unwrap().clone();
    let stored: BTreeMap<u32, Vec<u64>> = runtime.block_on(async {
        let mut consumer = Consumer::connect(
            &bootstrap,
            ConsumerConfig {
                offset_reset: OffsetReset::Earliest,
                ..ConsumerConfig::default()
            },
        )
        .await
        .unwrap();
        consumer.assign(TOPIC, &(0..PARTITIONS).collect::<Vec<_>>());
        // Until every acknowledged record is read (and a little more, for
        // any duplicate), or nothing more comes for a minute: a partition
        // whose leader is still taking over answers nothing yet.
        let mut stored: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
        let (mut total, mut empty) = (0, 0);
        while empty < 200 && !(total >= acked_at_kill && empty >= 10) {
            let records = consumer.poll(Duration::from_millis(300)).await.unwrap();
            if records.is_empty() {
                empty += 1;
            } else {
                empty = 0;
            }
            total += records.len();
            for r in records {
                let value = String::from_utf8(r.value.unwrap().to_vec()).unwrap();
                stored
                    .entry(r.partition)
                    .or_default()
                    .push(value.parse().unwrap());
            }
        }
        stored
    });
    let mut lost: Vec<u64> = Vec::new();
    let mut duplicated_or_out_of_order = Vec::new();
    for (partition, numbers) in &acknowledged {
        let on_disk = stored.get(partition).cloned().unwrap_or_default();
        // Exactly once and in order: the idempotent producer's retries never
        // duplicate; records it never got an answer for may be there too.
        if !on_disk.windows(2).all(|w| w[0] < w[1]) {
            duplicated_or_out_of_order.push(*partition);
        }
        let on_disk: std::collections::BTreeSet<u64> = on_disk.into_iter().collect();
        lost.extend(numbers.iter().filter(|n| !on_disk.contains(n)));
    }
    if !lost.is_empty() || !duplicated_or_out_of_order.is_empty() {
        eprintln!("data and broker logs kept in {}", cluster.keep().display());
    }
    assert!(
        duplicated_or_out_of_order.is_empty(),
        "records duplicated or out of order in partitions {duplicated_or_out_of_order:?}"
    );
    lost.sort_unstable();
    assert!(
        lost.is_empty(),
        "{} of {acked_at_kill} acknowledged records lost, the first: {:?}",
        lost.len(),
        &lost[..lost.len().min(20)]
    );
    eprintln!(
        "{acked_at_kill} records acknowledged before the kill, {} stored after the restart",
        stored.values().map(Vec::len).sum::<usize>()
    );
    cluster.terminate_all();
}
