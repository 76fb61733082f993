//! `weir group list|describe|reset-offsets|delete`: consumer group administration.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args as ClapArgs, Subcommand};
use weir_client::{Admin, GroupDescription, GroupListing, ResetTo};

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
    /// List the consumer groups.
    List {
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Show a group's members and, per partition, the committed offset, the end
    /// offset and the lag.
    Describe {
        group: String,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Set the committed offsets of every partition of a topic, for a group with
    /// no members.
    #[command(group(clap::ArgGroup::new("to").required(true)))]
    ResetOffsets {
        group: String,
        #[arg(long)]
        topic: String,
        #[arg(long, group = "to")]
        to_earliest: bool,
        #[arg(long, group = "to")]
        to_latest: bool,
        /// This offset, clamped to each partition's range.
        #[arg(long, group = "to", value_name = "OFFSET")]
        to_offset: Option<u64>,
        /// The first record at or after this time (RFC 3339, e.g. 2024-05-01T12:00:00Z).
        #[arg(long, group = "to", value_name = "RFC3339")]
        to_time: Option<String>,
    },
    /// Delete a group with no members, and its committed offsets.
    Delete { group: String },
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    block_on(run_async(args))??;
    Ok(ExitCode::SUCCESS)
}

async fn run_async(args: Args) -> anyhow::Result<()> {
    let admin = Admin::connect(&args.broker.addr).await?;
    match args.command {
        Command::List { output } => {
            let groups = admin.list_groups().await?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&groups)?),
                Output::Table => print_list(&groups),
            }
        }
        Command::Describe { group, output } => {
            let description = admin.describe_group(&group).await?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&description)?),
                Output::Table => print_description(&description),
            }
        }
        Command::ResetOffsets {
            group,
            topic,
            to_earliest: _,
            to_latest,
            to_offset,
            to_time,
        } => {
            let to = if let Some(offset) = to_offset {
                ResetTo::Offset(offset)
            } else if let Some(text) = to_time {
                ResetTo::Time(parse_time(&text)?)
            } else if to_latest {
                ResetTo::Latest
            } else {
                ResetTo::Earliest
            };
            let offsets = admin.reset_offsets(&group, &topic, to).await?;
            println!("reset group {group} on topic {topic}:");
            println!("{:>9}  {:>12}", "PARTITION", "OFFSET");
            for (partition, offset) in offsets {
                println!("{partition:>9}  {offset:>12}");
            }
        }
        Command::Delete { group } => {
            admin.delete_group(&group).await?;
            println!("deleted group {group}");
        }
    }
    Ok(())
}

fn parse_time(text: &str) -> anyhow::Result<i64> {
    let time = humantime::parse_rfc3339_weak(text)
        .with_context(|| format!("--to-time {text:?} is not an RFC 3339 time"))?;
    Ok(time
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0))
}

fn print_list(groups: &[GroupListing]) {
    let width = groups
        .iter()
        .map(|g| g.group_id.len())
        .max()
        .unwrap_or(0)
        .max(5);
    println!("{:<width$}  {:<11}  MEMBERS", "GROUP", "STATE");
    for group in groups {
        println!(
            "{:<width$}  {:<11}  {:>7}",
            group.group_id, group.state, group.members
        );
    }
}

fn print_description(group: &GroupDescription) {
    println!(
        "group {}  state {}  epoch {}  assignor {}  members {}",
        group.group_id,
        group.state,
        group.group_epoch,
        group.assignor,
        group.members.len()
    );
    for member in &group.members {
        let partitions: Vec<String> = member
            .assignment
            .iter()
            .map(|(t, p)| format!("{t}-{p}"))
            .collect();
        println!(
            "member {}{}  epoch {}  {}  owns [{}]",
            member.member_id,
            if member.instance_id.is_empty() {
                String::new()
            } else {
                format!(" (instance {})", member.instance_id)
            },
            member.member_epoch,
            member.state,
            partitions.join(", ")
        );
    }
    let width = group
        .partitions
        .iter()
        .map(|p| p.topic.len())
        .max()
        .unwrap_or(0)
        .max(5);
    println!(
        "{:<width$}  {:>9}  {:>12}  {:>12}  {:>10}  MEMBER",
        "TOPIC", "PARTITION", "COMMITTED", "END", "LAG"
    );
    let or_dash = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
    for p in &group.partitions {
        println!(
            "{:<width$}  {:>9}  {:>12}  {:>12}  {:>10}  {}",
            p.topic,
            p.partition,
            or_dash(p.committed_offset),
            or_dash(p.end_offset),
            or_dash(p.lag),
            p.member_id.as_deref().unwrap_or("-")
        );
    }
}
