//! Update speed of the heavy-hitter structures, for string keys, at the same memory budgets, on
//! pre-generated Zipf streams (s = 0.8 and 1.2) so key generation is not timed. Criterion reports
//! elements per second: updates per second on one core.
//!
//! `cargo bench -p weir-processors --bench heavy_hitters`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use weir_processors::sketch::accuracy::Workload;
use weir_processors::sketch::{
    FrequentItems, HeavyHitters, HeavyKeeper, SpaceSaving, TopK, UpdateRule,
};

const EVENTS: u64 = 1 << 18;
const BUDGETS_BYTES: [usize; 3] = [4 << 10, 64 << 10, 1 << 20];
/// Keys `k1` .. `k1000000`: 7 bytes on average, sized as the accuracy harness sizes them.
const KEY_BYTES_HINT: usize = 8;

fn stream(skew: f64) -> Vec<&'static [u8]> {
    let workload = Workload::zipf(1_000_000, EVENTS, skew, 7).expect("valid Zipf parameters");
    // Leaked once so the benchmark loops index plain slices.
    let workload: &'static Workload = Box::leak(Box::new(workload));
    workload.events().collect()
}

fn feed(sketch: &mut impl HeavyHitters, keys: &[&[u8]]) {
    for key in keys {
        sketch.update(black_box(key), 1);
    }
}

fn updates(c: &mut Criterion) {
    for skew in [0.8, 1.2] {
        let keys = stream(skew);
        let mut group = c.benchmark_group(format!("update_zipf_{skew}"));
        group.throughput(Throughput::Elements(keys.len() as u64));
        for budget in BUDGETS_BYTES {
            let id = |name: &str| BenchmarkId::new(name, budget);
            let mut sketch = FrequentItems::with_budget_and_key_bytes(budget, KEY_BYTES_HINT)
                .expect("budget fits");
            group.bench_function(id("frequent-items"), |b| {
                b.iter(|| feed(&mut sketch, &keys))
            });
            let mut summary =
                SpaceSaving::with_memory_budget(budget, KEY_BYTES_HINT).expect("budget fits");
            group.bench_function(id("space-saving"), |b| b.iter(|| feed(&mut summary, &keys)));
            let mut keeper = HeavyKeeper::with_memory_budget(budget, 100, 2, KEY_BYTES_HINT, 0)
                .expect("budget fits");
            group.bench_function(id("heavykeeper"), |b| b.iter(|| feed(&mut keeper, &keys)));
            if let Ok(mut topk) = TopK::with_memory_budget(
                budget,
                100,
                4,
                KEY_BYTES_HINT,
                0,
                UpdateRule::Conservative,
            ) {
                group.bench_function(id("topk-cms"), |b| b.iter(|| feed(&mut topk, &keys)));
            }
        }
        group.finish();
    }
}

criterion_group!(benches, updates);
criterion_main!(benches);
