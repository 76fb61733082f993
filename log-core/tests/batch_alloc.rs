//! A warm builder, decoder and append validator allocate nothing per record. Counted by
//! a global allocator per thread, so tests running in parallel do not mix.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use weir_log::batch::{BatchBuilder, Compression, ProduceChecks, RecordDecoder, RecordValidator};

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

fn push_records(builder: &mut BatchBuilder, count: u32) {
    let headers: [(&str, Option<&[u8]>); 1] = [("trace", Some(b"0123456789"))];
    for index in 0..count {
        let key = index.to_be_bytes();
        builder.push(
            1_000 + i64::from(index),
            Some(&key),
            Some(&[7u8; 200]),
            &headers,
        );
    }
}

#[test]
fn warm_builder_pushes_without_allocating() {
    for compression in Compression::ALL {
        let mut builder = BatchBuilder::new(compression);
        push_records(&mut builder, 500);
        drop(builder.build().unwrap());
        let pushes = allocations_during(|| push_records(&mut builder, 500));
        assert_eq!(
            pushes, 0,
            "{compression}: pushes into a warm builder allocated"
        );
        drop(builder.build().unwrap());
    }
}

#[test]
fn warm_uncompressed_build_reuses_its_buffer() {
    let mut builder = BatchBuilder::new(Compression::None);
    push_records(&mut builder, 100);
    drop(builder.build().unwrap());
    push_records(&mut builder, 100);
    // The previous batch was dropped, so its buffer is reclaimed.
    let builds = allocations_during(|| drop(builder.build().unwrap()));
    assert_eq!(builds, 0);
}

#[test]
fn warm_decoder_allocates_nothing_per_record() {
    for compression in Compression::ALL {
        let mut decoder = RecordDecoder::new();
        let mut builder = BatchBuilder::new(compression);
        push_records(&mut builder, 1_000);
        let large = builder.build().unwrap();
        push_records(&mut builder, 10);
        let small = builder.build().unwrap();
        let mut visit = |batch: &[u8]| {
            let mut value_bytes = 0;
            decoder
                .for_each_record(batch, |_, record| {
                    value_bytes += record.value.map_or(0, <[u8]>::len);
                    value_bytes += record.headers().count();
                })
                .unwrap();
            value_bytes
        };
        visit(&large);
        let for_large = allocations_during(|| assert_eq!(visit(&large), 1_000 * 201));
        let for_small = allocations_during(|| assert_eq!(visit(&small), 10 * 201));
        assert_eq!(
            for_large, for_small,
            "{compression}: allocations grow with records"
        );
        if compression == Compression::None {
            assert_eq!(for_large, 0);
        }
    }
}

#[test]
fn warm_validator_allocates_nothing_per_record() {
    let checks = ProduceChecks::new(usize::MAX);
    for compression in Compression::ALL {
        let mut validator = RecordValidator::new();
        let mut builder = BatchBuilder::new(compression);
        push_records(&mut builder, 1_000);
        let large = builder.build().unwrap();
        push_records(&mut builder, 10);
        let small = builder.build().unwrap();
        validator.validate_produced(&large, &checks).unwrap();
        let for_large = allocations_during(|| {
            validator.validate_produced(&large, &checks).unwrap();
        });
        let for_small = allocations_during(|| {
            validator.validate_produced(&small, &checks).unwrap();
        });
        assert_eq!(
            for_large, for_small,
            "{compression}: allocations grow with records"
        );
        if matches!(
            compression,
            Compression::None | Compression::Zstd | Compression::Snappy
        ) {
            assert_eq!(for_large, 0, "{compression}: a warm validation allocated");
        }
    }
}
