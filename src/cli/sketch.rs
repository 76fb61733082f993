//! `weir sketch`: the sketch accuracy-versus-memory benchmark (`bench`) on Zipf streams, a file of
//! keys or a topic, and the generator of its Zipf streams as files (`gen`), so other tools can be
//! run on the very same events.

pub(super) mod bytes;
pub(super) mod key_field;
mod plot;
mod topic;

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::{Args as ClapArgs, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use weir_processors::sketch::accuracy::{self, Algorithm, BenchConfig, BenchResults, Workload};

use self::bytes::parse_budgets;
use self::key_field::KeyField;
use self::topic::{describe_skipped, TopicRead, TopicSource};
use super::broker::BrokerAddress;

const DEFAULT_EVENTS: u64 = 10_000_000;
const DEFAULT_KEYS: u64 = 1_000_000;
const DEFAULT_SKEWS: [f64; 4] = [0.8, 1.0, 1.2, 1.5];
/// Lines longer than this in `--input` are refused rather than buffered.
const INPUT_LINE_BYTES_MAX: usize = 1 << 20;

#[derive(Debug, ClapArgs)]
pub struct Args {
    #[command(subcommand)]
    command: SketchCommand,
}

#[derive(Debug, Subcommand)]
enum SketchCommand {
    /// Measure sketch accuracy and speed against memory on Zipf streams, a file of keys or a topic.
    Bench(BenchArgs),
    /// Write a seeded Zipf stream to a file, one key per line (the stream `bench` measures).
    Gen(GenArgs),
}

#[derive(Debug, ClapArgs)]
struct StreamArgs {
    /// Events per stream [default: 10000000].
    #[arg(long)]
    events: Option<u64>,
    /// Distinct keys the Zipf law draws from [default: 1000000].
    #[arg(long)]
    keys: Option<u64>,
    /// Seed of the Zipf streams.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Debug, ClapArgs)]
struct BenchArgs {
    #[command(flatten)]
    stream: StreamArgs,
    /// Zipf exponents, comma-separated [default: 0.8,1.0,1.2,1.5].
    #[arg(long, value_delimiter = ',')]
    skew: Option<Vec<f64>>,
    /// Measure on the keys of this file (one per line) instead of Zipf streams.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["events", "keys", "skew"])]
    input: Option<PathBuf>,
    /// Measure on the records of this topic, every partition from its beginning up to its end
    /// offset when the read starts; the stream key is the record key unless --key-field is given.
    #[arg(
        long,
        value_name = "TOPIC",
        conflicts_with_all = ["input", "events", "keys", "skew"]
    )]
    topic: Option<String>,
    /// With --topic: take the key from this field of the JSON value, a dotted path (`user.id`).
    #[arg(long, value_name = "PATH", requires = "topic")]
    key_field: Option<String>,
    #[command(flatten)]
    broker: BrokerAddress,
    /// Memory budgets: a doubling range `4KiB..4MiB` or a comma-separated list `4096,64KiB,1MiB`.
    #[arg(long, default_value = "4KiB..4MiB")]
    budgets: String,
    /// Algorithms to run, comma-separated (`default` is frequent-items).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "cms-plain,cms-conservative,topk-cms,space-saving,heavykeeper,frequent-items"
    )]
    algorithms: Vec<String>,
    /// Rows of each count-min sketch.
    #[arg(long, default_value_t = 4)]
    depth: u32,
    /// Worker threads [default: all cores].
    #[arg(long)]
    threads: Option<usize>,
    /// Output format on stdout.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    output: Output,
    /// Also draw error and top-k recall against memory into this PNG.
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,
}

#[derive(Debug, ClapArgs)]
struct GenArgs {
    #[command(flatten)]
    stream: StreamArgs,
    /// Zipf exponent.
    #[arg(long, default_value_t = 1.0)]
    skew: f64,
    /// File to write, one key per line.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Table,
    Csv,
    Json,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        SketchCommand::Bench(args) => bench(args),
        SketchCommand::Gen(args) => generate(args),
    }
}

fn generate(args: GenArgs) -> anyhow::Result<ExitCode> {
    let (events, keys) = stream_size(&args.stream);
    let workload = Workload::zipf(keys, events, args.skew, args.stream.seed)?;
    let file =
        File::create(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let mut out = BufWriter::new(file);
    workload
        .write_lines(&mut out)
        .and_then(|()| out.flush())
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    Ok(ExitCode::SUCCESS)
}

fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let algorithms = args
        .algorithms
        .iter()
        .map(|name| name.parse::<Algorithm>())
        .collect::<Result<Vec<_>, _>>()?;
    let config = BenchConfig {
        budgets_bytes: parse_budgets(&args.budgets)?,
        algorithms,
        depth: args.depth,
        threads: args
            .threads
            .unwrap_or(BenchConfig::default().threads)
            .max(1),
        ..BenchConfig::default()
    };
    if let Some(plot) = &args.plot {
        plot::check_target(plot)?;
    }

    let sources = workload_sources(&args)?;
    let progress = progress_bar()?;
    progress.set_length((sources.len() * accuracy::jobs_per_workload(&config)) as u64);
    // One workload in memory at a time: each is ~150 MB at the default size.
    let mut results = BenchResults::default();
    let mut summaries = Vec::with_capacity(sources.len());
    for source in &sources {
        progress.set_message(format!("loading {}", source.describe()));
        progress.tick();
        let (workload, topic_read) = source.load(&args.stream, &progress)?;
        progress.set_message(format!("measuring {}", workload.name()));
        results.extend(accuracy::run(
            &config,
            std::slice::from_ref(&workload),
            &|| progress.inc(1),
        )?);
        summaries.push(WorkloadSummary::of(&workload, topic_read));
    }
    progress.finish_and_clear();
    let elapsed_sec = started.elapsed().as_secs_f64();

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let reads = summaries.iter().filter_map(WorkloadSummary::topic_line);
    match args.output {
        Output::Table => {
            out.write_all(accuracy::render_table(&results).as_bytes())?;
            for line in reads {
                writeln!(out, "{line}")?;
            }
            writeln!(
                out,
                "{} jobs in {elapsed_sec:.1} s on {} threads",
                results.measurements.len(),
                config.threads
            )?;
        }
        Output::Csv => {
            out.write_all(accuracy::render_csv(&results).as_bytes())?;
            // Stdout stays pure CSV.
            for line in reads {
                eprintln!("{line}");
            }
        }
        Output::Json => {
            let report = JsonReport::new(&config, summaries, &results, elapsed_sec);
            serde_json::to_writer_pretty(&mut out, &report)?;
            writeln!(out)?;
        }
    }
    if let Some(path) = &args.plot {
        plot::draw(path, &results, config.depth)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn stream_size(stream: &StreamArgs) -> (u64, u64) {
    (
        stream.events.unwrap_or(DEFAULT_EVENTS),
        stream.keys.unwrap_or(DEFAULT_KEYS),
    )
}

fn progress_bar() -> anyhow::Result<ProgressBar> {
    // indicatif draws only when stderr is a terminal, so piped output stays clean.
    let style =
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} {msg}")
            .context("progress bar template")?;
    Ok(ProgressBar::new(0).with_style(style))
}

/// Where a workload comes from; loaded only when its turn comes.
enum Source {
    Zipf(f64),
    File(PathBuf),
    Topic(TopicSource),
}

impl Source {
    fn describe(&self) -> String {
        match self {
            Source::Zipf(skew) => format!("zipf s={skew}"),
            Source::File(path) => path.display().to_string(),
            Source::Topic(topic) => topic.describe(),
        }
    }

    /// The workload, and for a topic what the read found.
    fn load(
        &self,
        stream: &StreamArgs,
        progress: &ProgressBar,
    ) -> anyhow::Result<(Workload, Option<TopicRead>)> {
        match self {
            Source::Zipf(skew) => {
                let (events, keys) = stream_size(stream);
                Ok((Workload::zipf(keys, events, *skew, stream.seed)?, None))
            }
            Source::File(path) => Ok((read_input(path)?, None)),
            Source::Topic(topic) => {
                let (workload, read) = topic.load(progress)?;
                Ok((workload, Some(read)))
            }
        }
    }
}

fn workload_sources(args: &BenchArgs) -> anyhow::Result<Vec<Source>> {
    if let Some(path) = &args.input {
        return Ok(vec![Source::File(path.clone())]);
    }
    if let Some(topic) = &args.topic {
        let key_field = args.key_field.as_deref().map(KeyField::parse).transpose()?;
        return Ok(vec![Source::Topic(TopicSource {
            broker: args.broker.addr.clone(),
            topic: topic.clone(),
            key_field,
        })]);
    }
    let skews = args.skew.clone().unwrap_or_else(|| DEFAULT_SKEWS.to_vec());
    if skews.is_empty() {
        bail!("--skew needs at least one exponent");
    }
    Ok(skews.into_iter().map(Source::Zipf).collect())
}

fn read_input(path: &Path) -> anyhow::Result<Workload> {
    let file =
        File::open(path).with_context(|| format!("cannot open --input {}", path.display()))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut lines: Vec<u8> = Vec::new();
    let mut ends: Vec<usize> = Vec::new();
    let mut line = Vec::new();
    let mut number = 0u64;
    loop {
        line.clear();
        let read = (&mut reader)
            .take(INPUT_LINE_BYTES_MAX as u64 + 1)
            .read_until(b'\n', &mut line)
            .with_context(|| format!("cannot read --input {}", path.display()))?;
        if read == 0 {
            break;
        }
        number += 1;
        if line.last() == Some(&b'\n') {
            line.pop();
        } else if line.len() > INPUT_LINE_BYTES_MAX {
            bail!(
                "line {number} of {} is longer than {INPUT_LINE_BYTES_MAX} bytes",
                path.display()
            );
        }
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        lines.extend_from_slice(&line);
        ends.push(lines.len());
    }
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let keys = ends.iter().scan(0, |start, &end| {
        let key = &lines[*start..end];
        *start = end;
        Some(key)
    });
    Workload::from_keys(name, keys).with_context(|| format!("--input {}", path.display()))
}

/// The JSON document of `--output json`: results with the run's settings and machine.
#[derive(Serialize)]
struct JsonReport<'a> {
    weir_version: &'static str,
    machine: Machine,
    config: &'a BenchConfig,
    workloads: Vec<WorkloadSummary>,
    elapsed_sec: f64,
    #[serde(flatten)]
    results: &'a BenchResults,
}

#[derive(Serialize)]
struct WorkloadSummary {
    name: String,
    events: u64,
    key_space: usize,
    /// For a topic: the snapshot read and the records skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    topic: Option<TopicRead>,
}

#[derive(Serialize)]
struct Machine {
    cpu: String,
    cores: usize,
    os: &'static str,
    arch: &'static str,
}

impl WorkloadSummary {
    fn of(workload: &Workload, topic: Option<TopicRead>) -> Self {
        Self {
            name: workload.name().to_string(),
            events: workload.total(),
            key_space: workload.distinct(),
            topic,
        }
    }

    /// `topic clicks: 1000 records read, 990 counted, 10 skipped (10 with a null key)`.
    fn topic_line(&self) -> Option<String> {
        let read = self.topic.as_ref()?;
        Some(format!(
            "topic {}: {} records read, {} counted, {} skipped ({})",
            read.topic,
            read.records,
            self.events,
            read.skipped.total(),
            describe_skipped(&read.skipped)
        ))
    }
}

impl<'a> JsonReport<'a> {
    fn new(
        config: &'a BenchConfig,
        workloads: Vec<WorkloadSummary>,
        results: &'a BenchResults,
        elapsed_sec: f64,
    ) -> Self {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|line| line.starts_with("model name"))
                    .and_then(|line| line.split(':').nth(1))
                    .map(|model| model.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".to_string());
        Self {
            weir_version: env!("CARGO_PKG_VERSION"),
            machine: Machine {
                cpu,
                cores: std::thread::available_parallelism().map_or(1, usize::from),
                os: std::env::consts::OS,
                arch: std::env::consts::ARCH,
            },
            config,
            workloads,
            elapsed_sec,
            results,
        }
    }
}
