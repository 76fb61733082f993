//! What the pipeline tests against a broker share: the broker itself, in this process on
//! a loopback port, with group settings that make rebalances fast to wait for.

// Each test binary uses its own part of this module.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use weir_broker::group::GroupConfig;
use weir_broker::{BrokerConfig, RunningBroker};
use weir_client::{Admin, Producer, ProducerConfig, ProducerRecord};

/// A hang guard only: every wait ends on a condition.
const HANG_GUARD: Duration = Duration::from_secs(120);

/// A broker on `data`, listening on 127.0.0.1 port 0: groups rebalance without the
/// initial delay, members heartbeat every 100 ms, and one is dropped after
/// `session_timeout_ms` without a heartbeat (the wait a killed worker's partitions
/// have before they move).
pub async fn start_broker(data: &std::path::Path, session_timeout_ms: i64) -> RunningBroker {
    RunningBroker::start(BrokerConfig {
        data_dir: data.to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        offsets_topic_partitions: 2,
        groups: GroupConfig {
            initial_rebalance_delay_ms: 0,
            session_timeout_ms,
            heartbeat_interval_ms: 100,
            ..GroupConfig::default()
        },
        ..BrokerConfig::default()
    })
    .await
    .unwrap()
}

/// Waits until `members` workers of `group` each own some of its `partitions`
/// partitions, and they own all of them; fails saying what the group last looked like.
pub async fn wait_until_shared(admin: &Admin, partitions: u32, group: &str, members: usize) {
    let mut last = None;
    let shared = tokio::time::timeout(HANG_GUARD, async {
        loop {
            if let Ok(description) = admin.describe_group(group).await {
                let shares: Vec<usize> = description
                    .members
                    .iter()
                    .map(|m| m.assignment.len())
                    .collect();
                let owned: usize = shares.iter().sum();
                if shares.len() == members
                    && owned == partitions as usize
                    && shares.iter().all(|s| *s > 0)
                {
                    return;
                }
                last = Some(description);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        shared.is_ok(),
        "{members} workers never shared the partitions; the group last: {last:?}"
    );
}

/// Writes `(partition, key, event time)` events to topic `events`, each keyed and valued
/// by its key's digits, and waits for every acknowledgement.
pub async fn produce_keyed_events(addr: &str, events: &[(u32, u64, i64)]) {
    let producer = Producer::connect(addr, ProducerConfig::default())
        .await
        .unwrap();
    let mut deliveries = Vec::new();
    for (partition, key, t) in events {
        let key = key.to_string();
        let record = ProducerRecord::new("events", key.as_bytes())
            .with_key(key.as_bytes())
            .with_partition(*partition)
            .with_timestamp(*t);
        deliveries.push(producer.send(record).await.unwrap());
    }
    for delivery in deliveries {
        delivery.await.unwrap();
    }
    producer.close().await.unwrap();
}

/// Counts of the same events per (key, start of its tumbling window of `window`), as a
/// pipeline must give them when none is late.
pub fn tumbling_counts(events: &[(u32, u64, i64)], window: Duration) -> BTreeMap<(u64, i64), u64> {
    let size = window.as_millis() as i64;
    let mut counts = BTreeMap::new();
    for (_, key, t) in events {
        *counts.entry((*key, t.div_euclid(size) * size)).or_insert(0) += 1;
    }
    counts
}

/// A pipeline worker running on its own task: the sender stops it.
pub type Worker = (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<
        Result<weir_processors::pipeline::RunStats, weir_processors::pipeline::PipelineError>,
    >,
);

/// Runs `runnable` against the broker at `addr` until its sender is used.
pub fn spawn(runnable: weir_processors::pipeline::Runnable, addr: &str) -> Worker {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let addr = addr.to_string();
    let task = tokio::spawn(async move {
        runnable
            .run(&addr, async {
                let _ = stopped.await;
            })
            .await
    });
    (stop, task)
}
