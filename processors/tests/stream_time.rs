//! The watermark a pipeline's window takes by default is the minimum over the input
//! partitions its worker owns: a partition behind the others keeps the worker's windows
//! open, so a record read after a faster partition's later ones is not late; an idle
//! partition stops holding it back, and then time moves on with the wall clock. With one
//! clock per partition the same record is late. One broker, one worker, two partitions.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use weir_client::Admin;
use weir_processors::pipeline::{Pipeline, Runnable};
use weir_processors::window::{StreamTime, WindowSpec};

/// A hang guard only: every wait ends on a condition.
const HANG_GUARD: Duration = Duration::from_secs(90);
const WINDOW: Duration = Duration::from_secs(10);

/// `(partition, key, event time)`. Partition 0 runs to 25 s, then brings a record of
/// 5 s; partition 1 is slower and stops at 8 s. Read by one worker, partition 1 holds
/// the watermark at 8 s or below until it has been idle, so 5 s is on time; on its own
/// clock, partition 0 had passed the end of [0, 10 s) at 25 s.
const EVENTS: [(u32, u64, i64); 6] = [
    (0, 1, 1_000),
    (0, 1, 12_000),
    (0, 1, 25_000),
    (0, 1, 5_000),
    (1, 2, 3_000),
    (1, 2, 8_000),
];

type Counts = Arc<Mutex<BTreeMap<(u64, i64), u64>>>;

/// Counts per key and 10 s window; `stream_time` if given, else the default.
fn counting(group: &str, stream_time: Option<StreamTime>, counts: &Counts) -> Runnable {
    let counts = Arc::clone(counts);
    let windows = Pipeline::from_topic("events")
        .group(group)
        .key_by_local(|record| {
            let key = record.key.as_deref().unwrap_or_default();
            std::str::from_utf8(key).unwrap().parse::<u64>().unwrap()
        })
        .window(WindowSpec::tumbling(WINDOW))
        // Long enough that both partitions' records are read before either is idle;
        // after that the windows close with the wall clock.
        .idle_timeout(Duration::from_secs(5));
    let windows = match stream_time {
        Some(stream_time) => windows.stream_time(stream_time),
        None => windows,
    };
    windows.count().for_each(move |result, _| {
        let previous = counts
            .lock()
            .unwrap()
            .insert((result.key, result.window.start_ms), result.value);
        assert_eq!(previous, None, "one result per window and key");
    })
}

/// Runs one worker until `windows` results are in; its results and late records.
async fn run(
    addr: &str,
    group: &str,
    stream_time: Option<StreamTime>,
    windows: usize,
) -> (BTreeMap<(u64, i64), u64>, u64) {
    let counts = Counts::default();
    let worker = common::spawn(counting(group, stream_time, &counts), addr);
    tokio::time::timeout(HANG_GUARD, async {
        while counts.lock().unwrap().len() < windows {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("every window closes");
    worker.0.send(()).unwrap();
    let stats = worker.1.await.unwrap().unwrap();
    let counts = counts.lock().unwrap().clone();
    (counts, stats.records_late)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slower_partition_holds_the_worker_s_windows_open_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::start_broker(dir.path(), 10_000).await;
    let addr = broker.local_addr().to_string();
    let admin = Admin::connect(&addr).await.unwrap();
    admin
        .create_topic("events", 2, 1, &Default::default())
        .await
        .unwrap();
    common::produce_keyed_events(&addr, &EVENTS).await;

    let every_record = common::tumbling_counts(&EVENTS, WINDOW);
    assert_eq!(every_record[&(1, 0)], 2);
    let (counts, late) = run(&addr, "minimum", None, every_record.len()).await;
    assert_eq!(
        counts, every_record,
        "the record of 5 s counted in [0, 10 s)"
    );
    assert_eq!(late, 0);

    // Each partition on its own clock: partition 0 was at 25 s when 5 s came.
    let mut on_time = every_record.clone();
    on_time.insert((1, 0), 1);
    let (counts, late) = run(
        &addr,
        "per-partition",
        Some(StreamTime::PerPartition),
        on_time.len(),
    )
    .await;
    assert_eq!(counts, on_time);
    assert_eq!(late, 1);
    broker.shutdown().await.unwrap();
}
