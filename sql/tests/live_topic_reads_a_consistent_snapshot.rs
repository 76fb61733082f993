//! A query over a topic being appended to reads the offsets captured when it was planned:
//! a whole prefix of every partition, with no torn batch and nothing appended later.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use weir_log::batch::{BatchBuilder, Compression};
use weir_log::{LogConfig, PartitionLog};
use weir_sql::datafusion::physical_plan::collect;
use weir_sql::{LocalSource, ReadBound, SqlOptions};

fn append(log: &PartitionLog, builder: &mut BatchBuilder, first: u64, records: u64) {
    for n in first..first + records {
        let value = format!(r#"{{"n":{n}}}"#);
        builder.push(
            1_700_000_000_000 + n as i64,
            None,
            Some(value.as_bytes()),
            &[],
        );
    }
    let mut bytes = builder.build().unwrap().to_vec();
    log.append(&mut bytes, 0).unwrap();
    log.set_high_watermark(log.log_end_offset());
}

async fn live_session(log: &Arc<PartitionLog>) -> weir_sql::datafusion::prelude::SessionContext {
    let source = Arc::new(LocalSource::new());
    source.add_topic("live", vec![(0, Arc::clone(log))], ReadBound::HighWatermark);
    let options = SqlOptions {
        read_bytes_max: 4096,
        ..SqlOptions::default()
    };
    weir_sql::new_session(source as _, options).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_appended_after_planning_are_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let log =
        Arc::new(PartitionLog::open(&dir.path().join("live-0"), LogConfig::default()).unwrap());
    let mut builder = BatchBuilder::new(Compression::None);
    for batch in 0..10 {
        append(&log, &mut builder, batch * 10, 10);
    }
    let ctx = live_session(&log).await;
    let plan = ctx
        .sql("SELECT count(*), max(n), max(offset) FROM live")
        .await
        .unwrap()
        .create_physical_plan()
        .await
        .unwrap();
    for batch in 10..20 {
        append(&log, &mut builder, batch * 10, 10);
    }
    let batches = collect(plan, ctx.task_ctx()).await.unwrap();
    assert_eq!(support::rows_of(&batches), vec![vec!["100", "99", "99"]]);
    let rows = support::query_rows(&ctx, "SELECT count(*) FROM live").await;
    assert_eq!(rows, vec![vec!["200"]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_during_appends_see_whole_prefixes() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 64 * 1024,
        ..LogConfig::default()
    };
    let log = Arc::new(PartitionLog::open(&dir.path().join("live-0"), config).unwrap());
    let mut builder = BatchBuilder::new(Compression::None);
    append(&log, &mut builder, 0, 7);
    let ctx = live_session(&log).await;

    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let log = Arc::clone(&log);
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut builder = BatchBuilder::new(Compression::None);
            let mut next = 7u64;
            while !stop.load(Ordering::Relaxed) && next < 200_000 {
                append(&log, &mut builder, next, 7);
                next += 7;
            }
        })
    };
    let mut seen_counts = Vec::new();
    for _ in 0..20 {
        let rows = support::query_rows(
            &ctx,
            "SELECT count(*), count(DISTINCT offset), min(offset), max(offset), sum(CAST(n = offset AS INT)) FROM live",
        )
        .await;
        let values: Vec<u64> = rows[0].iter().map(|v| v.parse().unwrap()).collect();
        let [count, distinct, min, max, matching] = values[..] else {
            panic!("{rows:?}")
        };
        assert_eq!(count % 7, 0, "a torn batch was read: {rows:?}");
        assert_eq!(
            (distinct, min, max + 1, matching),
            (count, 0, count, count),
            "{rows:?}"
        );
        seen_counts.push(count);
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(
        seen_counts.windows(2).all(|w| w[0] <= w[1]),
        "{seen_counts:?}"
    );
}
