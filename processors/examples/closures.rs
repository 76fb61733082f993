//! A pipeline of closures against a broker started in this process: parse page views
//! (`map`/`filter_map`), drop bots (`filter`), key them by page (`key_by_local`), count each
//! page per minute (`window` + `count`) and write the counts to a topic (`to_topic`). The
//! views are produced keyed by page, so each page's views share a partition (window state is
//! per input partition) and `key_by_local` keys them where they are; for input keyed
//! otherwise, `key_by` would send them through a repartition topic first.
//!
//! cargo run -p weir-processors --example closures

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use weir_broker::{BrokerConfig, RunningBroker};
use weir_client::{
    Admin, Consumer, ConsumerConfig, OffsetReset, Producer, ProducerConfig, ProducerRecord,
};
use weir_processors::pipeline::Pipeline;
use weir_processors::window::WindowSpec;

/// A minute boundary, so the windows print as whole minutes.
const START_MS: i64 = 1_700_000_040_000;
const PAGES: [&str; 4] = ["/home", "/cart", "/search", "/checkout"];

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
    for topic in ["views", "page-counts"] {
        admin.create_topic(topic, 3, 1, &Default::default()).await?;
    }

    // `user,page,agent` lines keyed by page over three minutes; one user is a bot.
    let producer = Producer::connect(&addr, ProducerConfig::default()).await?;
    let mut expected: BTreeMap<(String, i64), u64> = BTreeMap::new();
    let mut deliveries = Vec::new();
    for i in 0..360i64 {
        let user = format!("user-{}", i % 7);
        let page = PAGES[(i as usize * 5 + i as usize / 7) % PAGES.len()];
        let agent = if i % 7 == 3 { "bot" } else { "browser" };
        let timestamp_ms = START_MS + i * 500;
        if agent != "bot" {
            *expected
                .entry((page.to_string(), timestamp_ms.div_euclid(60_000) * 60_000))
                .or_default() += 1;
        }
        let line = format!("{user},{page},{agent}");
        let record = ProducerRecord::new("views", line.as_bytes())
            .with_key(page.as_bytes())
            .with_timestamp(timestamp_ms);
        deliveries.push(producer.send(record).await?);
    }
    for delivery in deliveries {
        delivery.await?;
    }
    producer.close().await?;

    let pipeline = Pipeline::from_topic("views")
        .group("page-counts")
        .filter_map(|record| String::from_utf8(record.value?.to_vec()).ok())
        .map(|line| {
            let fields: Vec<String> = line.split(',').map(str::to_string).collect();
            fields
        })
        .filter(|fields| fields.len() == 3 && fields[2] != "bot")
        .key_by_local(|fields| fields[1].clone())
        .window(WindowSpec::tumbling(Duration::from_secs(60)))
        .name("per-minute")
        // The input stops: after 2 s without a record a partition's time follows the
        // wall clock, and its last windows close.
        .idle_timeout(Duration::from_secs(2))
        .count()
        .to_topic("page-counts", |result| {
            let key = format!("{}@{}", result.key, result.window.start_ms);
            (
                Some(key.into_bytes()),
                result.value.to_string().into_bytes(),
            )
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

    let counts = read(&addr, "page-counts", expected.len()).await?;
    for (key, value) in &counts {
        println!("{key}: {value} views");
    }
    let got: BTreeMap<(String, i64), u64> = counts
        .iter()
        .filter_map(|(key, value)| {
            let (page, start) = key.split_once('@')?;
            Some(((page.to_string(), start.parse().ok()?), value.parse().ok()?))
        })
        .collect();
    anyhow::ensure!(got == expected, "counts {got:?} differ from {expected:?}");
    stop.send(()).ok();
    let stats = worker.await??;
    println!(
        "{} views in, {} counts out",
        stats.records_in, stats.records_out
    );
    broker.shutdown().await?;
    Ok(())
}

/// Reads `topic` until it holds `count` records: (key, value) of each, sorted.
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
    out.sort();
    Ok(out)
}
