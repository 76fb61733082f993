//! Per-minute count, sum, min, max and mean of each sensor's readings, with late data,
//! against a broker started in this process.
//!
//! cargo run -p weir-processors --example windowed_aggregates
//!
//! Readings are keyed by sensor, so each sensor's records share a partition (the
//! window state is per input partition) and `key_by_local` keys them there, with no
//! repartition topic. Results are written keyed by sensor and window start: a result
//! written twice (after a crash) overwrites itself under compaction, and a reader keeps
//! the last.

use std::time::Duration;

use anyhow::Context as _;
use weir_broker::{BrokerConfig, RunningBroker};
use weir_client::{
    Admin, Consumer, ConsumerConfig, OffsetReset, Producer, ProducerConfig, ProducerRecord,
};
use weir_processors::pipeline::Pipeline;
use weir_processors::window::{StreamTime, WindowSpec};

const SENSORS: u64 = 6;
const MINUTES: i64 = 5;
/// A minute boundary, so the windows print as whole minutes.
const START_MS: i64 = 1_700_000_040_000;

struct Reading {
    sensor: String,
    value: f64,
}

#[derive(Debug, Clone, Copy)]
struct Stats {
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

impl Stats {
    fn new() -> Stats {
        Stats {
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }
    fn add(&mut self, value: f64) {
        self.count += 1;
        self.sum += value;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }
    fn merge(&mut self, other: &Stats) {
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let broker = RunningBroker::start(BrokerConfig {
        data_dir: data.path().to_path_buf(),
        listen: "127.0.0.1:0".parse()?,
        offsets_topic_partitions: 1,
        ..BrokerConfig::default()
    })
    .await?;
    let addr = broker.local_addr().to_string();
    let admin = Admin::connect(&addr).await?;
    for topic in ["readings", "per-minute", "readings-late"] {
        admin.create_topic(topic, 3, 1, &Default::default()).await?;
    }

    // 20 readings a minute per sensor, a little out of order; then 3 readings two
    // minutes behind the rest, which arrive after their window closed.
    let producer = Producer::connect(&addr, ProducerConfig::default()).await?;
    let mut sent = Vec::new();
    for i in 0..MINUTES * 20 {
        for sensor in 0..SENSORS {
            let jitter_ms = ((i * 7 + sensor as i64 * 3) % 5) * 1_000;
            let timestamp_ms = START_MS + i * 3_000 - jitter_ms;
            let value = 20.0 + sensor as f64 + (i % 10) as f64 / 10.0;
            sent.push((sensor, timestamp_ms, value));
        }
    }
    for sensor in 0..3 {
        sent.push((sensor, START_MS + (MINUTES - 3) * 60_000 + 5_000, 99.0));
    }
    let mut deliveries = Vec::new();
    for (sensor, timestamp_ms, value) in &sent {
        let key = format!("sensor-{sensor}");
        let value = value.to_string();
        let record = ProducerRecord::new("readings", value.as_bytes())
            .with_key(key.as_bytes())
            .with_timestamp(*timestamp_ms);
        deliveries.push(producer.send(record).await?);
    }
    for delivery in deliveries {
        delivery.await?;
    }
    producer.close().await?;
    println!(
        "produced {} readings of {SENSORS} sensors over {MINUTES} minutes",
        sent.len()
    );

    let pipeline = Pipeline::from_topic("readings")
        .group("per-minute")
        .filter_map(|record| {
            let sensor = String::from_utf8(record.key?.to_vec()).ok()?;
            let value: f64 = std::str::from_utf8(record.value.as_deref()?)
                .ok()?
                .parse()
                .ok()?;
            Some(Reading { sensor, value })
        })
        .key_by_local(|reading| reading.sensor.clone())
        .window(WindowSpec::tumbling(Duration::from_secs(60)))
        .name("per-minute")
        .allowed_lateness(Duration::from_secs(5))
        // The input stops: after 2 s without a record a partition's time follows the
        // wall clock, and its last windows close.
        .idle_timeout(Duration::from_secs(2))
        // Each partition on its own clock: a reading two minutes behind the rest of its
        // partition is late however the worker reads the partitions. (Under the default,
        // the minimum over the worker's partitions, a partition not read yet holds every
        // window open, and whether these readings are late depends on that order.)
        .stream_time(StreamTime::PerPartition)
        .late_to_topic("readings-late")
        .fold(
            Stats::new,
            |stats: &mut Stats, reading: Reading| stats.add(reading.value),
            Stats::merge,
        )
        .to_topic("per-minute", |result| {
            let stats = result.value;
            let key = format!("{}@{}", result.key, result.window.start_ms);
            let value = format!(
                "{} [{}, {}) count={} sum={:.1} min={:.1} max={:.1} mean={:.2}",
                result.key,
                result.window.start_ms,
                result.window.end_ms,
                stats.count,
                stats.sum,
                stats.min,
                stats.max,
                stats.sum / stats.count as f64
            );
            (Some(key.into_bytes()), value.into_bytes())
        });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn({
        let addr = addr.clone();
        async move {
            pipeline
                .run(&addr, async {
                    let _ = stopped.await;
                })
                .await
        }
    });

    // One result per sensor and minute that had an on-time reading.
    let windows: std::collections::BTreeSet<(u64, i64)> = sent[..sent.len() - 3]
        .iter()
        .map(|(sensor, timestamp_ms, _)| (*sensor, timestamp_ms.div_euclid(60_000)))
        .collect();
    let expected = windows.len();
    let results = read(&addr, "per-minute", expected).await?;
    let mut lines: Vec<String> = results.iter().map(|(_, v)| v.clone()).collect();
    lines.sort();
    for line in &lines {
        println!("{line}");
    }
    let late = read(&addr, "readings-late", 3).await?;
    for (key, value) in &late {
        println!("late: {key} {value}");
    }
    stop.send(()).ok();
    let stats = worker.await??;
    println!(
        "{} readings in, {} results out, {} late readings ({} to readings-late)",
        stats.records_in, stats.records_out, stats.records_late, stats.records_late_out
    );
    broker.shutdown().await?;
    Ok(())
}

/// Reads `topic` until it holds `count` records: (key, value) of each.
async fn read(addr: &str, topic: &str, count: usize) -> anyhow::Result<Vec<(String, String)>> {
    let mut consumer = Consumer::connect(
        addr,
        ConsumerConfig {
            offset_reset: OffsetReset::Earliest,
            ..ConsumerConfig::default()
        },
    )
    .await?;
    consumer.assign(topic, &[0, 1, 2]);
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), async {
        while out.len() < count {
            for record in consumer.poll(Duration::from_millis(200)).await? {
                let text = |b: Option<bytes::Bytes>| {
                    b.map(|b| String::from_utf8_lossy(&b).into_owned())
                        .unwrap_or_default()
                };
                out.push((text(record.key), text(record.value)));
            }
        }
        anyhow::Ok(())
    })
    .await
    .with_context(|| format!("waiting for {count} records of {topic}"))??;
    Ok(out)
}
