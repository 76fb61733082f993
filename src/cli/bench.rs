//! `weir bench produce|consume|e2e`: throughput and latency of the broker,
//! in the manner of Kafka's producer and consumer performance tools.
//!
//! produce: latency is from `send` to acknowledgement, per record.
//! consume: reads the topic from the beginning; latency is per poll.
//! e2e: a producer and a consumer at once; latency is from `send` to the
//! record reaching the consumer (the send time travels in the value).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args as ClapArgs, Subcommand, ValueEnum};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tokio::sync::mpsc;
use weir_client::{
    Acks, Admin, ClientError, Consumer, ConsumerConfig, DeliveryFuture, OffsetReset, Producer,
    ProducerConfig, ProducerRecord, SeekTo,
};
use weir_log::batch::Compression;

use super::broker::{block_on, BrokerAddress};

mod kafka;

#[derive(Debug, ClapArgs)]
pub struct Args {
    /// Set from the global `--broker` flag.
    #[arg(skip)]
    pub broker: BrokerAddress,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Producer throughput and send-to-acknowledgement latency.
    Produce(BenchArgs),
    /// Consumer throughput reading the topic from the beginning.
    Consume(BenchArgs),
    /// Producer and consumer together: send-to-receive latency.
    E2e(BenchArgs),
}

#[derive(Debug, Clone, ClapArgs)]
struct BenchArgs {
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    record_size: usize,
    /// Partitions of the topic if the bench creates it.
    #[arg(long, default_value_t = 1)]
    partitions: u32,
    /// Replicas of each partition if the bench creates the topic (a cluster
    /// of at least that many brokers; with `--acks all`, every in-sync
    /// replica holds a record before it is acknowledged).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    replication_factor: u32,
    #[arg(long, default_value = "1")]
    acks: String,
    /// Batch size in bytes [default: 1048576; 65536 with --throughput].
    #[arg(long)]
    batch_size: Option<usize>,
    /// How long a batch waits for more records [default: 5; 1 with --throughput].
    #[arg(long)]
    linger_ms: Option<u64>,
    /// Produce requests in flight per partition.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..))]
    max_in_flight: u16,
    #[arg(long, default_value = "none")]
    compression: String,
    /// Records per second at most; -1 for no limit.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    throughput: i64,
    #[arg(long, default_value = "weir-bench")]
    topic: String,
    #[arg(long, value_enum, default_value_t)]
    output: Output,
    /// The listener to drive: gRPC (`--broker`) or the Kafka wire protocol (`--kafka`).
    #[arg(long, value_enum, default_value_t)]
    protocol: Protocol,
    /// The Kafka listener's address, with `--protocol kafka` (topics are still
    /// created through `--broker`).
    #[arg(long, default_value = "127.0.0.1:9092")]
    kafka: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
enum Protocol {
    #[default]
    Grpc,
    Kafka,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
enum Output {
    #[default]
    Text,
    Json,
}

/// The result of one run; units in the field names.
#[derive(Debug, Serialize)]
struct Report {
    mode: &'static str,
    records: u64,
    record_size: usize,
    errors: u64,
    elapsed_ms: f64,
    records_per_sec: f64,
    mb_per_sec: f64,
    latency_ms: Latency,
}

#[derive(Debug, Serialize)]
struct Latency {
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    block_on(run_async(args))??;
    Ok(ExitCode::SUCCESS)
}

async fn run_async(args: Args) -> anyhow::Result<()> {
    let addr = args.broker.addr;
    let (bench, report) = match args.mode {
        Mode::Produce(bench) => {
            let report = match bench.protocol {
                Protocol::Grpc => produce(&addr, &bench).await?,
                Protocol::Kafka => kafka::produce(&addr, &bench.kafka, &bench).await?,
            };
            (bench, report)
        }
        Mode::Consume(bench) => {
            let report = match bench.protocol {
                Protocol::Grpc => consume(&addr, &bench).await?,
                Protocol::Kafka => kafka::consume(&addr, &bench.kafka, &bench).await?,
            };
            (bench, report)
        }
        Mode::E2e(bench) => {
            let report = match bench.protocol {
                Protocol::Grpc => end_to_end(&addr, &bench).await?,
                Protocol::Kafka => kafka::end_to_end(&addr, &bench.kafka, &bench).await?,
            };
            (bench, report)
        }
    };
    match bench.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Output::Text => println!(
            "{} records {}, {:.1} records/sec ({:.2} MB/sec), latency ms p50 {:.2}, p99 {:.2}, p99.9 {:.2}, max {:.2}{}",
            report.records,
            match report.mode {
                "consume" => "consumed",
                "e2e" => "delivered end to end",
                _ => "sent",
            },
            report.records_per_sec,
            report.mb_per_sec,
            report.latency_ms.p50,
            report.latency_ms.p99,
            report.latency_ms.p999,
            report.latency_ms.max,
            if report.errors > 0 {
                format!(", {} errors", report.errors)
            } else {
                String::new()
            }
        ),
    }
    if report.errors > 0 {
        bail!("{} records were not acknowledged", report.errors);
    }
    Ok(())
}

/// Creates the topic with `--partitions` unless it exists; returns its partition count.
async fn ensure_topic(addr: &str, bench: &BenchArgs) -> anyhow::Result<u32> {
    let admin = Admin::connect(addr).await?;
    match admin.describe_topic(&bench.topic).await {
        Ok(topic) => Ok(topic.partition_count),
        Err(error) if error.is_not_found() => {
            admin
                .create_topic(
                    &bench.topic,
                    bench.partitions,
                    bench.replication_factor,
                    &Default::default(),
                )
                .await?;
            Ok(bench.partitions)
        }
        Err(error) => Err(error.into()),
    }
}

/// Throughput runs batch big; a run at a set rate measures latency, where a
/// 1 MiB batch filled for 5 ms would be most of what it measures.
const BATCH_SIZE_DEFAULT: usize = 1024 * 1024;
const LINGER_MS_DEFAULT: u64 = 5;
const BATCH_SIZE_AT_RATE_DEFAULT: usize = 64 * 1024;
const LINGER_MS_AT_RATE_DEFAULT: u64 = 1;

fn producer_config(bench: &BenchArgs) -> anyhow::Result<ProducerConfig> {
    let at_rate = bench.throughput > 0;
    let batch_size = bench.batch_size.unwrap_or(if at_rate {
        BATCH_SIZE_AT_RATE_DEFAULT
    } else {
        BATCH_SIZE_DEFAULT
    });
    let linger_ms = bench.linger_ms.unwrap_or(if at_rate {
        LINGER_MS_AT_RATE_DEFAULT
    } else {
        LINGER_MS_DEFAULT
    });
    let acks: Acks = bench.acks.parse()?;
    let compression: Compression = bench
        .compression
        .parse()
        .map_err(|e| anyhow::anyhow!("--compression {:?}: {e}", bench.compression))?;
    let request_bytes_max = ProducerConfig::default().request_bytes_max.max(batch_size);
    Ok(ProducerConfig {
        acks,
        compression,
        linger: Duration::from_millis(linger_ms),
        batch_size_bytes: batch_size,
        request_bytes_max,
        buffer_memory_bytes: (64 * 1024 * 1024usize).max(batch_size.saturating_mul(4)),
        max_in_flight_requests: usize::from(bench.max_in_flight),
        ..ProducerConfig::default()
    })
}

fn histogram() -> Histogram<u64> {
    // Microseconds from 1 µs to 10 minutes, 3 significant digits.
    Histogram::new_with_bounds(1, 600_000_000, 3).unwrap_or_else(|_| {
        Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant digits is valid"))
    })
}

fn progress(total: u64, output: Output) -> ProgressBar {
    if output == Output::Json {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) =
        ProgressStyle::with_template("{bar:40} {pos}/{len} records {per_sec} eta {eta}")
    {
        bar.set_style(style);
    }
    bar
}

/// A value of `size` bytes that does not compress to nothing.
fn payload(size: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..size)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            b'a' + (state % 26) as u8
        })
        .collect()
}

/// Records sent between two reads of the clock: at 2 M records/s, 32 µs.
const PACE_BURST_RECORDS: u64 = 64;

/// Sleeps as needed so that `sent` records take at least `sent / throughput` seconds.
async fn pace(started: Instant, sent: u64, throughput: i64) {
    if throughput <= 0 {
        return;
    }
    let due = Duration::from_secs_f64(sent as f64 / throughput as f64);
    let elapsed = started.elapsed();
    if due > elapsed + Duration::from_millis(1) {
        tokio::time::sleep(due - elapsed).await;
    }
}

fn report(
    mode: &'static str,
    bench: &BenchArgs,
    records: u64,
    bytes: u64,
    errors: u64,
    elapsed: Duration,
    latencies: &Histogram<u64>,
) -> Report {
    let seconds = elapsed.as_secs_f64().max(1e-9);
    let ms = |us: u64| us as f64 / 1000.0;
    Report {
        mode,
        records,
        record_size: bench.record_size,
        errors,
        elapsed_ms: seconds * 1000.0,
        records_per_sec: records as f64 / seconds,
        mb_per_sec: bytes as f64 / (1024.0 * 1024.0) / seconds,
        latency_ms: Latency {
            p50: ms(latencies.value_at_quantile(0.5)),
            p99: ms(latencies.value_at_quantile(0.99)),
            p999: ms(latencies.value_at_quantile(0.999)),
            max: ms(latencies.max()),
        },
    }
}

fn elapsed_us(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros())
        .unwrap_or(u64::MAX)
        .max(1)
}

async fn produce(addr: &str, bench: &BenchArgs) -> anyhow::Result<Report> {
    ensure_topic(addr, bench).await?;
    let producer = Producer::connect(addr, producer_config(bench)?).await?;
    let value = payload(bench.record_size);
    let bar = progress(bench.records, bench.output);
    // Deliveries travel to the collector a burst at a time: one channel
    // operation per burst instead of per record.
    let (deliveries, mut pending) = mpsc::channel::<Vec<(Instant, DeliveryFuture)>>(1024);
    let collector_bar = bar.clone();
    let collector = tokio::spawn(async move {
        let mut latencies = histogram();
        let mut errors = 0u64;
        let mut first_error = None;
        let mut done = 0u64;
        while let Some(burst) = pending.recv().await {
            for (sent_at, delivery) in burst {
                match delivery.await {
                    Ok(_) => {
                        let _ = latencies.record(elapsed_us(sent_at));
                    }
                    Err(error) => {
                        errors += 1;
                        first_error.get_or_insert(error);
                    }
                }
                done += 1;
                if done.is_multiple_of(4096) {
                    collector_bar.set_position(done);
                }
            }
        }
        (latencies, errors, first_error)
    });
    let started = Instant::now();
    let mut now = started;
    let mut burst = Vec::with_capacity(PACE_BURST_RECORDS as usize);
    for sent in 0..bench.records {
        // The clock is read (and the pace kept) once per burst of records, not per
        // record: at millions of records a second the reads were a fifth of this
        // process's CPU, taken from the broker sharing the machine. A record's send
        // time is then at most one burst early, so its latency is never understated.
        if sent.is_multiple_of(PACE_BURST_RECORDS) {
            if !burst.is_empty() {
                let full =
                    std::mem::replace(&mut burst, Vec::with_capacity(PACE_BURST_RECORDS as usize));
                deliveries
                    .send(full)
                    .await
                    .context("the delivery task ended early")?;
            }
            pace(started, sent, bench.throughput).await;
            now = Instant::now();
        }
        let record = ProducerRecord::new(&bench.topic, &value);
        burst.push((now, producer.send(record).await?));
    }
    if !burst.is_empty() {
        deliveries
            .send(burst)
            .await
            .context("the delivery task ended early")?;
    }
    drop(deliveries);
    producer.flush().await?;
    let (latencies, errors, first_error) = collector.await.context("delivery task failed")?;
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    producer.close().await?;
    if let Some(error) = first_error {
        eprintln!("weir: first failed record: {error}");
    }
    let bytes = bench.records * bench.record_size as u64;
    Ok(report(
        "produce",
        bench,
        bench.records,
        bytes,
        errors,
        elapsed,
        &latencies,
    ))
}

async fn consume(addr: &str, bench: &BenchArgs) -> anyhow::Result<Report> {
    let admin = Admin::connect(addr).await?;
    let spans = leader_spans(&admin, &bench.topic).await?;
    let partitions: Vec<u32> = spans.iter().map(|(p, ..)| *p).collect();
    let available: u64 = spans.iter().map(|(_, start, end)| end - start).sum();
    let target = bench.records.min(available);
    let mut consumer = Consumer::connect(
        addr,
        ConsumerConfig {
            offset_reset: OffsetReset::Earliest,
            ..ConsumerConfig::default()
        },
    )
    .await?;
    consumer.assign(&bench.topic, &partitions);
    consumer.seek_all(SeekTo::Beginning)?;
    let bar = progress(target, bench.output);
    let mut latencies = histogram();
    let (mut records, mut bytes) = (0u64, 0u64);
    let started = Instant::now();
    while records < target {
        let polled_at = Instant::now();
        let batch = consumer.poll(Duration::from_millis(500)).await?;
        let _ = latencies.record(elapsed_us(polled_at));
        // `--records` is what is counted, though the last poll may hold more.
        let wanted = usize::try_from(target - records).unwrap_or(usize::MAX);
        for record in batch.iter().take(wanted) {
            bytes += record.value.as_ref().map_or(0, |v| v.len() as u64)
                + record.key.as_ref().map_or(0, |k| k.len() as u64);
            records += 1;
        }
        bar.set_position(records);
    }
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    Ok(report(
        "consume", bench, records, bytes, 0, elapsed, &latencies,
    ))
}

/// How long e2e waits, once every record is acknowledged, for the last of them to
/// arrive: an acknowledged record is readable at once, so this is a hang guard.
pub(super) const ARRIVAL_TIMEOUT: Duration = Duration::from_secs(30);

/// `receiving`'s result, or (the task stopped) an error saying how many of `records`
/// had arrived (`arrived`) when `timeout` passed.
pub(super) async fn arrived_in_time<T>(
    receiving: tokio::task::JoinHandle<T>,
    arrived: impl Fn() -> u64,
    records: u64,
    timeout: Duration,
) -> anyhow::Result<Result<T, tokio::task::JoinError>> {
    let abort = receiving.abort_handle();
    match tokio::time::timeout(timeout, receiving).await {
        Ok(result) => Ok(result),
        Err(_) => {
            abort.abort();
            bail!(
                "{} of {records} records arrived within {timeout:?} of the last acknowledgement",
                arrived()
            )
        }
    }
}

async fn end_to_end(addr: &str, bench: &BenchArgs) -> anyhow::Result<Report> {
    if bench.record_size < 8 {
        bail!("--record-size must be at least 8 for e2e: the send time travels in the value");
    }
    let partitions = ensure_topic(addr, bench).await?;
    let mut consumer = Consumer::connect(
        addr,
        ConsumerConfig {
            fetch_max_wait: Duration::from_millis(100),
            ..ConsumerConfig::default()
        },
    )
    .await?;
    consumer.assign(&bench.topic, &(0..partitions).collect::<Vec<_>>());
    consumer.seek_all(SeekTo::End)?;
    for p in 0..partitions {
        consumer.position(p).await?;
    }
    let epoch = Instant::now();
    let records = bench.records;
    let bar = progress(records, bench.output);
    let consumer_bar = bar.clone();
    let receiving = tokio::spawn(async move {
        let mut latencies = histogram();
        let mut received = 0u64;
        while received < records {
            for record in consumer.poll(Duration::from_millis(500)).await? {
                let sent_us = record
                    .value
                    .as_ref()
                    .and_then(|v| v.get(..8))
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map_or(0, u64::from_le_bytes);
                let now_us = u64::try_from(epoch.elapsed().as_micros()).unwrap_or(u64::MAX);
                let _ = latencies.record(now_us.saturating_sub(sent_us).max(1));
                received += 1;
            }
            consumer_bar.set_position(received);
        }
        Ok::<_, ClientError>(latencies)
    });
    let producer = Producer::connect(addr, producer_config(bench)?).await?;
    let mut value = payload(bench.record_size);
    let started = Instant::now();
    let mut deliveries = Vec::new();
    for sent in 0..records {
        pace(started, sent, bench.throughput).await;
        let now_us = u64::try_from(epoch.elapsed().as_micros()).unwrap_or(u64::MAX);
        value[..8].copy_from_slice(&now_us.to_le_bytes());
        deliveries.push(
            producer
                .send(ProducerRecord::new(&bench.topic, &value))
                .await?,
        );
        if deliveries.len() >= 65_536 {
            for delivery in deliveries.drain(..) {
                delivery.await?;
            }
        }
    }
    for delivery in deliveries {
        delivery.await?;
    }
    let latencies = arrived_in_time(receiving, || bar.position(), records, ARRIVAL_TIMEOUT)
        .await?
        .context("consumer task failed")??;
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    producer.close().await?;
    let bytes = records * bench.record_size as u64;
    Ok(report("e2e", bench, records, bytes, 0, elapsed, &latencies))
}

/// Each partition of `topic` with its first offset and high watermark as its leader
/// answers them: the broker asked may follow a partition, and a follower's lag.
pub(super) async fn leader_spans(
    admin: &Admin,
    topic: &str,
) -> anyhow::Result<Vec<(u32, u64, u64)>> {
    let first = || format!("run `weir bench produce --topic {topic}` first");
    let starts = admin.start_offsets(topic).await.with_context(first)?;
    let ends: std::collections::BTreeMap<u32, u64> = admin
        .end_offsets(topic)
        .await
        .with_context(first)?
        .into_iter()
        .collect();
    Ok(starts
        .into_iter()
        .map(|(partition, start)| {
            let end = ends.get(&partition).copied().unwrap_or(start);
            (partition, start, end.max(start))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn e2e_stops_waiting_for_records_that_never_arrive_and_says_how_many_did() {
        let never = tokio::spawn(std::future::pending::<()>());
        let error = arrived_in_time(never, || 7, 10, Duration::from_millis(50))
            .await
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "7 of 10 records arrived within 50ms of the last acknowledgement"
        );
        let done = tokio::spawn(async { 3 });
        let result = arrived_in_time(done, || 10, 10, Duration::from_secs(5)).await;
        assert_eq!(result.unwrap().unwrap(), 3);
    }
}
