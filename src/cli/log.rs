//! `weir log`: offline tools for partition directories and segment files —
//! `dump` prints batches (and records), `verify` checks batches and indexes,
//! `repair` cuts a damaged partition to its last whole batch.
//! `dump` and `verify` read the files directly under a shared lock of the
//! partition directory (refused while a broker holds it), so they are safe on a
//! copy, on a stopped broker's data, or on a crash image.

mod dump;
mod repair;
mod segment_files;
mod verify;

use std::io;
use std::process::ExitCode;

use clap::Subcommand;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: LogCommand,
}

#[derive(Debug, Subcommand)]
enum LogCommand {
    /// Print every batch of a partition directory or `.log` segment file.
    Dump(dump::Args),
    /// Check every batch (CRC, offsets) and index entry; exit non-zero at the first problem.
    Verify(verify::Args),
    /// Cut a partition directory to its last whole batch (says what it drops first).
    Repair(repair::Args),
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let result = match args.command {
        LogCommand::Dump(args) => dump::run(args),
        LogCommand::Verify(args) => verify::run(args),
        LogCommand::Repair(args) => repair::run(args),
    };
    // A closed pipe (`weir log dump … | head`) is the reader's choice, not a failure.
    match result {
        Err(err)
            if err
                .downcast_ref::<io::Error>()
                .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe) =>
        {
            Ok(ExitCode::SUCCESS)
        }
        other => other,
    }
}
