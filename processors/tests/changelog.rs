//! Window stages with a changelog (counts, and top-K sketches) against a real broker: a partition is committed at
//! its consumed position whatever windows are open (its state is saved as a snapshot
//! first), and a worker that takes it over, after a kill, a rebalance or a stop,
//! restores the snapshot the commit names and counts every record exactly once.
//! Chunks no commit names (a worker that died between writing a snapshot and
//! committing) are ignored and deleted; a snapshot the commit names and the
//! changelog lost stops the worker with a sentence.

mod common;

use common::{spawn, Worker};

use common::{produce_keyed_events, tumbling_counts};

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::mpsc;
use weir_client::{
    Admin, Consumer, ConsumerConfig, OffsetReset, Producer, ProducerConfig, ProducerRecord,
};
use weir_processors::pipeline::{Pipeline, PipelineError, Runnable};
use weir_processors::window::{Window, WindowSpec};

/// A hang guard only: every wait ends on a condition.
const HANG_GUARD: Duration = Duration::from_secs(120);
const PARTITIONS: u32 = 3;
const BASE_MS: i64 = 1_700_000_000_000;
const WINDOW: Duration = Duration::from_secs(4);
/// Long enough that no partition goes idle while its records are read, so the
/// windows open at a kill stay open until the next owner has them.
const IDLE: Duration = Duration::from_secs(6);

/// (partition, key, event time) of each record: keys live in one partition each,
/// time walks forward by 0 to 999 ms with one record in five up to 1.5 s back.
fn events(per_partition: usize, seed: u64) -> Vec<(u32, u64, i64)> {
    let mut state = seed;
    let mut next = move |n: u64| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) % n
    };
    let mut out = Vec::new();
    for partition in 0..PARTITIONS {
        let mut t = BASE_MS;
        for _ in 0..per_partition {
            t += next(1_000) as i64;
            let back = if next(5) == 0 { next(1_500) as i64 } else { 0 };
            let key = u64::from(partition) + u64::from(PARTITIONS) * next(4);
            out.push((partition, key, t - back));
        }
    }
    out
}

/// The events cut in `parts` pieces, each with the next share of every partition's.
fn split(
    events: &[(u32, u64, i64)],
    per_partition: usize,
    parts: usize,
) -> Vec<Vec<(u32, u64, i64)>> {
    let mut out = vec![Vec::new(); parts];
    let mut seen = [0usize; PARTITIONS as usize];
    for e in events {
        let i = seen[e.0 as usize] * parts / per_partition;
        seen[e.0 as usize] += 1;
        out[i].push(*e);
    }
    out
}

type Counted = ((u64, Window), u64);

fn counting(group: &str, tx: mpsc::UnboundedSender<Counted>) -> Runnable {
    Pipeline::from_topic("events")
        .group(group)
        .key_by_local(|r| -> u64 {
            std::str::from_utf8(r.key.as_deref().unwrap())
                .unwrap()
                .parse()
                .unwrap()
        })
        .window(WindowSpec::tumbling(WINDOW))
        .name("counts")
        .changelog()
        .allowed_lateness(Duration::from_millis(2_000))
        .idle_timeout(IDLE)
        .count()
        .for_each(move |result, _| {
            let _ = tx.send(((result.key, result.window), result.value));
        })
        .commit_interval(Duration::from_millis(100))
}

async fn stop(workers: Vec<Worker>) {
    for (stop, task) in workers {
        let _ = stop.send(());
        task.await.unwrap().unwrap();
    }
}

/// Receives results until every expected (key, window) has its count; a result
/// given again must carry the same count.
async fn collect(
    rx: &mut mpsc::UnboundedReceiver<Counted>,
    expected: &BTreeMap<(u64, i64), u64>,
) -> BTreeMap<(u64, i64), u64> {
    let mut seen = BTreeMap::new();
    tokio::time::timeout(HANG_GUARD, async {
        while !expected.keys().all(|k| seen.contains_key(k)) {
            let ((key, window), count) = rx.recv().await.expect("workers run");
            if let Some(before) = seen.insert((key, window.start_ms), count) {
                assert_eq!(
                    before, count,
                    "a repeated result of {key} at {window:?} differs"
                );
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

/// Equal maps, or a panic naming the entries that differ.
fn assert_counts(
    seen: &BTreeMap<(u64, i64), u64>,
    expected: &BTreeMap<(u64, i64), u64>,
    what: &str,
) {
    let differ: Vec<_> = expected
        .iter()
        .filter(|(k, v)| seen.get(k) != Some(v))
        .map(|(k, v)| (*k, *v, seen.get(k).copied()))
        .chain(
            seen.iter()
                .filter(|(k, _)| !expected.contains_key(k))
                .map(|(k, v)| (*k, 0, Some(*v))),
        )
        .collect();
    assert!(
        differ.is_empty(),
        "{what}: (key, window) expected, seen: {differ:?}"
    );
}

/// Waits until every partition of `group` is committed at its end offset: with a
/// changelog, open windows hold no commit back.
async fn wait_until_committed_at_end(admin: &Admin, group: &str) {
    tokio::time::timeout(HANG_GUARD, async {
        loop {
            let description = admin.describe_group(group).await.unwrap();
            let at_end = description.partitions.len() == PARTITIONS as usize
                && description.partitions.iter().all(|p| {
                    matches!((p.committed_offset, p.end_offset), (Some(c), Some(end)) if end > 0 && c == end)
                });
            if at_end {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("every partition is committed at its end, open windows or not");
}

/// The changelog's live records: key -> value (tombstones remove).
async fn changelog(addr: &str, group: &str) -> BTreeMap<String, Vec<u8>> {
    let topic = format!("{group}-counts-changelog");
    let admin = Admin::connect(addr).await.unwrap();
    let info = admin.describe_topic(&topic).await.unwrap();
    let mut consumer = Consumer::connect(
        addr,
        ConsumerConfig {
            offset_reset: OffsetReset::Earliest,
            fetch_max_wait: Duration::from_millis(50),
            ..ConsumerConfig::default()
        },
    )
    .await
    .unwrap();
    let partitions: Vec<u32> = (0..info.partition_count).collect();
    consumer.assign(&topic, &partitions);
    let ends: BTreeMap<u32, u64> = consumer.end_offsets().await.unwrap().into_iter().collect();
    let mut live = BTreeMap::new();
    tokio::time::timeout(HANG_GUARD, async {
        loop {
            for r in consumer.poll(Duration::from_millis(50)).await.unwrap() {
                let key = String::from_utf8(r.key.unwrap().to_vec()).unwrap();
                match r.value {
                    Some(value) => live.insert(key, value.to_vec()),
                    None => live.remove(&key),
                };
            }
            let positions = consumer.consumed_positions();
            if positions.len() == ends.len() && positions.iter().all(|(p, at)| *at >= ends[p]) {
                return;
            }
        }
    })
    .await
    .expect("the changelog is read to its end");
    live
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_s_open_windows_come_back_from_the_changelog_not_a_replay() {
    let data = tempfile::tempdir().unwrap();
    let broker = common::start_broker(data.path(), 6_000).await;
    let addr = broker.local_addr().to_string();
    let admin = Admin::connect(&addr).await.unwrap();
    admin
        .create_topic("events", PARTITIONS, 1, &Default::default())
        .await
        .unwrap();
    let all = events(300, 7);
    let expected = tumbling_counts(&all, WINDOW);
    let [first, second]: [Vec<_>; 2] = split(&all, 300, 2).try_into().unwrap();

    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut workers: Vec<_> = (0..2)
        .map(|_| spawn(counting("crash", tx.clone()), &addr))
        .collect();
    common::wait_until_shared(&admin, PARTITIONS, "crash", 2).await;
    produce_keyed_events(&addr, &first).await;
    // Committed at the end of the first half with windows still open (the idle
    // timeout has not passed): nothing is left to replay, so what the next owner
    // counts of those windows can only come from the snapshots.
    wait_until_committed_at_end(&admin, "crash").await;
    let saved = changelog(&addr, "crash").await;
    assert!(!saved.is_empty(), "snapshots are in the changelog");

    let (_stop, killed) = workers.remove(0);
    killed.abort();
    assert!(killed.await.unwrap_err().is_cancelled());
    produce_keyed_events(&addr, &second).await;
    let seen = collect(&mut rx, &expected).await;
    assert_counts(
        &seen,
        &expected,
        "every window counts every record once, after the kill",
    );
    stop(workers).await;

    // Superseded snapshots are deleted: at most one live snapshot per partition.
    let live = changelog(&addr, "crash").await;
    let mut snapshots: Vec<&str> = live.keys().map(|k| k.rsplit_once('/').unwrap().0).collect();
    snapshots.dedup();
    assert!(snapshots.len() <= PARTITIONS as usize, "{snapshots:?}");
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_and_handed_over_partitions_keep_their_counts() {
    let data = tempfile::tempdir().unwrap();
    let broker = common::start_broker(data.path(), 6_000).await;
    let addr = broker.local_addr().to_string();
    let admin = Admin::connect(&addr).await.unwrap();
    admin
        .create_topic("events", PARTITIONS, 1, &Default::default())
        .await
        .unwrap();
    let all = events(300, 20);
    let expected = tumbling_counts(&all, WINDOW);
    let parts = split(&all, 300, 3);

    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut workers = vec![spawn(counting("moving", tx.clone()), &addr)];
    common::wait_until_shared(&admin, PARTITIONS, "moving", 1).await;
    produce_keyed_events(&addr, &parts[0]).await;
    wait_until_committed_at_end(&admin, "moving").await;
    // Two workers join: the first gives up two partitions with windows open, which
    // the group consumer commits without the snapshot's name.
    workers.push(spawn(counting("moving", tx.clone()), &addr));
    workers.push(spawn(counting("moving", tx.clone()), &addr));
    common::wait_until_shared(&admin, PARTITIONS, "moving", 3).await;
    produce_keyed_events(&addr, &parts[1]).await;
    wait_until_committed_at_end(&admin, "moving").await;
    // The first worker stops: its last commit names its last snapshots.
    let (first_stop, first) = workers.remove(0);
    first_stop.send(()).unwrap();
    first.await.unwrap().unwrap();
    common::wait_until_shared(&admin, PARTITIONS, "moving", 2).await;
    produce_keyed_events(&addr, &parts[2]).await;
    let seen = collect(&mut rx, &expected).await;
    assert_counts(
        &seen,
        &expected,
        "every window counts every record once across the moves",
    );
    stop(workers).await;
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_no_commit_names_are_ignored_and_a_lost_snapshot_stops_the_worker() {
    let data = tempfile::tempdir().unwrap();
    let broker = common::start_broker(data.path(), 6_000).await;
    let addr = broker.local_addr().to_string();
    let admin = Admin::connect(&addr).await.unwrap();
    admin
        .create_topic("events", PARTITIONS, 1, &Default::default())
        .await
        .unwrap();
    let all = events(200, 3);
    let expected = tumbling_counts(&all, WINDOW);
    let [first, second]: [Vec<_>; 2] = split(&all, 200, 2).try_into().unwrap();

    let (tx, mut rx) = mpsc::unbounded_channel();
    let worker = spawn(counting("zombie", tx.clone()), &addr);
    common::wait_until_shared(&admin, PARTITIONS, "zombie", 1).await;
    produce_keyed_events(&addr, &first).await;
    wait_until_committed_at_end(&admin, "zombie").await;
    stop(vec![worker]).await;

    // What a worker killed between writing a snapshot and committing leaves: chunks
    // of a snapshot no commit names, here with a count far from the truth.
    let before = changelog(&addr, "zombie").await;
    let producer = Producer::connect(&addr, ProducerConfig::default())
        .await
        .unwrap();
    let garbage_key = "events/0/00000000deadbeef/0";
    producer
        .send(
            ProducerRecord::new("zombie-counts-changelog", b"not a snapshot")
                .with_key(garbage_key.as_bytes())
                .with_partition(0),
        )
        .await
        .unwrap()
        .await
        .unwrap();

    let worker = spawn(counting("zombie", tx.clone()), &addr);
    produce_keyed_events(&addr, &second).await;
    let seen = collect(&mut rx, &expected).await;
    assert_counts(
        &seen,
        &expected,
        "the named snapshot is restored, the other ignored",
    );
    stop(vec![worker]).await;
    let after = changelog(&addr, "zombie").await;
    assert!(
        !after.contains_key(garbage_key),
        "the unnamed chunk is deleted"
    );

    // The changelog loses the snapshots the commits name: the worker stops with a
    // sentence instead of counting from nothing.
    let named = after.keys().cloned().collect::<Vec<_>>();
    assert!(!named.is_empty());
    assert_ne!(before, after, "the second run saved snapshots of its own");
    for key in &named {
        let partition: u32 = key.split('/').nth(1).unwrap().parse().unwrap();
        let tombstone = ProducerRecord {
            value: None,
            ..ProducerRecord::new("zombie-counts-changelog", &[])
                .with_key(key.as_bytes())
                .with_partition(partition)
        };
        producer.send(tombstone).await.unwrap().await.unwrap();
    }
    let (_stop, task) = spawn(counting("zombie", tx), &addr);
    let error = tokio::time::timeout(HANG_GUARD, task)
        .await
        .expect("the worker stops")
        .unwrap()
        .unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, PipelineError::Restore { .. }), "{text}");
    assert!(
        text.contains("zombie-counts-changelog") && text.contains("\"counts\""),
        "{text}"
    );
    broker.shutdown().await.unwrap();
}

/// The pipeline a worker process runs: the counts of `counting`, written to the
/// topic `counts` keyed by key and window start.
fn counting_to_topic(group: &str) -> Runnable {
    Pipeline::from_topic("events")
        .group(group)
        .key_by_local(|r| -> u64 {
            std::str::from_utf8(r.key.as_deref().unwrap())
                .unwrap()
                .parse()
                .unwrap()
        })
        .window(WindowSpec::tumbling(WINDOW))
        .name("counts")
        .changelog()
        .allowed_lateness(Duration::from_millis(2_000))
        .idle_timeout(IDLE)
        .count()
        .to_topic("counts", |result| {
            let key = format!("{}@{}", result.key, result.window.start_ms);
            (
                Some(key.into_bytes()),
                result.value.to_string().into_bytes(),
            )
        })
        .commit_interval(Duration::from_millis(100))
}

/// The top 2 keys per tumbling window of each partition, written to the topic `top`
/// keyed by partition, window start and rank, as `key,count,error`.
fn top_two_to_topic(group: &str) -> Runnable {
    Pipeline::from_topic("events")
        .group(group)
        .key_by_local(|r| -> u64 {
            std::str::from_utf8(r.key.as_deref().unwrap())
                .unwrap()
                .parse()
                .unwrap()
        })
        .window(WindowSpec::tumbling(WINDOW))
        .name("top")
        .changelog()
        .allowed_lateness(Duration::from_millis(2_000))
        .idle_timeout(IDLE)
        .top_k_within(2, 16 * 1024)
        .map_with_context(|row, context| (context.partition, row))
        .to_topic("top", |(partition, row)| {
            let key = format!("{partition}/{}/{}", row.window.start_ms, row.rank);
            let value = format!("{},{},{}", row.key, row.count, row.error);
            (Some(key.into_bytes()), value.into_bytes())
        })
        .commit_interval(Duration::from_millis(100))
}

/// Not a test of its own: the body of a worker process that
/// `a_worker_process_killed_with_sigkill_loses_no_count_and_no_sketch_count` starts (this test binary
/// again, with `--ignored` and `WEIR_TEST_WORKER_BROKER` set): the counting and the
/// top-2 pipelines, each as a member of its group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the body of a worker process that a test starts"]
async fn worker_process() {
    let Ok(addr) = std::env::var("WEIR_TEST_WORKER_BROKER") else {
        return;
    };
    let (counts, top) = tokio::join!(
        counting_to_topic("processes").run(&addr, std::future::pending::<()>()),
        top_two_to_topic("processes-top").run(&addr, std::future::pending::<()>()),
    );
    counts.unwrap();
    top.unwrap();
}

struct WorkerProcess(std::process::Child);

impl WorkerProcess {
    fn start(addr: &str) -> WorkerProcess {
        let child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "worker_process",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("WEIR_TEST_WORKER_BROKER", addr)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        WorkerProcess(child)
    }

    /// SIGKILL: no shutdown, no last commit, no leaving the group.
    fn kill(mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_process_killed_with_sigkill_loses_no_count_and_no_sketch_count() {
    let data = tempfile::tempdir().unwrap();
    let broker = common::start_broker(data.path(), 6_000).await;
    let addr = broker.local_addr().to_string();
    let admin = Admin::connect(&addr).await.unwrap();
    for topic in ["events", "counts", "top"] {
        admin
            .create_topic(topic, PARTITIONS, 1, &Default::default())
            .await
            .unwrap();
    }
    let all = events(300, 41);
    let expected = tumbling_counts(&all, WINDOW);
    let [first, second]: [Vec<_>; 2] = split(&all, 300, 2).try_into().unwrap();

    let mut workers: Vec<_> = (0..3).map(|_| WorkerProcess::start(&addr)).collect();
    common::wait_until_shared(&admin, PARTITIONS, "processes", 3).await;
    common::wait_until_shared(&admin, PARTITIONS, "processes-top", 3).await;
    produce_keyed_events(&addr, &first).await;
    wait_until_committed_at_end(&admin, "processes").await;
    wait_until_committed_at_end(&admin, "processes-top").await;
    workers.remove(0).kill();
    produce_keyed_events(&addr, &second).await;

    // Read `counts` until every (key, window) has a count; the last of each wins
    // (a window that closed after the last commit may be written again).
    let mut consumer = Consumer::connect(
        &addr,
        ConsumerConfig {
            offset_reset: OffsetReset::Earliest,
            fetch_max_wait: Duration::from_millis(50),
            ..ConsumerConfig::default()
        },
    )
    .await
    .unwrap();
    consumer.assign("counts", &(0..PARTITIONS).collect::<Vec<_>>());
    let mut seen: BTreeMap<(u64, i64), u64> = BTreeMap::new();
    tokio::time::timeout(HANG_GUARD, async {
        while !expected.keys().all(|k| seen.contains_key(k)) {
            for record in consumer.poll(Duration::from_millis(100)).await.unwrap() {
                let key = std::str::from_utf8(record.key.as_deref().unwrap()).unwrap();
                let (key, start) = key.split_once('@').unwrap();
                let count = std::str::from_utf8(record.value.as_deref().unwrap()).unwrap();
                let entry = (key.parse().unwrap(), start.parse().unwrap());
                if let Some(before) = seen.insert(entry, count.parse().unwrap()) {
                    assert_eq!(
                        Some(&before),
                        seen.get(&entry),
                        "a repeated count of {entry:?} differs"
                    );
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("counts missing after the kill"));
    assert_counts(
        &seen,
        &expected,
        "every window counts every record once, after a SIGKILL",
    );

    // The top 2 of every partition's windows, from sketches restored after the kill:
    // each row's true count within its bounds, and the counts the true top 2's.
    let mut top_of: BTreeMap<(u32, i64), Vec<u64>> = BTreeMap::new();
    for ((key, start), count) in &expected {
        let partition = (key % u64::from(PARTITIONS)) as u32;
        top_of.entry((partition, *start)).or_default().push(*count);
    }
    for counts in top_of.values_mut() {
        counts.sort_unstable_by(|a, b| b.cmp(a));
        counts.truncate(2);
    }
    consumer.assign("top", &(0..PARTITIONS).collect::<Vec<_>>());
    let mut rows: BTreeMap<(u32, i64, usize), (u64, u64, u64)> = BTreeMap::new();
    let wanted: usize = top_of.values().map(Vec::len).sum();
    tokio::time::timeout(HANG_GUARD, async {
        while rows.len() < wanted {
            for record in consumer.poll(Duration::from_millis(100)).await.unwrap() {
                if record.topic.as_ref() != "top" {
                    continue;
                }
                let key = std::str::from_utf8(record.key.as_deref().unwrap()).unwrap();
                let mut at = key.split('/').map(|part| part.parse::<i64>().unwrap());
                let (partition, start, rank) =
                    (at.next().unwrap(), at.next().unwrap(), at.next().unwrap());
                let value = std::str::from_utf8(record.value.as_deref().unwrap()).unwrap();
                let mut fields = value.split(',').map(|f| f.parse::<u64>().unwrap());
                let row = (
                    fields.next().unwrap(),
                    fields.next().unwrap(),
                    fields.next().unwrap(),
                );
                rows.insert((partition as u32, start, rank as usize), row);
            }
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "top-2 rows missing after the kill: {} of {wanted}",
            rows.len()
        )
    });
    for ((partition, start, rank), (key, count, error)) in &rows {
        let truth = expected[&(*key, *start)];
        assert!(
            count - error <= truth && truth <= *count,
            "partition {partition}, window {start}, rank {rank}: key {key} counted {count} ± {error}, truly {truth}"
        );
        assert_eq!(
            Some(count),
            top_of[&(*partition, *start)].get(rank - 1),
            "partition {partition}, window {start}, rank {rank}"
        );
    }
    drop(workers);
    broker.shutdown().await.unwrap();
}
