//! The `weir` command line.
//!
//! Each subcommand lives in its own module under `cli/` with an `Args` struct
//! (clap) and a `run` function. Errors print as one line on stderr and exit
//! non-zero; nothing here panics on bad input.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli.run() {
        Ok(code) => code,
        Err(err) => {
            // `{:#}` prints the whole context chain on one line.
            eprintln!("weir: {err:#}");
            ExitCode::FAILURE
        }
    }
}
