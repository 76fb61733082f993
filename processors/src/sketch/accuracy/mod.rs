//! The accuracy-versus-memory benchmark behind `weir sketch bench`: run every algorithm at every
//! memory budget over a workload, with exact counts beside, and measure errors, top-k quality and
//! update throughput.

mod measure;
mod report;
mod workload;

use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use serde::Serialize;

pub use measure::{score, Measurement, Scores, Truth, K_VALUES};
pub use report::{render_csv, render_table};
pub use workload::WorkloadBuilder;
pub use workload::{Workload, Xoshiro256, ZipfSampler, KEYS_MAX};

use super::SketchError;

/// The algorithms the benchmark compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Algorithm {
    /// Count-min sketch, plain update.
    CmsPlain,
    /// Count-min sketch, conservative update.
    CmsConservative,
    /// Top-k over a conservative count-min sketch.
    TopkCms,
    /// Space-Saving stream-summary.
    SpaceSaving,
    /// HeavyKeeper buckets in front of a heap of the top keys.
    Heavykeeper,
    /// [`crate::sketch::FrequentItems`]: counters and their keys inside the budget,
    /// with bounds; the default heavy-hitter structure (also named `default`).
    FrequentItems,
}

impl Algorithm {
    pub const ALL: [Algorithm; 6] = [
        Algorithm::CmsPlain,
        Algorithm::CmsConservative,
        Algorithm::TopkCms,
        Algorithm::SpaceSaving,
        Algorithm::Heavykeeper,
        Algorithm::FrequentItems,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::CmsPlain => "cms-plain",
            Algorithm::CmsConservative => "cms-conservative",
            Algorithm::TopkCms => "topk-cms",
            Algorithm::SpaceSaving => "space-saving",
            Algorithm::Heavykeeper => "heavykeeper",
            Algorithm::FrequentItems => "frequent-items",
        }
    }

    /// Whether the algorithm reports heavy hitters (count-min alone only estimates).
    pub fn reports_top_k(self) -> bool {
        matches!(
            self,
            Algorithm::TopkCms
                | Algorithm::SpaceSaving
                | Algorithm::Heavykeeper
                | Algorithm::FrequentItems
        )
    }
}

impl FromStr for Algorithm {
    type Err = SketchError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        if name == "default" {
            return Ok(Algorithm::FrequentItems);
        }
        Self::ALL
            .into_iter()
            .find(|a| a.name() == name)
            .ok_or_else(|| SketchError::InvalidParameter {
                name: "algorithm",
                reason: format!(
                    "unknown algorithm {name:?}; expected default or one of {}",
                    Self::ALL.map(Algorithm::name).join(", ")
                ),
            })
    }
}

/// What to run.
#[derive(Debug, Clone, Serialize)]
pub struct BenchConfig {
    pub budgets_bytes: Vec<usize>,
    pub algorithms: Vec<Algorithm>,
    /// Rows of every count-min sketch.
    pub depth: u32,
    /// Rows of HeavyKeeper buckets (the paper's choice is 2: heavy keys need few chances).
    pub heavykeeper_depth: u32,
    /// Keys the top-k algorithm tracks: the largest k measured.
    pub topk_capacity: usize,
    pub hash_seed: u32,
    /// Worker threads; jobs (workload × algorithm × budget) run in parallel.
    pub threads: usize,
}

impl Default for BenchConfig {
    fn default() -> Self {
        Self {
            budgets_bytes: (12..=22).map(|shift| 1usize << shift).collect(),
            algorithms: Algorithm::ALL.to_vec(),
            depth: 4,
            heavykeeper_depth: 2,
            topk_capacity: 100,
            hash_seed: 0,
            threads: std::thread::available_parallelism().map_or(1, usize::from),
        }
    }
}

/// A job that could not run, e.g. a budget too small for the algorithm.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub workload: String,
    pub algorithm: Algorithm,
    pub budget_bytes: usize,
    pub reason: String,
}

/// Everything a run produced, in job order.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BenchResults {
    pub measurements: Vec<Measurement>,
    pub skipped: Vec<Skipped>,
}

impl BenchResults {
    /// Appends another run's results.
    pub fn extend(&mut self, other: BenchResults) {
        self.measurements.extend(other.measurements);
        self.skipped.extend(other.skipped);
    }
}

/// Number of jobs [`run`] performs per workload, for progress reporting.
pub fn jobs_per_workload(config: &BenchConfig) -> usize {
    config.algorithms.len() * config.budgets_bytes.len()
}

/// Runs every algorithm at every budget over every workload, calling `on_job_done` after each job.
///
/// Workloads of 10M events hold ~150 MB each; callers with many may run them one at a time and
/// [`BenchResults::extend`] the results.
pub fn run(
    config: &BenchConfig,
    workloads: &[Workload],
    on_job_done: &(dyn Fn() + Sync),
) -> Result<BenchResults, SketchError> {
    if config.depth == 0 {
        return Err(SketchError::Zero {
            what: "count-min sketch depth",
        });
    }
    if config.heavykeeper_depth == 0 {
        return Err(SketchError::Zero {
            what: "HeavyKeeper depth",
        });
    }
    if config.topk_capacity < K_VALUES[K_VALUES.len() - 1] {
        return Err(SketchError::InvalidParameter {
            name: "top-k capacity",
            reason: format!(
                "must be at least {} to measure top-{0}",
                K_VALUES[K_VALUES.len() - 1]
            ),
        });
    }
    let truths: Vec<measure::Truth> = workloads.iter().map(measure::Truth::of).collect();
    let mut jobs = Vec::with_capacity(workloads.len() * jobs_per_workload(config));
    for workload in 0..workloads.len() {
        for &algorithm in &config.algorithms {
            for &budget_bytes in &config.budgets_bytes {
                jobs.push((workload, algorithm, budget_bytes));
            }
        }
    }
    let next = AtomicUsize::new(0);
    let outcomes = Mutex::new(Vec::with_capacity(jobs.len()));
    std::thread::scope(|scope| {
        for _ in 0..config.threads.clamp(1, jobs.len().max(1)) {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(workload, algorithm, budget_bytes)) = jobs.get(index) else {
                    break;
                };
                let outcome = measure::measure(
                    config,
                    &workloads[workload],
                    &truths[workload],
                    algorithm,
                    budget_bytes,
                );
                if let Ok(mut outcomes) = outcomes.lock() {
                    outcomes.push((index, outcome));
                }
                on_job_done();
            });
        }
    });
    let mut outcomes = outcomes
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    outcomes.sort_by_key(|(index, _)| *index);
    let mut results = BenchResults::default();
    for (index, outcome) in outcomes {
        let (workload, algorithm, budget_bytes) = jobs[index];
        match outcome {
            Ok(measurement) => results.measurements.push(measurement),
            Err(error @ SketchError::BudgetTooSmall { .. }) => results.skipped.push(Skipped {
                workload: workloads[workload].name().to_string(),
                algorithm,
                budget_bytes,
                reason: error.to_string(),
            }),
            Err(error) => return Err(error),
        }
    }
    Ok(results)
}
