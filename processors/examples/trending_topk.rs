//! Trending pages: a click generator whose popular pages drift, and a pipeline that
//! reports the 5 most clicked pages of the last 5 minutes every minute, against a
//! broker started in this process.
//!
//! cargo run -p weir-processors --example trending_topk
//!
//! Clicks are keyed by page, so each page's clicks share a partition (`key_by_local`
//! keys them there, with no repartition topic) and each partition's top 5 is exact for
//! its pages; the overall top 5 of a window is the best 5 of the partitions' rows (their
//! pages are disjoint), which the reader takes.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use weir_broker::{BrokerConfig, RunningBroker};
use weir_client::{
    Admin, Consumer, ConsumerConfig, OffsetReset, Producer, ProducerConfig, ProducerRecord,
};
use weir_processors::pipeline::Pipeline;
use weir_processors::sketch::accuracy::{Xoshiro256, ZipfSampler};
use weir_processors::window::WindowSpec;

const PAGES: u64 = 500;
const MINUTES: i64 = 12;
const CLICKS_PER_MINUTE: i64 = 6_000;
const TOP: usize = 5;
const PARTITIONS: u32 = 3;
const START_MS: i64 = 1_700_000_040_000;

/// count, error, page.
type Row = (u64, u64, String);

struct Click {
    page: String,
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
    for topic in ["clicks", "trending-pages"] {
        admin
            .create_topic(topic, PARTITIONS, 1, &Default::default())
            .await?;
    }

    // Zipf-distributed ranks; the page at each rank drifts by 7 pages a minute, so
    // what is popular changes under the window.
    let sampler = ZipfSampler::new(PAGES, 1.2)?;
    let mut rng = Xoshiro256::seed(42);
    let producer = Producer::connect(&addr, ProducerConfig::default()).await?;
    let mut deliveries = Vec::new();
    for minute in 0..MINUTES {
        for i in 0..CLICKS_PER_MINUTE {
            let rank = sampler.sample(&mut rng);
            let page = format!("/page/{}", (rank + 7 * minute as u64) % PAGES);
            let timestamp_ms = START_MS + minute * 60_000 + i * 60_000 / CLICKS_PER_MINUTE;
            let record = ProducerRecord::new("clicks", page.as_bytes())
                .with_key(page.as_bytes())
                .with_timestamp(timestamp_ms);
            deliveries.push(producer.send(record).await?);
        }
    }
    for delivery in deliveries {
        delivery.await?;
    }
    producer.close().await?;
    println!(
        "produced {} clicks over {MINUTES} minutes",
        MINUTES * CLICKS_PER_MINUTE
    );

    let pipeline = Pipeline::from_topic("clicks")
        .group("trending")
        .filter_map(|record| {
            let page = String::from_utf8(record.value?.to_vec()).ok()?;
            Some(Click { page })
        })
        .key_by_local(|click| click.page.clone())
        .window(WindowSpec::sliding(
            Duration::from_secs(300),
            Duration::from_secs(60),
        ))
        .name("trending")
        .idle_timeout(Duration::from_secs(2))
        // Each partition's window sketches are saved to `trending-trending-changelog` at
        // every commit, so a restarted worker goes on from them instead of replaying.
        .changelog()
        .top_k(TOP)
        .map_with_context(|row, context| (context.partition, row))
        .to_topic("trending-pages", |(partition, row)| {
            // Keyed by window, partition and rank: a row written again after a
            // crash replaces the first.
            let key = format!("{}/{partition}/{}", row.window.start_ms, row.rank);
            let value = format!(
                "{},{},{},{},{},{}",
                row.window.start_ms, row.window.end_ms, row.rank, row.key, row.count, row.error
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

    // The windows ending at minutes 1 to MINUTES, each with TOP rows per partition.
    // (The four after them close only when idle time has moved the clock four more
    // minutes on.)
    let windows = MINUTES as usize;
    let rows = read(&addr, windows * TOP * PARTITIONS as usize).await?;
    let mut by_window: BTreeMap<(i64, i64), Vec<Row>> = BTreeMap::new();
    for row in rows {
        let fields: Vec<&str> = row.split(',').collect();
        let window = (fields[0].parse::<i64>()?, fields[1].parse::<i64>()?);
        let (count, error) = (fields[4].parse::<u64>()?, fields[5].parse::<u64>()?);
        by_window
            .entry(window)
            .or_default()
            .push((count, error, fields[3].to_string()));
    }
    for ((start, end), mut rows) in by_window {
        rows.sort_by(|a, b| b.0.cmp(&a.0).then(a.2.cmp(&b.2)));
        rows.dedup();
        let top: Vec<String> = rows
            .iter()
            .take(TOP)
            .map(|(count, error, page)| format!("{page} {count}±{error}"))
            .collect();
        println!(
            "[{:+}, {:+}) min: {}",
            (start - START_MS) / 60_000,
            (end - START_MS) / 60_000,
            top.join("  ")
        );
    }
    stop.send(()).ok();
    let stats = worker.await??;
    println!(
        "{} clicks in, {} rows out",
        stats.records_in, stats.records_out
    );
    broker.shutdown().await?;
    Ok(())
}

/// Reads "trending-pages" until it holds `count` rows.
async fn read(addr: &str, count: usize) -> anyhow::Result<Vec<String>> {
    let mut consumer = Consumer::connect(
        addr,
        ConsumerConfig {
            offset_reset: OffsetReset::Earliest,
            ..ConsumerConfig::default()
        },
    )
    .await?;
    let partitions: Vec<u32> = (0..PARTITIONS).collect();
    consumer.assign("trending-pages", &partitions);
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(120), async {
        while out.len() < count {
            for record in consumer.poll(Duration::from_millis(200)).await? {
                out.push(
                    String::from_utf8_lossy(record.value.as_deref().unwrap_or_default())
                        .into_owned(),
                );
            }
        }
        anyhow::Ok(())
    })
    .await
    .with_context(|| format!("waiting for {count} rows"))??;
    Ok(out)
}
