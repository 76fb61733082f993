//! Properties of the sketches on random streams: count-min never underestimates, conservative
//! never exceeds plain, merge equals sketching the concatenation, Space-Saving's bounds hold,
//! HeavyKeeper never overestimates (before and after merges), a clear top-k is found exactly,
//! serialization round-trips and corrupt bytes are rejected.

use std::collections::HashMap;

use proptest::prelude::*;
use weir_processors::sketch::{
    CountMinSketch, HeavyHitters, HeavyKeeper, SketchError, SpaceSaving, TopK, UpdateRule,
};

/// Streams over a small key space so that keys repeat and collide.
fn stream() -> impl Strategy<Value = Vec<(u16, u64)>> {
    prop::collection::vec((0u16..300, 1u64..5), 0..600)
}

fn key(id: u16) -> Vec<u8> {
    format!("key-{id}").into_bytes()
}

fn exact(stream: &[(u16, u64)]) -> HashMap<u16, u64> {
    let mut counts = HashMap::new();
    for &(id, count) in stream {
        *counts.entry(id).or_insert(0) += count;
    }
    counts
}

fn sketch_of(stream: &[(u16, u64)], rule: UpdateRule) -> CountMinSketch {
    let mut sketch = CountMinSketch::new(37, 4, 11, rule).unwrap();
    for &(id, count) in stream {
        sketch.add(&key(id), count);
    }
    sketch
}

proptest! {
    #[test]
    fn count_min_never_underestimates(stream in stream()) {
        for rule in [UpdateRule::Plain, UpdateRule::Conservative] {
            let sketch = sketch_of(&stream, rule);
            for (id, count) in exact(&stream) {
                prop_assert!(sketch.estimate(&key(id)) >= count);
            }
        }
    }

    #[test]
    fn conservative_never_exceeds_plain(stream in stream()) {
        let plain = sketch_of(&stream, UpdateRule::Plain);
        let conservative = sketch_of(&stream, UpdateRule::Conservative);
        for id in 0..300 {
            prop_assert!(conservative.estimate(&key(id)) <= plain.estimate(&key(id)));
        }
    }

    #[test]
    fn plain_merge_equals_sketch_of_concatenation(a in stream(), b in stream()) {
        let mut merged = sketch_of(&a, UpdateRule::Plain);
        merged.merge(&sketch_of(&b, UpdateRule::Plain)).unwrap();
        let concatenated: Vec<_> = a.iter().chain(&b).copied().collect();
        let whole = sketch_of(&concatenated, UpdateRule::Plain);
        prop_assert_eq!(merged.counters(), whole.counters());
        prop_assert_eq!(merged, whole);
    }

    #[test]
    fn conservative_merge_stays_between_truth_and_plain(a in stream(), b in stream()) {
        let mut merged = sketch_of(&a, UpdateRule::Conservative);
        merged.merge(&sketch_of(&b, UpdateRule::Conservative)).unwrap();
        let concatenated: Vec<_> = a.iter().chain(&b).copied().collect();
        let plain = sketch_of(&concatenated, UpdateRule::Plain);
        for (id, count) in exact(&concatenated) {
            let estimate = merged.estimate(&key(id));
            prop_assert!(count <= estimate && estimate <= plain.estimate(&key(id)));
        }
    }

    #[test]
    fn space_saving_bounds_hold(stream in stream(), capacity in 1usize..40) {
        let mut summary = SpaceSaving::new(capacity).unwrap();
        for &(id, count) in &stream {
            summary.update(&key(id), count);
        }
        check_space_saving(&summary, &exact(&stream))?;
    }

    #[test]
    fn space_saving_bounds_hold_after_merge(a in stream(), b in stream(), capacity in 1usize..40) {
        let mut left = SpaceSaving::new(capacity).unwrap();
        let mut right = SpaceSaving::new(capacity).unwrap();
        for &(id, count) in &a {
            left.update(&key(id), count);
        }
        for &(id, count) in &b {
            right.update(&key(id), count);
        }
        left.merge(&right).unwrap();
        let concatenated: Vec<_> = a.iter().chain(&b).copied().collect();
        check_space_saving(&left, &exact(&concatenated))?;
    }

    #[test]
    fn heavy_keeper_never_overestimates(stream in stream(), k in 1usize..20, width in 1u32..40, depth in 1u32..4, seed in any::<u32>()) {
        // 300 keys of 32-bit fingerprints: a collision in a shared bucket has odds below 2^-14 per
        // case, so any overestimate here is a bug, not bad luck.
        let keeper = keeper_of(&stream, k, width, depth, seed);
        check_heavy_keeper(&keeper, &exact(&stream))?;
        prop_assert_eq!(keeper.total(), stream.iter().map(|&(_, count)| count).sum::<u64>());
    }

    #[test]
    fn heavy_keeper_never_overestimates_after_merge(a in stream(), b in stream(), k in 1usize..20, width in 1u32..40, seed in any::<u32>()) {
        let mut left = keeper_of(&a, k, width, 2, seed);
        left.merge(&keeper_of(&b, k, width, 2, seed)).unwrap();
        let concatenated: Vec<_> = a.iter().chain(&b).copied().collect();
        check_heavy_keeper(&left, &exact(&concatenated))?;
        prop_assert!(left.len() <= k);
    }

    #[test]
    fn heavy_keeper_counts_exactly_while_the_heap_has_room(stream in stream(), width in 1u32..8, seed in any::<u32>()) {
        // A key entering the heap empties its buckets, so while the heap has room every bucket is
        // empty when a new key arrives: it enters at its first occurrence and is counted exactly.
        let keeper = keeper_of(&stream, 300, width, 2, seed);
        let truth = exact(&stream);
        prop_assert_eq!(keeper.len(), truth.len());
        for (id, count) in truth {
            prop_assert_eq!(keeper.estimate(&key(id)), count);
        }
        for hitter in keeper.top(usize::MAX) {
            prop_assert!(hitter.error <= hitter.count);
        }
    }

    #[test]
    fn topk_finds_a_clear_top_k_exactly(noise in stream(), k in 1usize..8, seed in any::<u32>()) {
        // k heavy keys, each heavier than all the noise put together, interleaved with the noise.
        let noise_total: u64 = noise.iter().map(|&(_, count)| count).sum();
        let heavy: Vec<Vec<u8>> = (0..k).map(|i| format!("heavy-{i}").into_bytes()).collect();
        let sketch = CountMinSketch::new(64, 4, seed, UpdateRule::Conservative).unwrap();
        let mut topk = TopK::new(k, sketch).unwrap();
        let mut summary = SpaceSaving::new(4 * k).unwrap();
        let mut keeper = HeavyKeeper::new(k, 64, 2, seed).unwrap();
        for (position, &(id, count)) in noise.iter().enumerate() {
            topk.update(&key(id), count);
            summary.update(&key(id), count);
            keeper.update(&key(id), count);
            let heavy_key = &heavy[position % k];
            topk.update(heavy_key, 1);
            summary.update(heavy_key, 1);
            keeper.update(heavy_key, 1);
        }
        for heavy_key in &heavy {
            topk.update(heavy_key, noise_total + 1);
            summary.update(heavy_key, noise_total + 1);
            keeper.update(heavy_key, noise_total + 1);
        }
        for reported in [topk.top(k), summary.top(k), keeper.top(k)] {
            let mut keys: Vec<Vec<u8>> = reported.into_iter().map(|hitter| hitter.key).collect();
            keys.sort();
            let mut expected = heavy.clone();
            expected.sort();
            prop_assert_eq!(keys, expected);
        }
    }

    #[test]
    fn serialization_round_trips(stream in stream(), conservative in any::<bool>()) {
        let rule = if conservative { UpdateRule::Conservative } else { UpdateRule::Plain };
        let sketch = sketch_of(&stream, rule);
        let decoded = CountMinSketch::from_bytes(&sketch.to_bytes()).unwrap();
        prop_assert_eq!(decoded, sketch);
    }

    #[test]
    fn any_corruption_is_an_error(stream in stream(), position in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let mut bytes = sketch_of(&stream, UpdateRule::Plain).to_bytes();
        let at = position.index(bytes.len());
        bytes[at] ^= flip;
        prop_assert!(CountMinSketch::from_bytes(&bytes).is_err());
    }

    #[test]
    fn truncated_or_extended_bytes_are_errors(stream in stream(), cut in any::<prop::sample::Index>()) {
        let bytes = sketch_of(&stream, UpdateRule::Plain).to_bytes();
        let at = cut.index(bytes.len());
        prop_assert!(CountMinSketch::from_bytes(&bytes[..at]).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        prop_assert!(CountMinSketch::from_bytes(&longer).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = CountMinSketch::from_bytes(&bytes);
        let mut with_magic = b"WCMS\x01\x00".to_vec();
        with_magic.extend_from_slice(&bytes);
        prop_assert!(CountMinSketch::from_bytes(&with_magic).is_err());
    }
}

fn keeper_of(stream: &[(u16, u64)], k: usize, width: u32, depth: u32, seed: u32) -> HeavyKeeper {
    let mut keeper = HeavyKeeper::new(k, width, depth, seed).unwrap();
    for &(id, count) in stream {
        keeper.update(&key(id), count);
    }
    keeper
}

fn id_of(key: &[u8]) -> u16 {
    std::str::from_utf8(&key[4..]).unwrap().parse().unwrap()
}

fn check_heavy_keeper(
    keeper: &HeavyKeeper,
    truth: &HashMap<u16, u64>,
) -> Result<(), TestCaseError> {
    for id in 0..300u16 {
        let count = truth.get(&id).copied().unwrap_or(0);
        let estimate = keeper.estimate(&key(id));
        prop_assert!(
            estimate <= count,
            "key {} estimated {} above its true {}",
            id,
            estimate,
            count
        );
    }
    for hitter in keeper.top(usize::MAX) {
        let count = truth.get(&id_of(&hitter.key)).copied().unwrap_or(0);
        prop_assert!(hitter.count <= count && hitter.error <= hitter.count);
    }
    Ok(())
}

fn check_space_saving(
    summary: &SpaceSaving,
    truth: &HashMap<u16, u64>,
) -> Result<(), TestCaseError> {
    let bound = summary.error_bound();
    for id in 0..300u16 {
        let count = truth.get(&id).copied().unwrap_or(0);
        let (lower, upper) = summary.bounds(&key(id));
        prop_assert!(
            lower <= count && count <= upper,
            "key {} true {} outside [{}, {}]",
            id,
            count,
            lower,
            upper
        );
        prop_assert_eq!(summary.lower_estimate(&key(id)), lower);
    }
    for (&id, &count) in truth {
        let estimate = summary.estimate(&key(id));
        prop_assert!(
            estimate >= count,
            "estimate {} below true {}",
            estimate,
            count
        );
        if let Some((tracked, error)) = summary.get(&key(id)) {
            prop_assert!(tracked - error <= count && count <= tracked);
            prop_assert!(error as f64 <= bound, "error {} above N/m {}", error, bound);
        }
    }
    for hitter in summary.top(usize::MAX) {
        let id: u16 = std::str::from_utf8(&hitter.key[4..])
            .unwrap()
            .parse()
            .unwrap();
        let count = truth.get(&id).copied().unwrap_or(0);
        prop_assert!(hitter.count - hitter.error <= count && count <= hitter.count);
    }
    Ok(())
}

#[test]
fn bad_parameters_are_typed_errors() {
    let plain = UpdateRule::Plain;
    assert!(matches!(
        CountMinSketch::new(0, 4, 0, plain),
        Err(SketchError::Zero { .. })
    ));
    assert!(matches!(
        CountMinSketch::new(4, 0, 0, plain),
        Err(SketchError::Zero { .. })
    ));
    assert!(matches!(
        CountMinSketch::new(4, 65, 0, plain),
        Err(SketchError::TooLarge { .. })
    ));
    assert!(matches!(
        CountMinSketch::new(u32::MAX, 64, 0, plain),
        Err(SketchError::TooLarge { .. })
    ));
    for (epsilon, delta) in [
        (0.0, 0.1),
        (1.0, 0.1),
        (-0.5, 0.1),
        (f64::NAN, 0.1),
        (0.1, 0.0),
        (0.1, 1.5),
    ] {
        let result = CountMinSketch::with_error_bounds(epsilon, delta, 0, plain);
        assert!(
            matches!(result, Err(SketchError::ProbabilityOutOfRange { .. })),
            "{epsilon} {delta}"
        );
    }
    assert!(matches!(
        CountMinSketch::with_memory_budget(16, 4, 0, plain),
        Err(SketchError::BudgetTooSmall { .. })
    ));
    let sketch = CountMinSketch::new(16, 2, 0, plain).unwrap();
    assert!(matches!(
        TopK::new(0, sketch.clone()),
        Err(SketchError::Zero { .. })
    ));
    assert!(matches!(SpaceSaving::new(0), Err(SketchError::Zero { .. })));
    assert!(matches!(
        SpaceSaving::with_memory_budget(8, 8),
        Err(SketchError::BudgetTooSmall { .. })
    ));
    assert!(matches!(
        TopK::with_memory_budget(1024, 100, 4, 8, 0, plain),
        Err(SketchError::BudgetTooSmall { .. })
    ));
    assert!(matches!(
        HeavyKeeper::new(0, 8, 2, 0),
        Err(SketchError::Zero { .. })
    ));
    assert!(matches!(
        HeavyKeeper::new(4, 0, 2, 0),
        Err(SketchError::Zero { .. })
    ));
    assert!(matches!(
        HeavyKeeper::new(4, 8, 0, 0),
        Err(SketchError::Zero { .. })
    ));
    assert!(matches!(
        HeavyKeeper::new(4, 8, 65, 0),
        Err(SketchError::TooLarge { .. })
    ));
    assert!(matches!(
        HeavyKeeper::with_memory_budget(64, 100, 2, 8, 0),
        Err(SketchError::BudgetTooSmall { .. })
    ));
    let mut keeper = HeavyKeeper::new(4, 8, 2, 0).unwrap();
    for other in [
        HeavyKeeper::new(4, 9, 2, 0).unwrap(),
        HeavyKeeper::new(4, 8, 3, 0).unwrap(),
        HeavyKeeper::new(4, 8, 2, 1).unwrap(),
    ] {
        let error = keeper.merge(&other).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("cannot merge HeavyKeeper sketches"),
            "{error}"
        );
    }

    let mut left = CountMinSketch::new(16, 2, 0, plain).unwrap();
    for other in [
        CountMinSketch::new(17, 2, 0, plain).unwrap(),
        CountMinSketch::new(16, 3, 0, plain).unwrap(),
        CountMinSketch::new(16, 2, 1, plain).unwrap(),
    ] {
        let error = left.merge(&other).unwrap_err();
        assert!(matches!(error, SketchError::MergeMismatch { .. }));
        assert!(
            error
                .to_string()
                .starts_with("cannot merge count-min sketches"),
            "{error}"
        );
    }
    let mut small = SpaceSaving::new(4).unwrap();
    assert!(matches!(
        small.merge(&SpaceSaving::new(5).unwrap()),
        Err(SketchError::MergeMismatch { .. })
    ));
}

#[test]
fn error_bounds_give_the_textbook_shape() {
    let sketch = CountMinSketch::with_error_bounds(0.01, 0.01, 0, UpdateRule::Plain).unwrap();
    assert_eq!(sketch.width(), 272); // ⌈e / 0.01⌉
    assert_eq!(sketch.depth(), 5); // ⌈ln 100⌉
}

#[test]
fn memory_budget_is_respected_and_used() {
    for budget in [4096usize, 65_536, 1 << 20] {
        let cms = CountMinSketch::with_memory_budget(budget, 4, 0, UpdateRule::Plain).unwrap();
        assert!(cms.memory_bytes() <= budget && cms.memory_bytes() + 16 > budget);
        let summary = SpaceSaving::with_memory_budget(budget, 8).unwrap();
        assert!(summary.memory_bytes() <= budget);
        let topk = TopK::with_memory_budget(budget, 10, 4, 8, 0, UpdateRule::Conservative).unwrap();
        assert!(
            topk.memory_bytes() <= budget,
            "{} > {budget}",
            topk.memory_bytes()
        );
        let keeper = HeavyKeeper::with_memory_budget(budget, 100, 2, 8, 0).unwrap();
        assert!(
            keeper.memory_bytes() <= budget && keeper.memory_bytes() + 16 > budget,
            "{} for {budget}",
            keeper.memory_bytes()
        );
    }
}

#[test]
fn heavy_keeper_tracks_fewer_keys_when_the_budget_is_small() {
    // 70 % of 4 KiB holds a few dozen 8-byte keys; 1 MiB holds a margin of twice k.
    let small = HeavyKeeper::with_memory_budget(4096, 100, 2, 8, 0).unwrap();
    assert!((10..100).contains(&small.k()), "tracks {} keys", small.k());
    assert!(small.width() >= 50, "{} buckets a row", small.width());
    let large = HeavyKeeper::with_memory_budget(1 << 20, 100, 2, 8, 0).unwrap();
    assert_eq!(large.k(), 200);
}

#[test]
fn heavy_keeper_finds_zipf_heavy_hitters_in_small_memory() {
    use weir_processors::sketch::accuracy::Workload;
    let workload = Workload::zipf(50_000, 500_000, 1.1, 3).unwrap();
    let mut keeper = HeavyKeeper::with_memory_budget(16 << 10, 20, 2, 8, 0).unwrap();
    for key in workload.events() {
        keeper.update(key, 1);
    }
    let truth = workload.ids_by_count();
    let top: Vec<Vec<u8>> = keeper.top(20).into_iter().map(|h| h.key).collect();
    let found = truth[..20]
        .iter()
        .filter(|&&id| top.iter().any(|key| key.as_slice() == workload.key(id)))
        .count();
    assert!(found >= 19, "found {found} of the true top 20");
    for &id in &truth[..10] {
        let (estimate, count) = (keeper.estimate(workload.key(id)), workload.count(id));
        assert!(
            estimate <= count && estimate * 100 >= count * 99,
            "{estimate} vs {count}"
        );
    }
}

#[test]
fn decode_errors_name_the_problem() {
    let bytes = CountMinSketch::new(8, 2, 3, UpdateRule::Plain)
        .unwrap()
        .to_bytes();
    let mut bad_magic = bytes.clone();
    bad_magic[0] = b'X';
    let mut bad_version = bytes.clone();
    bad_version[4] = 9;
    let mut bad_counter = bytes.clone();
    bad_counter[40] ^= 1;
    let cases = [
        (&bytes[..10], "shorter than the 32-byte header"),
        (&bad_magic[..], "bad magic"),
        (&bad_version[..], "version 9"),
        (&bad_counter[..], "checksum mismatch"),
        (&bytes[..bytes.len() - 4], "header describes 96 bytes"),
    ];
    for (input, expected) in cases {
        let message = CountMinSketch::from_bytes(input).unwrap_err().to_string();
        assert!(
            message.contains(expected),
            "{message:?} should contain {expected:?}"
        );
    }
}
