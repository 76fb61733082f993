//! Query results equal what a direct computation over the records the test wrote gives.

mod support;

use std::collections::BTreeMap;

use support::{query_rows, record, write_topic, FixtureRecord, StoredRecord, T0_MS};

/// A deterministic pseudo-random sequence (no test dependency on a RNG crate).
fn lcg(seed: &mut u64) -> u64 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *seed >> 33
}

fn events(count: usize) -> Vec<FixtureRecord> {
    let mut seed = 42u64;
    (0..count)
        .map(|i| {
            let page = format!("/page/{}", lcg(&mut seed) % 7);
            let ms = lcg(&mut seed) % 1000;
            let country = ["fr", "de", "us"][(lcg(&mut seed) % 3) as usize];
            let value = format!(r#"{{"page":"{page}","ms":{ms},"geo":{{"country":"{country}"}}}}"#);
            let partition = (lcg(&mut seed) % 4) as u32;
            record(
                partition,
                T0_MS + (i as i64) * 10,
                Some(&format!("k{}", i % 13)),
                Some(&value),
            )
        })
        .collect()
}

fn json(stored: &StoredRecord) -> serde_json::Value {
    serde_json::from_slice(stored.record.value.as_deref().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_by_and_sums_match_records() {
    let dir = tempfile::tempdir().unwrap();
    let stored = write_topic(dir.path(), "events", 4, 17, &events(2000));
    let (ctx, _source) = support::session(dir.path()).await;

    let mut expected: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    for s in &stored {
        let v = json(s);
        let key = (
            v["page"].as_str().unwrap().to_string(),
            v["geo"]["country"].as_str().unwrap().to_string(),
        );
        let entry = expected.entry(key).or_default();
        entry.0 += 1;
        entry.1 += v["ms"].as_u64().unwrap();
    }
    let expected: Vec<Vec<String>> = expected
        .into_iter()
        .map(|((page, country), (n, ms))| vec![page, country, n.to_string(), ms.to_string()])
        .collect();
    let actual = query_rows(
        &ctx,
        "SELECT page, geo['country'] AS c, count(*), sum(ms) FROM events GROUP BY page, c ORDER BY page, c",
    )
    .await;
    assert_eq!(actual, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_scan_returns_every_record_with_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let stored = write_topic(dir.path(), "events", 4, 17, &events(500));
    let (ctx, _source) = support::session(dir.path()).await;

    let mut expected: Vec<Vec<String>> = stored
        .iter()
        .map(|s| {
            vec![
                s.record.partition.to_string(),
                s.offset.to_string(),
                (s.record.timestamp_ms - T0_MS).to_string(),
                String::from_utf8(s.record.key.clone().unwrap()).unwrap(),
                String::from_utf8(s.record.value.clone().unwrap()).unwrap(),
            ]
        })
        .collect();
    expected.sort();
    let mut actual = query_rows(
        &ctx,
        "SELECT partition, offset, CAST(timestamp AS BIGINT) - 1700000000000, key_str, value_str FROM events",
    )
    .await;
    actual.sort();
    assert_eq!(actual, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_batches_read_like_uncompressed_ones() {
    use weir_log::batch::Compression;
    for compression in [
        Compression::Gzip,
        Compression::Lz4,
        Compression::Zstd,
        Compression::Snappy,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let stored = support::write_topic_with(
            dir.path(),
            "events",
            2,
            50,
            &events(300),
            weir_log::LogConfig::default(),
            compression,
        );
        let (ctx, _source) = support::session(dir.path()).await;
        let total_ms: u64 = stored.iter().map(|s| json(s)["ms"].as_u64().unwrap()).sum();
        let rows = query_rows(&ctx, "SELECT count(*), sum(ms), count(offset) FROM events").await;
        assert_eq!(
            rows,
            vec![vec![
                stored.len().to_string(),
                total_ms.to_string(),
                stored.len().to_string()
            ]],
            "{compression:?}"
        );
    }
}
