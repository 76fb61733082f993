//! Once warm, sketch updates allocate nothing: a counting global allocator watches the update loops.
//!
//! Counts are per thread so that tests running in parallel do not see each other's allocations.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use weir_processors::sketch::{
    CountMinSketch, HeavyHitters, HeavyKeeper, SpaceSaving, TopK, UpdateRule,
};

struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards every call to `System` unchanged; the counter is a thread-local `Cell` that
// never allocates.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn allocations_during(work: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    work();
    ALLOCATIONS.with(Cell::get) - before
}

/// Fixed-width keys, prepared before counting starts.
fn keys(count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| format!("key-{i:06}").into_bytes())
        .collect()
}

#[test]
fn the_counter_sees_allocations() {
    let allocations = allocations_during(|| {
        std::hint::black_box(vec![1u8; 64]);
    });
    assert_eq!(allocations, 1);
}

#[test]
fn count_min_updates_allocate_nothing() {
    let keys = keys(1000);
    for rule in [UpdateRule::Plain, UpdateRule::Conservative] {
        let mut sketch = CountMinSketch::new(1024, 4, 0, rule).unwrap();
        let allocations = allocations_during(|| {
            for round in 0..20 {
                for key in &keys {
                    sketch.add(key, round + 1);
                }
            }
        });
        assert_eq!(allocations, 0, "{rule:?}");
        assert!(sketch.estimate(&keys[0]) >= 210);
    }
}

#[test]
fn topk_updates_of_tracked_keys_allocate_nothing() {
    let keys = keys(100);
    let sketch = CountMinSketch::new(4096, 4, 0, UpdateRule::Conservative).unwrap();
    let mut topk = TopK::new(100, sketch).unwrap();
    for key in &keys {
        topk.update(key, 1);
    }
    let allocations = allocations_during(|| {
        for round in 0..50u64 {
            for (i, key) in keys.iter().enumerate() {
                topk.update(key, 1 + (i as u64 * round) % 7);
            }
        }
    });
    assert_eq!(allocations, 0);
    assert_eq!(topk.len(), 100);
}

#[test]
fn warm_heavy_hitters_allocate_nothing_under_key_churn() {
    // Ten times more distinct keys than tracked slots: every round evicts and replaces keys.
    let keys = keys(2000);
    let sketch = CountMinSketch::new(512, 4, 0, UpdateRule::Conservative).unwrap();
    let mut topk = TopK::new(100, sketch).unwrap();
    let mut summary = SpaceSaving::new(200).unwrap();
    let mut keeper = HeavyKeeper::new(100, 64, 2, 0).unwrap();
    for key in &keys {
        topk.update(key, 1);
        summary.update(key, 1);
        keeper.update(key, 1);
    }
    let allocations = allocations_during(|| {
        for round in 0..20usize {
            for (i, key) in keys.iter().enumerate() {
                let weight = 1 + ((i * 31 + round * 7) % 11) as u64;
                topk.update(key, weight);
                summary.update(key, weight);
                keeper.update(key, weight);
                // Unit updates take HeavyKeeper's other decay path.
                keeper.update(key, 1);
            }
        }
    });
    assert_eq!(allocations, 0);
    assert_eq!(summary.len(), 200);
    assert_eq!(keeper.len(), 100);
}
