//! Properties of `FrequentItems` on random weighted streams: the lower and upper bounds always
//! contain the true count, also after merges of sketches of different sizes; with room for every
//! key the counts are exact; the top-k is ranked by lower bound; a clear heavy key is always found.

use std::collections::HashMap;

use proptest::prelude::*;
use weir_processors::sketch::FrequentItems;

/// Weighted streams over a key space larger than small sketches hold, with keys of 1 to 60 bytes.
fn stream() -> impl Strategy<Value = Vec<(u16, u64)>> {
    prop::collection::vec((0u16..400, 1u64..20), 0..1_500)
}

fn key(id: u16) -> Vec<u8> {
    let mut key = format!("k{id}").into_bytes();
    key.resize(key.len().max(usize::from(id % 60)), b'.');
    key
}

fn exact(streams: &[&[(u16, u64)]]) -> HashMap<u16, u64> {
    let mut counts = HashMap::new();
    for &(id, weight) in streams.iter().copied().flatten() {
        *counts.entry(id).or_insert(0) += weight;
    }
    counts
}

fn sketch_of(stream: &[(u16, u64)], budget_bytes: usize) -> FrequentItems {
    let mut sketch = FrequentItems::with_budget(budget_bytes).unwrap();
    for &(id, weight) in stream {
        sketch.update(&key(id), weight);
    }
    sketch
}

fn assert_bounds_hold(
    sketch: &FrequentItems,
    truth: &HashMap<u16, u64>,
) -> Result<(), TestCaseError> {
    for id in 0..400u16 {
        let true_count = truth.get(&id).copied().unwrap_or(0);
        let (lower, upper) = (sketch.lower_bound(&key(id)), sketch.upper_bound(&key(id)));
        prop_assert!(
            lower <= true_count,
            "key {id}: lower {lower} > true {true_count}"
        );
        prop_assert!(
            true_count <= upper,
            "key {id}: true {true_count} > upper {upper}"
        );
        prop_assert!(upper - lower <= sketch.maximum_error());
    }
    for item in sketch.top_k(usize::MAX) {
        let id: u16 = String::from_utf8_lossy(&item.key)
            .trim_start_matches('k')
            .trim_end_matches('.')
            .parse()
            .unwrap();
        let true_count = truth[&id];
        prop_assert!(item.lower_bound <= true_count && true_count <= item.upper_bound);
        prop_assert!(item.lower_bound <= item.estimate && item.estimate <= item.upper_bound);
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
    fn bounds_contain_the_true_count(stream in stream(), budget_bytes in 600usize..6_000) {
        let sketch = sketch_of(&stream, budget_bytes);
        assert_bounds_hold(&sketch, &exact(&[&stream]))?;
        prop_assert_eq!(sketch.total_weight(), stream.iter().map(|&(_, w)| w).sum::<u64>());
    }

    #[test]
    fn bounds_contain_the_true_count_after_merges(
        a in stream(),
        b in stream(),
        c in stream(),
        budgets in (600usize..6_000, 600usize..6_000, 600usize..6_000),
    ) {
        // Partitions a and b, then a later window c, each in a sketch of its own size.
        let mut merged = sketch_of(&a, budgets.0);
        merged.merge(&sketch_of(&b, budgets.1));
        assert_bounds_hold(&merged, &exact(&[&a, &b]))?;
        let mut later = sketch_of(&c, budgets.2);
        later.merge(&merged);
        assert_bounds_hold(&later, &exact(&[&a, &b, &c]))?;
    }

    #[test]
    fn counts_are_exact_while_every_key_fits(stream in stream()) {
        // 400 keys of at most 60 bytes: 64 KiB holds them all.
        let sketch = sketch_of(&stream, 64 << 10);
        prop_assert_eq!(sketch.maximum_error(), 0);
        let truth = exact(&[&stream]);
        prop_assert_eq!(sketch.len(), truth.len());
        for (id, count) in &truth {
            prop_assert_eq!(sketch.estimate(&key(*id)), *count);
            prop_assert_eq!(sketch.lower_bound(&key(*id)), *count);
            prop_assert_eq!(sketch.upper_bound(&key(*id)), *count);
        }
    }

    #[test]
    fn merged_sketches_with_room_for_every_key_are_exact(a in stream(), b in stream()) {
        let mut merged = sketch_of(&a, 64 << 10);
        merged.merge(&sketch_of(&b, 64 << 10));
        prop_assert_eq!(merged.maximum_error(), 0);
        for (id, count) in exact(&[&a, &b]) {
            prop_assert_eq!(merged.estimate(&key(id)), count);
        }
    }

    #[test]
    fn top_k_is_ranked_by_lower_bound(stream in stream(), k in 1usize..50) {
        let sketch = sketch_of(&stream, 2_000);
        let top = sketch.top_k(k);
        prop_assert!(top.len() <= k.min(sketch.len()));
        prop_assert!(top.windows(2).all(|pair| pair[0].lower_bound >= pair[1].lower_bound));
        let smallest_reported = top.last().map_or(0, |item| item.lower_bound);
        if top.len() == k {
            for item in sketch.top_k(usize::MAX).iter().skip(k) {
                prop_assert!(item.lower_bound <= smallest_reported);
            }
        }
    }

    #[test]
    fn a_key_with_more_than_a_capacity_share_is_reported(stream in stream()) {
        // Misra-Gries: error at most N / ((1 − q) · capacity); a key with a larger lead stays held.
        let mut sketch = FrequentItems::with_budget(2_000).unwrap();
        let total: u64 = stream.iter().map(|&(_, w)| w).sum();
        let heavy = total + 1;
        for (i, &(id, weight)) in stream.iter().enumerate() {
            sketch.update(&key(id), weight);
            if i % 2 == 0 {
                sketch.update(b"heavy", 2 * weight + 1);
            }
        }
        sketch.update(b"heavy", heavy);
        let top = sketch.top_k(1);
        prop_assert_eq!(top[0].key.as_slice(), b"heavy".as_slice());
    }
}

/// Long keys past the key log's room are counted by their hash: while the table has a counter for
/// each key, every count is exact, and the heaviest long keys are the ones with bytes, which
/// `top_k` shows.
#[test]
fn long_keys_past_the_key_log_are_counted_exactly() {
    let mut sketch = FrequentItems::with_budget_and_key_bytes(16 << 10, 16).unwrap();
    let light = |i: u64| format!("a light long key {i:06}").into_bytes();
    let heavy = |i: u64| format!("a heavy long key {i:06}").into_bytes();
    let light_keys = 600;
    assert!(light_keys + 10 < sketch.capacity() as u64);
    for round in 0..3 {
        for i in 0..light_keys {
            sketch.update(&light(i), 1 + (i + round) % 2);
        }
    }
    // The heavy keys come last, into a full key log.
    for i in 0..10 {
        sketch.update(&heavy(i), 100 + i);
    }
    assert_eq!(sketch.maximum_error(), 0);
    assert_eq!(sketch.len() as u64, light_keys + 10);
    for i in 0..light_keys {
        let count = if i % 2 == 0 { 4 } else { 5 };
        assert_eq!(sketch.lower_bound(&light(i)), count, "{i}");
        assert_eq!(sketch.upper_bound(&light(i)), count, "{i}");
    }
    let top: Vec<Vec<u8>> = sketch.top_k(10).into_iter().map(|item| item.key).collect();
    assert_eq!(top, (0..10).rev().map(heavy).collect::<Vec<_>>());
    assert!(
        sketch.items().count() < sketch.len(),
        "some light keys have no bytes"
    );
    assert_eq!(sketch.upper_bound(b"an unseen long key"), 0);
}

/// A key held from its first occurrence lost exactly each purge's amount, and its counter knows
/// when it started: its bounds stay equal through purges, merges included, while a key that
/// came in late has bounds as wide as the offset was when it came.
#[test]
fn a_key_held_from_its_first_occurrence_keeps_exact_bounds() {
    let mut sketch = FrequentItems::with_budget(2_000).unwrap();
    sketch.update(b"early", 1_000);
    for i in 0..20_000u64 {
        sketch.update(format!("tail {}", i % 5_000).as_bytes(), 1);
    }
    let offset = sketch.maximum_error();
    assert!(offset > 0, "purges ran");
    sketch.update(b"late", 500);
    assert_eq!(
        (sketch.lower_bound(b"early"), sketch.upper_bound(b"early")),
        (1_000, 1_000)
    );
    assert_eq!(sketch.estimate(b"early"), 1_000);
    assert_eq!(
        (sketch.lower_bound(b"late"), sketch.upper_bound(b"late")),
        (500, 500 + offset)
    );
    assert_eq!(sketch.top_k(2)[0].key, b"early");

    // Merged into a sketch that never saw it: that one may have missed up to its own offset.
    let mut other = FrequentItems::with_budget(2_000).unwrap();
    for i in 0..20_000u64 {
        other.update(format!("other {}", i % 5_000).as_bytes(), 1);
    }
    let other_offset = other.maximum_error();
    assert!(other_offset > 0);
    other.merge(&sketch);
    assert_eq!(other.lower_bound(b"early"), 1_000);
    assert_eq!(other.upper_bound(b"early"), 1_000 + other_offset);
}
