//! SQL through a running broker: a broker in this process on an ephemeral loopback port,
//! records produced with the Rust client, and every answer checked against a computation
//! over the records the test produced.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use weir_broker::{BrokerConfig, RunningBroker};
use weir_client::{Acks, Admin, Producer, ProducerConfig, ProducerRecord};
use weir_sql::datafusion::prelude::SessionContext;
use weir_sql::{RemoteSource, SqlOptions, TopicSource};

const T0_MS: i64 = 1_700_000_000_000;
const PAGES: [&str; 5] = ["/home", "/cart", "/search", "/item", "/help"];
const CLICKS: usize = 3000;
const USERS: usize = 40;

const CLICKS_SCHEMA: &str = r#"{
  "type": "object",
  "properties": {
    "page": {"type": "string"},
    "ms": {"type": "integer"},
    "user": {"type": "object", "properties": {"id": {"type": "integer"}}}
  }
}"#;

struct Broker {
    running: Option<RunningBroker>,
    addr: String,
    _data: tempfile::TempDir,
}

impl Broker {
    async fn start() -> Broker {
        let data = tempfile::tempdir().unwrap();
        let config = BrokerConfig {
            data_dir: data.path().to_path_buf(),
            listen: "127.0.0.1:0".parse().unwrap(),
            ..BrokerConfig::default()
        };
        let running = RunningBroker::start(config).await.unwrap();
        let addr = running.local_addr().to_string();
        Broker {
            running: Some(running),
            addr,
            _data: data,
        }
    }

    async fn stop(mut self) {
        self.running.take().unwrap().shutdown().await.unwrap();
    }
}

/// One click as produced: page is skewed (page i about twice as often as page i+1).
#[derive(Debug, Clone)]
struct Click {
    user: u64,
    page: &'static str,
    ms: i64,
    timestamp_ms: i64,
}

fn clicks() -> Vec<Click> {
    (0..CLICKS)
        .map(|i| {
            let page = match i % 31 {
                0..=15 => PAGES[0],
                16..=23 => PAGES[1],
                24..=27 => PAGES[2],
                28..=29 => PAGES[3],
                _ => PAGES[4],
            };
            Click {
                user: (i * 7 % USERS) as u64,
                page,
                ms: (i % 97) as i64,
                timestamp_ms: T0_MS + i as i64 * 1000,
            }
        })
        .collect()
}

fn country(user: u64) -> &'static str {
    ["de", "fr", "jp", "us"][(user % 4) as usize]
}

async fn producer(addr: &str) -> Producer {
    let config = ProducerConfig {
        acks: Acks::Leader,
        linger: Duration::from_millis(2),
        batch_size_bytes: 4096,
        ..ProducerConfig::default()
    };
    Producer::connect(addr, config).await.unwrap()
}

/// Creates `clicks` (3 partitions, declared schema), `users` (1 partition, schema
/// inferred) and `blobs` (binary values that happen to be JSON) and produces them; a
/// few click values are not JSON.
async fn load(addr: &str) -> Vec<Click> {
    let admin = Admin::connect(addr).await.unwrap();
    let configs = BTreeMap::from([
        ("value.format".to_string(), "json".to_string()),
        ("value.schema".to_string(), CLICKS_SCHEMA.to_string()),
    ]);
    admin.create_topic("clicks", 3, 1, &configs).await.unwrap();
    let json = BTreeMap::from([("value.format".to_string(), "json".to_string())]);
    admin.create_topic("users", 1, 1, &json).await.unwrap();
    let binary = BTreeMap::from([("value.format".to_string(), "binary".to_string())]);
    admin.create_topic("blobs", 1, 1, &binary).await.unwrap();

    let producer = producer(addr).await;
    let clicks = clicks();
    let mut pending = Vec::new();
    for (i, click) in clicks.iter().enumerate() {
        let key = format!("user-{}", click.user);
        let value = if i % 500 == 499 {
            "not json".to_string()
        } else {
            format!(
                r#"{{"page":"{}","ms":{},"user":{{"id":{}}}}}"#,
                click.page, click.ms, click.user
            )
        };
        let record = ProducerRecord::new("clicks", value.as_bytes())
            .with_key(key.as_bytes())
            .with_timestamp(click.timestamp_ms);
        pending.push(producer.send(record).await.unwrap());
    }
    for user in 0..USERS as u64 {
        let value = format!(r#"{{"id":{user},"country":"{}"}}"#, country(user));
        let record = ProducerRecord::new("users", value.as_bytes()).with_timestamp(T0_MS);
        pending.push(producer.send(record).await.unwrap());
    }
    let blob = ProducerRecord::new("blobs", br#"{"looks":"like json"}"#);
    pending.push(producer.send(blob).await.unwrap());
    for delivery in pending {
        delivery.await.unwrap();
    }
    producer.close().await.unwrap();
    clicks
}

async fn session(addr: &str) -> (SessionContext, Arc<RemoteSource>) {
    let source = Arc::new(RemoteSource::connect(addr).await.unwrap());
    let ctx = weir_sql::new_session(Arc::clone(&source) as _, SqlOptions::default())
        .await
        .unwrap();
    (ctx, source)
}

/// Clicks whose value is JSON (the others decode to null columns).
fn valid(clicks: &[Click]) -> impl Iterator<Item = &Click> {
    clicks
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 500 != 499)
        .map(|(_, c)| c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_through_the_broker_match_the_produced_records() {
    let broker = Broker::start().await;
    let clicks = load(&broker.addr).await;
    let (ctx, source) = session(&broker.addr).await;

    let tables = support::query_rows(&ctx, "SHOW TABLES").await;
    let mut topics: Vec<&str> = tables
        .iter()
        .filter(|row| row[1] == "topics")
        .map(|row| row[2].as_str())
        .collect();
    topics.sort();
    assert_eq!(topics, ["blobs", "clicks", "users"]);

    // Group by over declared columns; the values that are not JSON are null pages.
    let mut expected: BTreeMap<String, (u64, i64)> = BTreeMap::new();
    for click in valid(&clicks) {
        let entry = expected.entry(click.page.to_string()).or_default();
        entry.0 += 1;
        entry.1 += click.ms;
    }
    let invalid = (CLICKS - valid(&clicks).count()) as u64;
    let mut expected_rows: Vec<Vec<String>> = expected
        .iter()
        .map(|(page, (n, ms))| vec![page.clone(), n.to_string(), ms.to_string()])
        .collect();
    expected_rows.push(vec!["NULL".into(), invalid.to_string(), "NULL".into()]);
    let rows = support::query_rows(
        &ctx,
        "SELECT page, count(*), sum(ms) FROM clicks GROUP BY page ORDER BY page NULLS LAST",
    )
    .await;
    assert_eq!(rows, expected_rows);

    // A time range seeks through the time index: an independent count, and fewer bytes
    // read than a full scan (an upper bound cannot stop a scan: producers set timestamps).
    let full_before = source.bytes_read().get();
    support::query_rows(&ctx, "SELECT count(*) FROM clicks").await;
    let full_scan = source.bytes_read().get() - full_before;
    let from = T0_MS + 2700 * 1000;
    let to = T0_MS + 2800 * 1000;
    let expected_in_range = clicks
        .iter()
        .filter(|c| c.timestamp_ms >= from && c.timestamp_ms < to)
        .count();
    let before = source.bytes_read().get();
    let rows = support::query_rows(
        &ctx,
        &format!(
            "SELECT count(*) FROM clicks WHERE timestamp >= to_timestamp_millis({from}) \
             AND timestamp < to_timestamp_millis({to})"
        ),
    )
    .await;
    let range_read = source.bytes_read().get() - before;
    assert_eq!(rows, vec![vec![expected_in_range.to_string()]]);
    assert!(
        range_read * 3 < full_scan,
        "the last 300 of {CLICKS} records read {range_read} bytes, a full scan {full_scan}"
    );

    // One partition reads that partition only.
    let admin = Admin::connect(&broker.addr).await.unwrap();
    let described = admin.describe_topic("clicks").await.unwrap();
    let p1 = &described.partitions[1];
    let before = source.bytes_read().get();
    let rows = support::query_rows(
        &ctx,
        "SELECT count(*), min(\"offset\"), max(\"offset\") FROM clicks WHERE partition = 1",
    )
    .await;
    assert_eq!(
        rows,
        vec![vec![
            p1.high_watermark.to_string(),
            "0".to_string(),
            (p1.high_watermark - 1).to_string()
        ]]
    );
    assert!(source.bytes_read().get() - before <= p1.size_bytes);

    // A join of two topics: clicks per country.
    let mut per_country: BTreeMap<&str, u64> = BTreeMap::new();
    for click in valid(&clicks) {
        *per_country.entry(country(click.user)).or_default() += 1;
    }
    let rows = support::query_rows(
        &ctx,
        "SELECT u.country, count(*) FROM clicks c JOIN users u ON c.\"user\"['id'] = u.id \
         GROUP BY u.country ORDER BY u.country",
    )
    .await;
    let expected: Vec<Vec<String>> = per_country
        .iter()
        .map(|(c, n)| vec![c.to_string(), n.to_string()])
        .collect();
    assert_eq!(rows, expected);

    // A window function: offsets are dense within each partition.
    let rows = support::query_rows(
        &ctx,
        "SELECT count(*) FROM (SELECT \"offset\" - lag(\"offset\") OVER \
         (PARTITION BY partition ORDER BY \"offset\") AS gap FROM clicks) WHERE gap = 1",
    )
    .await;
    assert_eq!(rows, vec![vec![(CLICKS - 3).to_string()]]);

    // Trending as SQL: the sketch's top 3 equal the exact top 3 on this skew.
    let mut exact: Vec<(u64, String)> = expected_rows
        .iter()
        .filter(|r| r[0] != "NULL")
        .map(|r| (r[1].parse().unwrap(), r[0].clone()))
        .collect();
    exact.sort_by(|a, b| b.cmp(a));
    let rows = support::query_rows(
        &ctx,
        "SELECT t.item['value'], t.item['count'] FROM \
         (SELECT unnest(approx_top_k(page, 3)) AS item FROM clicks) t",
    )
    .await;
    let expected: Vec<Vec<String>> = exact[..3]
        .iter()
        .map(|(n, page)| vec![page.clone(), n.to_string()])
        .collect();
    assert_eq!(rows, expected);

    // A topic declared binary keeps its values as bytes: no typed columns.
    let columns = support::query_rows(
        &ctx,
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'blobs' \
         ORDER BY ordinal_position",
    )
    .await;
    let columns: Vec<&str> = columns.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(
        columns,
        [
            "partition",
            "offset",
            "timestamp",
            "key",
            "value",
            "key_str",
            "value_str",
            "headers"
        ]
    );

    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_through_the_broker_is_an_error_not_a_crash() {
    let broker = Broker::start().await;
    load(&broker.addr).await;
    let (ctx, _source) = session(&broker.addr).await;

    let error = ctx.sql("SELECT * FROM nope").await.unwrap_err().to_string();
    assert!(
        error.contains("nope") && error.contains("not found"),
        "{error}"
    );
    let error = ctx
        .sql("SELECT colour FROM clicks")
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("colour"), "{error}");

    // A declared type the records do not match: the field is null, the row stays.
    let admin = Admin::connect(&broker.addr).await.unwrap();
    let wrong = BTreeMap::from([(
        "value.schema".to_string(),
        r#"{"type":"object","properties":{"page":{"type":"integer"}}}"#.to_string(),
    )]);
    admin.alter_configs("clicks", &wrong).await.unwrap();
    let (ctx, _source) = session(&broker.addr).await;
    let rows = support::query_rows(
        &ctx,
        "SELECT count(*), count(page), count(value_str) FROM clicks",
    )
    .await;
    assert_eq!(
        rows,
        vec![vec![
            CLICKS.to_string(),
            "0".to_string(),
            CLICKS.to_string()
        ]]
    );

    // The broker refuses a schema that is not an object.
    let bad = BTreeMap::from([("value.schema".to_string(), "[1,2]".to_string())]);
    let error = admin.alter_configs("clicks", &bad).await.unwrap_err();
    assert!(error.to_string().contains("value.schema"), "{error}");

    broker.stop().await;

    let error = RemoteSource::connect(&broker_addr_closed().await)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("cannot connect"), "{error}");
}

/// A loopback address nothing listens on.
async fn broker_addr_closed() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_over_a_topic_being_written_reads_a_consistent_prefix() {
    let broker = Broker::start().await;
    let admin = Admin::connect(&broker.addr).await.unwrap();
    admin
        .create_topic("live", 2, 1, &BTreeMap::new())
        .await
        .unwrap();
    let acknowledged = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let addr = broker.addr.clone();
        let acknowledged = Arc::clone(&acknowledged);
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let producer = producer(&addr).await;
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let mut pending = Vec::new();
                for _ in 0..200 {
                    let value = format!(r#"{{"n":{n}}}"#);
                    let partition = (n % 2) as u32;
                    let record =
                        ProducerRecord::new("live", value.as_bytes()).with_partition(partition);
                    pending.push(producer.send(record).await.unwrap());
                    n += 1;
                }
                for delivery in pending {
                    delivery.await.unwrap();
                }
                acknowledged.store(n, Ordering::SeqCst);
            }
            producer.close().await.unwrap();
        })
    };
    while acknowledged.load(Ordering::SeqCst) < 2000 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (ctx, _source) = session(&broker.addr).await;
    for _ in 0..5 {
        let before = acknowledged.load(Ordering::SeqCst);
        let rows = support::query_rows(
            &ctx,
            "SELECT partition, count(*), max(\"offset\") + 1, count(DISTINCT n) \
             FROM live GROUP BY partition ORDER BY partition",
        )
        .await;
        let after = acknowledged.load(Ordering::SeqCst);
        let mut total = 0u64;
        for row in &rows {
            // Every partition is a whole prefix: no gap, no duplicate.
            assert_eq!(row[1], row[2], "{rows:?}");
            assert_eq!(row[1], row[3], "{rows:?}");
            total += row[1].parse::<u64>().unwrap();
        }
        assert!(
            total >= before,
            "read {total}, {before} acknowledged before"
        );
        // Acknowledged records are in; at most one unacknowledged round trip beyond.
        assert!(
            total <= after + 200,
            "read {total}, {after} acknowledged after"
        );
    }
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    broker.stop().await;
}
