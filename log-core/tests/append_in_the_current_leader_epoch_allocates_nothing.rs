//! The append hot path stays free of allocation when the leader epoch does not change:
//! the epoch check is a compare with an atomic, and the leader-epoch cache is touched
//! (cloned, its checkpoint written) only when a batch starts a new epoch. Counted by a
//! global allocator per thread, so tests running in parallel do not mix.

mod log_support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use log_support::*;
use weir_log::PartitionLog;

struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn count_one() {
    // try_with: the thread-local may already be gone while a thread exits.
    let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
}

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn allocations_during(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

#[test]
fn leader_and_replicated_appends_in_the_current_epoch_allocate_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = tiny_config();
    // No roll during the counted appends: a roll creates files.
    config.segment_bytes = 1 << 20;
    config.index_bytes_max = 1 << 16;
    let log = PartitionLog::open(dir.path(), config).unwrap();
    let mut warm = batch_of(0, 3, 40, 0);
    log.append(&mut warm, 5).unwrap();
    let mut batches: Vec<Vec<u8>> = (1..20).map(|i| batch_of(i, 3, 40, i as i64)).collect();
    let leader = allocations_during(|| {
        for b in &mut batches {
            log.append(b, 5).unwrap();
        }
    });
    assert_eq!(leader, 0, "leader appends in epoch 5 allocated");
    let replicated: Vec<Vec<u8>> = (0..20)
        .map(|i| {
            let base = log.log_end_offset() + 3 * i;
            stored_form(batch_of(100 + i, 3, 40, i as i64), base, 5)
        })
        .collect();
    let follower = allocations_during(|| {
        for b in &replicated {
            log.append_replicated(b).unwrap();
        }
    });
    assert_eq!(follower, 0, "replicated appends in epoch 5 allocated");
    // A new epoch may allocate (the cache and its checkpoint), once.
    let mut next = batch_of(200, 1, 40, 200);
    log.append(&mut next, 6).unwrap();
    assert_eq!(log.latest_leader_epoch(), Some(6));
}
