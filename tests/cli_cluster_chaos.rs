//! Chaos on a real cluster: three `weir broker` processes, a topic with three
//! replicas and `min.insync.replicas=2`, an idempotent producer with
//! `acks=all` writing numbered records and a consumer reading them, while the
//! harness SIGKILLs the partition's current leader again and again (and
//! restarts it), and SIGSTOPs a follower long enough to drop it from the ISR
//! (then SIGCONTs it).
//!
//! At the end every broker stops cleanly and the checker verifies: every
//! acknowledged record is in the log exactly once and in the order sent;
//! every record a consumer read is still there at the offset it was read
//! from (nothing read was later lost); and the three replicas' `.log` files
//! are byte-identical.
//!
//! The short form (2 kills, one follower stall) runs in every `cargo test`;
//! `WEIR_CHAOS_KILLS=N` sets the number of kills (20 or more for the long
//! form), `WEIR_CHAOS_KEEP=1` keeps the data and broker logs, and `RUST_LOG`
//! traces the brokers and the test's own clients. A wait that times out (no
//! new leader, no acknowledgement after a kill) fails with the partition's
//! leader and ISR, each broker's epoch, log end and high watermark (or how its
//! process ended), and the producer's progress (sent, acknowledged, the
//! record it waits for, its last error).

mod cli_broker_common;
mod cli_cluster_common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cli_cluster_common::{byte_difference, log_bytes_below, wait_for, ProcessCluster};
use weir_client::{
    Admin, Consumer, ConsumerConfig, OffsetReset, Producer, ProducerConfig, ProducerRecord,
};

const TOPIC: &str = "chaos";

/// What the producing task is doing, for a wait that times out.
#[derive(Default)]
struct ProducerProgress {
    /// Records handed to `send`.
    sent: AtomicU64,
    /// The record whose delivery it waits for (they are awaited in order).
    awaiting: AtomicU64,
    /// The last delivery that failed, and why.
    last_error: Mutex<Option<String>>,
}

/// How a broker process ended, if it did: a zombie (exited, not yet reaped
/// by the harness) still shows its wait status in `/proc/<pid>/stat` (the
/// last field), so a broker that died while stopped names the signal.
fn process_end(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    if fields.first() != Some(&"Z") {
        return None;
    }
    let status: i32 = fields.last()?.parse().ok()?;
    Some(match status & 0x7f {
        0 => format!("process {pid} exited with code {}", status >> 8),
        signal => format!("process {pid} was killed by signal {signal}"),
    })
}

/// The cluster's view of the partition, each broker's own (epoch, log end,
/// high watermark) and the producer's: why a wait of the harness timed out.
fn diagnosis(
    cluster: &ProcessCluster,
    runtime: &tokio::runtime::Runtime,
    producer: &ProducerProgress,
    acknowledged: usize,
) -> String {
    let mut lines = vec![match cluster.partition(TOPIC, 0) {
        Some((leader, isr)) => format!("  cluster status: leader {leader}, ISR {isr:?}"),
        None => "  cluster status: no broker answered".to_string(),
    }];
    for node in &cluster.nodes {
        let ended = node
            .child
            .as_ref()
            .and_then(|child| process_end(child.child.id()));
        let view = if node.child.is_none() {
            "down".to_string()
        } else if let Some(ended) = ended {
            ended
        } else if node.stopped {
            "stopped (SIGSTOP)".to_string()
        } else {
            runtime.block_on(async {
                let described = tokio::time::timeout(Duration::from_secs(5), async {
                    Admin::connect(&node.addr())
                        .await?
                        .describe_topic(TOPIC)
                        .await
                })
                .await;
                match described {
                    Ok(Ok(topic)) => topic.partitions.first().map_or_else(
                        || "no partition 0".to_string(),
                        |p| {
                            format!(
                                "epoch {}, log end {}, high watermark {}",
                                p.leader_epoch, p.log_end_offset, p.high_watermark
                            )
                        },
                    ),
                    Ok(Err(error)) => format!("cannot describe the topic: {error}"),
                    Err(_) => "no answer to describe within 5 s".to_string(),
                }
            })
        };
        lines.push(format!("  broker {}: {view}", node.id));
    }
    lines.push(format!(
        "  producer: {} sent, {acknowledged} acknowledged, waiting for record {}; last failed delivery: {}",
        producer.sent.load(Ordering::Relaxed),
        producer.awaiting.load(Ordering::Relaxed),
        producer
            .last_error
            .lock()
            .unwrap()
            .as_deref()
            .unwrap_or("none")
    ));
    lines.join("\n")
}

/// `wait_for`, failing with `diagnose()` when the time is up.
fn wait_or_diagnose(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> bool,
    diagnose: impl FnOnce() -> String,
) {
    let deadline = Instant::now() + limit;
    while !check() {
        if Instant::now() >= deadline {
            panic!("timed out waiting for {what}:\n{}", diagnose());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A consumer of the topic's partition 0 from its first offset.
async fn consumer_from_start(addr: &str) -> Consumer {
    let mut consumer = Consumer::connect(
        addr,
        ConsumerConfig {
            offset_reset: OffsetReset::Earliest,
            ..ConsumerConfig::default()
        },
    )
    .await
    .unwrap();
    consumer.assign(TOPIC, &[0]);
    consumer
}

#[test]
fn acknowledged_records_survive_leader_kills_and_follower_stalls() {
    let kills: usize = std::env::var("WEIR_CHAOS_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    // RUST_LOG traces the test's own clients here (the brokers inherit it).
    if std::env::var("RUST_LOG").is_ok() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
    let mut cluster = ProcessCluster::start(&[]);
    let bootstrap = cluster.bootstrap();
    cluster.create_topic(TOPIC, 1);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(Mutex::new(Vec::<u64>::new()));
    let last_ack = Arc::new(Mutex::new(Instant::now()));
    let read = Arc::new(Mutex::new(BTreeMap::<u64, String>::new()));
    let progress_of_producer = Arc::new(ProducerProgress::default());
    let producing = runtime.spawn({
        let (stop, acknowledged, last_ack, bootstrap, progress) = (
            stop.clone(),
            acknowledged.clone(),
            last_ack.clone(),
            bootstrap.clone(),
            progress_of_producer.clone(),
        );
        async move {
            let producer = Producer::connect(
                &bootstrap,
                ProducerConfig {
                    delivery_timeout: Duration::from_secs(300),
                    // A request to a broker SIGSTOPped before it answered
                    // is retried after 5 s, not Kafka's default 30 s.
                    request_timeout: Duration::from_secs(5),
                    retries: u32::MAX,
                    ..ProducerConfig::default()
                },
            )
            .await
            .unwrap();
            let mut next = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let mut deliveries = Vec::new();
                for _ in 0..50 {
                    let value = format!("{next:010}");
                    let record = ProducerRecord {
                        partition: Some(0),
                        ..ProducerRecord::new(TOPIC, value.as_bytes())
                    };
                    deliveries.push((next, producer.send(record).await.unwrap()));
                    next += 1;
                    progress.sent.store(next, Ordering::Relaxed);
                }
                for (n, delivery) in deliveries {
                    progress.awaiting.store(n, Ordering::Relaxed);
                    match delivery.await {
                        Ok(_) => {
                            acknowledged.lock().unwrap().push(n);
                            *last_ack.lock().unwrap() = Instant::now();
                        }
                        Err(error) => {
                            *progress.last_error.lock().unwrap() =
                                Some(format!("record {n}: {error}"));
                        }
                    }
                }
            }
            producer.close().await.unwrap();
        }
    });
    let consuming = runtime.spawn({
        let (stop, read, bootstrap) = (stop.clone(), read.clone(), bootstrap.clone());
        async move {
            let mut consumer = consumer_from_start(&bootstrap).await;
            while !stop.load(Ordering::Relaxed) {
                if let Ok(records) = consumer.poll(Duration::from_millis(200)).await {
                    let mut read = read.lock().unwrap();
                    for r in records {
                        let value = String::from_utf8(r.value.unwrap().to_vec()).unwrap();
                        read.insert(r.offset, value);
                    }
                }
            }
        }
    });

    // Progress every two seconds, so a stall shows when and for how long.
    let progress = std::thread::spawn({
        let (stop, acknowledged, read) = (stop.clone(), acknowledged.clone(), read.clone());
        move || {
            let started = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_secs(2));
                eprintln!(
                    "{:>5.1} s: {} acknowledged, {} read",
                    started.elapsed().as_secs_f64(),
                    acknowledged.lock().unwrap().len(),
                    read.lock().unwrap().len()
                );
            }
        }
    });
    let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ std::process::id() as u64;
    let mut next_random = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    // A wait that times out says where each broker and the producer are.
    let diagnose = |cluster: &ProcessCluster| {
        diagnosis(
            cluster,
            &runtime,
            &progress_of_producer,
            acknowledged.lock().unwrap().len(),
        )
    };
    let mut failovers = Vec::new();
    for round in 0..kills {
        let acked_before = acknowledged.lock().unwrap().len();
        wait_or_diagnose(
            "records acknowledged before the kill",
            Duration::from_secs(60),
            || acknowledged.lock().unwrap().len() > acked_before,
            || diagnose(&cluster),
        );
        std::thread::sleep(Duration::from_millis(next_random() % 500));
        let (leader, _) = cluster.partition(TOPIC, 0).unwrap();
        eprintln!("round {round}: SIGKILL leader {leader}");
        cluster.kill(leader);
        let killed_at = Instant::now();
        wait_or_diagnose(
            "a new leader",
            Duration::from_secs(60),
            || {
                cluster
                    .partition(TOPIC, 0)
                    .is_some_and(|(l, _)| l != leader && l != 0)
            },
            || diagnose(&cluster),
        );
        // Failover as a producer sees it: from the kill to its first
        // acknowledgement (by the new leader) after it.
        wait_or_diagnose(
            "an acknowledgement after the kill",
            Duration::from_secs(60),
            || *last_ack.lock().unwrap() > killed_at,
            || diagnose(&cluster),
        );
        let failover = *last_ack.lock().unwrap() - killed_at;
        eprintln!(
            "round {round}: first acknowledgement {} ms after the kill",
            failover.as_millis()
        );
        failovers.push(failover);
        cluster.start_node(leader);
        wait_or_diagnose(
            "the killed broker back in the ISR",
            Duration::from_secs(120),
            || {
                cluster
                    .partition(TOPIC, 0)
                    .is_some_and(|(_, isr)| isr.len() == 3)
            },
            || diagnose(&cluster),
        );
        if round % 2 == 1 {
            // Stall a follower past replica.lag.time.max.ms: the ISR shrinks,
            // acks=all goes on with two, and it comes back once resumed.
            let (leader, _) = cluster.partition(TOPIC, 0).unwrap();
            let follower_id = (1..=3).find(|&id| id != leader).unwrap();
            eprintln!("round {round}: SIGSTOP follower {follower_id}");
            cluster.pause(follower_id, true);
            wait_or_diagnose(
                "the stalled follower out of the ISR",
                Duration::from_secs(60),
                || {
                    cluster
                        .partition(TOPIC, 0)
                        .is_some_and(|(_, isr)| !isr.contains(&follower_id))
                },
                || diagnose(&cluster),
            );
            cluster.pause(follower_id, false);
            wait_or_diagnose(
                "the resumed follower back in the ISR",
                Duration::from_secs(120),
                || {
                    cluster
                        .partition(TOPIC, 0)
                        .is_some_and(|(_, isr)| isr.len() == 3)
                },
                || diagnose(&cluster),
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    progress.join().unwrap();
    runtime.block_on(async {
        producing.await.unwrap();
        consuming.await.unwrap();
    });
    wait_for(
        "every replica caught up and in sync",
        Duration::from_secs(120),
        || {
            cluster
                .partition(TOPIC, 0)
                .is_some_and(|(_, isr)| isr.len() == 3)
        },
    );
    let (leader, _) = cluster.partition(TOPIC, 0).unwrap();
    let leader_addr = cluster.node(leader).addr();
    // Read the whole partition from the leader.
    let stored: Vec<(u64, String)> = runtime.block_on(async {
        let mut consumer = consumer_from_start(&leader_addr).await;
        let mut stored = Vec::new();
        let mut empty = 0;
        while empty < 10 {
            let records = consumer.poll(Duration::from_millis(300)).await.unwrap();
            if records.is_empty() {
                empty += 1;
            }
            for r in records {
                stored.push((
                    r.offset,
                    String::from_utf8(r.value.unwrap().to_vec()).unwrap(),
                ));
            }
        }
        stored
    });
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() > 100,
        "the producer made progress: {}",
        acknowledged.len()
    );
    // Exactly once, in order: the idempotent producer's retries never
    // duplicate, and nothing acknowledged is missing.
    let numbers: Vec<u64> = stored.iter().map(|(_, v)| v.parse().unwrap()).collect();
    let mut sorted = numbers.clone();
    sorted.dedup();
    assert_eq!(sorted.len(), numbers.len(), "a record is stored twice");
    assert!(
        numbers.windows(2).all(|w| w[0] < w[1]),
        "records out of order"
    );
    let stored_set: std::collections::BTreeSet<u64> = numbers.iter().copied().collect();
    let lost: Vec<_> = acknowledged
        .iter()
        .filter(|n| !stored_set.contains(n))
        .collect();
    if !lost.is_empty() || std::env::var("WEIR_CHAOS_KEEP").is_ok() {
        let kept = cluster.keep();
        eprintln!(
            "acknowledged {}, stored {}; data and broker logs kept in {}",
            acknowledged.len(),
            numbers.len(),
            kept.display()
        );
    }
    assert!(lost.is_empty(), "acknowledged records lost: {lost:?}");
    // Nothing a consumer read vanished or moved.
    let by_offset: BTreeMap<u64, String> = stored.into_iter().collect();
    for (offset, value) in read.lock().unwrap().iter() {
        assert_eq!(
            by_offset.get(offset),
            Some(value),
            "read at offset {offset}, then lost"
        );
    }
    // Every broker stops cleanly; every replica holds the leader's bytes up
    // to the high watermark (a follower may not have fetched what the
    // leader wrote last, above it, before the stop).
    cluster.terminate_all();
    let high_watermark = by_offset.keys().next_back().map_or(0, |o| o + 1);
    let leader_bytes = log_bytes_below(&cluster.node(leader).data, TOPIC, 0, high_watermark);
    let differences: Vec<String> = cluster
        .nodes
        .iter()
        .filter_map(|node| {
            byte_difference(
                &leader_bytes,
                &log_bytes_below(&node.data, TOPIC, 0, high_watermark),
            )
            .map(|d| format!("broker {} (leader {leader}): {d}", node.id))
        })
        .collect();
    if !differences.is_empty() {
        eprintln!("data and broker logs kept in {}", cluster.keep().display());
    }
    assert!(
        differences.is_empty(),
        "replicas differ below offset {high_watermark}: {differences:#?}"
    );
    failovers.sort();
    eprintln!(
        "{} kills: {} records acknowledged, {} stored, {} read while running; \
         kill to first acknowledgement: median {} ms, max {} ms",
        kills,
        acknowledged.len(),
        by_offset.len(),
        read.lock().unwrap().len(),
        failovers[failovers.len() / 2].as_millis(),
        failovers.last().unwrap().as_millis()
    );
}
