//! `weir consume TOPIC --group G`: reads as one member of a consumer group, so
//! several copies share the topic's partitions, and commits where it stopped.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::Context;
use weir_client::{Admin, GroupConsumer, GroupConsumerConfig, Rebalance};

use super::consume::{print, Args, POLL_TIMEOUT};

/// Reads the partitions the group gives this member until, without `--follow`,
/// each reaches the end offset it had at start (or `--max-records`, or Ctrl-C /
/// SIGTERM), then commits what was printed and leaves the group.
pub(super) async fn run(args: &Args, group: &str) -> anyhow::Result<()> {
    let admin = Admin::connect(&args.broker.addr).await?;
    // An unknown topic is an error here, not an empty subscription. The ends are the
    // leaders': in a cluster the broker asked may follow a partition, and its own high
    // watermark lags.
    let ends: BTreeMap<u32, u64> = admin.end_offsets(&args.topic).await?.into_iter().collect();
    let config = GroupConsumerConfig {
        instance_id: args.instance_id.clone(),
        ..GroupConsumerConfig::new(group)
    };
    let mut consumer = GroupConsumer::subscribe(&args.broker.addr, &[&args.topic], config).await?;
    consumer.on_rebalance(|event| match event {
        Rebalance::Assigned(p) => tracing::info!(partitions = ?p, "assigned"),
        Rebalance::Revoked(p) => tracing::info!(partitions = ?p, "revoked"),
        Rebalance::Lost(p) => tracing::warn!(partitions = ?p, "lost"),
    });
    let mut terminate = terminate_signal()?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut printed = 0u64;
    let limit = args.max_records.unwrap_or(u64::MAX);
    let outcome: anyhow::Result<()> = async {
        loop {
            if printed >= limit || (!args.follow && caught_up(&consumer, &ends)) {
                return Ok(());
            }
            let records = tokio::select! {
                records = consumer.poll(POLL_TIMEOUT) => records?,
                _ = tokio::signal::ctrl_c() => return Ok(()),
                _ = terminate.recv() => return Ok(()),
            };
            // The first record of each partition not printed: the position to
            // commit, so the group reads it next time.
            let mut unprinted: BTreeMap<u32, u64> = BTreeMap::new();
            for record in records {
                let past_end = !args.follow
                    && ends
                        .get(&record.partition)
                        .is_some_and(|end| record.offset >= *end);
                if printed >= limit || past_end || unprinted.contains_key(&record.partition) {
                    unprinted.entry(record.partition).or_insert(record.offset);
                    continue;
                }
                if let Err(error) = print(&mut out, args, &record) {
                    if error.kind() == std::io::ErrorKind::BrokenPipe {
                        unprinted.entry(record.partition).or_insert(record.offset);
                        break;
                    }
                    return Err(error).context("cannot write to stdout");
                }
                printed += 1;
            }
            for (partition, offset) in unprinted {
                consumer.seek(&args.topic, partition, offset)?;
            }
            match out.flush() {
                Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                other => other.context("cannot write to stdout")?,
            }
        }
    }
    .await;
    out.flush().ok();
    let closed = consumer.close().await;
    outcome?;
    closed.with_context(|| format!("cannot commit the positions of group {group:?}"))
}

/// Every partition this member owns is read up to its end offset at start.
fn caught_up(consumer: &GroupConsumer, ends: &BTreeMap<u32, u64>) -> bool {
    let owned = consumer.assignment();
    if owned.is_empty() {
        return false;
    }
    let positions = consumer.positions();
    owned.iter().all(|(topic, partition)| {
        let end = ends.get(partition).copied().unwrap_or(0);
        end == 0
            || positions
                .iter()
                .any(|(t, p, offset)| t == topic && p == partition && *offset >= end)
    })
}

fn terminate_signal() -> anyhow::Result<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")
}
