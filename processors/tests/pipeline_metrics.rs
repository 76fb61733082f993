//! Per-operator metrics of pipelines against a real broker, scraped over HTTP as
//! Prometheus would: each operator's records in and out move by exactly what went
//! through it, the lag of every owned input partition reaches 0, a window operator
//! counts exactly the late records sent and holds state while a window is open, and
//! a worker that takes over a partition with window state counts its restore. The
//! exposition parses (here, and by `promtool check metrics` when it is installed).

mod common;

use common::spawn;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use weir_client::{Admin, Producer, ProducerConfig, ProducerRecord};
use weir_processors::pipeline::{Pipeline, Runnable};
use weir_processors::window::{StreamTime, WindowSpec};

/// A hang guard only: every wait ends on a condition.
const HANG_GUARD: Duration = Duration::from_secs(90);

/// Sends (partition, timestamp, value) records to `topic` and waits for every ack.
async fn produce(addr: &str, topic: &str, records: &[(u32, i64, String)]) {
    let producer = Producer::connect(addr, ProducerConfig::default())
        .await
        .unwrap();
    let mut deliveries = Vec::new();
    for (partition, timestamp_ms, value) in records {
        let record = ProducerRecord::new(topic, value.as_bytes())
            .with_partition(*partition)
            .with_timestamp(*timestamp_ms);
        deliveries.push(producer.send(record).await.unwrap());
    }
    for delivery in deliveries {
        delivery.await.unwrap();
    }
    producer.close().await.unwrap();
}

/// GET /metrics with HTTP/1.1, as text 0.0.4.
async fn scrape(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = "GET /metrics HTTP/1.1\r\nHost: weir\r\nConnection: close\r\n\r\n";
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(HANG_GUARD, stream.read_to_string(&mut response))
        .await
        .expect("the metrics listener answers")
        .unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.contains("text/plain; version=0.0.4"),
        "text 0.0.4 when OpenMetrics is not asked for: {head}"
    );
    body.to_string()
}

/// Scrapes until `done` holds of the parsed exposition; returns it.
async fn scrape_until(
    addr: SocketAddr,
    what: &str,
    done: impl Fn(&Exposition) -> bool,
) -> Exposition {
    let mut last = String::new();
    let waited = tokio::time::timeout(HANG_GUARD, async {
        loop {
            last = scrape(addr).await;
            let exposition = parse(&last);
            if done(&exposition) {
                return exposition;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    waited.unwrap_or_else(|_| panic!("never {what}; last scrape:\n{last}"))
}

/// Samples by name, then by their labels written `k="v",...` in order.
#[derive(Debug, Default)]
struct Exposition {
    samples: BTreeMap<String, BTreeMap<String, f64>>,
}

impl Exposition {
    fn get(&self, name: &str, labels: &str) -> Option<f64> {
        self.samples.get(name)?.get(labels).copied()
    }

    fn value(&self, name: &str, labels: &str) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no sample {name}{{{labels}}} in {self:#?}"))
    }

    fn series(&self, name: &str) -> usize {
        self.samples.get(name).map_or(0, BTreeMap::len)
    }
}

/// Parses Prometheus' text format 0.0.4 strictly: every sample belongs to the
/// family a `# TYPE` line declared before it (a counter's samples end in `_total`,
/// a histogram's in `_bucket`, `_sum` or `_count`), label values are quoted with
/// the format's escapes, values are numbers, a histogram's buckets only grow and
/// its `+Inf` bucket is its count.
fn parse(text: &str) -> Exposition {
    let mut exposition = Exposition::default();
    let mut family: Option<(String, String)> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(legal_name(name), "HELP of {name:?}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(legal_name(name), "TYPE of {name:?}");
            assert!(
                ["counter", "gauge", "histogram"].contains(&kind),
                "type {kind:?} of {name}"
            );
            if kind == "counter" {
                assert!(
                    name.ends_with("_total"),
                    "counter {name} is named with _total"
                );
            }
            family = Some((name.to_string(), kind.to_string()));
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected comment {line:?}");
        let (series, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("value of {line:?}"));
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => (name, labels.strip_suffix('}').unwrap()),
            None => (series, ""),
        };
        check_labels(labels);
        let (family_name, kind) = family.as_ref().expect("a TYPE line before samples");
        let belongs = match kind.as_str() {
            "histogram" => ["_bucket", "_sum", "_count"]
                .iter()
                .any(|suffix| name.strip_suffix(suffix) == Some(family_name)),
            _ => name == family_name,
        };
        assert!(belongs, "sample {name} under family {family_name} ({kind})");
        exposition
            .samples
            .entry(name.to_string())
            .or_default()
            .insert(labels.to_string(), value);
    }
    check_histograms(&exposition);
    exposition
}

fn legal_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `k="v",...`: names legal, values quoted, only `\\`, `\"` and `\n` escaped.
/// Returns the labels as written, escapes kept.
fn check_labels(labels: &str) -> Vec<(&str, &str)> {
    let mut pairs = Vec::new();
    let mut rest = labels;
    while !rest.is_empty() {
        let (name, after) = rest.split_once("=\"").expect("a label is name=\"value\"");
        assert!(legal_name(name), "label name {name:?}");
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next().expect("a label value ends with a quote") {
                (_, '\\') => {
                    let (_, escaped) = chars.next().unwrap();
                    assert!(matches!(escaped, '\\' | '"' | 'n'), "escape \\{escaped}");
                }
                (i, '"') => break i,
                (_, c) => assert_ne!(c, '\n'),
            }
        };
        pairs.push((name, &after[..end]));
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    pairs
}

fn check_histograms(exposition: &Exposition) {
    for (name, series) in &exposition.samples {
        let Some(family) = name.strip_suffix("_bucket") else {
            continue;
        };
        let mut by_series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for (labels, count) in series {
            let pairs = check_labels(labels);
            let (_, le) = *pairs.iter().find(|(name, _)| *name == "le").unwrap();
            let others: Vec<String> = pairs
                .iter()
                .filter(|(name, _)| *name != "le")
                .map(|(name, value)| format!("{name}=\"{value}\""))
                .collect();
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap_or_else(|_| panic!("le of {labels:?}"))
            };
            by_series
                .entry(others.join(","))
                .or_default()
                .push((bound, *count));
        }
        for (labels, mut buckets) in by_series {
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            assert!(
                buckets.windows(2).all(|w| w[0].1 <= w[1].1),
                "{family}{{{labels}}}"
            );
            let (bound, inf) = *buckets.last().unwrap();
            assert!(bound.is_infinite());
            assert_eq!(
                inf,
                exposition.value(&format!("{family}_count"), &labels),
                "{family}{{{labels}}}: +Inf is the count"
            );
        }
    }
}

/// `promtool check metrics`, when promtool is installed (Debian's `prometheus`
/// package; the broker's tests install it). The parse above runs either way.
fn promtool_check(exposition: &str) {
    use std::io::Write;
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        eprintln!("promtool is not installed: the exposition was checked by the parser only");
        return;
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics failed:\n{}{}\n{exposition}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn labels(group: &str, operator: &str) -> String {
    format!("group=\"{group}\",operator=\"{operator}\"")
}

fn lag_labels(group: &str, topic: &str, partition: u32) -> String {
    format!("group=\"{group}\",topic=\"{topic}\",partition=\"{partition}\"")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operator_counts_exactly_what_went_through_it_and_lag_reaches_zero() {
    let data = tempfile::tempdir().unwrap();
    let broker = common::start_broker(data.path(), 10_000).await;
    let addr = broker.local_addr().to_string();
    let admin = Admin::connect(&addr).await.unwrap();
    admin
        .create_topic("in", 4, 1, &Default::default())
        .await
        .unwrap();
    admin
        .create_topic("out", 4, 1, &Default::default())
        .await
        .unwrap();
    // 200 records, 160 numbers (40 do not parse), 80 of them even.
    let records: Vec<(u32, i64, String)> = (0..200u32)
        .map(|n| {
            let value = if n % 5 == 4 {
                "x".to_string()
            } else {
                n.to_string()
            };
            (n % 4, 1_000, value)
        })
        .collect();
    let parsed = records.iter().filter(|r| r.2 != "x").count() as f64;
    let even = records
        .iter()
        .filter(|r| r.2.parse::<u64>().is_ok_and(|n| n % 2 == 0))
        .count() as f64;
    assert_eq!((parsed, even), (160.0, 80.0));

    let runnable = Pipeline::from_topic("in")
        .group("tens")
        .filter_map(|r| {
            std::str::from_utf8(r.value.as_deref()?)
                .ok()?
                .parse::<u64>()
                .ok()
        })
        .name("parse")
        .filter(|n| n % 2 == 0)
        .map(|n| n * 10)
        .key_by(|n| n % 7)
        .to_topic("out", |(key, n)| {
            (
                Some(key.to_string().into_bytes()),
                n.to_string().into_bytes(),
            )
        })
        .commit_interval(Duration::from_millis(100))
        .metrics_listen("127.0.0.1:0");
    let metrics_addr = runnable.metrics_addr().expect("bound at once");
    let metrics = runnable.metrics();
    let (stop, worker) = spawn(runnable, &addr);
    // An operator's series exist before its first record: it reads 0, not nothing.
    let before = scrape_until(metrics_addr, "had the operators' series", |e| {
        e.series("weir_processor_records_in_total") == 6
    })
    .await;
    assert_eq!(
        before.value("weir_processor_records_in_total", &labels("tens", "parse")),
        0.0
    );
    produce(&addr, "in", &records).await;

    let seen = scrape_until(
        metrics_addr,
        "were every output counted and every lag 0",
        |e| {
            e.get(
                "weir_processor_records_out_total",
                &labels("tens", "to_topic-5"),
            ) == Some(even)
                && (0..4).all(|p| {
                    e.get("weir_processor_consumer_lag", &lag_labels("tens", "in", p)) == Some(0.0)
                })
        },
    )
    .await;
    let expected = [
        ("from_topic-0", 200.0, 200.0),
        ("parse", 200.0, parsed),
        ("filter-2", parsed, even),
        ("map-3", even, even),
        ("key_by-4", even, even),
        ("to_topic-5", even, even),
    ];
    let counts = |e: &Exposition| -> Vec<(&str, f64, f64)> {
        expected
            .iter()
            .map(|(operator, _, _)| {
                let labels = labels("tens", operator);
                (
                    *operator,
                    e.value("weir_processor_records_in_total", &labels),
                    e.value("weir_processor_records_out_total", &labels),
                )
            })
            .collect()
    };
    assert_eq!(counts(&seen), expected);
    assert_eq!(
        seen.series("weir_processor_records_in_total"),
        expected.len()
    );
    // Stateless operators have no window series.
    assert_eq!(seen.series("weir_processor_late_records_total"), 0);
    assert_eq!(seen.series("weir_processor_state_bytes"), 0);
    assert_eq!(seen.series("weir_processor_consumer_lag"), 4);
    promtool_check(&scrape(metrics_addr).await);

    stop.send(()).unwrap();
    let stats = worker.await.unwrap().unwrap();
    assert_eq!((stats.records_in, stats.records_out), (200, 80));
    // After the run: the counters stay, the lag of partitions no longer owned goes,
    // and the listener is closed.
    let after = parse(&metrics.encode());
    assert_eq!(counts(&after), expected);
    assert_eq!(after.series("weir_processor_consumer_lag"), 0);
    assert!(
        TcpStream::connect(metrics_addr).await.is_err(),
        "the listener stops with the run"
    );
    broker.shutdown().await.unwrap();
}

/// Counts per key and 10 s window; the window's results go to `tx`.
fn counting(tx: mpsc::UnboundedSender<(String, i64, u64)>) -> Runnable {
    Pipeline::from_topic("events")
        .group("windows")
        .key_by_local(|r| {
            String::from_utf8(r.value.as_deref().unwrap_or_default().to_vec()).unwrap()
        })
        .window(WindowSpec::tumbling(Duration::from_secs(10)))
        // Windows close by event time only, while the test runs, each partition's
        // by its own records: the late count does not depend on the read order.
        .idle_timeout(Duration::from_secs(3_600))
        .stream_time(StreamTime::PerPartition)
        .count()
        .name("per-10s")
        .for_each(move |result, _| {
            let _ = tx.send((result.key, result.window.start_ms, result.value));
        })
        .commit_interval(Duration::from_millis(100))
        .metrics_listen("127.0.0.1:0")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_operator_counts_late_records_state_and_its_restore() {
    let data = tempfile::tempdir().unwrap();
    let broker = common::start_broker(data.path(), 10_000).await;
    let addr = broker.local_addr().to_string();
    let admin = Admin::connect(&addr).await.unwrap();
    admin
        .create_topic("events", 2, 1, &Default::default())
        .await
        .unwrap();
    // Per partition: nine records in [0, 10 s), one at 25 s that closes it, then
    // three late ones for the closed window, then one more in the open [20 s, 30 s).
    let mut records = Vec::new();
    for partition in 0..2u32 {
        let key = format!("k{partition}");
        records.extend((1..=9).map(|s| (partition, s * 1_000, key.clone())));
        records.push((partition, 25_000, key.clone()));
        records.extend([500, 3_000, 9_999].map(|ts| (partition, ts, key.clone())));
        records.push((partition, 26_000, key.clone()));
    }
    let late_sent = 6.0;
    let window_in = records.len() as f64;

    let (tx, mut rx) = mpsc::unbounded_channel();
    let runnable = counting(tx.clone());
    let metrics_addr = runnable.metrics_addr().unwrap();
    let first_metrics = runnable.metrics();
    let (stop, worker) = spawn(runnable, &addr);
    produce(&addr, "events", &records).await;
    let window = labels("windows", "per-10s");
    let seen = scrape_until(
        metrics_addr,
        "were the late records counted and state measured",
        |e| {
            e.get("weir_processor_records_in_total", &window) == Some(window_in)
                && e.get("weir_processor_state_bytes", &window)
                    .is_some_and(|b| b > 0.0)
                && (0..2).all(|p| {
                    e.get(
                        "weir_processor_consumer_lag",
                        &lag_labels("windows", "events", p),
                    ) == Some(0.0)
                })
        },
    )
    .await;
    assert_eq!(
        seen.value("weir_processor_late_records_total", &window),
        late_sent
    );
    // One closed window per partition's key: [0, 10 s) with nine.
    let mut results = Vec::new();
    for _ in 0..2 {
        results.push(
            tokio::time::timeout(HANG_GUARD, rx.recv())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    results.sort();
    assert_eq!(
        results,
        [("k0".to_string(), 0, 9), ("k1".to_string(), 0, 9)]
    );
    assert_eq!(seen.value("weir_processor_records_out_total", &window), 2.0);
    assert_eq!(
        seen.value(
            "weir_processor_records_in_total",
            &labels("windows", "for_each-3")
        ),
        2.0
    );
    // No partition had a commit to restore from.
    assert_eq!(
        seen.value(
            "weir_processor_state_restore_duration_seconds_count",
            &window
        ),
        0.0
    );
    promtool_check(&scrape(metrics_addr).await);
    stop.send(()).unwrap();
    worker.await.unwrap().unwrap();
    let stopped = parse(&first_metrics.encode());
    assert_eq!(
        stopped.value("weir_processor_state_bytes", &window),
        0.0,
        "a stopped worker holds no state"
    );

    // The next worker rebuilds both partitions' open [20 s, 30 s) windows from the
    // commits, replaying the records after the oldest one they held.
    let runnable = counting(tx);
    let metrics_addr = runnable.metrics_addr().unwrap();
    let (stop, worker) = spawn(runnable, &addr);
    let restored = scrape_until(metrics_addr, "were both partitions restored", |e| {
        e.get(
            "weir_processor_state_restore_duration_seconds_count",
            &window,
        ) == Some(2.0)
            && e.get("weir_processor_state_bytes", &window)
                .is_some_and(|b| b > 0.0)
    })
    .await;
    // Replayed: per partition the records from 25 s on, the late ones among them
    // counted late before and not again.
    assert_eq!(
        restored.value("weir_processor_records_in_total", &window),
        10.0
    );
    assert_eq!(
        restored.value("weir_processor_late_records_total", &window),
        0.0
    );
    assert_eq!(
        restored.value("weir_processor_records_out_total", &window),
        0.0
    );
    stop.send(()).unwrap();
    worker.await.unwrap().unwrap();
    broker.shutdown().await.unwrap();
}
