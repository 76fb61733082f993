//! Fixture topics for the SQL tests: partition directories written with `PartitionLog`
//! and `BatchBuilder`, closed cleanly, and the records they hold for independent checks.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use weir_log::batch::{BatchBuilder, Compression};
use weir_log::{LogConfig, PartitionLog};
use weir_sql::datafusion::arrow::array::RecordBatch;
use weir_sql::datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use weir_sql::datafusion::prelude::SessionContext;
use weir_sql::{LocalOptions, LocalSource, SqlOptions};

/// First timestamp of every fixture topic.
pub const T0_MS: i64 = 1_700_000_000_000;

/// One record of a fixture topic.
#[derive(Debug, Clone, PartialEq)]
pub struct FixtureRecord {
    pub partition: u32,
    pub timestamp_ms: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// A record as read back: with its offset.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRecord {
    pub offset: u64,
    pub record: FixtureRecord,
}

/// Writes `records` into `<data_dir>/<topic>-<p>` (p in 0..partitions), in batches of at
/// most `batch_records` per partition, and closes the logs cleanly. Returns the records
/// with their offsets.
pub fn write_topic(
    data_dir: &Path,
    topic: &str,
    partitions: u32,
    batch_records: usize,
    records: &[FixtureRecord],
) -> Vec<StoredRecord> {
    write_topic_with(
        data_dir,
        topic,
        partitions,
        batch_records,
        records,
        LogConfig::default(),
        Compression::None,
    )
}

pub fn write_topic_with(
    data_dir: &Path,
    topic: &str,
    partitions: u32,
    batch_records: usize,
    records: &[FixtureRecord],
    config: LogConfig,
    compression: Compression,
) -> Vec<StoredRecord> {
    let mut stored = Vec::new();
    for partition in 0..partitions {
        let dir = data_dir.join(format!("{topic}-{partition}"));
        let log = PartitionLog::open(&dir, config.clone()).unwrap();
        let mine: Vec<&FixtureRecord> = records
            .iter()
            .filter(|r| r.partition == partition)
            .collect();
        let mut builder = BatchBuilder::new(compression);
        for chunk in mine.chunks(batch_records.max(1)) {
            for record in chunk {
                let headers: Vec<(&str, Option<&[u8]>)> = record
                    .headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_deref()))
                    .collect();
                builder.push(
                    record.timestamp_ms,
                    record.key.as_deref(),
                    record.value.as_deref(),
                    &headers,
                );
            }
            let mut bytes = builder.build().unwrap().to_vec();
            let info = log.append(&mut bytes, 0).unwrap();
            for (i, record) in chunk.iter().enumerate() {
                stored.push(StoredRecord {
                    offset: info.base_offset + i as u64,
                    record: (*record).clone(),
                });
            }
        }
        log.set_high_watermark(log.log_end_offset());
        log.close().unwrap();
    }
    stored
}

pub fn record(
    partition: u32,
    timestamp_ms: i64,
    key: Option<&str>,
    value: Option<&str>,
) -> FixtureRecord {
    FixtureRecord {
        partition,
        timestamp_ms,
        key: key.map(|k| k.as_bytes().to_vec()),
        value: value.map(|v| v.as_bytes().to_vec()),
        headers: Vec::new(),
    }
}

/// `clicks`: 3 partitions, 60 JSON records (one malformed, one with mismatching types),
/// 4 records per batch, a `source` header on even records.
pub fn clicks_records() -> Vec<FixtureRecord> {
    (0..60i64)
        .map(|i| {
            let value = match i {
                7 => "not json at all".to_string(),
                11 => r#"{"page": 5, "user": {"id": 1, "name": "u1"}, "ms": "slow", "tags": []}"#.to_string(),
                _ => format!(
                    r#"{{"page":"/p{}","user":{{"id":{},"name":"u{}"}},"ms":{},"tags":["t{}","x"]}}"#,
                    i % 4,
                    i % 5,
                    i % 5,
                    i * 10,
                    i % 2
                ),
            };
            let mut r = record(
                (i % 3) as u32,
                T0_MS + i * 1000,
                Some(&format!("user-{}", i % 5)),
                Some(&value),
            );
            if i % 2 == 0 {
                r.headers.push(("source".to_string(), Some(b"web".to_vec())));
            }
            r
        })
        .collect()
}

/// `users`: 1 partition, 5 JSON records (schema inferred).
pub fn users_records() -> Vec<FixtureRecord> {
    let countries = ["fr", "de", "fr", "us", "jp"];
    (0..5i64)
        .map(|n| {
            record(
                0,
                T0_MS + n,
                Some(&format!("user-{n}")),
                Some(&format!(
                    r#"{{"id":{n},"name":"u{n}","country":"{}","score":{}.5}}"#,
                    countries[n as usize], n
                )),
            )
        })
        .collect()
}

/// `raw`: 2 partitions, text, invalid UTF-8, a null value and a null key.
pub fn raw_records() -> Vec<FixtureRecord> {
    let mut records = vec![
        record(0, T0_MS, Some("a"), Some("hello")),
        record(0, T0_MS + 1, None, Some("world")),
        record(1, T0_MS + 2, Some("b"), None),
    ];
    let mut bad = record(1, T0_MS + 3, Some("c"), None);
    bad.value = Some(vec![0xff, 0xfe, b'x']);
    records.push(bad);
    records
}

/// The JSON Schema declared for `clicks`.
pub const CLICKS_SCHEMA: &str = r#"{
  "type": "object",
  "properties": {
    "page": {"type": "string"},
    "user": {"type": "object", "properties": {"id": {"type": "integer"}, "name": {"type": "string"}}},
    "ms": {"type": "integer"},
    "tags": {"type": "array", "items": {"type": "string"}}
  }
}"#;

/// Writes the fixture topics and the `clicks` schema file into `data_dir`.
pub fn write_fixtures(data_dir: &Path) {
    write_topic(data_dir, "clicks", 3, 4, &clicks_records());
    write_topic(data_dir, "users", 1, 10, &users_records());
    write_topic(data_dir, "raw", 2, 10, &raw_records());
    let schemas = data_dir.join("schemas");
    std::fs::create_dir_all(&schemas).unwrap();
    std::fs::write(schemas.join("clicks.json"), CLICKS_SCHEMA).unwrap();
}

/// A session over the data directory, with its schema directory.
pub async fn session(data_dir: &Path) -> (SessionContext, Arc<LocalSource>) {
    let source = Arc::new(LocalSource::open(data_dir, LocalOptions::default()).unwrap());
    let options = SqlOptions {
        schema_dir: Some(data_dir.join("schemas")),
        ..SqlOptions::default()
    };
    let ctx = weir_sql::new_session(Arc::clone(&source) as _, options)
        .await
        .unwrap();
    (ctx, source)
}

/// Runs `sql` and returns its rows as display strings (`NULL` for nulls).
pub async fn query_rows(ctx: &SessionContext, sql: &str) -> Vec<Vec<String>> {
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    rows_of(&batches)
}

pub fn rows_of(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for batch in batches {
        let formatters: Vec<ArrayFormatter> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
            .collect();
        for row in 0..batch.num_rows() {
            rows.push(
                formatters
                    .iter()
                    .map(|f| f.value(row).to_string())
                    .collect(),
            );
        }
    }
    rows
}

/// Metric totals of the topic scans of one executed plan.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ScanTotals {
    pub scans: usize,
    pub bytes_read: usize,
    pub records_decoded: usize,
    pub json_malformed: usize,
    pub json_type_mismatches: usize,
}

/// Runs `sql` and sums the metrics of every topic scan in its physical plan.
pub async fn run_with_metrics(ctx: &SessionContext, sql: &str) -> (Vec<RecordBatch>, ScanTotals) {
    use weir_sql::datafusion::physical_plan::{collect, ExecutionPlan};
    let plan = ctx
        .sql(sql)
        .await
        .unwrap()
        .create_physical_plan()
        .await
        .unwrap();
    let batches = collect(Arc::clone(&plan), ctx.task_ctx()).await.unwrap();
    let mut totals = ScanTotals::default();
    let mut stack: Vec<Arc<dyn ExecutionPlan>> = vec![plan];
    while let Some(node) = stack.pop() {
        if node.name() == "TopicScanExec" {
            let metrics = node.metrics().unwrap();
            let sum = |name: &str| metrics.sum_by_name(name).map_or(0, |v| v.as_usize());
            totals.scans += 1;
            totals.bytes_read += sum("bytes_read");
            totals.records_decoded += sum("records_decoded");
            totals.json_malformed += sum("json_malformed");
            totals.json_type_mismatches += sum("json_type_mismatches");
        }
        stack.extend(node.children().into_iter().cloned());
    }
    (batches, totals)
}
