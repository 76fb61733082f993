//! A window stage after `key_by` keeps its state in a changelog without being asked, as
//! Kafka Streams logs every state store: a worker commits its partitions at their
//! consumed positions with the snapshot named in the commit, stops, and the next
//! restores the snapshot and counts exactly. `.without_changelog()` makes none and
//! rebuilds by replay, exactly too, and a group that ran so counts exactly when its
//! window keeps one again; `fold`, which has no encoding for its accumulator, runs with
//! none, and so does every window stage of a pipeline where one of them keeps none.
//!
//! The events of a test are all in the first window, so the order in which the
//! repartition topic interleaves the input partitions does not matter; once every one
//! is counted, one more record per key in the next window closes the first (the idle
//! timeout is far beyond the test), and its counts are emitted.

mod common;

use common::{spawn, Worker};

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::mpsc;
use weir_client::proto::OffsetFetchRequest;
use weir_client::{Admin, GroupCoordinator};
use weir_processors::pipeline::{Pipeline, RunStats, Runnable};
use weir_processors::window::WindowSpec;

/// A hang guard only: every wait ends on a condition.
const HANG_GUARD: Duration = Duration::from_secs(120);
const PARTITIONS: u32 = 3;
const KEYS_PER_PARTITION: u64 = 4;
const BASE_MS: i64 = 1_700_000_020_000;
const WINDOW: Duration = Duration::from_secs(60);
/// No partition's time moves on with the wall clock during a test: windows close on
/// event time alone.
const IDLE: Duration = Duration::from_secs(3_600);

/// `per_key` events of every key in the first window, key `k` in partition `k % 3`,
/// 1 ms apart within a key, from `from` on.
fn first_window(per_key: u64, from: u64) -> Vec<(u32, u64, i64)> {
    let mut out = Vec::new();
    for key in 0..u64::from(PARTITIONS) * KEYS_PER_PARTITION {
        for i in from..from + per_key {
            out.push((
                (key % u64::from(PARTITIONS)) as u32,
                key,
                BASE_MS + i as i64,
            ));
        }
    }
    out
}

/// One event of every key in the second window: each closes the first window in the
/// repartition partition of its key.
fn closers() -> Vec<(u32, u64, i64)> {
    let next = BASE_MS + WINDOW.as_millis() as i64;
    (0..u64::from(PARTITIONS) * KEYS_PER_PARTITION)
        .map(|key| ((key % u64::from(PARTITIONS)) as u32, key, next))
        .collect()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Logging {
    /// Nothing said: on by default after `key_by`.
    Default,
    Without,
}

type Counted = (u64, i64, u64);

fn key_of(record: &weir_client::ConsumerRecord) -> u64 {
    std::str::from_utf8(record.key.as_deref().unwrap())
        .unwrap()
        .parse()
        .unwrap()
}

/// Events per key per window, after `key_by`: its stage named `counts`.
fn counting(group: &str, logging: Logging, tx: mpsc::UnboundedSender<Counted>) -> Runnable {
    let windows = Pipeline::from_topic("events")
        .group(group)
        .map(|record| key_of(&record))
        .key_by(|key| *key)
        .name("by-key")
        .window(WindowSpec::tumbling(WINDOW))
        .name("counts")
        .idle_timeout(IDLE);
    let windows = match logging {
        Logging::Default => windows,
        Logging::Without => windows.without_changelog(),
    };
    windows
        .count()
        .for_each(move |result, _| {
            let _ = tx.send((result.key, result.window.start_ms, result.value));
        })
        .commit_interval(Duration::from_millis(100))
}

async fn stop((stop, task): Worker) -> RunStats {
    let _ = stop.send(());
    task.await.unwrap().unwrap()
}

/// A commit of the group: (topic, partition) -> (offset, metadata).
type Commits = BTreeMap<(String, u32), (u64, String)>;

async fn commits(addr: &str, group: &str) -> Commits {
    let channel = weir_client::connect(addr).await.unwrap();
    let mut client = GroupCoordinator::for_group(channel, group)
        .client()
        .await
        .unwrap();
    let answer = client
        .offset_fetch(OffsetFetchRequest {
            group_id: group.to_string(),
            topics: Vec::new(),
        })
        .await
        .unwrap()
        .into_inner();
    answer
        .offsets
        .into_iter()
        .filter_map(|o| {
            Some((
                (o.topic, o.partition),
                (u64::try_from(o.offset).ok()?, o.metadata),
            ))
        })
        .collect()
}

/// The consumed position a commit's metadata records.
fn consumed(metadata: &str) -> Option<u64> {
    metadata
        .split(' ')
        .find_map(|word| word.strip_prefix("consumed="))
        .and_then(|n| n.parse().ok())
}

/// The end offset of each partition of `topic` with records.
async fn ends(admin: &Admin, topic: &str) -> BTreeMap<u32, u64> {
    admin
        .describe_topic(topic)
        .await
        .unwrap()
        .partitions
        .iter()
        .filter(|p| p.high_watermark > 0)
        .map(|p| (p.partition, p.high_watermark))
        .collect()
}

/// Waits until the worker of `group` has taken in every record of `events` and of the
/// repartition topic they went through, and has committed saying so; returns the
/// the commits of the repartition topic's partitions with records.
async fn wait_until_consumed(
    admin: &Admin,
    addr: &str,
    (group, worker): (&str, &Worker),
) -> Commits {
    let repartition = format!("{group}-by-key-repartition");
    let events = ends(admin, "events").await;
    tokio::time::timeout(HANG_GUARD, async {
        loop {
            // A worker refused at `run`, or failed, commits nothing more.
            assert!(!worker.1.is_finished(), "the worker of {group} stopped");
            // Every event is written on (and acknowledged) before its offset is
            // committed, so once the input is committed at its end the repartition
            // topic's end offsets are final.
            let seen = commits(addr, group).await;
            let input_done = events.iter().all(|(p, end)| {
                seen.get(&("events".to_string(), *p))
                    .is_some_and(|(offset, _)| offset == end)
            });
            if input_done {
                let wanted = ends(admin, &repartition).await;
                let in_repartition: Commits = seen
                    .into_iter()
                    .filter(|((topic, p), _)| topic == &repartition && wanted.contains_key(p))
                    .collect();
                let done = !wanted.is_empty()
                    && wanted.iter().all(|(p, end)| {
                        in_repartition
                            .get(&(repartition.clone(), *p))
                            .is_some_and(|(_, metadata)| consumed(metadata) == Some(*end))
                    });
                if done {
                    return in_repartition;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the worker takes in every record and commits")
}

/// Receives results until every key's first window has its count.
async fn collect(rx: &mut mpsc::UnboundedReceiver<Counted>) -> BTreeMap<u64, u64> {
    let keys = u64::from(PARTITIONS) * KEYS_PER_PARTITION;
    let mut seen = BTreeMap::new();
    tokio::time::timeout(HANG_GUARD, async {
        while (seen.len() as u64) < keys {
            let (key, start, count) = rx.recv().await.expect("the worker runs");
            assert_eq!(
                start,
                BASE_MS - BASE_MS.rem_euclid(WINDOW.as_millis() as i64)
            );
            if let Some(before) = seen.insert(key, count) {
                assert_eq!(before, count, "a repeated count of {key} differs");
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("counts missing: {seen:?}"));
    seen
}

async fn changelog_topics(admin: &Admin, group: &str) -> Vec<String> {
    admin
        .list_topics()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.topic)
        .filter(|t| t.starts_with(group) && t.ends_with("-changelog"))
        .collect()
}

/// One worker counts the first half of the first window's events and stops; the
/// next counts the second half and closes the window. Returns the counts, and the
/// commits of the repartition topic the first worker left.
async fn count_across_a_restart(
    addr: &str,
    group: &str,
    (first_logging, next_logging): (Logging, Logging),
) -> (BTreeMap<u64, u64>, Commits) {
    let admin = Admin::connect(addr).await.unwrap();
    admin
        .create_topic("events", PARTITIONS, 1, &Default::default())
        .await
        .unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let first = spawn(counting(group, first_logging, tx.clone()), addr);
    // The input and the repartition topic.
    common::wait_until_shared(&admin, 2 * PARTITIONS, group, 1).await;
    common::produce_keyed_events(addr, &first_window(30, 0)).await;
    let left = wait_until_consumed(&admin, addr, (group, &first)).await;
    stop(first).await;

    let next = spawn(counting(group, next_logging, tx), addr);
    common::produce_keyed_events(addr, &first_window(20, 30)).await;
    wait_until_consumed(&admin, addr, (group, &next)).await;
    common::produce_keyed_events(addr, &closers()).await;
    let counts = collect(&mut rx).await;
    stop(next).await;
    (counts, left)
}

/// A broker with the topic `events` (`PARTITIONS` partitions); keep the directory.
async fn broker_with_events() -> (tempfile::TempDir, weir_broker::RunningBroker, String, Admin) {
    let data = tempfile::tempdir().unwrap();
    let broker = common::start_broker(data.path(), 6_000).await;
    let addr = broker.local_addr().to_string();
    let admin = Admin::connect(&addr).await.unwrap();
    admin
        .create_topic("events", PARTITIONS, 1, &Default::default())
        .await
        .unwrap();
    (data, broker, addr, admin)
}

fn every_key_counted(per_key: u64) -> BTreeMap<u64, u64> {
    (0..u64::from(PARTITIONS) * KEYS_PER_PARTITION)
        .map(|key| (key, per_key))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_count_after_key_by_keeps_a_changelog_unasked_and_the_next_worker_restores_from_it() {
    let data = tempfile::tempdir().unwrap();
    let broker = common::start_broker(data.path(), 6_000).await;
    let addr = broker.local_addr().to_string();
    let (counts, left) =
        count_across_a_restart(&addr, "logged", (Logging::Default, Logging::Default)).await;
    assert_eq!(counts, every_key_counted(50), "every event counted once");
    // The first worker committed past its open window, naming the snapshot it saved:
    // what the next counted of the first half came from the changelog.
    assert!(!left.is_empty());
    for ((topic, partition), (offset, metadata)) in &left {
        assert!(
            metadata.contains(" snapshot:counts="),
            "partition {partition} of {topic}: {metadata}"
        );
        assert_eq!(Some(*offset), consumed(metadata), "{metadata}");
    }
    let admin = Admin::connect(&addr).await.unwrap();
    assert_eq!(
        changelog_topics(&admin, "logged").await,
        vec!["logged-counts-changelog".to_string()]
    );
    let changelog = admin
        .describe_topic("logged-counts-changelog")
        .await
        .unwrap();
    assert_eq!(changelog.partition_count, PARTITIONS);
    assert_eq!(
        changelog.configs.get("cleanup.policy").map(String::as_str),
        Some("compact")
    );
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_changelog_a_count_after_key_by_makes_none_and_replays_exactly() {
    let data = tempfile::tempdir().unwrap();
    let broker = common::start_broker(data.path(), 6_000).await;
    let addr = broker.local_addr().to_string();
    let (counts, left) =
        count_across_a_restart(&addr, "replayed", (Logging::Without, Logging::Without)).await;
    assert_eq!(counts, every_key_counted(50), "every event counted once");
    // The commits waited for the open window: the next worker replayed from there.
    assert!(!left.is_empty());
    for ((topic, partition), (offset, metadata)) in &left {
        assert!(
            !metadata.contains("snapshot:") && Some(*offset) < consumed(metadata),
            "partition {partition} of {topic}: {offset} {metadata}"
        );
    }
    let admin = Admin::connect(&addr).await.unwrap();
    assert_eq!(
        changelog_topics(&admin, "replayed").await,
        Vec::<String>::new()
    );
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fold_after_key_by_runs_with_no_changelog() {
    let (_data, broker, addr, admin) = broker_with_events().await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let runnable = Pipeline::from_topic("events")
        .group("folded")
        .map(|record| key_of(&record))
        .key_by(|key| *key)
        .name("by-key")
        .window(WindowSpec::tumbling(WINDOW))
        .idle_timeout(IDLE)
        .fold(|| 0u64, |n, _| *n += 1, |a, b| *a += b)
        .for_each(move |result, _| {
            let _ = tx.send((result.key, result.window.start_ms, result.value));
        })
        .commit_interval(Duration::from_millis(100));
    let worker = spawn(runnable, &addr);
    common::produce_keyed_events(&addr, &first_window(10, 0)).await;
    wait_until_consumed(&admin, &addr, ("folded", &worker)).await;
    common::produce_keyed_events(&addr, &closers()).await;
    assert_eq!(collect(&mut rx).await, every_key_counted(10));
    stop(worker).await;
    assert_eq!(
        changelog_topics(&admin, "folded").await,
        Vec::<String>::new()
    );
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_window_stages_one_of_which_cannot_keep_a_changelog_run_with_none() {
    let (_data, broker, addr, admin) = broker_with_events().await;
    // Per key and minute the count (a changelog by default), then per parity of the
    // count and minute the sum of the counts (a fold: none).
    let runnable = Pipeline::from_topic("events")
        .group("two-stages")
        .map(|record| key_of(&record))
        .key_by(|key| *key)
        .name("by-key")
        .window(WindowSpec::tumbling(WINDOW))
        .idle_timeout(IDLE)
        .count()
        .map(|result| result.value)
        .key_by(|count| count % 2)
        .window(WindowSpec::tumbling(WINDOW))
        .fold(|| 0u64, |sum, count| *sum += count, |a, b| *a += b)
        .for_each(|_, _| {})
        .commit_interval(Duration::from_millis(100));
    let worker = spawn(runnable, &addr);
    common::produce_keyed_events(&addr, &first_window(10, 0)).await;
    let commits = wait_until_consumed(&admin, &addr, ("two-stages", &worker)).await;
    assert!(
        commits
            .values()
            .all(|(_, metadata)| !metadata.contains("snapshot:")),
        "{commits:?}"
    );
    let stats = stop(worker).await;
    assert_eq!(
        stats.records_repartitioned,
        10 * 12,
        "the counts are not out yet"
    );
    assert_eq!(
        changelog_topics(&admin, "two-stages").await,
        Vec::<String>::new()
    );
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_that_replayed_counts_exactly_once_its_window_keeps_a_changelog() {
    let data = tempfile::tempdir().unwrap();
    let broker = common::start_broker(data.path(), 6_000).await;
    let addr = broker.local_addr().to_string();
    // The pipeline as it ran before windows after `key_by` kept a changelog by
    // default, then as it runs now: the first owner under the default replays from
    // the commit that waited for the open window, then saves snapshots.
    let (counts, left) =
        count_across_a_restart(&addr, "upgraded", (Logging::Without, Logging::Default)).await;
    assert_eq!(counts, every_key_counted(50), "every event counted once");
    assert!(left
        .values()
        .all(|(_, metadata)| !metadata.contains("snapshot:")));
    let after = commits(&addr, "upgraded").await;
    let named = after
        .iter()
        .filter(|((topic, _), (_, metadata))| {
            topic == "upgraded-by-key-repartition" && metadata.contains(" snapshot:counts=")
        })
        .count();
    assert!(named > 0, "{after:?}");
    broker.shutdown().await.unwrap();
}
