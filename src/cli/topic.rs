//! `weir topic create|list|describe|delete|alter`: topic administration.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args as ClapArgs, Subcommand, ValueEnum};
use weir_client::{Admin, TopicInfo};

use super::broker::{block_on, BrokerAddress};

#[derive(Debug, ClapArgs)]
pub struct Args {
    /// Set from the global `--broker` flag.
    #[arg(skip)]
    pub broker: BrokerAddress,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub enum Output {
    #[default]
    Table,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ValueFormat {
    Json,
    Binary,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a topic.
    Create {
        name: String,
        #[arg(long, required_unless_present = "replica_assignment")]
        partitions: Option<u32>,
        #[arg(long, default_value_t = 1, conflicts_with = "replica_assignment")]
        replication_factor: u32,
        /// Place each partition's replicas by hand, as kafka-topics does: partitions
        /// separated by commas, each a colon-separated list of broker ids, the first
        /// leading (`1:2,2:3,3:1` is three partitions of two replicas).
        #[arg(long, value_name = "BROKERS,...", conflicts_with = "partitions")]
        replica_assignment: Option<String>,
        /// A topic setting, Kafka-named (retention.ms=86400000); repeatable.
        #[arg(long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
        /// The format of record values, for `weir sql`: json values become typed columns.
        #[arg(long, value_enum)]
        value_format: Option<ValueFormat>,
        /// A JSON Schema (an object schema) for the values; implies `--value-format json`.
        /// Without one, `weir sql` infers the columns from a sample of records.
        #[arg(long, value_name = "FILE")]
        value_schema: Option<std::path::PathBuf>,
    },
    /// List topics.
    List {
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Show a topic's settings and partitions.
    Describe {
        name: String,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Delete a topic and its data.
    Delete { name: String },
    /// Change topic settings (an empty value removes an override), or add
    /// partitions.
    Alter {
        name: String,
        #[arg(
            long = "config",
            value_name = "KEY=VALUE",
            required_unless_present = "partitions"
        )]
        configs: Vec<String>,
        /// Grow the topic to this many partitions. Keyed records produced afterwards
        /// may go to a different partition than the same key's earlier ones.
        #[arg(long)]
        partitions: Option<u32>,
    },
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    block_on(run_async(args))??;
    Ok(ExitCode::SUCCESS)
}

async fn run_async(args: Args) -> anyhow::Result<()> {
    let admin = Admin::connect(&args.broker.addr).await?;
    match args.command {
        Command::Create {
            name,
            partitions,
            replication_factor,
            replica_assignment,
            configs,
            value_format,
            value_schema,
        } => {
            let mut configs = parse_configs(&configs)?;
            add_value_configs(&mut configs, value_format, value_schema.as_deref())?;
            let partitions = match (replica_assignment, partitions) {
                (Some(assignment), _) => {
                    let replicas = parse_replica_assignment(&assignment)?;
                    admin
                        .create_topic_placed(&name, &replicas, &configs)
                        .await?;
                    replicas.len() as u32
                }
                (None, Some(partitions)) => {
                    admin
                        .create_topic(&name, partitions, replication_factor, &configs)
                        .await?;
                    partitions
                }
                (None, None) => bail!("--partitions or --replica-assignment is needed"),
            };
            println!("created topic {name} with {partitions} partitions");
        }
        Command::List { output } => {
            let topics = admin.list_topics().await?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&topics)?),
                Output::Table => print_list(&topics),
            }
        }
        Command::Describe { name, output } => {
            let topic = admin.describe_topic(&name).await?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&topic)?),
                Output::Table => print_description(&topic),
            }
        }
        Command::Delete { name } => {
            admin.delete_topic(&name).await?;
            println!("deleted topic {name}");
        }
        Command::Alter {
            name,
            configs,
            partitions,
        } => {
            if let Some(partitions) = partitions {
                admin.create_partitions(&name, partitions).await?;
                println!("topic {name} now has {partitions} partitions");
            }
            if !configs.is_empty() {
                let configs = parse_configs(&configs)?;
                let now = admin.alter_configs(&name, &configs).await?;
                println!(
                    "altered topic {name}; overrides now: {}",
                    format_configs(&now)
                );
            }
        }
    }
    Ok(())
}

/// Kafka's `--replica-assignment` syntax: `1:2,2:3` is partition 0 on brokers 1 and 2
/// (1 leading), partition 1 on 2 and 3.
fn parse_replica_assignment(text: &str) -> anyhow::Result<Vec<Vec<u64>>> {
    text.split(',')
        .enumerate()
        .map(|(partition, brokers)| {
            brokers
                .split(':')
                .map(|id| {
                    id.trim().parse::<u64>().with_context(|| {
                        format!("--replica-assignment: partition {partition} names {id:?}, not a broker id")
                    })
                })
                .collect()
        })
        .collect()
}

/// Adds `value.format` and `value.schema`; the schema is checked here, where the file
/// name can still be named in the error.
fn add_value_configs(
    configs: &mut BTreeMap<String, String>,
    format: Option<ValueFormat>,
    schema: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    if let Some(path) = schema {
        if matches!(format, Some(ValueFormat::Binary)) {
            bail!("--value-schema describes JSON values; it cannot go with --value-format binary");
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read value schema {}", path.display()))?;
        weir_sql::ValueSchema::from_json_schema(&text, &path.display().to_string())?;
        configs.insert(weir_sql::VALUE_SCHEMA_CONFIG.to_string(), text);
    }
    let format = match format {
        Some(ValueFormat::Binary) => Some("binary"),
        Some(ValueFormat::Json) => Some("json"),
        None if schema.is_some() => Some("json"),
        None => None,
    };
    if let Some(format) = format {
        configs.insert(
            weir_sql::VALUE_FORMAT_CONFIG.to_string(),
            format.to_string(),
        );
    }
    Ok(())
}

/// `key=value` pairs; the key must not be empty.
fn parse_configs(pairs: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut configs = BTreeMap::new();
    for pair in pairs {
        let Some((key, value)) = pair.split_once('=') else {
            bail!("--config {pair:?} is not KEY=VALUE");
        };
        if key.is_empty() {
            bail!("--config {pair:?} has an empty key");
        }
        configs.insert(key.to_string(), value.to_string());
    }
    Ok(configs)
}

fn format_configs(configs: &BTreeMap<String, String>) -> String {
    if configs.is_empty() {
        return "(none)".to_string();
    }
    configs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn print_list(topics: &[TopicInfo]) {
    let width = topics
        .iter()
        .map(|t| t.topic.len())
        .max()
        .unwrap_or(0)
        .max(5);
    println!("{:<width$}  PARTITIONS  REPLICATION", "TOPIC");
    for topic in topics {
        println!(
            "{:<width$}  {:>10}  {:>11}",
            topic.topic, topic.partition_count, topic.replication_factor
        );
    }
}

fn print_description(topic: &TopicInfo) {
    println!(
        "topic {}  partitions {}  replication {}  configs {}",
        topic.topic,
        topic.partition_count,
        topic.replication_factor,
        format_configs(&topic.configs)
    );
    println!(
        "{:>9}  {:>6}  {:>5}  {:>12}  {:>12}  {:>14}  {:>12}  STATUS",
        "PARTITION", "LEADER", "EPOCH", "START", "END", "HIGH-WATERMARK", "SIZE"
    );
    for p in &topic.partitions {
        let status = match &p.offline_cause {
            None => "online".to_string(),
            Some(cause) => format!("offline: {cause}"),
        };
        println!(
            "{:>9}  {:>6}  {:>5}  {:>12}  {:>12}  {:>14}  {:>12}  {status}",
            p.partition,
            p.leader,
            p.leader_epoch,
            p.log_start_offset,
            p.log_end_offset,
            p.high_watermark,
            p.size_bytes
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_parse_key_value_pairs() {
        let parsed = parse_configs(&["a=1".to_string(), "b=".to_string()]).unwrap();
        assert_eq!(parsed.get("a").map(String::as_str), Some("1"));
        assert_eq!(parsed.get("b").map(String::as_str), Some(""));
        assert!(parse_configs(&["novalue".to_string()]).is_err());
        assert!(parse_configs(&["=1".to_string()]).is_err());
    }
}
