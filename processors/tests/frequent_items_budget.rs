//! `FrequentItems` keeps its memory budget, keys included: a global allocator that counts the bytes
//! live on this thread sees construction allocate `memory_bytes()` (less the struct) and no more
//! than the budget, and sees updates, purges, compactions and merges allocate nothing, with short
//! keys, long keys, and keys longer than the whole key log.
//!
//! Counts are per thread so that tests running in parallel do not see each other's allocations.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::mem::size_of;

use weir_processors::sketch::FrequentItems;

struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    // Signed: this thread may free memory another thread allocated.
    static LIVE_BYTES: Cell<isize> = const { Cell::new(0) };
    static PEAK_BYTES: Cell<isize> = const { Cell::new(0) };
}

fn grow(bytes: usize) {
    let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
    let _ = LIVE_BYTES.try_with(|live| {
        live.set(live.get().wrapping_add(bytes as isize));
        let _ = PEAK_BYTES.try_with(|peak| peak.set(peak.get().max(live.get())));
    });
}

fn shrink(bytes: usize) {
    let _ = LIVE_BYTES.try_with(|live| live.set(live.get().wrapping_sub(bytes as isize)));
}

// SAFETY: forwards every call to `System` unchanged; the counters are thread-local `Cell`s that
// never allocate.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grow(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        shrink(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        shrink(layout.size());
        grow(new_size);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

const BUDGETS_BYTES: [usize; 3] = [4 << 10, 16 << 10, 1 << 20];

/// What `work` allocated: (allocation calls, peak bytes live above the start, bytes still live).
fn watch<T>(work: impl FnOnce() -> T) -> (T, u64, usize, usize) {
    let (calls, live) = (ALLOCATIONS.with(Cell::get), LIVE_BYTES.with(Cell::get));
    PEAK_BYTES.with(|peak| peak.set(live));
    let value = work();
    let calls = ALLOCATIONS.with(Cell::get) - calls;
    let peak = PEAK_BYTES.with(Cell::get) - live;
    let still = LIVE_BYTES.with(Cell::get) - live;
    (value, calls, peak as usize, still as usize)
}

/// Keys prepared before counting starts: `count` distinct keys `key-{i}-`, padded to a length in
/// `len_min..=len_max` (never cut: with `len_max` 8, keys are 6 to 10 bytes, some held in their
/// counter and some in the key log).
fn keys(count: usize, len_min: usize, len_max: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| {
            let len = len_min + (i * 7919) % (len_max - len_min + 1);
            let mut key = format!("key-{i}-").into_bytes();
            key.resize(len.max(key.len()), b'a' + (i % 26) as u8);
            key
        })
        .collect()
}

/// Builds a sketch for `budget`, then streams `keys` with churn and merges, checking the bytes.
fn check_budget_kept(budget: usize, key_bytes_hint: Option<usize>, keys: &[Vec<u8>]) {
    let (built, _, peak, live) = watch(|| match key_bytes_hint {
        None => FrequentItems::with_budget(budget),
        Some(hint) => FrequentItems::with_budget_and_key_bytes(budget, hint),
    });
    let mut sketch = built.unwrap();
    let heap_bytes = sketch.memory_bytes() - size_of::<FrequentItems>();
    assert_eq!(live, heap_bytes, "memory_bytes() is what was allocated");
    assert!(peak <= heap_bytes, "no temporary allocation while building");
    assert!(
        sketch.memory_bytes() <= budget,
        "{} bytes for a budget of {budget}",
        sketch.memory_bytes()
    );
    let mut other = FrequentItems::with_budget(budget).unwrap();
    let ((), calls, peak, live) = watch(|| {
        for round in 0..4usize {
            for (i, key) in keys.iter().enumerate() {
                // Every fifth key heavy, so purges keep some keys and drop others.
                let weight = if i % 5 == 0 {
                    3 + (round % 4) as u64
                } else {
                    1
                };
                sketch.update(key, weight);
                other.update(&keys[(i * 31 + round) % keys.len()], 1);
            }
            sketch.merge(&other);
        }
    });
    assert_eq!(calls, 0, "updates and merges allocate nothing");
    assert_eq!((peak, live), (0, 0));
    assert!(
        sketch.maximum_error() > 0,
        "the stream did not fit: purges ran"
    );
    assert!(!sketch.top_k(10).is_empty());
}

#[test]
fn the_counter_sees_allocated_bytes() {
    let ((), calls, peak, live) = watch(|| {
        std::hint::black_box(vec![1u8; 64]);
    });
    assert_eq!((calls, peak, live), (1, 64, 0));
}

#[test]
fn short_keys_stay_within_the_budget() {
    // More keys than 1 MiB has counters for (about 63,000), so purges run at every budget.
    let keys = keys(70_000, 2, 8);
    for budget in BUDGETS_BYTES {
        check_budget_kept(budget, None, &keys);
        check_budget_kept(budget, Some(8), &keys);
    }
}

#[test]
fn long_keys_stay_within_the_budget() {
    // Keys far longer than the hint: they fill the key log first, the rest are detached, and
    // purges make room in the table.
    let keys = keys(70_000, 40, 200);
    for budget in BUDGETS_BYTES {
        check_budget_kept(budget, None, &keys);
        check_budget_kept(budget, Some(4), &keys);
    }
}

#[test]
fn keys_longer_than_the_key_log_stay_within_the_budget() {
    let mut keys = keys(70_000, 4, 64);
    keys.extend(self::keys(20, 20_000, 40_000));
    for budget in BUDGETS_BYTES {
        check_budget_kept(budget, None, &keys);
    }
}
