//! Window stages in pipelines against a real broker: every window type gives what a
//! brute-force computation over the same records gives (out of order, late records
//! to a side topic, windows closed by idle time), 1 worker and 3 give the same
//! results, and a worker killed mid-stream loses nothing: its partitions' windows
//! are rebuilt from the commits it made, which stopped at the oldest record an open
//! window held. Every pipeline here keeps one clock per partition
//! (`StreamTime::PerPartition`): under the default, the minimum over a worker's
//! partitions, which records are late depends on the order partitions are read in
//! (`tests/stream_time.rs`).

mod common;

use common::spawn;

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::mpsc;
use weir_client::{
    Admin, Consumer, ConsumerConfig, ConsumerRecord, OffsetReset, Producer, ProducerConfig,
    ProducerRecord,
};
use weir_processors::pipeline::{Pipeline, Runnable};
use weir_processors::window::{StreamTime, Window, WindowSpec};

/// A hang guard only: every wait ends on a condition.
const HANG_GUARD: Duration = Duration::from_secs(120);
const PARTITIONS: u32 = 3;
/// Long enough that a partition never goes idle while its records are read; the
/// windows still open at the end close by it.
const IDLE: Duration = Duration::from_secs(3);
const LATENESS_MS: i64 = 1_500;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Event {
    partition: u32,
    key: u64,
    ts_ms: i64,
    value: u64,
}

/// Per partition, a walk of event time on a grid of seconds, with one record in
/// four held back up to 14 s (out of order, and late past the 1.5 s allowed). Keys
/// live in one partition each, as the window stages require. Every boundary the
/// windows and the lateness put is half a second off the grid, so a wall-clock jump
/// of a partition's time under half a second changes nothing.
fn events(per_partition: usize, seed: u64) -> Vec<Event> {
    let mut state = seed;
    let mut next = move |n: u64| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) % n
    };
    let mut out = Vec::new();
    for partition in 0..PARTITIONS {
        let mut base = 0i64;
        for _ in 0..per_partition {
            base += next(3) as i64 * 1_000;
            let holdback = if next(4) == 0 {
                (1 + next(14) as i64) * 1_000
            } else {
                0
            };
            out.push(Event {
                partition,
                key: u64::from(partition) + u64::from(PARTITIONS) * next(3),
                ts_ms: base - holdback,
                value: 1 + next(99),
            });
        }
    }
    out
}

async fn produce(addr: &str, events: &[Event]) {
    let producer = Producer::connect(addr, ProducerConfig::default())
        .await
        .unwrap();
    let mut deliveries = Vec::new();
    for e in events {
        let value = format!("{},{},{}", e.key, e.ts_ms, e.value);
        let key = e.key.to_string();
        deliveries.push(
            producer
                .send(
                    ProducerRecord::new("events", value.as_bytes())
                        .with_key(key.as_bytes())
                        .with_partition(e.partition)
                        .with_timestamp(e.ts_ms),
                )
                .await
                .unwrap(),
        );
    }
    for delivery in deliveries {
        delivery.await.unwrap();
    }
    producer.close().await.unwrap();
}

fn parse(record: ConsumerRecord) -> Event {
    let text = std::str::from_utf8(record.value.as_deref().unwrap()).unwrap();
    let fields: Vec<&str> = text.split(',').collect();
    Event {
        partition: record.partition,
        key: fields[0].parse().unwrap(),
        ts_ms: fields[1].parse().unwrap(),
        value: fields[2].parse().unwrap(),
    }
}

/// count, sum, min, max.
type Agg = (u64, u64, u64, u64);

fn add(agg: &mut Agg, value: u64) {
    agg.0 += 1;
    agg.1 += value;
    agg.2 = agg.2.min(value);
    agg.3 = agg.3.max(value);
}

fn merge(into: &mut Agg, other: &Agg) {
    into.0 += other.0;
    into.1 += other.1;
    into.2 = into.2.min(other.2);
    into.3 = into.3.max(other.3);
}

const EMPTY: Agg = (0, 0, u64::MAX, 0);

type Results = BTreeMap<(u64, Window), Agg>;

/// What the stages must give: per partition in offset order, the watermark is the
/// largest event time before each record; a record counts in each of its windows
/// whose end plus the lateness is past the watermark, and is late if none is.
fn brute_force_time_windows(events: &[Event], spec: WindowSpec) -> (Results, Vec<Event>) {
    let mut results = Results::new();
    let mut late = Vec::new();
    for partition in 0..PARTITIONS {
        let mut watermark = i64::MIN;
        for e in events.iter().filter(|e| e.partition == partition) {
            let mut counted = false;
            for window in spec.windows_of(e.ts_ms) {
                if window.end_ms + LATENESS_MS > watermark {
                    add(results.entry((e.key, window)).or_insert(EMPTY), e.value);
                    counted = true;
                }
            }
            if !counted {
                late.push(*e);
            }
            watermark = watermark.max(e.ts_ms);
        }
    }
    (results, late)
}

/// Sessions the same way: before each record, the sessions whose last record plus
/// the gap plus the lateness is behind the watermark close; a record joins (and
/// merges) every open session of its key within the gap, or starts one unless it is
/// that far behind itself.
fn brute_force_sessions(events: &[Event], gap_ms: i64) -> Results {
    let mut results = Results::new();
    for partition in 0..PARTITIONS {
        let mut watermark = i64::MIN;
        // key -> open sessions (first, last, agg)
        let mut open: BTreeMap<u64, Vec<(i64, i64, Agg)>> = BTreeMap::new();
        let close = |open: &mut BTreeMap<u64, Vec<(i64, i64, Agg)>>,
                     results: &mut Results,
                     watermark: i64| {
            for (key, sessions) in open.iter_mut() {
                sessions.retain(|(first, last, agg)| {
                    let closed = last + gap_ms + LATENESS_MS < watermark;
                    if closed {
                        let window = Window {
                            start_ms: *first,
                            end_ms: last + 1,
                        };
                        results.insert((*key, window), *agg);
                    }
                    !closed
                });
            }
        };
        for e in events.iter().filter(|e| e.partition == partition) {
            close(&mut open, &mut results, watermark);
            let sessions = open.entry(e.key).or_default();
            let (touching, rest): (Vec<_>, Vec<_>) =
                sessions.drain(..).partition(|(first, last, _)| {
                    first - gap_ms <= e.ts_ms && e.ts_ms <= last + gap_ms
                });
            *sessions = rest;
            if touching.is_empty() && e.ts_ms + gap_ms + LATENESS_MS < watermark {
                watermark = watermark.max(e.ts_ms);
                continue;
            }
            let mut merged = (e.ts_ms, e.ts_ms, EMPTY);
            add(&mut merged.2, e.value);
            for (first, last, agg) in touching {
                merged.0 = merged.0.min(first);
                merged.1 = merged.1.max(last);
                merge(&mut merged.2, &agg);
            }
            sessions.push(merged);
            watermark = watermark.max(e.ts_ms);
        }
        close(&mut open, &mut results, i64::MAX);
    }
    results
}

type Sender = mpsc::UnboundedSender<((u64, Window), Agg)>;

/// The pipeline over `spec`, folding count, sum, min and max, its results sent to
/// `tx`; event time from the record's timestamp, or from the value when
/// `time_from_value`.
fn windowed(
    group: &str,
    spec: WindowSpec,
    time_from_value: bool,
    idle: Duration,
    tx: Sender,
) -> Runnable {
    let windows = Pipeline::from_topic("events")
        .group(group)
        .map(parse)
        .key_by_local(|e| e.key)
        .window(spec)
        .name("folded")
        .allowed_lateness(Duration::from_millis(LATENESS_MS as u64))
        .idle_timeout(idle)
        // Which records are late is compared across runs: each partition on its own
        // clock, so it does not depend on how partitions share workers.
        .stream_time(StreamTime::PerPartition)
        .late_to_topic(&format!("{group}-late"));
    let windows = if time_from_value {
        windows.event_time(|e, _| e.ts_ms)
    } else {
        windows
    };
    windows
        .fold(|| EMPTY, |agg: &mut Agg, e: Event| add(agg, e.value), merge)
        .for_each(move |result, _| {
            assert!(result.is_final, "emit on close gives final results only");
            let _ = tx.send(((result.key, result.window), result.value));
        })
        .commit_interval(Duration::from_millis(100))
}

/// Receives results until every expected (key, window) has one; every repeat of a
/// result must carry the same value.
async fn collect(
    rx: &mut mpsc::UnboundedReceiver<((u64, Window), Agg)>,
    expected: &Results,
) -> Results {
    let mut seen = Results::new();
    tokio::time::timeout(HANG_GUARD, async {
        while !expected.keys().all(|k| seen.contains_key(k)) {
            let (key, value) = rx.recv().await.expect("workers run");
            if let Some(before) = seen.insert(key, value) {
                assert_eq!(before, value, "a repeated result of {key:?} differs");
            }
        }
    })
    .await
    .unwrap_or_else(|_| {
        let missing: Vec<_> = expected
            .keys()
            .filter(|k| !seen.contains_key(*k))
            .take(5)
            .collect();
        panic!("results missing, for example {missing:?}")
    });
    seen
}

async fn read_topic(addr: &str, topic: &str, count: usize) -> Vec<String> {
    let mut consumer = Consumer::connect(
        addr,
        ConsumerConfig {
            offset_reset: OffsetReset::Earliest,
            ..ConsumerConfig::default()
        },
    )
    .await
    .unwrap();
    let partitions: Vec<u32> = (0..PARTITIONS).collect();
    consumer.assign(topic, &partitions);
    let mut values = Vec::new();
    tokio::time::timeout(HANG_GUARD, async {
        while values.len() < count {
            for record in consumer.poll(Duration::from_millis(100)).await.unwrap() {
                values.push(String::from_utf8(record.value.unwrap().to_vec()).unwrap());
            }
        }
    })
    .await
    .expect("every late record arrives");
    values.sort();
    values
}

async fn create_topics(admin: &Admin, topics: &[&str]) {
    for topic in topics {
        admin
            .create_topic(topic, PARTITIONS, 1, &Default::default())
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_window_type_through_a_pipeline_matches_brute_force() {
    let data = tempfile::tempdir().unwrap();
    let broker = common::start_broker(data.path(), 6_000).await;
    let addr = broker.local_addr().to_string();
    let admin = Admin::connect(&addr).await.unwrap();
    let specs = [
        (
            "tumbling",
            WindowSpec::tumbling(Duration::from_secs(5)),
            false,
        ),
        (
            "hopping",
            WindowSpec::hopping(Duration::from_secs(10), Duration::from_secs(5)),
            true,
        ),
        (
            "sliding",
            WindowSpec::sliding(Duration::from_secs(10), Duration::from_secs(2)),
            true,
        ),
    ];
    let mut topics = vec!["events".to_string(), "session-late".to_string()];
    topics.extend(specs.iter().map(|(name, _, _)| format!("{name}-late")));
    create_topics(
        &admin,
        &topics.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
    let events = events(150, 7);
    produce(&addr, &events).await;

    let mut runs = Vec::new();
    for (name, spec, from_value) in specs {
        let (tx, rx) = mpsc::unbounded_channel();
        let (expected, late) = brute_force_time_windows(&events, spec);
        assert!(!late.is_empty(), "{name}: the stream has late records");
        runs.push((
            name,
            rx,
            expected,
            late,
            spawn(windowed(name, spec, from_value, IDLE, tx), &addr),
        ));
    }
    let session_gap_ms = 2_000;
    let (tx, mut session_rx) = mpsc::unbounded_channel();
    let session_run = spawn(
        windowed(
            "session",
            WindowSpec::session(Duration::from_millis(session_gap_ms as u64)),
            true,
            IDLE,
            tx,
        ),
        &addr,
    );

    for (name, mut rx, expected, late, (stop, task)) in runs {
        let seen = collect(&mut rx, &expected).await;
        assert_eq!(seen, expected, "{name}: results");
        let mut late_values: Vec<String> = late
            .iter()
            .map(|e| format!("{},{},{}", e.key, e.ts_ms, e.value))
            .collect();
        late_values.sort();
        assert_eq!(
            read_topic(&addr, &format!("{name}-late"), late_values.len()).await,
            late_values,
            "{name}: late records, as read"
        );
        stop.send(()).unwrap();
        let stats = task.await.unwrap().unwrap();
        assert_eq!(stats.records_in, events.len() as u64);
        assert_eq!(
            stats.records_late,
            late.len() as u64,
            "{name}: late records counted"
        );
        assert_eq!(
            stats.records_late_out,
            late.len() as u64,
            "{name}: each late record once"
        );
    }
    let expected = brute_force_sessions(&events, session_gap_ms);
    let seen = collect(&mut session_rx, &expected).await;
    assert_eq!(seen, expected, "sessions");
    session_run.0.send(()).unwrap();
    session_run.1.await.unwrap().unwrap();
    broker.shutdown().await.unwrap();
}

/// (partition, window, rank) -> (key, count, error).
type Ranked = BTreeMap<(u32, Window, usize), (u64, u64, u64)>;

/// One top-K row as sent by the workers.
type Row = ((u32, Window, usize), (u64, u64, u64));

const TOP: usize = 3;

fn top_k(group: &str, spec: WindowSpec, tx: mpsc::UnboundedSender<Row>) -> Runnable {
    Pipeline::from_topic("events")
        .group(group)
        .map(parse)
        .key_by_local(|e| e.key)
        .window(spec)
        .name("trending")
        .allowed_lateness(Duration::from_millis(LATENESS_MS as u64))
        .idle_timeout(IDLE)
        .stream_time(StreamTime::PerPartition)
        .top_k(TOP)
        .for_each(move |row, context| {
            let _ = tx.send((
                (context.partition, row.window, row.rank),
                (row.key, row.count, row.error),
            ));
        })
        .commit_interval(Duration::from_millis(100))
}

/// The exact top K of each partition's windows, heaviest first, ties by key.
fn brute_force_top_k(events: &[Event], spec: WindowSpec) -> Ranked {
    let (counts, _) = brute_force_time_windows(events, spec);
    let mut by_window: BTreeMap<(u32, Window), Vec<(u64, u64)>> = BTreeMap::new();
    for ((key, window), agg) in counts {
        let partition = (key % u64::from(PARTITIONS)) as u32;
        by_window
            .entry((partition, window))
            .or_default()
            .push((agg.0, key));
    }
    let mut ranked = Ranked::new();
    for ((partition, window), mut keys) in by_window {
        keys.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        for (i, (count, key)) in keys.into_iter().take(TOP).enumerate() {
            ranked.insert((partition, window, i + 1), (key, count, 0));
        }
    }
    ranked
}

async fn collect_ranked(rx: &mut mpsc::UnboundedReceiver<Row>, expected: &Ranked) -> Ranked {
    let mut seen = Ranked::new();
    tokio::time::timeout(HANG_GUARD, async {
        while !expected.keys().all(|k| seen.contains_key(k)) {
            let (key, value) = rx.recv().await.expect("workers run");
            if let Some(before) = seen.insert(key, value) {
                assert_eq!(before, value, "a repeated row of {key:?} differs");
            }
        }
    })
    .await
    .expect("every top-K row arrives");
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_worker_and_three_give_the_same_windows_and_top_k() {
    let data = tempfile::tempdir().unwrap();
    let broker = common::start_broker(data.path(), 6_000).await;
    let addr = broker.local_addr().to_string();
    let admin = Admin::connect(&addr).await.unwrap();
    create_topics(&admin, &["events", "three-late", "one-late"]).await;
    let tumbling = WindowSpec::tumbling(Duration::from_secs(5));
    let sliding = WindowSpec::sliding(Duration::from_secs(10), Duration::from_secs(2));
    let events = events(120, 11);
    let (expected, _) = brute_force_time_windows(&events, tumbling);
    let expected_top = brute_force_top_k(&events, sliding);

    // Three workers of each pipeline share the partitions before the input arrives.
    let (tx, mut three_rx) = mpsc::unbounded_channel();
    let (top_tx, mut three_top_rx) = mpsc::unbounded_channel();
    let mut workers = Vec::new();
    for _ in 0..3 {
        workers.push(spawn(
            windowed("three", tumbling, false, IDLE, tx.clone()),
            &addr,
        ));
        workers.push(spawn(top_k("three-top", sliding, top_tx.clone()), &addr));
    }
    common::wait_until_shared(&admin, PARTITIONS, "three", 3).await;
    common::wait_until_shared(&admin, PARTITIONS, "three-top", 3).await;
    produce(&addr, &events).await;
    let three = collect(&mut three_rx, &expected).await;
    let three_top = collect_ranked(&mut three_top_rx, &expected_top).await;

    let (tx, mut one_rx) = mpsc::unbounded_channel();
    let (top_tx, mut one_top_rx) = mpsc::unbounded_channel();
    workers.push(spawn(windowed("one", tumbling, false, IDLE, tx), &addr));
    workers.push(spawn(top_k("one-top", sliding, top_tx), &addr));
    let one = collect(&mut one_rx, &expected).await;
    let one_top = collect_ranked(&mut one_top_rx, &expected_top).await;

    assert_eq!(one, expected);
    assert_eq!(three, one, "3 workers give what 1 gives");
    // At the default budget every key is held, so the top K is exact (error 0).
    assert_eq!(one_top, expected_top);
    assert_eq!(three_top, one_top);
    for (stop, task) in workers {
        stop.send(()).unwrap();
        task.await.unwrap().unwrap();
    }
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_loses_no_window_its_partition_is_rebuilt_from_its_commit() {
    let data = tempfile::tempdir().unwrap();
    let broker = common::start_broker(data.path(), 6_000).await;
    let addr = broker.local_addr().to_string();
    let admin = Admin::connect(&addr).await.unwrap();
    create_topics(&admin, &["events", "crash-late"]).await;
    let sliding = WindowSpec::sliding(Duration::from_secs(10), Duration::from_secs(2));
    let events = events(200, 23);
    let (expected, _) = brute_force_time_windows(&events, sliding);
    let (first_half, second_half): (Vec<Event>, Vec<Event>) = {
        let mut seen_per_partition = [0usize; PARTITIONS as usize];
        events.iter().partition(|e| {
            seen_per_partition[e.partition as usize] += 1;
            seen_per_partition[e.partition as usize] <= 100
        })
    };

    // Idle long enough that the windows open at the end of the first half stay open
    // until the kill.
    let idle = Duration::from_secs(8);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut workers: Vec<_> = (0..3)
        .map(|_| spawn(windowed("crash", sliding, true, idle, tx.clone()), &addr))
        .collect();
    common::wait_until_shared(&admin, PARTITIONS, "crash", 3).await;
    produce(&addr, &first_half).await;
    // Every partition committed past its start but short of its end: the open
    // windows hold the commits back.
    tokio::time::timeout(HANG_GUARD, async {
        loop {
            let group = admin.describe_group("crash").await.unwrap();
            let held_back = group.partitions.len() == PARTITIONS as usize
                && group.partitions.iter().all(|p| {
                    matches!((p.committed_offset, p.end_offset), (Some(c), Some(end)) if c > 0 && c < end)
                });
            if held_back {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("every partition is committed up to its open windows");

    let (_stop, killed) = workers.remove(0);
    killed.abort();
    assert!(killed.await.unwrap_err().is_cancelled());
    produce(&addr, &second_half).await;

    let seen = collect(&mut rx, &expected).await;
    assert_eq!(
        seen, expected,
        "every window, with every record, after the kill"
    );
    for (stop, task) in workers {
        stop.send(()).unwrap();
        task.await.unwrap().unwrap();
    }
    broker.shutdown().await.unwrap();
}

/// Waits until every partition of `group` is committed past its start but short of
/// its end: the open windows hold the commits back.
async fn wait_until_held_back(admin: &Admin, group: &str) {
    tokio::time::timeout(HANG_GUARD, async {
        loop {
            let description = admin.describe_group(group).await.unwrap();
            let held_back = description.partitions.len() == PARTITIONS as usize
                && description.partitions.iter().all(|p| {
                    matches!((p.committed_offset, p.end_offset), (Some(c), Some(end)) if c > 0 && c < end)
                });
            if held_back {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("every partition is committed up to its open windows");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_revoked_mid_stream_move_with_their_open_windows() {
    let data = tempfile::tempdir().unwrap();
    let broker = common::start_broker(data.path(), 6_000).await;
    let addr = broker.local_addr().to_string();
    let admin = Admin::connect(&addr).await.unwrap();
    create_topics(&admin, &["events", "joined-late"]).await;
    let sliding = WindowSpec::sliding(Duration::from_secs(10), Duration::from_secs(2));
    let events = events(200, 31);
    let (expected, _) = brute_force_time_windows(&events, sliding);
    let (first_half, second_half): (Vec<Event>, Vec<Event>) = {
        let mut seen_per_partition = [0usize; PARTITIONS as usize];
        events.iter().partition(|e| {
            seen_per_partition[e.partition as usize] += 1;
            seen_per_partition[e.partition as usize] <= 100
        })
    };
    let idle = Duration::from_secs(8);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut workers = vec![spawn(
        windowed("joined", sliding, true, idle, tx.clone()),
        &addr,
    )];
    common::wait_until_shared(&admin, PARTITIONS, "joined", 1).await;
    produce(&addr, &first_half).await;
    wait_until_held_back(&admin, "joined").await;
    // Two more workers join: the first gives up two partitions with windows open,
    // and the group consumer commits them at their consumed positions.
    for _ in 0..2 {
        workers.push(spawn(
            windowed("joined", sliding, true, idle, tx.clone()),
            &addr,
        ));
    }
    common::wait_until_shared(&admin, PARTITIONS, "joined", 3).await;
    produce(&addr, &second_half).await;
    let seen = collect(&mut rx, &expected).await;
    assert_eq!(
        seen, expected,
        "every window, with every record, across the rebalance"
    );
    for (stop, task) in workers {
        stop.send(()).unwrap();
        task.await.unwrap().unwrap();
    }
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stopped_mid_stream_hands_its_open_windows_over() {
    let data = tempfile::tempdir().unwrap();
    let broker = common::start_broker(data.path(), 6_000).await;
    let addr = broker.local_addr().to_string();
    let admin = Admin::connect(&addr).await.unwrap();
    create_topics(&admin, &["events", "handover-late"]).await;
    let hopping = WindowSpec::hopping(Duration::from_secs(10), Duration::from_secs(5));
    let events = events(200, 43);
    let (expected, _) = brute_force_time_windows(&events, hopping);
    let (first_half, second_half): (Vec<Event>, Vec<Event>) = {
        let mut seen_per_partition = [0usize; PARTITIONS as usize];
        events.iter().partition(|e| {
            seen_per_partition[e.partition as usize] += 1;
            seen_per_partition[e.partition as usize] <= 100
        })
    };
    let idle = Duration::from_secs(8);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut workers: Vec<_> = (0..2)
        .map(|_| spawn(windowed("handover", hopping, true, idle, tx.clone()), &addr))
        .collect();
    common::wait_until_shared(&admin, PARTITIONS, "handover", 2).await;
    produce(&addr, &first_half).await;
    wait_until_held_back(&admin, "handover").await;
    // The first worker stops: it commits up to its open windows and leaves.
    let (stop, stopped) = workers.remove(0);
    stop.send(()).unwrap();
    stopped.await.unwrap().unwrap();
    common::wait_until_shared(&admin, PARTITIONS, "handover", 1).await;
    produce(&addr, &second_half).await;
    let seen = collect(&mut rx, &expected).await;
    assert_eq!(
        seen, expected,
        "every window, with every record, after the handover"
    );
    for (stop, task) in workers {
        stop.send(()).unwrap();
        task.await.unwrap().unwrap();
    }
    broker.shutdown().await.unwrap();
}
