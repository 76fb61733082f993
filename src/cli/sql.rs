//! `weir sql`: SQL over topics, from a data directory (`--data-dir`) or a broker
//! (`--broker`). With a query it prints the result and exits; without one it opens an
//! interactive shell (history, multi-line statements ending in `;`, `\d`, `\q`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, Context};
use rustyline::error::ReadlineError;
use weir_sql::datafusion::arrow::record_batch::RecordBatch;
use weir_sql::datafusion::prelude::SessionContext;
use weir_sql::{
    LocalOptions, LocalSource, OutputFormat, RemoteSource, SqlOptions, TopicSource, ValueSchema,
};

/// History of the interactive shell, in the home directory.
const HISTORY_FILE: &str = ".weir_sql_history";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The SQL to run (statements separated by `;`); without it, an interactive shell starts.
    query: Option<String>,
    /// How results are printed.
    #[arg(long, default_value = "table", value_parser = parse_format)]
    format: OutputFormat,
    /// Read topics from this broker data directory instead of a broker (the broker must
    /// be stopped, or the partitions closed cleanly).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Set from the global `--broker` flag: the broker queried when no data directory
    /// is given.
    #[arg(skip)]
    pub broker: super::broker::BrokerAddress,
    /// Declare a topic's JSON value schema (a JSON Schema file); repeatable.
    #[arg(long = "schema", value_name = "TOPIC=FILE")]
    schemas: Vec<String>,
    /// A directory of `<topic>.json` schema files (default: `<data-dir>/schemas`).
    #[arg(long, value_name = "DIR")]
    schema_dir: Option<PathBuf>,
    /// Records sampled to infer the schema of JSON topics without one; 0 turns it off.
    #[arg(long, default_value_t = weir_sql::INFER_SAMPLE_RECORDS_DEFAULT, value_name = "N")]
    infer_sample: usize,
    /// Open partitions of the data directory that were not closed cleanly, running crash
    /// recovery on them. Never use it while a broker runs on the directory.
    #[arg(long)]
    allow_recovery: bool,
    /// Memory a query may hold (e.g. 2G, 512M); a query that would need more fails
    /// with a message instead of exhausting the machine [default: no limit].
    #[arg(long, value_name = "BYTES")]
    memory_limit: Option<String>,
}

fn parse_format(s: &str) -> Result<OutputFormat, String> {
    s.parse()
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the query runtime")?;
    runtime.block_on(run_async(args))
}

async fn run_async(args: Args) -> anyhow::Result<ExitCode> {
    let options = sql_options(&args)?;
    let (source, local) = open_source(&args).await?;
    let ctx = weir_sql::new_session(source, options)
        .await
        .map_err(one_line)?;
    let result = match &args.query {
        Some(query) => run_text(&ctx, query, args.format, false).await,
        None => shell(&ctx, args.format).await,
    };
    drop(ctx);
    if let Some(local) = local {
        local.close().map_err(one_line)?;
    }
    result.map(|()| ExitCode::SUCCESS)
}

fn sql_options(args: &Args) -> anyhow::Result<SqlOptions> {
    let mut value_schemas = BTreeMap::new();
    for spec in &args.schemas {
        let (topic, file) = spec
            .split_once('=')
            .ok_or_else(|| anyhow!("--schema {spec:?} must be TOPIC=FILE"))?;
        let schema = ValueSchema::from_file(std::path::Path::new(file)).map_err(one_line)?;
        value_schemas.insert(topic.to_string(), schema);
    }
    let schema_dir = args
        .schema_dir
        .clone()
        .or_else(|| args.data_dir.as_ref().map(|d| d.join("schemas")));
    let memory_limit_bytes = args
        .memory_limit
        .as_deref()
        .map(|text| {
            SessionContext::parse_capacity_limit("--memory-limit", text)
                .map_err(|e| anyhow!("--memory-limit {text:?}: {}", one_line(e)))
        })
        .transpose()?;
    Ok(SqlOptions {
        value_schemas,
        schema_dir,
        infer_sample_records: args.infer_sample,
        memory_limit_bytes,
        ..SqlOptions::default()
    })
}

/// The topic source, and the local source again when it must be closed at the end.
async fn open_source(
    args: &Args,
) -> anyhow::Result<(Arc<dyn TopicSource>, Option<Arc<LocalSource>>)> {
    match &args.data_dir {
        Some(dir) => {
            let options = LocalOptions {
                allow_recovery: args.allow_recovery,
            };
            let local = Arc::new(LocalSource::open(dir, options).map_err(one_line)?);
            Ok((Arc::clone(&local) as Arc<dyn TopicSource>, Some(local)))
        }
        None => {
            let remote = RemoteSource::connect(&args.broker.addr)
                .await
                .map_err(one_line)?;
            Ok((Arc::new(remote) as Arc<dyn TopicSource>, None))
        }
    }
}

/// Runs every statement of `text`, printing each result.
async fn run_text(
    ctx: &SessionContext,
    text: &str,
    format: OutputFormat,
    summary: bool,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let results = weir_sql::run_statements_reporting(ctx, text)
        .await
        .map_err(one_line)?;
    let mut out = std::io::stdout().lock();
    for result in &results {
        print_batches(&mut out, format, &result.batches)?;
        if summary {
            let rows: usize = result.batches.iter().map(RecordBatch::num_rows).sum();
            writeln!(out, "({rows} rows, {} ms)", started.elapsed().as_millis())?;
        }
        out.flush()?;
        // On stderr, after the rows they concern, so piped results stay clean.
        for problems in &result.json_problems {
            eprintln!("{}", problems.warning());
        }
    }
    out.flush()?;
    Ok(())
}

fn print_batches(
    out: &mut dyn Write,
    format: OutputFormat,
    batches: &[RecordBatch],
) -> anyhow::Result<()> {
    weir_sql::write_batches(format, batches, out).map_err(one_line)
}

/// The interactive shell.
async fn shell(ctx: &SessionContext, format: OutputFormat) -> anyhow::Result<()> {
    let mut editor = rustyline::DefaultEditor::new().context("failed to start the shell")?;
    let history = std::env::var_os("HOME").map(|home| PathBuf::from(home).join(HISTORY_FILE));
    if let Some(path) = &history {
        // A missing history file is normal on first use.
        let _ = editor.load_history(path);
    }
    println!(
        "weir sql: statements end with `;`; \\d lists topics, \\d TOPIC describes one, \\q quits."
    );
    let mut buffer = String::new();
    loop {
        let prompt = if buffer.is_empty() {
            "weir> "
        } else {
            "   -> "
        };
        let line = match editor.readline(prompt) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => {
                buffer.clear();
                continue;
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(anyhow!("reading input failed: {e}")),
        };
        let trimmed = line.trim();
        if buffer.is_empty() && trimmed.starts_with('\\') {
            let _ = editor.add_history_entry(trimmed);
            match shell_command(ctx, trimmed).await {
                Ok(ShellFlow::Quit) => break,
                Ok(ShellFlow::Continue) => {}
                Err(e) => eprintln!("error: {e:#}"),
            }
            continue;
        }
        if !buffer.is_empty() {
            buffer.push('\n');
        }
        buffer.push_str(&line);
        if !buffer.trim_end().ends_with(';') {
            continue;
        }
        let statement = std::mem::take(&mut buffer);
        let _ = editor.add_history_entry(statement.trim());
        if let Err(e) = run_text(ctx, &statement, format, true).await {
            eprintln!("error: {e:#}");
        }
    }
    if let Some(path) = &history {
        let _ = editor.save_history(path);
    }
    Ok(())
}

enum ShellFlow {
    Continue,
    Quit,
}

async fn shell_command(ctx: &SessionContext, command: &str) -> anyhow::Result<ShellFlow> {
    let mut words = command.split_whitespace();
    match (words.next(), words.next()) {
        (Some("\\q"), None) => Ok(ShellFlow::Quit),
        (Some("\\d"), None) => {
            run_text(ctx, "SHOW TABLES", OutputFormat::Table, false).await?;
            Ok(ShellFlow::Continue)
        }
        (Some("\\d"), Some(topic)) => {
            let quoted = format!("\"{}\"", topic.replace('"', "\"\""));
            run_text(
                ctx,
                &format!("DESCRIBE {quoted}"),
                OutputFormat::Table,
                false,
            )
            .await?;
            Ok(ShellFlow::Continue)
        }
        _ => Err(anyhow!(
            "unknown command {command:?}; \\d lists topics, \\d TOPIC describes one, \\q quits"
        )),
    }
}

/// Errors print on one line (DataFusion's messages may span several).
fn one_line(error: impl std::fmt::Display) -> anyhow::Error {
    let text = error.to_string();
    anyhow!(text.split_whitespace().collect::<Vec<_>>().join(" "))
}
