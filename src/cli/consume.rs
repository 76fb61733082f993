//! `weir consume TOPIC`: prints records of a topic, from a chosen start, until
//! the end offsets seen at start (or forever with `--follow`).

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args as ClapArgs, ValueEnum};
use weir_client::{Admin, Consumer, ConsumerConfig, ConsumerRecord, OffsetReset, SeekTo};

use super::broker::{block_on, BrokerAddress};

#[derive(Debug, ClapArgs)]
pub struct Args {
    /// Set from the global `--broker` flag.
    #[arg(skip)]
    pub broker: BrokerAddress,
    pub(super) topic: String,
    /// Read as a member of this consumer group: the group shares the topic's
    /// partitions among its members, and each partition starts where the group
    /// last committed (the first record for a partition with no commit).
    #[arg(long, conflicts_with_all = ["from_beginning", "offset", "from_time", "partition"])]
    group: Option<String>,
    /// group.instance.id: a static member, which gets its partitions back when
    /// it restarts within the session timeout.
    #[arg(long, requires = "group")]
    pub(super) instance_id: Option<String>,
    /// Start at the first record (the default without --follow).
    #[arg(long, group = "start")]
    from_beginning: bool,
    /// Start at this offset.
    #[arg(long, group = "start")]
    offset: Option<u64>,
    /// Start at the first record at or after this time (RFC 3339, e.g. 2024-05-01T12:00:00Z).
    #[arg(long, group = "start", value_name = "RFC3339")]
    from_time: Option<String>,
    /// Read only this partition (default: all).
    #[arg(long)]
    partition: Option<u32>,
    /// Stop after this many records.
    #[arg(long)]
    pub(super) max_records: Option<u64>,
    /// Keep waiting for new records (starts at the end unless a start is given).
    #[arg(long)]
    pub(super) follow: bool,
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// Between key and value with --format kv.
    #[arg(long, default_value = "\t")]
    key_separator: String,
}

#[derive(Debug, Clone, Copy, Default, ValueEnum)]
enum Format {
    /// The value alone.
    #[default]
    Value,
    /// Key, separator, value.
    Kv,
    /// One JSON object per record with partition, offset, timestamp, key, value.
    Json,
}

pub(super) const POLL_TIMEOUT: Duration = Duration::from_millis(500);

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    block_on(run_async(args))??;
    Ok(ExitCode::SUCCESS)
}

async fn run_async(args: Args) -> anyhow::Result<()> {
    if let Some(group) = args.group.clone() {
        return super::consume_group::run(&args, &group).await;
    }
    let start = start_position(&args)?;
    let admin = Admin::connect(&args.broker.addr).await?;
    let topic = admin.describe_topic(&args.topic).await?;
    let partitions: Vec<u32> = match args.partition {
        Some(p) if p < topic.partition_count => vec![p],
        Some(p) => bail!(
            "topic {:?} has {} partitions; partition {p} does not exist",
            args.topic,
            topic.partition_count
        ),
        None => (0..topic.partition_count).collect(),
    };
    let config = ConsumerConfig {
        offset_reset: OffsetReset::Error,
        ..ConsumerConfig::default()
    };
    let mut consumer = Consumer::connect(&args.broker.addr, config).await?;
    consumer.assign(&args.topic, &partitions);
    consumer.seek_all(start)?;
    if let SeekTo::Offset(offset) = start {
        check_offset(&consumer, &args.topic, offset).await?;
    }
    // Without --follow, stop at the end as it is now.
    let ends = if args.follow {
        Vec::new()
    } else {
        consumer.end_offsets().await?
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut printed = 0u64;
    let limit = args.max_records.unwrap_or(u64::MAX);
    loop {
        if printed >= limit {
            break;
        }
        if !args.follow {
            let mut done = true;
            for (partition, end) in &ends {
                if consumer.position(*partition).await? < *end {
                    done = false;
                }
            }
            if done {
                break;
            }
        }
        let records = tokio::select! {
            records = consumer.poll(POLL_TIMEOUT) => records?,
            _ = tokio::signal::ctrl_c() => break,
        };
        for record in records {
            if printed >= limit {
                break;
            }
            if !args.follow && past_end(&ends, &record) {
                continue;
            }
            if let Err(error) = print(&mut out, &args, &record) {
                // A closed pipe (`| head`) is a normal way to stop.
                if error.kind() == std::io::ErrorKind::BrokenPipe {
                    return Ok(());
                }
                return Err(error).context("cannot write to stdout");
            }
            printed += 1;
        }
        if let Err(error) = out.flush() {
            if error.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(());
            }
            return Err(error).context("cannot write to stdout");
        }
    }
    out.flush().ok();
    Ok(())
}

/// An explicit offset must lie within every chosen partition's range.
async fn check_offset(consumer: &Consumer, topic: &str, offset: u64) -> anyhow::Result<()> {
    let starts = consumer.beginning_offsets().await?;
    let ends = consumer.end_offsets().await?;
    for ((partition, start), (_, end)) in starts.iter().zip(&ends) {
        if offset < *start || offset > *end {
            bail!(
                "offset {offset} is out of range for topic {topic:?} partition {partition}: valid offsets are {start}..={end}"
            );
        }
    }
    Ok(())
}

fn start_position(args: &Args) -> anyhow::Result<SeekTo> {
    if let Some(offset) = args.offset {
        return Ok(SeekTo::Offset(offset));
    }
    if let Some(text) = &args.from_time {
        let time = humantime::parse_rfc3339_weak(text)
            .with_context(|| format!("--from-time {text:?} is not an RFC 3339 time"))?;
        let ms = time
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        return Ok(SeekTo::Time(ms));
    }
    if args.from_beginning || !args.follow {
        Ok(SeekTo::Beginning)
    } else {
        Ok(SeekTo::End)
    }
}

fn past_end(ends: &[(u32, u64)], record: &ConsumerRecord) -> bool {
    ends.iter()
        .any(|(p, end)| *p == record.partition && record.offset >= *end)
}

pub(super) fn print(
    out: &mut impl Write,
    args: &Args,
    record: &ConsumerRecord,
) -> std::io::Result<()> {
    let value = record.value.as_deref().unwrap_or(b"");
    match args.format {
        Format::Value => {
            out.write_all(value)?;
        }
        Format::Kv => {
            out.write_all(record.key.as_deref().unwrap_or(b""))?;
            out.write_all(args.key_separator.as_bytes())?;
            out.write_all(value)?;
        }
        Format::Json => {
            let text = |b: &Option<bytes::Bytes>| {
                b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned())
            };
            let json = serde_json::json!({
                "partition": record.partition,
                "offset": record.offset,
                "timestamp": record.timestamp_ms,
                "key": text(&record.key),
                "value": text(&record.value),
            });
            serde_json::to_writer(&mut *out, &json)?;
        }
    }
    out.write_all(b"\n")
}
