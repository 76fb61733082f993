//! `FrequentItems::to_bytes` and `from_bytes`: a restored sketch is the original (same bytes
//! again, same bounds, same memory), merges of restored sketches equal merges of the originals,
//! and truncated or corrupted bytes are an error, never a panic.

use proptest::prelude::*;
use weir_processors::sketch::{FrequentItems, SketchError};

/// Weighted streams over more keys than small sketches hold, with keys of 1 to 60 bytes (held in
/// the counter and in the key log).
fn stream() -> impl Strategy<Value = Vec<(u16, u64)>> {
    prop::collection::vec((0u16..400, 1u64..20), 0..1_500)
}

fn key(id: u16) -> Vec<u8> {
    let mut key = format!("k{id}").into_bytes();
    key.resize(key.len().max(usize::from(id % 60)), b'.');
    key
}

fn sketch_of(stream: &[(u16, u64)], budget_bytes: usize) -> FrequentItems {
    let mut sketch = FrequentItems::with_budget(budget_bytes).unwrap();
    for &(id, weight) in stream {
        sketch.update(&key(id), weight);
    }
    sketch
}

fn restored(sketch: &FrequentItems) -> FrequentItems {
    FrequentItems::from_bytes(&sketch.to_bytes(), sketch.memory_bytes()).unwrap()
}

fn assert_same(a: &FrequentItems, b: &FrequentItems) -> Result<(), TestCaseError> {
    prop_assert_eq!(a.to_bytes(), b.to_bytes());
    prop_assert_eq!(a.top_k(usize::MAX), b.top_k(usize::MAX));
    prop_assert_eq!(a.memory_bytes(), b.memory_bytes());
    prop_assert_eq!(a.capacity(), b.capacity());
    prop_assert_eq!(a.maximum_error(), b.maximum_error());
    prop_assert_eq!(a.total_weight(), b.total_weight());
    for id in 0..400u16 {
        prop_assert_eq!(a.lower_bound(&key(id)), b.lower_bound(&key(id)));
        prop_assert_eq!(a.upper_bound(&key(id)), b.upper_bound(&key(id)));
    }
    Ok(())
}

/// 64 cases, or `PROPTEST_CASES` of them for a longer run (the explicit count would override it).
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok());
    ProptestConfig::with_cases(cases.unwrap_or(64))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn a_restored_sketch_is_the_original(
        stream in stream(),
        more in stream(),
        budget_bytes in 600usize..6_000,
    ) {
        let mut original = sketch_of(&stream, budget_bytes);
        let mut copy = restored(&original);
        assert_same(&original, &copy)?;
        // Same table layout: the same later updates purge and place keys alike.
        for &(id, weight) in &more {
            original.update(&key(id), weight);
            copy.update(&key(id), weight);
        }
        assert_same(&original, &copy)?;
    }

    #[test]
    fn merges_of_restored_sketches_equal_merges_of_the_originals(
        a in stream(),
        b in stream(),
        budgets in (600usize..6_000, 600usize..6_000),
    ) {
        let (a, b) = (sketch_of(&a, budgets.0), sketch_of(&b, budgets.1));
        let mut merged = a.clone();
        merged.merge(&b);
        let mut merged_copies = restored(&a);
        merged_copies.merge(&restored(&b));
        assert_same(&merged, &merged_copies)?;
    }

    #[test]
    fn truncated_bytes_are_an_error(stream in stream(), cut in any::<prop::sample::Index>()) {
        let bytes = sketch_of(&stream, 2_000).to_bytes();
        let cut = cut.index(bytes.len());
        prop_assert!(FrequentItems::from_bytes(&bytes[..cut], 1 << 20).is_err());
    }

    #[test]
    fn a_corrupted_byte_is_an_error(
        stream in stream(),
        at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let mut bytes = sketch_of(&stream, 2_000).to_bytes();
        let at = at.index(bytes.len());
        bytes[at] ^= flip;
        prop_assert!(FrequentItems::from_bytes(&bytes, 1 << 20).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = FrequentItems::from_bytes(&bytes, 1 << 20);
    }
}

#[test]
fn a_sketch_above_the_memory_limit_is_refused() {
    let sketch = FrequentItems::with_budget(1 << 20).unwrap();
    let bytes = sketch.to_bytes();
    assert!(bytes.len() < 100, "empty slots are not written");
    let error = FrequentItems::from_bytes(&bytes, (1 << 20) - 1).unwrap_err();
    assert!(matches!(error, SketchError::TooLarge { .. }), "{error}");
    assert!(FrequentItems::from_bytes(&bytes, sketch.memory_bytes()).is_ok());
}

#[test]
fn a_restored_sketch_of_a_large_stream_keeps_its_bounds() {
    let mut sketch = FrequentItems::with_budget(4096).unwrap();
    for i in 0..50_000u64 {
        let id = if i % 4 == 0 {
            i % 13
        } else {
            i * 7919 % 10_007
        };
        sketch.update(format!("key-{id}").as_bytes(), 1);
    }
    assert!(
        sketch.maximum_error() > 0,
        "the stream did not fit: purges ran"
    );
    let copy = restored(&sketch);
    assert_eq!(copy.top_k(20), sketch.top_k(20));
    assert_eq!(copy.maximum_error(), sketch.maximum_error());
}
