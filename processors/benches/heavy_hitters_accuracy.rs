//! Accuracy per byte of `FrequentItems` against the other heavy-hitter structures, on Zipf streams
//! over several seeds (every seed reported, no best-of) and on text files of one key per line.
//!
//! `cargo bench -p weir-processors --bench heavy_hitters_accuracy -- [--events N] [--keys N]
//! [--skews 0.8,1.0] [--seeds 1,2,3] [--budgets 4096,16384] [--input FILE]... [--streams-dir DIR]
//! [--frequent-items-only]`
//!
//! Prints one CSV row per (stream, seed, algorithm, budget): R@10, P@100, R@100, mean and max
//! absolute error over the true top 100, memory in bytes, and M updates/s on one core. With
//! `--streams-dir`, each stream is also written there, one key per line, for
//! `benches/compare_datasketches.py --streams-dir`.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter};
use std::time::Instant;

use weir_processors::sketch::accuracy::{self, Algorithm, BenchConfig, Truth, Workload};
use weir_processors::sketch::{FrequentItems, SketchError};

struct Options {
    events: u64,
    keys: u64,
    skews: Vec<f64>,
    seeds: Vec<u64>,
    budgets_bytes: Vec<usize>,
    inputs: Vec<String>,
    streams_dir: Option<String>,
    /// Skips the other structures: the DataSketches comparison reads only `FrequentItems`' rows.
    frequent_items_only: bool,
}

fn options() -> Options {
    let mut options = Options {
        events: 2_000_000,
        keys: 1_000_000,
        skews: vec![0.8, 1.0, 1.2, 1.5],
        seeds: vec![1, 2, 3],
        budgets_bytes: (12..=22).map(|shift| 1usize << shift).collect(),
        inputs: Vec::new(),
        streams_dir: None,
        frequent_items_only: false,
    };
    let list = |text: &str| -> Vec<String> { text.split(',').map(str::to_string).collect() };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--events" => options.events = value().parse().expect("--events: a number"),
            "--keys" => options.keys = value().parse().expect("--keys: a number"),
            "--skews" => {
                options.skews = list(&value())
                    .iter()
                    .map(|s| s.parse().expect("skew"))
                    .collect();
            }
            "--seeds" => {
                options.seeds = list(&value())
                    .iter()
                    .map(|s| s.parse().expect("seed"))
                    .collect();
            }
            "--budgets" => {
                options.budgets_bytes = list(&value())
                    .iter()
                    .map(|s| s.parse().expect("budget"))
                    .collect();
            }
            "--input" => options.inputs.push(value()),
            "--streams-dir" => options.streams_dir = Some(value()),
            "--frequent-items-only" => options.frequent_items_only = true,
            // `cargo bench` passes `--bench`.
            _ => {}
        }
    }
    options
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = options();
    println!("stream,seed,algorithm,budget_bytes,memory_bytes,r@10,p@100,r@100,mean_err_top100,max_err_top100,mean_err_all,m_updates_per_sec");
    type Load = Box<dyn Fn() -> Result<Workload, Box<dyn std::error::Error>>>;
    let mut streams: Vec<(String, u64, Load)> = Vec::new();
    for &skew in &options.skews {
        for &seed in &options.seeds {
            let (keys, events) = (options.keys, options.events);
            streams.push((
                format!("zipf-{skew}"),
                seed,
                Box::new(move || Ok(Workload::zipf(keys, events, skew, seed)?)),
            ));
        }
    }
    for path in &options.inputs {
        let path = path.clone();
        let name = std::path::Path::new(&path)
            .file_stem()
            .map_or_else(|| path.clone(), |stem| stem.to_string_lossy().into_owned());
        streams.push((name.clone(), 0, Box::new(move || read_lines(&name, &path))));
    }
    for (name, seed, load) in streams {
        let workload = load()?;
        if let Some(dir) = &options.streams_dir {
            let mut out = BufWriter::new(File::create(format!("{dir}/{name}-seed{seed}.txt"))?);
            workload.write_lines(&mut out)?;
        }
        let truth = Truth::of(&workload);
        let config = BenchConfig {
            budgets_bytes: options.budgets_bytes.clone(),
            algorithms: if options.frequent_items_only {
                Vec::new()
            } else {
                vec![
                    Algorithm::TopkCms,
                    Algorithm::SpaceSaving,
                    Algorithm::Heavykeeper,
                ]
            },
            threads: 1,
            ..BenchConfig::default()
        };
        let others = accuracy::run(&config, std::slice::from_ref(&workload), &|| {})?;
        for m in &others.measurements {
            println!(
                "{name},{seed},{},{},{},{:.3},{:.3},{:.3},{:.1},{},{:.2},{:.1}",
                m.algorithm.name(),
                m.budget_bytes,
                m.memory_bytes,
                m.recall_at_10.unwrap_or(0.0),
                m.precision_at_100.unwrap_or(0.0),
                m.recall_at_100.unwrap_or(0.0),
                m.mean_abs_error_top,
                m.max_abs_error_top,
                m.mean_abs_error_all,
                m.updates_per_sec / 1e6
            );
        }
        for &budget in &options.budgets_bytes {
            // The mean length of the distinct keys, which `with_budget_and_key_bytes` asks for (the
            // harness rounds it up to 8 for the other structures' fixed key slots).
            let key_bytes = workload.mean_key_bytes();
            let mut sketch = match FrequentItems::with_budget_and_key_bytes(budget, key_bytes) {
                Ok(sketch) => sketch,
                Err(SketchError::BudgetTooSmall { .. }) => continue,
                Err(error) => return Err(error.into()),
            };
            let started = Instant::now();
            for key in workload.events() {
                sketch.update(key, 1);
            }
            let rate = workload.total() as f64 / started.elapsed().as_secs_f64();
            let scores = accuracy::score(
                &workload,
                &truth,
                |_| {},
                |key| sketch.estimate(key),
                |k| Some(sketch.top_k(k).into_iter().map(|item| item.key).collect()),
            );
            println!(
                "{name},{seed},frequent-items,{budget},{},{:.3},{:.3},{:.3},{:.1},{},{:.2},{:.1}",
                sketch.memory_bytes(),
                scores.recall_at_10.unwrap_or(0.0),
                scores.precision_at_100.unwrap_or(0.0),
                scores.recall_at_100.unwrap_or(0.0),
                scores.mean_abs_error_top,
                scores.max_abs_error_top,
                scores.mean_abs_error_all,
                rate / 1e6
            );
        }
    }
    Ok(())
}

fn read_lines(name: &str, path: &str) -> Result<Workload, Box<dyn std::error::Error>> {
    let mut builder = accuracy::WorkloadBuilder::new(name);
    for line in BufReader::new(File::open(path)?).split(b'\n') {
        builder.push(&line?)?;
    }
    Ok(builder.finish()?)
}
