//! The top K of sliding windows, from a ring of per-pane frequent-items sketches,
//! against the exact counts of a Zipf stream: exact at a budget that holds every key,
//! and within the reported error bound at one that holds a tenth of them.

use std::collections::{BTreeMap, HashMap};

use weir_processors::sketch::accuracy::{Xoshiro256, ZipfSampler};
use weir_processors::window::{
    EmitMode, RankedKey, TopKAggregator, Window, WindowSpec, WindowedAggregate,
};

const KEYS: u64 = 5_000;
const EVENTS: u64 = 200_000;
const K: usize = 10;
const SIZE_MS: i64 = 60_000;
const SLIDE_MS: i64 = 10_000;

/// (key, timestamp) in time order: 200 000 events over 10 minutes.
fn stream() -> Vec<(u64, i64)> {
    let sampler = ZipfSampler::new(KEYS, 1.1).unwrap();
    let mut rng = Xoshiro256::seed(5);
    (0..EVENTS)
        .map(|i| (sampler.sample(&mut rng), (i * 3) as i64))
        .collect()
}

fn exact_counts(stream: &[(u64, i64)]) -> BTreeMap<Window, HashMap<u64, u64>> {
    let spec = WindowSpec::Sliding {
        size_ms: SIZE_MS,
        slide_ms: SLIDE_MS,
    };
    let mut counts: BTreeMap<Window, HashMap<u64, u64>> = BTreeMap::new();
    for (key, ts) in stream {
        for window in spec.windows_of(*ts) {
            *counts.entry(window).or_default().entry(*key).or_default() += 1;
        }
    }
    counts
}

fn top_k_by_window(
    stream: &[(u64, i64)],
    k: usize,
    budget_bytes: usize,
) -> BTreeMap<Window, Vec<RankedKey<u64>>> {
    let aggregator = TopKAggregator::new(k, budget_bytes).unwrap();
    let spec = WindowSpec::Sliding {
        size_ms: SIZE_MS,
        slide_ms: SLIDE_MS,
    };
    let mut windows =
        WindowedAggregate::new(spec, 0, EmitMode::OnClose, aggregator.clone()).unwrap();
    let mut results = Vec::new();
    for (key, ts) in stream {
        windows.add((), *ts, *key);
        results.extend(windows.advance(*ts));
    }
    results.extend(windows.advance(i64::MAX));
    results
        .into_iter()
        .map(|r| (r.window, aggregator.rank(&r.value, r.window, true)))
        .collect()
}

#[test]
fn top_k_at_a_budget_holding_every_key_is_the_exact_top_k() {
    let stream = stream();
    let exact = exact_counts(&stream);
    // 8-byte keys take 16 bytes a counter: 256 KiB holds about 15 000 > 5 000 keys.
    let found = top_k_by_window(&stream, K, 256 * 1024);
    assert_eq!(found.len(), exact.len());
    for (window, counts) in &exact {
        let mut expected: Vec<(u64, u64)> = counts.iter().map(|(k, c)| (*c, *k)).collect();
        expected.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        expected.truncate(K);
        let got: Vec<(u64, u64)> = found[window]
            .iter()
            .map(|row| {
                assert_eq!(row.error, 0, "every key held: exact");
                (row.count, row.key)
            })
            .collect();
        assert_eq!(got, expected, "window {window:?}");
    }
}

#[test]
fn top_k_at_a_tight_budget_stays_within_its_error_bound() {
    let stream = stream();
    let exact = exact_counts(&stream);
    // About 480 counters per pane, for 5 000 keys. The top 10 are held from their first
    // occurrence in every pane, and so exact; the top 100 reach keys some panes dropped.
    let k = 100;
    let found = top_k_by_window(&stream, k, 8 * 1024);
    let mut inexact = 0;
    for (window, rows) in &found {
        assert_eq!(rows.len(), k);
        if let Some(row) = rows[..K].iter().find(|row| row.error > 0) {
            panic!("{window:?}: the top {K} are exact, but {row:?}");
        }
        for row in rows {
            let truth = exact[window].get(&row.key).copied().unwrap_or(0);
            assert!(
                row.count - row.error <= truth && truth <= row.count,
                "{window:?} key {}: true {truth} outside {}..={}",
                row.key,
                row.count - row.error,
                row.count
            );
            inexact += usize::from(row.error > 0);
        }
        // The heaviest key of a Zipf stream is found at any budget.
        let heaviest = exact[window]
            .iter()
            .max_by_key(|(k, c)| (**c, std::cmp::Reverse(**k)))
            .unwrap();
        assert_eq!(rows[0].key, *heaviest.0, "{window:?}");
    }
    assert!(inexact > 0, "the budget is tight enough to purge");
}
