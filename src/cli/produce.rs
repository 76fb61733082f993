//! `weir produce TOPIC`: one record per input line (stdin or `--file`),
//! optionally `KEY<sep>VALUE`. Exits non-zero, saying how many, if any record
//! was not acknowledged.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args as ClapArgs;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::mpsc;
use weir_client::{Acks, DeliveryFuture, Producer, ProducerConfig, ProducerRecord};
use weir_log::batch::Compression;

use super::broker::{block_on, BrokerAddress};

#[derive(Debug, ClapArgs)]
pub struct Args {
    /// Set from the global `--broker` flag.
    #[arg(skip)]
    pub broker: BrokerAddress,
    topic: String,
    /// Read records from this file instead of stdin.
    #[arg(long)]
    file: Option<PathBuf>,
    /// Split each line into key and value at the first occurrence of SEP.
    #[arg(long, value_name = "SEP")]
    key_separator: Option<String>,
    /// Acknowledgements to wait for: 0, 1 or all.
    #[arg(long, default_value = "all")]
    acks: String,
    /// none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    compression: String,
    /// Send every record to this partition instead of by key.
    #[arg(long)]
    partition: Option<u32>,
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
    #[arg(long, default_value_t = 256 * 1024)]
    batch_size: usize,
    /// Requests in flight per partition (with idempotence; the broker keeps
    /// them in the order sent).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..))]
    max_in_flight: u16,
}

/// Deliveries awaited at most ahead of the reader; bounds memory for long inputs.
const DELIVERIES_QUEUED_MAX: usize = 65_536;

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    block_on(run_async(args))?
}

async fn run_async(args: Args) -> anyhow::Result<ExitCode> {
    let acks: Acks = args.acks.parse()?;
    let compression: Compression = args
        .compression
        .parse()
        .map_err(|e| anyhow::anyhow!("--compression {:?}: {e}", args.compression))?;
    if args.key_separator.as_deref() == Some("") {
        bail!("--key-separator must not be empty");
    }
    let config = ProducerConfig {
        acks,
        compression,
        linger: Duration::from_millis(args.linger_ms),
        batch_size_bytes: args.batch_size,
        max_in_flight_requests: usize::from(args.max_in_flight),
        ..ProducerConfig::default()
    };
    let producer = Producer::connect(&args.broker.addr, config).await?;
    let input: Box<dyn AsyncRead + Unpin + Send> = match &args.file {
        Some(path) => Box::new(
            tokio::fs::File::open(path)
                .await
                .with_context(|| format!("cannot open {}", path.display()))?,
        ),
        None => Box::new(tokio::io::stdin()),
    };

    let (deliveries, mut pending) = mpsc::channel::<DeliveryFuture>(DELIVERIES_QUEUED_MAX);
    let collector = tokio::spawn(async move {
        let (mut acknowledged, mut failed, mut first_error) = (0u64, 0u64, None);
        while let Some(delivery) = pending.recv().await {
            match delivery.await {
                Ok(_) => acknowledged += 1,
                Err(error) => {
                    failed += 1;
                    first_error.get_or_insert(error);
                }
            }
        }
        (acknowledged, failed, first_error)
    });

    let sent = send_lines(&args, &producer, input, &deliveries).await;
    drop(deliveries);
    producer.close().await?;
    let (acknowledged, failed, first_error) = collector.await.context("delivery task failed")?;
    let sent = sent?;
    if failed > 0 {
        let cause = first_error.map(|e| e.to_string()).unwrap_or_default();
        eprintln!("weir: {failed} of {sent} records were not acknowledged; first error: {cause}");
        return Ok(ExitCode::FAILURE);
    }
    debug_assert_eq!(acknowledged, sent);
    Ok(ExitCode::SUCCESS)
}

/// Sends every line; returns how many records were handed to the producer.
async fn send_lines(
    args: &Args,
    producer: &Producer,
    input: Box<dyn AsyncRead + Unpin + Send>,
    deliveries: &mpsc::Sender<DeliveryFuture>,
) -> anyhow::Result<u64> {
    let mut reader = BufReader::with_capacity(1 << 20, input);
    let mut line = Vec::new();
    let mut sent = 0u64;
    for line_number in 1u64.. {
        line.clear();
        if reader
            .read_until(b'\n', &mut line)
            .await
            .context("cannot read input")?
            == 0
        {
            break;
        }
        let text = strip_newline(&line);
        let (key, value) = match &args.key_separator {
            None => (None, text),
            Some(separator) => {
                let Some(at) = find(text, separator.as_bytes()) else {
                    bail!("line {line_number} has no key separator {separator:?}");
                };
                (Some(&text[..at]), &text[at + separator.len()..])
            }
        };
        let mut record = ProducerRecord::new(&args.topic, value);
        record.key = key;
        record.partition = args.partition;
        let delivery = producer.send(record).await?;
        deliveries
            .send(delivery)
            .await
            .context("delivery task ended early")?;
        sent += 1;
    }
    Ok(sent)
}

fn strip_newline(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_lose_their_line_ending_only() {
        assert_eq!(strip_newline(b"a b\r\n"), b"a b");
        assert_eq!(strip_newline(b"x\n"), b"x");
        assert_eq!(strip_newline(b"last"), b"last");
    }

    #[test]
    fn separator_is_found_at_its_first_occurrence() {
        assert_eq!(find(b"k::v::w", b"::"), Some(1));
        assert_eq!(find(b"kv", b"::"), None);
    }
}
