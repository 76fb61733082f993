//! Subcommand dispatch. Add a subcommand by adding a module with `Args` and
//! `run`, a variant to [`Command`], and one arm to [`Cli::run`].

mod log;
mod sketch;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Weir: stream analytics on a replicated, partitioned commit log.
#[derive(Debug, Parser)]
#[command(name = "weir", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Inspect and check partition directories and segment files.
    #[command(subcommand_required = true)]
    Log(log::Args),
    /// Sketch accuracy against memory: benchmark and stream generator.
    Sketch(sketch::Args),
}

impl Cli {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self.command {
            Command::Log(args) => log::run(args),
            Command::Sketch(args) => sketch::run(args),
        }
    }
}
