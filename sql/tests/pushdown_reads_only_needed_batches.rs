//! Pushed-down filters and projections are real: a query over one partition, a narrow
//! offset range or a recent time range reads only the batches it needs (bytes counted by
//! the source), and a metadata-only query decodes no record.

mod support;

use std::sync::Arc;

use support::{record, run_with_metrics, write_topic, FixtureRecord, T0_MS};
use weir_sql::{LocalOptions, LocalSource, SqlOptions, TopicSource};

const PARTITIONS: u32 = 2;
const BATCHES_PER_PARTITION: usize = 100;
const BATCH_RECORDS: usize = 10;

fn records() -> Vec<FixtureRecord> {
    let per_partition = BATCHES_PER_PARTITION * BATCH_RECORDS;
    (0..PARTITIONS as usize * per_partition)
        .map(|i| {
            let partition = (i / per_partition) as u32;
            let n = (i % per_partition) as i64;
            let value = format!(r#"{{"n":{n},"pad":"{}"}}"#, "x".repeat(40));
            record(partition, T0_MS + n * 1000, Some("k"), Some(&value))
        })
        .collect()
}

/// A session reading one batch per source read, so a read never runs past what it needs,
/// with the table already opened.
async fn setup() -> (
    tempfile::TempDir,
    weir_sql::datafusion::prelude::SessionContext,
    Arc<LocalSource>,
    u64,
) {
    let dir = tempfile::tempdir().unwrap();
    write_topic(dir.path(), "t", PARTITIONS, BATCH_RECORDS, &records());
    let source = Arc::new(LocalSource::open(dir.path(), LocalOptions::default()).unwrap());
    let options = SqlOptions {
        read_bytes_max: 1,
        ..SqlOptions::default()
    };
    let ctx = weir_sql::new_session(Arc::clone(&source) as _, options)
        .await
        .unwrap();
    // Opening the table samples records to infer its schema: done before any measurement.
    support::query_rows(&ctx, "DESCRIBE t").await;
    let partition_bytes = std::fs::metadata(dir.path().join("t-0/00000000000000000000.log"))
        .unwrap()
        .len();
    (dir, ctx, source, partition_bytes)
}

/// Bytes of the batches of partition `partition` that hold offsets in `from..to`.
fn batch_bytes_covering(dir: &std::path::Path, partition: u32, from: u64, to: u64) -> u64 {
    let log = std::fs::read(dir.join(format!("t-{partition}/00000000000000000000.log"))).unwrap();
    weir_log::batch::batches(&log)
        .map(|item| item.unwrap())
        .filter(|(header, _)| {
            let first = header.base_offset as u64;
            let last = header.last_offset() as u64;
            last >= from && first < to
        })
        .map(|(_, bytes)| bytes.len() as u64)
        .sum()
}

fn count(batches: &[weir_sql::datafusion::arrow::array::RecordBatch]) -> String {
    support::rows_of(batches)[0][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_partition_reads_only_that_partition() {
    let (_dir, ctx, source, partition_bytes) = setup().await;
    let before = source.bytes_read().get();
    let (batches, totals) =
        run_with_metrics(&ctx, "SELECT count(*) FROM t WHERE partition = 1").await;
    assert_eq!(count(&batches), "1000");
    assert_eq!(totals.bytes_read as u64, partition_bytes);
    assert_eq!(source.bytes_read().get() - before, partition_bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn narrow_offset_range_reads_only_its_batches() {
    let (dir, ctx, source, _) = setup().await;
    let before = source.bytes_read().get();
    let (batches, totals) = run_with_metrics(
        &ctx,
        "SELECT offset, n FROM t WHERE partition = 0 AND offset >= 505 AND offset < 515 ORDER BY offset",
    )
    .await;
    let rows = support::rows_of(&batches);
    assert_eq!(rows.len(), 10);
    assert_eq!(rows[0], vec!["505", "505"]);
    // Offsets 505..515 lie in two batches (500..510 and 510..520).
    assert_eq!(
        source.bytes_read().get() - before,
        batch_bytes_covering(dir.path(), 0, 505, 515)
    );
    assert_eq!(totals.records_decoded, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recent_time_range_seeks_through_the_time_index() {
    let (dir, ctx, source, _) = setup().await;
    // The last 25 records of each partition: timestamps from T0 + 975 s.
    let since = T0_MS + 975 * 1000;
    let before = source.bytes_read().get();
    let (batches, _) = run_with_metrics(
        &ctx,
        &format!("SELECT count(*) FROM t WHERE timestamp >= to_timestamp_millis({since})"),
    )
    .await;
    assert_eq!(count(&batches), "50");
    // Per partition the batches 970..980, 980..990 and 990..1000.
    let expected: u64 = (0..PARTITIONS)
        .map(|p| batch_bytes_covering(dir.path(), p, 975, 1000))
        .sum();
    assert_eq!(source.bytes_read().get() - before, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_only_queries_decode_no_record() {
    let (_dir, ctx, _source, _) = setup().await;
    let (batches, totals) = run_with_metrics(&ctx, "SELECT count(*) FROM t").await;
    assert_eq!(count(&batches), "2000");
    assert_eq!(totals.records_decoded, 0);

    let (batches, totals) = run_with_metrics(
        &ctx,
        "SELECT max(offset), count(offset) FROM t WHERE partition = 0",
    )
    .await;
    assert_eq!(support::rows_of(&batches), vec![vec!["999", "1000"]]);
    assert_eq!(totals.records_decoded, 0);

    let (_, totals) = run_with_metrics(&ctx, "SELECT max(n) FROM t").await;
    assert_eq!(totals.records_decoded, 2000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_stops_reading_early() {
    let (dir, ctx, source, _) = setup().await;
    let before = source.bytes_read().get();
    let (batches, _) = run_with_metrics(&ctx, "SELECT value_str FROM t LIMIT 5").await;
    assert_eq!(support::rows_of(&batches).len(), 5);
    // At most the first batch of each partition is read.
    let first_batches: u64 = (0..PARTITIONS)
        .map(|p| batch_bytes_covering(dir.path(), p, 0, 1))
        .sum();
    assert!(source.bytes_read().get() - before <= first_batches);
}
