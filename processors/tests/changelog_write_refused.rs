//! A window stage whose changelog refuses its snapshots (a `max.message.bytes` no
//! chunk fits in) stops the worker with a sentence naming the stage, the partition
//! and the changelog, before the commit: the committed offsets stay where the last
//! snapshot stored covers, and once the changelog takes writes again a new worker
//! restores that snapshot, reads on from the commit and counts every record exactly.

mod common;

use common::spawn;

use common::{produce_keyed_events, tumbling_counts};

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::mpsc;
use weir_client::Admin;
use weir_processors::pipeline::{Pipeline, PipelineError, Runnable};
use weir_processors::window::{Window, WindowSpec};

/// A hang guard only: every wait ends on a condition.
const HANG_GUARD: Duration = Duration::from_secs(120);
const PARTITIONS: u32 = 2;
const GROUP: &str = "refused";
const CHANGELOG: &str = "refused-counts-changelog";
const BASE_MS: i64 = 1_700_000_000_000;
const WINDOW: Duration = Duration::from_secs(1);
/// Records of a partition are 10 ms apart: 100 to a window.
const STEP_MS: i64 = 10;

/// (partition, key, event time) of records `from..to` of each partition: keys live in
/// one partition each (60 of them, 10 digits long, so an open window's snapshot is
/// a few KiB).
fn events(from: i64, to: i64) -> Vec<(u32, u64, i64)> {
    let mut out = Vec::new();
    for partition in 0..PARTITIONS {
        for i in from..to {
            let key =
                1_000_000_000 + u64::from(partition) + u64::from(PARTITIONS) * (i % 60) as u64;
            out.push((partition, key, BASE_MS + i * STEP_MS));
        }
    }
    out
}

/// A record per partition an hour later, closing every window before it (its own
/// never closes, and is not expected).
fn closing() -> Vec<(u32, u64, i64)> {
    (0..PARTITIONS)
        .map(|partition| {
            (
                partition,
                1_000_000_000 + u64::from(partition),
                BASE_MS + 3_600_000,
            )
        })
        .collect()
}

type Counted = ((u64, Window), u64);

/// Counts per key in tumbling windows, with a changelog; no window closes by the
/// wall clock while the test runs, only by event time.
fn counting(tx: mpsc::UnboundedSender<Counted>) -> Runnable {
    Pipeline::from_topic("events")
        .group(GROUP)
        .key_by_local(|r| -> u64 {
            std::str::from_utf8(r.key.as_deref().unwrap())
                .unwrap()
                .parse()
                .unwrap()
        })
        .window(WindowSpec::tumbling(WINDOW))
        .name("counts")
        .changelog()
        .idle_timeout(Duration::from_secs(3600))
        .count()
        .for_each(move |result, _| {
            let _ = tx.send(((result.key, result.window), result.value));
        })
        .commit_interval(Duration::from_millis(100))
}

/// The committed offset of each partition of the group.
async fn committed(admin: &Admin) -> BTreeMap<u32, Option<u64>> {
    let description = admin.describe_group(GROUP).await.unwrap();
    description
        .partitions
        .iter()
        .map(|p| (p.partition, p.committed_offset))
        .collect()
}

async fn wait_until_committed_at(admin: &Admin, offsets: &BTreeMap<u32, Option<u64>>) {
    tokio::time::timeout(HANG_GUARD, async {
        while &committed(admin).await != offsets {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("never committed at {offsets:?}"));
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
            let ((key, window), count) = rx.recv().await.expect("a worker runs");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changelog_that_refuses_snapshots_stops_the_worker_before_its_commit_and_loses_nothing() {
    let data = tempfile::tempdir().unwrap();
    let broker = common::start_broker(data.path(), 6_000).await;
    let addr = broker.local_addr().to_string();
    let admin = Admin::connect(&addr).await.unwrap();
    admin
        .create_topic("events", PARTITIONS, 1, &Default::default())
        .await
        .unwrap();
    // Record 250 is mid-window: [2 s, 3 s) is open at the first stop, and counted
    // by all three workers.
    let (first, second) = (events(0, 250), events(250, 400));
    let third = events(400, 450);
    let expected = tumbling_counts(
        &[first.clone(), second.clone(), third.clone()].concat(),
        WINDOW,
    );
    let read_again = second.len() + third.len() + PARTITIONS as usize;

    // A worker counts the first part, commits at its end with its snapshots stored,
    // and stops.
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (stop, task) = spawn(counting(tx.clone()), &addr);
    common::wait_until_shared(&admin, PARTITIONS, GROUP, 1).await;
    produce_keyed_events(&addr, &first).await;
    let at_first_end: BTreeMap<u32, Option<u64>> = (0..PARTITIONS)
        .map(|partition| (partition, Some(250)))
        .collect();
    wait_until_committed_at(&admin, &at_first_end).await;
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();

    // The changelog now takes no batch: each is larger than 64 bytes (a batch's
    // header alone is 61).
    let tiny = BTreeMap::from([("max.message.bytes".to_string(), "64".to_string())]);
    admin.alter_configs(CHANGELOG, &tiny).await.unwrap();
    produce_keyed_events(&addr, &second).await;
    let (_stop, task) = spawn(counting(tx.clone()), &addr);
    let error = tokio::time::timeout(HANG_GUARD, task)
        .await
        .expect("the worker stops")
        .unwrap()
        .unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, PipelineError::Changelog { .. }), "{text}");
    assert!(
        text.contains("stage \"counts\"")
            && text.contains("partition")
            && text.contains(CHANGELOG)
            && text.contains("max.message.bytes"),
        "{text}"
    );
    assert_eq!(
        committed(&admin).await,
        at_first_end,
        "no commit past the last snapshot stored"
    );

    // The changelog takes writes again: a new worker restores the first worker's
    // snapshots, reads the second part again and the third, and counts each record
    // once (a window the stopped worker closed may come twice, with the same count).
    let back = BTreeMap::from([("max.message.bytes".to_string(), String::new())]);
    admin.alter_configs(CHANGELOG, &back).await.unwrap();
    let (stop, task) = spawn(counting(tx), &addr);
    produce_keyed_events(&addr, &[third, closing()].concat()).await;
    let seen = collect(&mut rx, &expected).await;
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
        "(key, window) expected, seen: {differ:?}"
    );
    stop.send(()).unwrap();
    let stats = task.await.unwrap().unwrap();
    assert_eq!(
        stats.records_in, read_again as u64,
        "read from the first worker's commit on"
    );
    broker.shutdown().await.unwrap();
}
