//! Measures SQL scan throughput over a generated local data directory, and writes the same
//! records as NDJSON for a comparison with other engines (see "SQL over topics" in the README).
//!
//! ```text
//! cargo run --release -p weir-sql --example sql_scan_bench -- [DIR] [RECORDS]
//! ```
//!
//! Builds `DIR/data` (topic `events`: 1 partition, and `events4`: 4 partitions) and
//! `DIR/events.ndjson` once, then times each query a few times on one thread and on all
//! threads, printing records per second.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use weir_log::batch::{BatchBuilder, Compression};
use weir_log::{LogConfig, PartitionLog};
use weir_sql::{LocalOptions, LocalSource, SqlOptions};

const BATCH_RECORDS: usize = 500;
const RUNS: usize = 5;

fn value(n: u64, out: &mut String) {
    use std::fmt::Write as _;
    out.clear();
    let _ = write!(
        out,
        r#"{{"page":"/page/{}","user":{{"id":{},"country":"{}"}},"ms":{},"ua":"Mozilla/5.0 (X11; Linux x86_64)"}}"#,
        n.wrapping_mul(2654435761) % 1000,
        n % 100_000,
        ["fr", "de", "us", "jp", "br"][(n % 5) as usize],
        n % 997
    );
}

fn generate(root: &Path, records: u64) -> anyhow::Result<()> {
    let data = root.join("data");
    if data.join("events-0").exists() {
        return Ok(());
    }
    let mut ndjson = BufWriter::new(std::fs::File::create(root.join("events.ndjson"))?);
    let mut text = String::new();
    for (topic, partitions) in [("events", 1u64), ("events4", 4)] {
        let logs: Vec<PartitionLog> = (0..partitions)
            .map(|p| PartitionLog::open(&data.join(format!("{topic}-{p}")), LogConfig::default()))
            .collect::<Result<_, _>>()?;
        let mut builder = BatchBuilder::new(Compression::None);
        let mut n = 0u64;
        while n < records {
            let partition = (n / BATCH_RECORDS as u64) % partitions;
            for _ in 0..BATCH_RECORDS {
                if n >= records {
                    break;
                }
                value(n, &mut text);
                if topic == "events" {
                    writeln!(ndjson, "{text}")?;
                }
                builder.push(
                    1_700_000_000_000 + n as i64,
                    None,
                    Some(text.as_bytes()),
                    &[],
                );
                n += 1;
            }
            let mut bytes = builder.build()?.to_vec();
            logs[partition as usize].append(&mut bytes, 0)?;
        }
        for log in logs {
            log.close()?;
        }
    }
    ndjson.flush()?;
    Ok(())
}

fn time_query(threads: usize, data: &Path, sql: &str) -> anyhow::Result<(f64, String)> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .build()?;
    runtime.block_on(async {
        let source = Arc::new(LocalSource::open(data, LocalOptions::default())?);
        let ctx = weir_sql::new_session(Arc::clone(&source) as _, SqlOptions::default()).await?;
        let set = format!("SET datafusion.execution.target_partitions = {threads}");
        weir_sql::run_statements(&ctx, &set).await?;
        let mut best = f64::MAX;
        let mut answer = String::new();
        for _ in 0..RUNS {
            let started = Instant::now();
            let batches = weir_sql::run_statements(&ctx, sql).await?;
            best = best.min(started.elapsed().as_secs_f64());
            let mut out = Vec::new();
            weir_sql::write_batches(weir_sql::OutputFormat::Csv, &batches[0], &mut out)?;
            answer = String::from_utf8(out)?
                .lines()
                .take(3)
                .collect::<Vec<_>>()
                .join(" | ");
        }
        drop(ctx);
        source.close()?;
        Ok((best, answer))
    })
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let root = PathBuf::from(
        args.next()
            .unwrap_or_else(|| "target/sql-bench".to_string()),
    );
    let records: u64 = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(2_000_000);
    std::fs::create_dir_all(&root)?;
    generate(&root, records)?;
    let data = root.join("data");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("records: {records}, machine threads: {cores}");
    let queries = [
        ("count(*) metadata scan", "SELECT count(*) FROM {t}"),
        (
            "JSON decode, group by page",
            "SELECT page, count(*), sum(ms) FROM {t} GROUP BY page ORDER BY page LIMIT 1",
        ),
        (
            "JSON decode, nested field",
            "SELECT user['country'] AS c, count(*) FROM {t} GROUP BY c ORDER BY c LIMIT 1",
        ),
    ];
    for (name, sql) in queries {
        for (topic, threads) in [("events", 1), ("events4", cores)] {
            let sql = sql.replace("{t}", topic);
            let (seconds, answer) = time_query(threads, &data, &sql)?;
            println!(
                "{name:<30} topic={topic:<8} threads={threads} best_of_{RUNS}={:>8.1} ms  {:>7.2} M records/s  [{answer}]",
                seconds * 1000.0,
                records as f64 / seconds / 1e6
            );
        }
    }
    Ok(())
}
