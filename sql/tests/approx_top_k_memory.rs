//! `approx_top_k` on data its summary cannot hold whole, and under a session memory limit:
//! a `GROUP BY` whose summaries do not fit fails naming `approx_top_k` and the bytes asked,
//! before allocating them; one that fits runs.

mod support;

use std::collections::HashMap;
use std::sync::Arc;

use support::{query_rows, record, write_topic, FixtureRecord, T0_MS};
use weir_processors::sketch::FrequentItems;
use weir_sql::datafusion::prelude::SessionContext;
use weir_sql::functions::sketch_budget_bytes;
use weir_sql::{LocalOptions, LocalSource, SqlOptions};

const PARTITIONS: u32 = 3;
/// Values `h00`..`h19`, value `hNN` occurring `3000 - 100·NN` times.
const HEAVY_VALUES: usize = 20;
/// Values occurring once each.
const NOISE_VALUES: usize = 60_000;

/// The key is the group, the value the item counted.
fn shuffled(mut records: Vec<FixtureRecord>) -> Vec<FixtureRecord> {
    // A fixed permutation (an LCG), so heavy and rare values interleave the same way on
    // every run.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for i in (1..records.len()).rev() {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        records.swap(i, (state >> 33) as usize % (i + 1));
    }
    for (i, r) in records.iter_mut().enumerate() {
        r.partition = i as u32 % PARTITIONS;
        r.timestamp_ms = T0_MS + i as i64;
    }
    records
}

fn skewed_values() -> (Vec<FixtureRecord>, HashMap<String, u64>) {
    let mut truth = HashMap::new();
    let mut records = Vec::new();
    for h in 0..HEAVY_VALUES {
        let value = format!("h{h:02}");
        let count = 3000 - 100 * h as u64;
        truth.insert(value.clone(), count);
        for _ in 0..count {
            records.push(record(0, 0, Some("all"), Some(&value)));
        }
    }
    for n in 0..NOISE_VALUES {
        records.push(record(0, 0, Some("all"), Some(&format!("noise-{n}"))));
    }
    (shuffled(records), truth)
}

async fn session(dir: &std::path::Path, memory_limit_bytes: Option<usize>) -> SessionContext {
    let source = Arc::new(LocalSource::open(dir, LocalOptions::default()).unwrap());
    let options = SqlOptions {
        infer_sample_records: 0,
        memory_limit_bytes,
        ..SqlOptions::default()
    };
    let ctx = weir_sql::new_session(source as _, options).await.unwrap();
    // Summaries per group are held by each partial aggregate, then the final one: fixed
    // parallelism keeps what fits the same on every machine.
    query_rows(&ctx, "SET datafusion.execution.target_partitions = 2").await;
    ctx
}

#[tokio::test]
async fn finds_the_top_values_among_more_distinct_values_than_the_summary_holds() {
    let dir = tempfile::tempdir().unwrap();
    let (records, truth) = skewed_values();
    write_topic(dir.path(), "words", PARTITIONS, 500, &records);

    // The data is beyond the summary: 60,020 distinct values against the 2,783 counters
    // of a k = 10 summary (64 KiB), so one stream through it purges (its maximum error was
    // 47 when written) and its counts become bounds.
    let mut one_summary = FrequentItems::with_budget(sketch_budget_bytes(10)).unwrap();
    for r in &records {
        one_summary.update(r.value.as_deref().unwrap(), 1);
    }
    let distinct = HEAVY_VALUES + NOISE_VALUES;
    assert!(
        distinct > 10 * one_summary.capacity(),
        "{distinct} distinct values, {} counters",
        one_summary.capacity()
    );
    assert!(one_summary.maximum_error() > 0);

    let ctx = session(dir.path(), None).await;
    let rows = query_rows(
        &ctx,
        "SELECT t.item['value'], t.item['count'] \
         FROM (SELECT unnest(approx_top_k(value_str, 10)) AS item FROM words) t",
    )
    .await;
    let values: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    let expected: Vec<String> = (0..10).map(|h| format!("h{h:02}")).collect();
    assert_eq!(values, expected);
    for row in &rows {
        let estimate: u64 = row[1].parse().unwrap();
        let true_count = truth[&row[0]];
        // Never under the truth; over it by at most what the three partial summaries
        // could each have lost to purges.
        assert!(estimate >= true_count, "{row:?} under {true_count}");
        assert!(
            estimate - true_count <= 3 * one_summary.maximum_error(),
            "{row:?} against {true_count}, error bound {}",
            one_summary.maximum_error()
        );
    }
}

/// `groups`: 200 groups (keys `g0`..`g199`) of 3 records each.
fn many_groups(dir: &std::path::Path) {
    let records: Vec<FixtureRecord> = (0..600)
        .map(|i| {
            record(
                i % PARTITIONS,
                T0_MS + i64::from(i),
                Some(&format!("g{}", i % 200)),
                Some(&format!("v{}", i % 7)),
            )
        })
        .collect();
    write_topic(dir, "groups", PARTITIONS, 100, &records);
}

/// No ORDER BY: a sort reserves room to spill (10 MB by default), more than the limit.
const GROUP_BY: &str = "SELECT key_str, approx_top_k(value_str, 10) FROM groups GROUP BY key_str";

/// 200 summaries of 64 KiB would take 12.5 MiB; the limit is 4 MiB.
const LIMIT_BYTES: usize = 4 * 1024 * 1024;

fn assert_names_approx_top_k(error: &weir_sql::datafusion::error::DataFusionError) {
    let text = error.to_string();
    assert!(text.contains("Resources exhausted"), "{text}");
    assert!(
        text.contains(&format!(
            "approx_top_k: a summary for k = 10 needs {} bytes and the session memory limit of {LIMIT_BYTES} bytes has",
            sketch_budget_bytes(10)
        )),
        "{text}"
    );
    assert!(text.contains("group by fewer values"), "{text}");
}

#[tokio::test]
async fn a_group_by_whose_summaries_exceed_the_memory_limit_fails_naming_approx_top_k() {
    let dir = tempfile::tempdir().unwrap();
    many_groups(dir.path());
    let ctx = session(dir.path(), Some(LIMIT_BYTES)).await;
    let error = ctx
        .sql(GROUP_BY)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap_err();
    assert_names_approx_top_k(&error);
    // Every reservation was given back when the query failed.
    assert_eq!(ctx.runtime_env().memory_pool.reserved(), 0);

    // Few enough groups fit under the same limit.
    let mut rows = query_rows(
        &ctx,
        "SELECT key_str, approx_top_k(value_str, 10)[1]['count'] FROM groups \
         WHERE key_str IN ('g1', 'g2', 'g3') GROUP BY key_str",
    )
    .await;
    rows.sort();
    assert_eq!(
        rows,
        vec![
            vec!["g1".to_string(), "1".to_string()],
            vec!["g2".to_string(), "1".to_string()],
            vec!["g3".to_string(), "1".to_string()],
        ]
    );
}

#[tokio::test]
async fn a_memory_limit_set_by_statement_applies_to_approx_top_k() {
    let dir = tempfile::tempdir().unwrap();
    many_groups(dir.path());
    let ctx = session(dir.path(), None).await;
    // Without a limit the 200 groups run.
    assert_eq!(query_rows(&ctx, GROUP_BY).await.len(), 200);
    ctx.sql("SET datafusion.runtime.memory_limit = '4M'")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let error = ctx
        .sql(GROUP_BY)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap_err();
    assert_names_approx_top_k(&error);
}
