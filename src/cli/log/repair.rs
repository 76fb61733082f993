//! `weir log repair PATH`: cuts a partition directory that does not open (damage below its
//! recovery point) back to its last whole batch. Says what it drops — first and last
//! offset, bytes, files — then does it; `--dry-run` only says. Takes the partition's
//! exclusive lock, so it refuses while a broker (or anything else) has it open.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use weir_log::{Repair, RepairCut};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A partition directory (`<topic>-<partition>` under a broker's data directory).
    path: PathBuf,
    /// Only say what would be dropped; change nothing.
    #[arg(long)]
    dry_run: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let repair = Repair::plan(&args.path)
        .with_context(|| format!("cannot repair {}", args.path.display()))?;
    let Some(cut) = repair.cut().cloned() else {
        println!(
            "{}: every batch checks; nothing to repair",
            args.path.display()
        );
        return Ok(ExitCode::SUCCESS);
    };
    println!(
        "{}: byte {}: {}",
        cut.segment.display(),
        cut.position,
        cut.reason
    );
    let verb = if args.dry_run { "would drop" } else { "drops" };
    println!("{verb} {}", describe(&cut));
    if args.dry_run {
        return Ok(ExitCode::SUCCESS);
    }
    repair
        .apply()
        .with_context(|| format!("cannot repair {}", args.path.display()))?;
    println!(
        "{}: repaired; the log now ends at offset {}",
        args.path.display(),
        cut.first_offset
    );
    Ok(ExitCode::SUCCESS)
}

/// "offsets 40..=99 (1234 bytes): cuts X to 800 bytes, deletes Y, Z".
fn describe(cut: &RepairCut) -> String {
    let offsets = match cut.last_offset {
        Some(last) => format!("offsets {}..={last}", cut.first_offset),
        None => format!("no whole offset from {} on", cut.first_offset),
    };
    let mut text = format!(
        "{offsets} ({} bytes): cuts {} to {} bytes",
        cut.bytes,
        cut.segment.display(),
        cut.position
    );
    if !cut.deleted_segments.is_empty() {
        let names: Vec<String> = cut
            .deleted_segments
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        text.push_str(&format!(
            ", deletes {} later segment{} with their indexes: {}",
            names.len(),
            if names.len() == 1 { "" } else { "s" },
            names.join(", ")
        ));
    }
    text
}
