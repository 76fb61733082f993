//! `weir broker`: runs a broker in the foreground until SIGINT or SIGTERM.
//! Also holds what the client subcommands share: the `--broker` address and
//! the async runtime they run on.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args as ClapArgs;
use weir_broker::{BrokerConfig, RunningBroker};
use weir_log::FsyncPolicy;

/// Settings come from defaults, then `--config`, then `WEIR_*` environment
/// variables (`WEIR_DATA_DIR`, `WEIR_LISTEN`, `WEIR_FSYNC`, ...), then flags.
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// Directory holding topics and their partitions [default: ./weir-data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address to listen on, host:port; port 0 picks a free port [default: 127.0.0.1:9292].
    #[arg(long)]
    listen: Option<String>,
    /// Address of the Kafka-protocol listener, host:port; port 0 picks a free
    /// port, an empty value turns it off [default: 127.0.0.1:9092].
    #[arg(long)]
    kafka_listen: Option<String>,
    /// Address of the metrics endpoint (/metrics, /healthz, /readyz), host:port;
    /// port 0 picks a free port, an empty value turns it off [default: 127.0.0.1:9293].
    #[arg(long)]
    metrics_listen: Option<String>,
    /// This broker's node id in its cluster (1 or more with --peers).
    #[arg(long)]
    node_id: Option<i32>,
    /// The cluster's brokers, ID=HOST:PORT,... (their gRPC addresses, this
    /// broker's included); without it the broker is in no cluster.
    #[arg(long)]
    peers: Option<String>,
    /// A weir.toml file with broker settings.
    #[arg(long)]
    config: Option<PathBuf>,
    /// When appends reach the disk: always, never, or a number of milliseconds.
    #[arg(long)]
    fsync: Option<FsyncPolicy>,
    /// Write the bound address to this file once listening.
    #[arg(long)]
    address_file: Option<PathBuf>,
}

/// The broker a client subcommand talks to: a global flag, accepted before
/// or after the subcommand (`weir --broker H:P topic list`,
/// `weir topic list --broker H:P`).
#[derive(Debug, Clone, ClapArgs)]
pub struct BrokerAddress {
    /// Broker address for topic, produce, consume, bench and sql, host:port.
    #[arg(long = "broker", env = "WEIR_BROKER", default_value = weir_broker::LISTEN_DEFAULT, global = true)]
    pub addr: String,
}

impl Default for BrokerAddress {
    fn default() -> Self {
        BrokerAddress {
            addr: weir_broker::LISTEN_DEFAULT.to_string(),
        }
    }
}

/// Runs `future` on a multi-threaded tokio runtime.
pub fn block_on<T>(future: impl std::future::Future<Output = T>) -> anyhow::Result<T> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    Ok(runtime.block_on(future))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    init_logging();
    let mut config = BrokerConfig::load(args.config.as_deref(), |key| std::env::var(key).ok())?;
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    if let Some(listen) = &args.listen {
        config.set_listen(listen)?;
    }
    if let Some(listen) = &args.kafka_listen {
        config.set_kafka_listen(listen)?;
    }
    if let Some(listen) = &args.metrics_listen {
        config.set_metrics_listen(listen)?;
    }
    if let Some(node_id) = args.node_id {
        config.node_id = node_id;
    }
    if let Some(peers) = args.peers {
        config.peers = Some(peers).filter(|p| !p.trim().is_empty());
    }
    // Refused here with a one-line reason rather than after the data
    // directory is opened.
    config.cluster()?;
    if let Some(fsync) = args.fsync {
        config.set_fsync(fsync);
    }
    if let Some(path) = args.address_file {
        config.address_file = Some(path);
    }
    block_on(serve(config))??;
    Ok(ExitCode::SUCCESS)
}

async fn serve(config: BrokerConfig) -> anyhow::Result<()> {
    let data_dir = config.data_dir.clone();
    let running = RunningBroker::start(config)
        .await
        .with_context(|| format!("cannot start the broker on {}", data_dir.display()))?;
    // Scripts and tests read the bound address from this line.
    println!("weir broker listening on {}", running.local_addr());
    if let Some(kafka) = running.kafka_addr() {
        println!("weir broker listening for Kafka clients on {kafka}");
    }
    if let Some(metrics) = running.metrics_addr() {
        println!("weir broker serving metrics on http://{metrics}/metrics");
    }
    running.run_until(weir_broker::shutdown_signal()).await?;
    Ok(())
}

/// Logs to stderr; `RUST_LOG` (e.g. `weir_broker=debug`) picks what.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
