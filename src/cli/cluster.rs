//! `weir cluster status`: the controller, the term and every broker of the
//! cluster, as the broker asked sees them.

use std::process::ExitCode;

use clap::{Args as ClapArgs, Subcommand};
use weir_client::{Admin, ClusterStatus};

use super::broker::{block_on, BrokerAddress};
use super::topic::Output;

#[derive(Debug, ClapArgs)]
pub struct Args {
    /// Set from the global `--broker` flag.
    #[arg(skip)]
    pub broker: BrokerAddress,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show the controller and every broker: registered, alive. Ask the
    /// controller for liveness: only it hears every broker.
    Status {
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    block_on(run_async(args))??;
    Ok(ExitCode::SUCCESS)
}

async fn run_async(args: Args) -> anyhow::Result<()> {
    let admin = Admin::connect(&args.broker.addr).await?;
    match args.command {
        Command::Status { output } => {
            let status = admin.cluster_status().await?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&status)?),
                Output::Table => print_status(&status),
            }
        }
    }
    Ok(())
}

fn print_status(status: &ClusterStatus) {
    let controller = status
        .controller_id
        .map_or_else(|| "none elected".to_string(), |id| id.to_string());
    println!(
        "answered by broker {}; controller: {controller}; term {}; metadata applied to {} of {} committed",
        status.node_id, status.term, status.applied_index, status.committed_index
    );
    println!(
        "{:>7}  {:<24}  {:<10}  {:<6}  ROLE",
        "NODE", "ADDRESS", "REGISTERED", "ALIVE"
    );
    for broker in &status.brokers {
        let role = if Some(broker.node_id) == status.controller_id {
            "controller"
        } else {
            ""
        };
        println!(
            "{:>7}  {:<24}  {:<10}  {:<6}  {role}",
            broker.node_id,
            broker.address,
            if broker.registered { "yes" } else { "no" },
            if broker.alive { "yes" } else { "NO" },
        );
    }
    if status.partitions.is_empty() {
        return;
    }
    println!();
    println!(
        "{:<24}  {:>9}  {:>6}  {:>5}  {:<12}  {:<12}",
        "TOPIC", "PARTITION", "LEADER", "EPOCH", "REPLICAS", "ISR"
    );
    let ids = |ids: &[u64]| ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    for p in &status.partitions {
        let leader = p
            .leader
            .map_or_else(|| "none".to_string(), |l| l.to_string());
        println!(
            "{:<24}  {:>9}  {:>6}  {:>5}  {:<12}  {:<12}{}",
            p.topic,
            p.partition,
            leader,
            p.leader_epoch,
            ids(&p.replicas),
            ids(&p.isr),
            if p.under_replicated {
                "  UNDER-REPLICATED"
            } else {
                ""
            },
        );
    }
}
