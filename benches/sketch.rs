//! Costs of the sketch hot paths: count-min update (depth 4) and estimate, top-k update,
//! Space-Saving update and HeavyKeeper update and estimate, on a pre-generated Zipf(1.0) stream so
//! key generation is not timed.
//!
//! `cargo bench --bench sketch`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use weir::processors::sketch::accuracy::Workload;
use weir::processors::sketch::{
    CountMinSketch, HeavyHitters, HeavyKeeper, SpaceSaving, TopK, UpdateRule,
};

const EVENTS: u64 = 1 << 16;

fn stream() -> Vec<&'static [u8]> {
    let workload = Workload::zipf(100_000, EVENTS, 1.0, 7).expect("valid Zipf parameters");
    // Leaked once so the benchmark loops index plain slices.
    let workload: &'static Workload = Box::leak(Box::new(workload));
    workload.events().collect()
}

fn count_min(c: &mut Criterion) {
    let keys = stream();
    let mut group = c.benchmark_group("cms");
    group.throughput(Throughput::Elements(keys.len() as u64));
    // ε = 0.1 %: 2719 × 4 counters, 43 KiB.
    for rule in [UpdateRule::Plain, UpdateRule::Conservative] {
        let mut sketch =
            CountMinSketch::with_error_bounds(0.001, 0.02, 0, rule).expect("valid bounds");
        assert_eq!(sketch.depth(), 4);
        group.bench_function(format!("update_depth4_{rule:?}").to_lowercase(), |b| {
            b.iter(|| {
                for key in &keys {
                    sketch.add(black_box(key), 1);
                }
            })
        });
    }
    let sketch = {
        let mut sketch = CountMinSketch::with_error_bounds(0.001, 0.02, 0, UpdateRule::Plain)
            .expect("valid bounds");
        keys.iter().for_each(|key| {
            sketch.add(key, 1);
        });
        sketch
    };
    group.bench_function("estimate_depth4", |b| {
        b.iter(|| {
            keys.iter()
                .map(|key| sketch.estimate(black_box(key)))
                .fold(0u64, u64::wrapping_add)
        })
    });
    group.finish();
}

fn heavy_hitters(c: &mut Criterion) {
    let keys = stream();
    let mut group = c.benchmark_group("heavy_hitters");
    group.throughput(Throughput::Elements(keys.len() as u64));
    let sketch = CountMinSketch::with_error_bounds(0.001, 0.02, 0, UpdateRule::Conservative)
        .expect("valid bounds");
    let mut topk = TopK::new(100, sketch).expect("k > 0");
    group.bench_function("topk100_update", |b| {
        b.iter(|| {
            for key in &keys {
                topk.update(black_box(key), 1);
            }
        })
    });
    let mut summary = SpaceSaving::new(1000).expect("capacity > 0");
    group.bench_function("space_saving1000_update", |b| {
        b.iter(|| {
            for key in &keys {
                summary.update(black_box(key), 1);
            }
        })
    });
    // Budgets where HeavyKeeper is the most accurate structure: 4 KiB (53 tracked keys,
    // 2 × 78 buckets) and 64 KiB (200 tracked keys, 2 × 3468 buckets).
    for budget_bytes in [4usize << 10, 64 << 10] {
        let mut keeper =
            HeavyKeeper::with_memory_budget(budget_bytes, 100, 2, 8, 0).expect("budget fits");
        group.bench_function(format!("heavykeeper_{}k_update", budget_bytes >> 10), |b| {
            b.iter(|| {
                for key in &keys {
                    keeper.update(black_box(key), 1);
                }
            })
        });
        group.bench_function(
            format!("heavykeeper_{}k_estimate", budget_bytes >> 10),
            |b| {
                b.iter(|| {
                    keys.iter()
                        .map(|key| keeper.estimate(black_box(key)))
                        .fold(0u64, u64::wrapping_add)
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, count_min, heavy_hitters);
criterion_main!(benches);
