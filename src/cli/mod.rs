//! Subcommand dispatch. Add a subcommand by adding a module with `Args` and
//! `run`, a variant to [`Command`], and one arm to [`Cli::run`].

mod bench;
mod broker;
mod cluster;
mod consume;
mod consume_group;
mod group;
mod log;
mod produce;
mod sketch;
mod sql;
mod topic;
mod topk;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Weir: stream analytics on a partitioned commit log.
#[derive(Debug, Parser)]
#[command(name = "weir", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    broker: broker::BrokerAddress,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a broker in the foreground (stops cleanly on SIGINT/SIGTERM).
    Broker(broker::Args),
    /// Create, list, describe, alter and delete topics.
    Topic(topic::Args),
    /// Send one record per input line to a topic.
    Produce(produce::Args),
    /// Print the records of a topic.
    Consume(consume::Args),
    /// List, describe, reset and delete consumer groups.
    Group(group::Args),
    /// The cluster's controller and brokers.
    #[command(subcommand_required = true)]
    Cluster(cluster::Args),
    /// Measure producer, consumer and end-to-end throughput and latency.
    Bench(bench::Args),
    /// Inspect and check partition directories and segment files.
    #[command(subcommand_required = true)]
    Log(log::Args),
    /// Sketch accuracy against memory: benchmark and stream generator.
    Sketch(sketch::Args),
    /// Query topics with SQL (DataFusion), from a data directory or a broker.
    Sql(sql::Args),
    /// The K heaviest keys of a topic, live over a sliding window or once to its end.
    Topk(topk::Args),
}

impl Cli {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self.command {
            Command::Broker(args) => broker::run(args),
            Command::Topic(mut args) => {
                args.broker = self.broker;
                topic::run(args)
            }
            Command::Produce(mut args) => {
                args.broker = self.broker;
                produce::run(args)
            }
            Command::Consume(mut args) => {
                args.broker = self.broker;
                consume::run(args)
            }
            Command::Group(mut args) => {
                args.broker = self.broker;
                group::run(args)
            }
            Command::Cluster(mut args) => {
                args.broker = self.broker;
                cluster::run(args)
            }
            Command::Bench(mut args) => {
                args.broker = self.broker;
                bench::run(args)
            }
            Command::Log(args) => log::run(args),
            Command::Sketch(args) => sketch::run(args),
            Command::Sql(mut args) => {
                args.broker = self.broker;
                sql::run(args)
            }
            Command::Topk(mut args) => {
                args.broker = self.broker;
                topk::run(args)
            }
        }
    }
}
