//! One benchmark job: build a sketch for a budget, feed it the workload, time the updates, and
//! compare its answers with the exact counts.

use std::collections::HashSet;
use std::time::Instant;

use serde::Serialize;

use super::super::{
    CountMinSketch, FrequentItems, HeavyHitters, HeavyKeeper, SketchError, SpaceSaving, TopK,
    UpdateRule,
};
use super::{Algorithm, BenchConfig, Workload};

/// The k for which top-k precision and recall are reported; errors "over the top-k" use the last.
pub const K_VALUES: [usize; 2] = [10, 100];

/// The exact answers for one workload, computed once and shared by its jobs.
pub struct Truth {
    /// Key ids that occur, largest count first.
    ids_by_count: Vec<u32>,
}

impl Truth {
    pub fn of(workload: &Workload) -> Self {
        Self {
            ids_by_count: workload.ids_by_count(),
        }
    }

    /// The true top-k ids (ties broken by id).
    fn top(&self, k: usize) -> &[u32] {
        &self.ids_by_count[..k.min(self.ids_by_count.len())]
    }

    /// Keys whose count reaches the k-th largest count: any of them is a correct top-k answer.
    fn top_k_acceptable<'w>(&self, workload: &'w Workload, k: usize) -> HashSet<&'w [u8]> {
        let Some(&kth) = self.top(k).last() else {
            return HashSet::new();
        };
        let threshold = workload.count(kth);
        self.ids_by_count
            .iter()
            .take_while(|&&id| workload.count(id) >= threshold)
            .map(|&id| workload.key(id))
            .collect()
    }
}

/// The result of one job. Error figures are absolute, in events.
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    pub workload: String,
    pub algorithm: super::Algorithm,
    pub budget_bytes: usize,
    /// What the structure really occupies.
    pub memory_bytes: usize,
    pub events: u64,
    pub distinct_keys: u64,
    /// The additive error bound as a fraction of N: e/width for count-min, 1/capacity for
    /// Space-Saving. HeavyKeeper has no such bound; its figure is 1/buckets.
    pub epsilon: f64,
    /// The probability the bound promises per key: 1 − δ for count-min, 1 for Space-Saving, 0 for
    /// HeavyKeeper (nothing promised).
    pub within_epsilon_bound: f64,
    /// Fraction of occurring keys whose estimate is within ε·N of the truth.
    pub within_epsilon_fraction: f64,
    pub mean_abs_error_all: f64,
    pub max_abs_error_all: u64,
    pub mean_abs_error_top: f64,
    pub max_abs_error_top: u64,
    /// Precision and recall at each of [`K_VALUES`]; `None` for algorithms without a top-k.
    pub precision_at_10: Option<f64>,
    pub recall_at_10: Option<f64>,
    pub precision_at_100: Option<f64>,
    pub recall_at_100: Option<f64>,
    pub updates_per_sec: f64,
}

/// A sketch under test.
enum Subject {
    Cms(CountMinSketch),
    TopK(TopK),
    SpaceSaving(SpaceSaving),
    HeavyKeeper(HeavyKeeper),
    FrequentItems(FrequentItems),
}

impl Subject {
    fn build(
        config: &BenchConfig,
        workload: &Workload,
        algorithm: Algorithm,
        budget: usize,
    ) -> Result<Self, SketchError> {
        let (depth, seed) = (config.depth, config.hash_seed);
        // Slots a little above the mean length hold nearly every key in place.
        let key_bytes = workload.mean_key_bytes().next_multiple_of(8);
        Ok(match algorithm {
            Algorithm::CmsPlain => Subject::Cms(CountMinSketch::with_memory_budget(
                budget,
                depth,
                seed,
                UpdateRule::Plain,
            )?),
            Algorithm::CmsConservative => Subject::Cms(CountMinSketch::with_memory_budget(
                budget,
                depth,
                seed,
                UpdateRule::Conservative,
            )?),
            Algorithm::TopkCms => Subject::TopK(TopK::with_memory_budget(
                budget,
                config.topk_capacity,
                depth,
                key_bytes,
                seed,
                UpdateRule::Conservative,
            )?),
            Algorithm::SpaceSaving => {
                Subject::SpaceSaving(SpaceSaving::with_memory_budget(budget, key_bytes)?)
            }
            Algorithm::Heavykeeper => Subject::HeavyKeeper(HeavyKeeper::with_memory_budget(
                budget,
                config.topk_capacity,
                config.heavykeeper_depth,
                key_bytes,
                seed,
            )?),
            // Its own key length hint, not the padded one: keys live in a log, not slots.
            Algorithm::FrequentItems => Subject::FrequentItems(
                FrequentItems::with_budget_and_key_bytes(budget, workload.mean_key_bytes())?,
            ),
        })
    }

    /// Feeds the whole stream; returns updates per second.
    fn feed(&mut self, workload: &Workload) -> f64 {
        let start = Instant::now();
        // One loop per type so the update is inlined and the loop timed is the real cost.
        match self {
            Subject::Cms(sketch) => workload.events().for_each(|key| {
                sketch.add(key, 1);
            }),
            Subject::TopK(topk) => workload.events().for_each(|key| topk.add(key, 1)),
            Subject::SpaceSaving(summary) => workload.events().for_each(|key| summary.add(key, 1)),
            Subject::HeavyKeeper(keeper) => workload.events().for_each(|key| keeper.add(key, 1)),
            Subject::FrequentItems(items) => workload.events().for_each(|key| items.update(key, 1)),
        }
        workload.total() as f64 / start.elapsed().as_secs_f64().max(1e-9)
    }

    fn estimate(&self, key: &[u8]) -> u64 {
        match self {
            Subject::Cms(sketch) => sketch.estimate(key),
            Subject::TopK(topk) => topk.estimate(key),
            Subject::SpaceSaving(summary) => summary.estimate(key),
            Subject::HeavyKeeper(keeper) => keeper.estimate_of(key),
            Subject::FrequentItems(items) => items.estimate(key),
        }
    }

    fn top(&self, k: usize) -> Option<Vec<Vec<u8>>> {
        let hitters = match self {
            Subject::Cms(_) => return None,
            Subject::TopK(topk) => topk.top(k),
            Subject::SpaceSaving(summary) => summary.top(k),
            Subject::HeavyKeeper(keeper) => keeper.top(k),
            Subject::FrequentItems(items) => {
                return Some(items.top_k(k).into_iter().map(|item| item.key).collect())
            }
        };
        Some(hitters.into_iter().map(|hitter| hitter.key).collect())
    }

    fn memory_bytes(&self) -> usize {
        match self {
            Subject::Cms(sketch) => sketch.memory_bytes(),
            Subject::TopK(topk) => topk.memory_bytes(),
            Subject::SpaceSaving(summary) => summary.memory_bytes(),
            Subject::HeavyKeeper(keeper) => keeper.memory_bytes(),
            Subject::FrequentItems(items) => items.memory_bytes(),
        }
    }

    /// (ε, 1 − δ) of the structure's guarantee.
    fn bound(&self) -> (f64, f64) {
        match self {
            Subject::Cms(sketch) => (sketch.epsilon(), 1.0 - sketch.delta()),
            Subject::TopK(topk) => (topk.sketch().epsilon(), 1.0 - topk.sketch().delta()),
            Subject::SpaceSaving(summary) => (1.0 / summary.capacity() as f64, 1.0),
            // No additive bound: report the bucket share of N, and promise nothing.
            Subject::HeavyKeeper(keeper) => (
                1.0 / (f64::from(keeper.width()) * f64::from(keeper.depth())),
                0.0,
            ),
            // Every estimate is within maximum_error of the truth, always.
            Subject::FrequentItems(items) => (
                items.maximum_error() as f64 / (items.total_weight().max(1)) as f64,
                1.0,
            ),
        }
    }
}

pub(super) fn measure(
    config: &BenchConfig,
    workload: &Workload,
    truth: &Truth,
    algorithm: Algorithm,
    budget_bytes: usize,
) -> Result<Measurement, SketchError> {
    let mut subject = Subject::build(config, workload, algorithm, budget_bytes)?;
    let updates_per_sec = subject.feed(workload);
    let total = workload.total();
    let (epsilon, within_epsilon_bound) = subject.bound();
    let allowed = epsilon * total as f64;
    let mut within = 0u64;
    let scores = score(
        workload,
        truth,
        |error| within += u64::from(error as f64 <= allowed),
        |key| subject.estimate(key),
        |k| subject.top(k),
    );
    let occurring = truth.ids_by_count.len().max(1) as f64;
    Ok(Measurement {
        workload: workload.name().to_string(),
        algorithm,
        budget_bytes,
        memory_bytes: subject.memory_bytes(),
        events: total,
        distinct_keys: truth.ids_by_count.len() as u64,
        epsilon,
        within_epsilon_bound,
        within_epsilon_fraction: within as f64 / occurring,
        mean_abs_error_all: scores.mean_abs_error_all,
        max_abs_error_all: scores.max_abs_error_all,
        mean_abs_error_top: scores.mean_abs_error_top,
        max_abs_error_top: scores.max_abs_error_top,
        precision_at_10: scores.precision_at_10,
        recall_at_10: scores.recall_at_10,
        precision_at_100: scores.precision_at_100,
        recall_at_100: scores.recall_at_100,
        updates_per_sec,
    })
}

/// The accuracy figures of a [`Measurement`], for any structure: absolute count errors over all
/// occurring keys and over the true top 100, and top-k precision and recall.
#[derive(Debug, Clone, Serialize)]
pub struct Scores {
    pub mean_abs_error_all: f64,
    pub max_abs_error_all: u64,
    pub mean_abs_error_top: f64,
    pub max_abs_error_top: u64,
    pub precision_at_10: Option<f64>,
    pub recall_at_10: Option<f64>,
    pub precision_at_100: Option<f64>,
    pub recall_at_100: Option<f64>,
}

/// Scores a structure fed `workload` by its answers: `estimate` of a key's count, and `top(k)`,
/// its k heaviest keys (`None` if it reports none). `on_error` sees every occurring key's
/// absolute error. A reported key counts as correct if its true count reaches the k-th
/// largest, so ties at the k-th count are all correct answers.
pub fn score(
    workload: &Workload,
    truth: &Truth,
    mut on_error: impl FnMut(u64),
    estimate: impl Fn(&[u8]) -> u64,
    top: impl Fn(usize) -> Option<Vec<Vec<u8>>>,
) -> Scores {
    let (mut sum_all, mut max_all) = (0u128, 0u64);
    for &id in &truth.ids_by_count {
        let error = estimate(workload.key(id)).abs_diff(workload.count(id));
        on_error(error);
        sum_all += u128::from(error);
        max_all = max_all.max(error);
    }
    let occurring = truth.ids_by_count.len().max(1) as f64;

    let top_ids = truth.top(K_VALUES[K_VALUES.len() - 1]);
    let top_errors = top_ids
        .iter()
        .map(|&id| estimate(workload.key(id)).abs_diff(workload.count(id)));
    let (sum_top, max_top) = top_errors.fold((0u128, 0u64), |(sum, max), e| {
        (sum + u128::from(e), max.max(e))
    });

    let mut quality = [(None, None); K_VALUES.len()];
    for (slot, &k) in quality.iter_mut().zip(&K_VALUES) {
        if let Some(reported) = top(k) {
            let acceptable = truth.top_k_acceptable(workload, k);
            let correct = reported
                .iter()
                .filter(|key| acceptable.contains(key.as_slice()))
                .count() as f64;
            let precision = if reported.is_empty() {
                0.0
            } else {
                correct / reported.len() as f64
            };
            let recall = correct / truth.top(k).len().max(1) as f64;
            *slot = (Some(precision), Some(recall.min(1.0)));
        }
    }
    Scores {
        mean_abs_error_all: sum_all as f64 / occurring,
        max_abs_error_all: max_all,
        mean_abs_error_top: sum_top as f64 / top_ids.len().max(1) as f64,
        max_abs_error_top: max_top,
        precision_at_10: quality[0].0,
        recall_at_10: quality[0].1,
        precision_at_100: quality[1].0,
        recall_at_100: quality[1].1,
    }
}
