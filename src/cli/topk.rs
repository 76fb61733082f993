//! `weir topk TOPIC`: the K heaviest keys of a topic, live over a sliding window or over all
//! time, or once to the end with `--until-end`. It is a `weir-processors` pipeline like any
//! user's: records are keyed, counted per partition in a window stage whose panes are
//! `FrequentItems` sketches, and each partition's windows come out (closed, and periodically
//! while open) to this command, which merges the partitions' sketches per window and ranks
//! the merged sketch's keys ([`view`]). With `--group`, the
//! processes of a group share the partitions and each publishes its partitions' windows to a
//! topic of the group's ([`shared`]), so that every one of them merges all of them.

mod shared;
mod view;

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Args as ClapArgs, ValueEnum};
use tokio::sync::{mpsc, watch};
use weir_client::{Consumer, ConsumerConfig, ConsumerRecord, OffsetReset};
use weir_processors::pipeline::Pipeline;
use weir_processors::window::{
    default_budget_bytes, EmitMode, TopKAcc, TopKAggregator, Window, WindowResult, WindowSpec,
};

use super::broker::{block_on, BrokerAddress};
use super::sketch::bytes::parse_bytes;
use super::sketch::key_field::{Extracted, KeyField};
use view::{Partial, View, WindowChoice};

#[derive(Debug, ClapArgs)]
pub struct Args {
    /// Set from the global `--broker` flag.
    #[arg(skip)]
    pub broker: BrokerAddress,
    topic: String,
    /// How many keys to show.
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// Count by this field of each record's JSON value (a dotted path, `user.id`)
    /// instead of the record key.
    #[arg(long, value_name = "PATH")]
    key_field: Option<String>,
    /// The window of event time (record timestamps) to rank over, sliding every
    /// `--slide` (e.g. 5m); without it, all time.
    #[arg(long, value_parser = humantime::parse_duration)]
    window: Option<Duration>,
    /// How often the window moves and the view is redrawn; must divide --window.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    slide: Duration,
    /// Bytes of each sketch, keys included (each partition's pane, and a window's
    /// panes merged) [default: 1 KiB per key shown, 64 KiB at least].
    #[arg(long, value_name = "BYTES")]
    memory: Option<String>,
    /// Count the records already in the topic too (default: only those produced
    /// from now on, unless the group has committed offsets).
    #[arg(long)]
    from_beginning: bool,
    /// Share the partitions with every `weir topk` of this group; each shows the
    /// top K of all of them [default: a group of this process alone].
    #[arg(long)]
    group: Option<String>,
    /// Read every partition from its beginning up to its end as it is now, print
    /// the top K once and exit.
    #[arg(long, conflicts_with = "group")]
    until_end: bool,
    #[arg(long, value_enum, default_value_t)]
    output: Output,
}

#[derive(Debug, Clone, Copy, Default, ValueEnum)]
enum Output {
    /// A table, redrawn in place on a terminal.
    #[default]
    Table,
    /// One JSON object per view.
    Json,
}

/// The span of the window that stands for "all time": 2^42 ms from the epoch, to the year 2109.
const ALL_TIME_MS: i64 = 1 << 42;

/// What the command was asked, checked.
struct Query {
    topic: String,
    k: usize,
    budget_bytes: usize,
    spec: WindowSpec,
    /// The sliding window's size, or `None` for all time.
    window_ms: Option<i64>,
    slide: Duration,
    slide_ms: i64,
    key_field: Option<KeyField>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let query = check(&args)?;
    block_on(run_async(args, query))??;
    Ok(ExitCode::SUCCESS)
}

fn check(args: &Args) -> anyhow::Result<Query> {
    if args.k == 0 {
        bail!("--k must be at least 1");
    }
    let budget_bytes = match &args.memory {
        Some(text) => parse_bytes(text).context("--memory")?,
        None => default_budget_bytes(args.k),
    };
    TopKAggregator::new(args.k, budget_bytes)
        .with_context(|| format!("--memory {budget_bytes} bytes cannot hold a sketch"))?;
    let millis = |what: &str, d: Duration| -> anyhow::Result<i64> {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        if ms <= 0 {
            bail!("{what} must be at least 1ms");
        }
        Ok(ms)
    };
    let slide_ms = millis("--slide", args.slide)?;
    let (spec, window_ms) = match args.window {
        Some(window) => {
            let window_ms = millis("--window", window)?;
            if window_ms % slide_ms != 0 {
                bail!(
                    "--slide {} must divide --window {}: pick a slide that fits a whole number of times",
                    humantime::format_duration(args.slide),
                    humantime::format_duration(window)
                );
            }
            (WindowSpec::sliding(window, args.slide), Some(window_ms))
        }
        None => (
            WindowSpec::tumbling(Duration::from_millis(ALL_TIME_MS as u64)),
            None,
        ),
    };
    let key_field = args.key_field.as_deref().map(KeyField::parse).transpose()?;
    Ok(Query {
        topic: args.topic.clone(),
        k: args.k,
        budget_bytes,
        spec,
        window_ms,
        slide: args.slide,
        slide_ms,
        key_field,
    })
}

/// Records read and skipped, counted by the pipeline's first stages.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    pub records: AtomicU64,
    pub null_key: AtomicU64,
    pub not_json: AtomicU64,
    pub missing_field: AtomicU64,
    /// The largest record timestamp read (`i64::MIN` before any).
    pub max_timestamp_ms: AtomicI64,
}

async fn run_async(args: Args, query: Query) -> anyhow::Result<()> {
    let addr = args.broker.addr.clone();
    let partitions = partition_count(&addr, &query.topic).await?;
    let group = args.group.clone().unwrap_or_else(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        format!("weir-topk-{}-{nanos:x}", std::process::id())
    });
    // `--until-end`: the end of each partition now; the read stops there.
    let ends = if args.until_end {
        Some(end_offsets(&addr, &query.topic, partitions).await?)
    } else {
        None
    };
    let counts = Arc::new(Counts {
        max_timestamp_ms: AtomicI64::new(i64::MIN),
        ..Counts::default()
    });
    let (done_tx, mut done_rx) = watch::channel(false);
    let (results_tx, results_rx) = mpsc::unbounded_channel::<Partial>();
    let aggregator = TopKAggregator::new(query.k, query.budget_bytes)?;

    let source = Pipeline::from_topic(&query.topic).group(&group);
    let until = ends.clone().map(|ends| Until::new(ends, done_tx));
    let tracked = {
        let counts = Arc::clone(&counts);
        let mut until = until;
        source
            .map_with_context(move |record: ConsumerRecord, context| {
                if let Some(until) = until.as_mut() {
                    if !until.take(context.partition, context.offset) {
                        return None;
                    }
                }
                counts.records.fetch_add(1, Ordering::Relaxed);
                counts
                    .max_timestamp_ms
                    .fetch_max(context.timestamp_ms, Ordering::Relaxed);
                Some(record)
            })
            .name("read")
            .filter_map(|record| record)
    };
    let mut key_field = query.key_field.clone();
    let keyed = {
        let counts = Arc::clone(&counts);
        tracked
            .filter_map(move |record: ConsumerRecord| key_of(&record, &mut key_field, &counts))
            .name("key")
            .key_by_local(|_| ())
    };
    // Under --until-end only windows that can still hold the last record are kept.
    let last_only = args.until_end;
    let sink = {
        let counts = Arc::clone(&counts);
        let windows = keyed
            .window(query.spec)
            .name("topk")
            // A partition without records for a slide moves on with the wall clock,
            // so a quiet partition's windows still close and the view goes on.
            .idle_timeout(query.slide)
            .emit(EmitMode::Periodic(query.slide));
        // A named group outlives its processes: its window sketches are saved to
        // `<group>-topk-changelog` at each commit, and a process that takes a
        // partition over restores them instead of replaying the window's records.
        let windows = if args.group.is_some() {
            windows.changelog()
        } else {
            windows
        };
        windows.aggregate(aggregator.clone()).for_each(
            move |result: WindowResult<(), TopKAcc>, context| {
                if last_only
                    && result.window.end_ms <= counts.max_timestamp_ms.load(Ordering::Relaxed)
                {
                    return;
                }
                let _ = results_tx.send(Partial {
                    partition: context.partition,
                    window: result.window,
                    acc: result.value,
                    is_final: result.is_final,
                });
            },
        )
    };
    let runnable = sink.offset_reset(if args.from_beginning || args.until_end {
        OffsetReset::Earliest
    } else {
        OffsetReset::Latest
    });

    let mut view = View::new(query.k, aggregator, partitions, !args.until_end);
    let shared = match &args.group {
        Some(group) => Some(shared::Shared::start(&addr, group, &query).await?),
        None => None,
    };
    let pipeline = {
        let addr = addr.clone();
        tokio::spawn(async move {
            runnable
                .run(&addr, async move {
                    let read_to_end = async {
                        // Without --until-end the sender is gone at once: never done.
                        if done_rx.wait_for(|done| *done).await.is_err() {
                            std::future::pending::<()>().await;
                        }
                    };
                    tokio::select! {
                        _ = read_to_end => {}
                        _ = tokio::signal::ctrl_c() => {}
                    }
                })
                .await
        })
    };
    let printer = Printer::new(&query, args.output);
    if args.until_end {
        let stats = pipeline.await.context("the pipeline task failed")??;
        let mut results_rx = results_rx;
        while let Ok(partial) = results_rx.try_recv() {
            view.take(partial);
        }
        let max = counts.max_timestamp_ms.load(Ordering::Relaxed);
        let choice = match query.window_ms {
            None => WindowChoice::AllTime,
            Some(window_ms) => WindowChoice::Containing {
                timestamp_ms: max,
                window_ms,
                slide_ms: query.slide_ms,
            },
        };
        let shown = view.render(&choice);
        printer.print(&shown, &counts, true)?;
        tracing::debug!(records_in = stats.records_in, "topk read to the end");
        return Ok(());
    }
    live(
        view, results_rx, shared, pipeline, &printer, &counts, &query,
    )
    .await
}

/// The live view: redraws every slide until Ctrl-C (or the pipeline fails).
async fn live(
    mut view: View,
    mut results_rx: mpsc::UnboundedReceiver<Partial>,
    shared: Option<shared::Shared>,
    mut pipeline: tokio::task::JoinHandle<
        Result<weir_processors::pipeline::RunStats, weir_processors::pipeline::PipelineError>,
    >,
    printer: &Printer,
    counts: &Counts,
    query: &Query,
) -> anyhow::Result<()> {
    let mut redraw = tokio::time::interval(query.slide);
    redraw.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let choice = match query.window_ms {
        None => WindowChoice::AllTime,
        Some(_) => WindowChoice::Latest,
    };
    let (mut shared_in, shared_out) = match shared {
        Some(shared) => {
            let (sender, receiver) = shared.split();
            (Some(receiver), Some(sender))
        }
        None => (None, None),
    };
    loop {
        tokio::select! {
            outcome = &mut pipeline => {
                outcome.context("the pipeline task failed")??;
                return Ok(());
            }
            Some(partial) = results_rx.recv() => {
                match &shared_out {
                    // Every process of the group merges what all of them publish,
                    // its own included.
                    Some(out) => out.publish(&partial).await?,
                    None => view.take(partial),
                }
            }
            partial = async { shared_in.as_mut().expect("checked").next().await }, if shared_in.is_some() => {
                view.take(partial?);
            }
            _ = redraw.tick() => {
                let shown = view.render(&choice);
                printer.print(&shown, counts, false)?;
            }
        }
    }
}

/// `--until-end`: which records are still to be counted.
struct Until {
    ends: BTreeMap<u32, u64>,
    /// Partitions not yet read to their end; one read twice (a record delivered
    /// again) is taken off once.
    open: std::collections::BTreeSet<u32>,
    done: watch::Sender<bool>,
}

impl Until {
    fn new(ends: BTreeMap<u32, u64>, done: watch::Sender<bool>) -> Until {
        let open = ends
            .iter()
            .filter(|(_, end)| **end > 0)
            .map(|(partition, _)| *partition)
            .collect();
        let until = Until { ends, open, done };
        if until.open.is_empty() {
            let _ = until.done.send(true);
        }
        until
    }

    /// Whether the record at `offset` is below its partition's end; the last one
    /// below every end stops the pipeline. The offset just below a high watermark
    /// always holds a record: compaction keeps a log's last batch, and retention
    /// removes from the start.
    fn take(&mut self, partition: u32, offset: u64) -> bool {
        let Some(end) = self.ends.get(&partition).copied() else {
            return false;
        };
        if offset >= end {
            return false;
        }
        if offset + 1 == end && self.open.remove(&partition) && self.open.is_empty() {
            let _ = self.done.send(true);
        }
        true
    }
}

/// The key a record is counted under, or `None` (counted as skipped).
fn key_of(
    record: &ConsumerRecord,
    field: &mut Option<KeyField>,
    counts: &Counts,
) -> Option<Vec<u8>> {
    match field {
        None => match &record.key {
            Some(key) => Some(key.to_vec()),
            None => {
                counts.null_key.fetch_add(1, Ordering::Relaxed);
                None
            }
        },
        Some(field) => match field.extract(record.value.as_deref().unwrap_or_default()) {
            Extracted::Key(key) => Some(key.to_vec()),
            Extracted::NotJson => {
                counts.not_json.fetch_add(1, Ordering::Relaxed);
                None
            }
            Extracted::Missing => {
                counts.missing_field.fetch_add(1, Ordering::Relaxed);
                None
            }
        },
    }
}

async fn partition_count(addr: &str, topic: &str) -> anyhow::Result<u32> {
    let admin = weir_client::Admin::connect(addr).await?;
    match admin.describe_topic(topic).await {
        Ok(info) => Ok(info.partition_count),
        Err(error) if error.is_not_found() => {
            bail!("topic {topic:?} does not exist on the broker at {addr}")
        }
        Err(error) => Err(error).with_context(|| format!("cannot describe topic {topic:?}")),
    }
}

/// Each partition's end offset now. A partition whose records were all deleted
/// has nothing to read: its end is taken as 0 so the read does not wait for it.
async fn end_offsets(
    addr: &str,
    topic: &str,
    partitions: u32,
) -> anyhow::Result<BTreeMap<u32, u64>> {
    let mut consumer = Consumer::connect(addr, ConsumerConfig::default()).await?;
    let all: Vec<u32> = (0..partitions).collect();
    consumer.assign(topic, &all);
    let ends = consumer
        .end_offsets()
        .await
        .with_context(|| format!("cannot list the end offsets of topic {topic:?}"))?;
    let starts: BTreeMap<u32, u64> = consumer.beginning_offsets().await?.into_iter().collect();
    Ok(ends
        .into_iter()
        .map(|(partition, end)| {
            let start = starts.get(&partition).copied().unwrap_or(0);
            (partition, if end > start { end } else { 0 })
        })
        .collect())
}

/// Writes views as tables or JSON lines.
struct Printer {
    topic: String,
    by: String,
    window: String,
    output: Output,
    redraw_in_place: bool,
    out: Mutex<std::io::Stdout>,
}

impl Printer {
    fn new(query: &Query, output: Output) -> Printer {
        let by = match &query.key_field {
            Some(field) => field.path().to_string(),
            None => "key".to_string(),
        };
        let window = match query.window_ms {
            None => "all time".to_string(),
            Some(window_ms) => format!(
                "{} sliding every {}",
                humantime::format_duration(Duration::from_millis(window_ms as u64)),
                humantime::format_duration(query.slide)
            ),
        };
        Printer {
            topic: query.topic.clone(),
            by,
            window,
            output,
            redraw_in_place: std::io::stdout().is_terminal(),
            out: Mutex::new(std::io::stdout()),
        }
    }

    fn print(&self, shown: &view::Shown, counts: &Counts, last: bool) -> anyhow::Result<()> {
        let text = match self.output {
            Output::Json => {
                let mut line = serde_json::to_string(&view::json(
                    self.topic.as_str(),
                    &self.by,
                    shown,
                    counts,
                ))?;
                line.push('\n');
                line
            }
            Output::Table => {
                let table = view::table(&self.topic, &self.by, &self.window, shown, counts);
                if self.redraw_in_place && !last {
                    format!("\x1b[2J\x1b[H{table}")
                } else {
                    format!("{table}\n")
                }
            }
        };
        let mut out = self.out.lock().expect("not poisoned");
        out.write_all(text.as_bytes())?;
        out.flush()?;
        Ok(())
    }
}

/// The window a time falls in, for `--window`, with `start..end` its bounds.
pub(crate) fn window_containing(timestamp_ms: i64, window_ms: i64, slide_ms: i64) -> Window {
    let end_ms = timestamp_ms.div_euclid(slide_ms) * slide_ms + slide_ms;
    Window {
        start_ms: end_ms - window_ms,
        end_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_end_is_done_once_every_partition_reached_its_end_whatever_came_twice() {
        let (done, watch) = watch::channel(false);
        let mut until = Until::new(BTreeMap::from([(0, 2), (1, 1), (2, 0)]), done);
        assert!(until.take(0, 0));
        assert!(until.take(0, 1));
        assert!(until.take(0, 1), "delivered again");
        assert!(!*watch.borrow(), "partition 1 is still to read");
        assert!(!until.take(0, 2), "past the end");
        assert!(
            !until.take(2, 0),
            "an empty partition has no record to count"
        );
        assert!(until.take(1, 0));
        assert!(*watch.borrow());
    }
}
