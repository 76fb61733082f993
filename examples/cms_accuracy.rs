//! How accurate is a count-min sketch (and its heavy-hitter cousins) at a given memory size?
//!
//! Runs the same benchmark as `weir sketch bench` with its defaults (Zipf s ∈ {0.8, 1.0, 1.2, 1.5},
//! 1M keys, 10M events, budgets 4 KiB .. 4 MiB) and prints the table. Pass `--quick` for a small
//! run. For CSV, JSON or a plot use the command: `weir sketch bench --output csv --plot out.png`.
//!
//! `cargo run --release --example cms_accuracy`

use std::time::Instant;

use weir::processors::sketch::accuracy::{self, BenchConfig, BenchResults, Workload};

fn main() -> anyhow::Result<()> {
    let quick = std::env::args().any(|arg| arg == "--quick");
    let (keys, events) = if quick {
        (10_000, 100_000)
    } else {
        (1_000_000, 10_000_000)
    };
    let started = Instant::now();
    let config = BenchConfig::default();
    let mut results = BenchResults::default();
    for skew in [0.8, 1.0, 1.2, 1.5] {
        eprintln!(
            "zipf s={skew}: {} jobs on {} threads",
            accuracy::jobs_per_workload(&config),
            config.threads
        );
        let workload = Workload::zipf(keys, events, skew, 1)?;
        results.extend(accuracy::run(&config, &[workload], &|| {})?);
    }
    print!("{}", accuracy::render_table(&results));
    println!(
        "{} jobs in {:.1} s",
        results.measurements.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
