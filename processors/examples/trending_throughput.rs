//! Events per second of the trending pipeline through a broker: a broker in this process,
//! a topic of keyed clicks produced first, then one worker reading it from the beginning,
//! keying by the record key, and ranking the top 10 of a 5-minute window sliding every
//! 10 s (a `FrequentItems` sketch per pane). Timed from the first record the worker reads
//! to the last, so the group's join is not counted.
//!
//! cargo run --release -p weir-processors --example trending_throughput [events] [keys] [partitions] [changelog]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use weir_broker::group::GroupConfig;
use weir_broker::{BrokerConfig, RunningBroker};
use weir_client::{Admin, Producer, ProducerConfig, ProducerRecord};
use weir_processors::pipeline::Pipeline;
use weir_processors::window::WindowSpec;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let events: u64 = args.next().map_or(Ok(5_000_000), |a| a.parse())?;
    let keys: u64 = args.next().map_or(Ok(100_000), |a| a.parse())?;
    let partitions: u32 = args.next().map_or(Ok(3), |a| a.parse())?;
    // `changelog` as the fourth argument saves the window state to a changelog topic
    // at each commit, to measure what that costs.
    let changelog = args.next().as_deref() == Some("changelog");
    let dir = tempfile::tempdir()?;
    let broker = RunningBroker::start(BrokerConfig {
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".parse()?,
        offsets_topic_partitions: 1,
        groups: GroupConfig {
            initial_rebalance_delay_ms: 0,
            ..GroupConfig::default()
        },
        ..BrokerConfig::default()
    })
    .await?;
    let addr = broker.local_addr().to_string();
    Admin::connect(&addr)
        .await?
        .create_topic("clicks", partitions, 1, &Default::default())
        .await?;

    // Keys drawn with a skew (the square of a uniform draw favours small numbers),
    // 10 minutes of event time.
    let produced = Instant::now();
    let producer = Producer::connect(&addr, ProducerConfig::default()).await?;
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut deliveries = Vec::new();
    let span_ms = 600_000i64;
    for i in 0..events {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let uniform = (state >> 11) as f64 / (1u64 << 53) as f64;
        let key = format!("page-{}", (uniform * uniform * keys as f64) as u64);
        let timestamp_ms = 1_700_000_000_000 + (i as i64 * span_ms) / events as i64;
        let record = ProducerRecord::new("clicks", b"{}")
            .with_key(key.as_bytes())
            .with_timestamp(timestamp_ms);
        deliveries.push(producer.send(record).await?);
        if deliveries.len() >= 100_000 {
            for delivery in deliveries.drain(..) {
                delivery.await?;
            }
        }
    }
    for delivery in deliveries {
        delivery.await?;
    }
    println!(
        "produced {events} events over {keys} keys in {partitions} partitions in {:.1} s",
        produced.elapsed().as_secs_f64()
    );

    let read = Arc::new(AtomicU64::new(0));
    let first_read: Arc<Mutex<Option<Instant>>> = Arc::default();
    let (done, mut finished) = tokio::sync::watch::channel(false);
    let rows = Arc::new(AtomicU64::new(0));
    let runnable = {
        let (read, first_read, rows) = (
            Arc::clone(&read),
            Arc::clone(&first_read),
            Arc::clone(&rows),
        );
        let windows = Pipeline::from_topic("clicks")
            .group("trending")
            .filter_map(move |record| {
                if read.fetch_add(1, Ordering::Relaxed) == 0 {
                    *first_read.lock().unwrap() = Some(Instant::now());
                }
                if read.load(Ordering::Relaxed) == events {
                    let _ = done.send(true);
                }
                record.key.map(|key| key.to_vec())
            })
            .key_by_local(|key| key.clone())
            .window(WindowSpec::sliding(
                Duration::from_secs(300),
                Duration::from_secs(10),
            ));
        let windows = if changelog {
            windows.changelog()
        } else {
            windows
        };
        windows.top_k(10).for_each(move |_, _| {
            rows.fetch_add(1, Ordering::Relaxed);
        })
    };
    let stats = runnable
        .run(&addr, async move {
            let _ = finished.wait_for(|d| *d).await;
        })
        .await?;
    let elapsed = first_read
        .lock()
        .unwrap()
        .map_or(Duration::ZERO, |t| t.elapsed());
    println!(
        "trending top 10, 5 min sliding every 10 s, one worker{}: {} events in {:.2} s = {:.2} M events/s ({} rows of closed windows)",
        if changelog { ", changelog" } else { "" },
        stats.records_in,
        elapsed.as_secs_f64(),
        stats.records_in as f64 / elapsed.as_secs_f64() / 1e6,
        rows.load(Ordering::Relaxed)
    );
    broker.shutdown().await?;
    Ok(())
}
