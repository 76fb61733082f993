//! A keyed window over input that is not partitioned by its key: after `key_by` the items
//! go through `<group>-<key_by name>-repartition` by themselves, so each key is counted in
//! one place, with one worker or two; after `key_by_local` every partition counts its share
//! of a key apart.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use weir_client::{Admin, Producer, ProducerConfig, ProducerRecord};
use weir_processors::pipeline::{Pipeline, RunStats};
use weir_processors::window::WindowSpec;

/// A hang guard only: every wait ends on a condition.
const HANG_GUARD: Duration = Duration::from_secs(90);
const PAGES: u64 = 10;
const VIEWS: u64 = 600;

/// View `i` is of page `i % PAGES`, in partition `i % 3` whatever its page, at a time in
/// the one-second window [1000, 2000).
async fn produce_views(addr: &str) {
    let admin = Admin::connect(addr).await.unwrap();
    admin
        .create_topic("views", 3, 1, &Default::default())
        .await
        .unwrap();
    let producer = Producer::connect(addr, ProducerConfig::default())
        .await
        .unwrap();
    let mut deliveries = Vec::new();
    for i in 0..VIEWS {
        let page = format!("p{}", i % PAGES);
        let record = ProducerRecord::new("views", page.as_bytes())
            .with_partition((i % 3) as u32)
            .with_timestamp(1000 + (i % 1000) as i64);
        deliveries.push(producer.send(record).await.unwrap());
    }
    for delivery in deliveries {
        delivery.await.unwrap();
    }
}

type Counts = Arc<Mutex<Vec<(String, i64, u64)>>>;

/// How the views are keyed by page.
#[derive(Clone, Copy)]
enum Keying {
    /// `key_by`, through its repartition topic.
    ByKey,
    /// `key_by`, the window's changelog asked for (as it is kept by default).
    ByKeyWithChangelog,
    /// `key_by_local`: where they are.
    Local,
}

/// Views per page per one-second window.
fn counting(results: &Counts, group: &str, keying: Keying) -> weir_processors::pipeline::Runnable {
    let pages = Pipeline::from_topic("views")
        .group(group)
        .filter_map(|record| String::from_utf8(record.value?.to_vec()).ok());
    let keyed = match keying {
        Keying::ByKey | Keying::ByKeyWithChangelog => {
            pages.key_by(|page| page.clone()).name("by-page")
        }
        Keying::Local => pages.key_by_local(|page| page.clone()),
    };
    let results = Arc::clone(results);
    let windows = keyed
        .window(WindowSpec::tumbling(Duration::from_secs(1)))
        // Nothing comes after the views: the partitions' time moves on with the wall
        // clock and the window closes.
        .idle_timeout(Duration::from_millis(200));
    let windows = match keying {
        Keying::ByKeyWithChangelog => windows.changelog(),
        Keying::ByKey | Keying::Local => windows,
    };
    windows.count().for_each(move |result, _| {
        results
            .lock()
            .unwrap()
            .push((result.key, result.window.start_ms, result.value))
    })
}

/// Runs `workers` copies until every page's window has been emitted, then stops them.
async fn run(
    addr: &str,
    group: &str,
    workers: usize,
    results: &Counts,
    keying: Keying,
) -> Vec<RunStats> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut handles = Vec::new();
    for _ in 0..workers {
        let runnable = counting(results, group, keying);
        let addr = addr.to_string();
        let mut stopped = stopped.clone();
        handles.push(tokio::spawn(async move {
            runnable
                .run(&addr, async move {
                    let _ = stopped.wait_for(|s| *s).await;
                })
                .await
        }));
    }
    // Every page has a result, and the results hold every view (without
    // repartitioning, a page has one from each partition).
    tokio::time::timeout(HANG_GUARD, async {
        loop {
            let pages: std::collections::BTreeSet<String> = results
                .lock()
                .unwrap()
                .iter()
                .map(|r| r.0.clone())
                .collect();
            let total: u64 = results.lock().unwrap().iter().map(|r| r.2).sum();
            if pages.len() as u64 == PAGES && total >= VIEWS {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("every page's window is emitted");
    stop.send(true).unwrap();
    let mut stats = Vec::new();
    for handle in handles {
        stats.push(handle.await.unwrap().unwrap());
    }
    stats
}

/// Each (page, window) once, with its count; a repeat (a window emitted again after a
/// rebalance) must carry the same count.
fn per_window(results: &Counts) -> BTreeMap<(String, i64), u64> {
    let mut out = BTreeMap::new();
    for (page, start, count) in results.lock().unwrap().iter() {
        if let Some(before) = out.insert((page.clone(), *start), *count) {
            assert_eq!(
                before, *count,
                "{page} at {start} emitted twice with other counts"
            );
        }
    }
    out
}

fn expected() -> BTreeMap<(String, i64), u64> {
    (0..PAGES)
        .map(|p| ((format!("p{p}"), 1000), VIEWS / PAGES))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_count_after_key_by_counts_each_key_in_one_place_with_one_worker_or_two() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::start_broker(dir.path(), 6_000).await;
    let addr = broker.local_addr().to_string();
    produce_views(&addr).await;

    let one: Counts = Arc::default();
    let stats = run(&addr, "pages", 1, &one, Keying::ByKey).await;
    assert_eq!(per_window(&one), expected());
    assert_eq!(stats[0].records_repartitioned, VIEWS);
    assert_eq!(
        stats[0].records_in,
        2 * VIEWS,
        "the input, then the repartition topic"
    );
    let admin = Admin::connect(&addr).await.unwrap();
    let internal = admin
        .describe_topic("pages-by-page-repartition")
        .await
        .unwrap();
    assert_eq!(internal.partition_count, 3, "as many as the input");
    // A window after `key_by` keeps a changelog without being asked.
    let changelog = admin.describe_topic("pages-window-3-changelog").await;
    assert!(changelog.is_ok(), "{changelog:?}");

    // A second group reads the views again, with two workers sharing them.
    let two: Counts = Arc::default();
    let stats = run(&addr, "pages-two", 2, &two, Keying::ByKey).await;
    assert_eq!(per_window(&two), expected());
    assert_eq!(
        stats.iter().map(|s| s.records_repartitioned).sum::<u64>(),
        VIEWS
    );
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_count_after_key_by_keeps_its_changelog_per_partition_of_the_repartition_topic() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::start_broker(dir.path(), 6_000).await;
    let addr = broker.local_addr().to_string();
    produce_views(&addr).await;
    let saved: Counts = Arc::default();
    let stats = run(&addr, "pages-saved", 1, &saved, Keying::ByKeyWithChangelog).await;
    assert_eq!(per_window(&saved), expected());
    assert_eq!(stats[0].records_repartitioned, VIEWS);
    let admin = Admin::connect(&addr).await.unwrap();
    let changelog = admin
        .describe_topic("pages-saved-window-3-changelog")
        .await
        .unwrap();
    assert_eq!(changelog.partition_count, 3, "as wide as the widest input");
    // The window stage's input partitions are the repartition topic's: its commits
    // are there, and the input's are at their ends (every view was written on). One
    // worker, so that its last commit meets no rebalance of others stopping.
    let group = admin.describe_group("pages-saved").await.unwrap();
    let committed = |topic: &str| -> u64 {
        group
            .partitions
            .iter()
            .filter(|p| p.topic == topic)
            .map(|p| p.committed_offset.unwrap_or(0))
            .sum()
    };
    assert_eq!(committed("views"), VIEWS, "{:?}", group.partitions);
    assert!(
        committed("pages-saved-by-page-repartition") > 0,
        "{:?}",
        group.partitions
    );
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_key_by_local_each_partition_counts_its_share_of_a_key_apart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::start_broker(dir.path(), 6_000).await;
    let addr = broker.local_addr().to_string();
    produce_views(&addr).await;
    let apart: Counts = Arc::default();
    let stats = run(&addr, "pages-apart", 1, &apart, Keying::Local).await;
    assert_eq!(stats[0].records_repartitioned, 0);
    let topics = Admin::connect(&addr)
        .await
        .unwrap()
        .list_topics()
        .await
        .unwrap();
    assert!(
        topics.iter().all(|t| !t.topic.starts_with("pages-apart-")),
        "no repartition topic, and no changelog: {topics:?}"
    );
    // Each page's views are in all three partitions: three results of a third each,
    // which is why `key_by` sends such input through a repartition topic.
    let results = apart.lock().unwrap().clone();
    assert_eq!(results.len() as u64, 3 * PAGES, "{results:?}");
    assert!(results
        .iter()
        .all(|(_, _, count)| *count == VIEWS / PAGES / 3));
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_that_cannot_be_written_as_json_stops_the_worker_and_commits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::start_broker(dir.path(), 6_000).await;
    let addr = broker.local_addr().to_string();
    produce_views(&addr).await;
    // JSON has no map with non-string keys: the value cannot travel.
    let runnable = Pipeline::from_topic("views")
        .group("unwritable")
        .map(|record| {
            let page = String::from_utf8(record.value.unwrap().to_vec()).unwrap();
            let mut value = std::collections::HashMap::new();
            value.insert((record.partition, 1u8), record.offset);
            (page, value)
        })
        .repartition()
        .name("by-page")
        .window(WindowSpec::tumbling(Duration::from_secs(1)))
        .count()
        .for_each(|_, _| {});
    let error = tokio::time::timeout(
        HANG_GUARD,
        runnable.run(&addr, std::future::pending::<()>()),
    )
    .await
    .expect("the worker stops")
    .unwrap_err();
    let text = error.to_string();
    assert!(
        matches!(
            error,
            weir_processors::pipeline::PipelineError::Stage { .. }
        ),
        "{text}"
    );
    assert!(
        text.contains("\"by-page\"") && text.contains("cannot be written as JSON"),
        "{text}"
    );
    let admin = Admin::connect(&addr).await.unwrap();
    let group = admin.describe_group("unwritable").await.unwrap();
    assert!(
        group
            .partitions
            .iter()
            .filter(|p| p.topic == "views")
            .all(|p| p.committed_offset.unwrap_or(0) == 0),
        "nothing past the failing records is committed: {:?}",
        group.partitions
    );
    broker.shutdown().await.unwrap();
}
