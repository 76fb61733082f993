//! The K heaviest keys of a window, in bounded memory: one [`FrequentItems`] sketch per
//! pane (all of one budget and hash), merged when a window is emitted by adding the
//! panes' counters, and ranked by the merged sketch: a key heavy over the whole window
//! but never first in one pane is still found, which merging the panes' top-K lists
//! alone would miss (and would under-count).
//!
//! Only the merged sketch's held keys are ranked, as [`FrequentItems::top_k`] ranks
//! them: by lower bound (the count a key surely has), then upper bound, then key bytes.
//! A key a merge purged (or never held) has a lower bound of 0, so it cannot rank above
//! a held key with any count of its own; carrying the panes' keys along as candidates
//! to re-score cost a set insert per held key per pane merged, most of a sliding
//! window's time, and changed no ranking. (By upper bound, a key held since its first
//! occurrence in every pane, and so exact, could rank below one that came and went.)

use std::borrow::Cow;

use super::aggregate::Aggregator;
use super::Window;
use crate::sketch::{FrequentItems, SketchError};

/// A key a top-K sketch can hold: it is counted by its bytes and given back from them.
pub trait TopKKey: Sized {
    fn to_key_bytes(&self) -> Cow<'_, [u8]>;
    /// `None` for bytes this type never writes.
    fn from_key_bytes(bytes: &[u8]) -> Option<Self>;
}

impl TopKKey for String {
    fn to_key_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(self.as_bytes())
    }
    fn from_key_bytes(bytes: &[u8]) -> Option<Self> {
        String::from_utf8(bytes.to_vec()).ok()
    }
}

impl TopKKey for Vec<u8> {
    fn to_key_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(self)
    }
    fn from_key_bytes(bytes: &[u8]) -> Option<Self> {
        Some(bytes.to_vec())
    }
}

macro_rules! top_k_key_int {
    ($($t:ty),*) => {$(
        impl TopKKey for $t {
            fn to_key_bytes(&self) -> Cow<'_, [u8]> {
                Cow::Owned(self.to_be_bytes().to_vec())
            }
            fn from_key_bytes(bytes: &[u8]) -> Option<Self> {
                Some(<$t>::from_be_bytes(bytes.try_into().ok()?))
            }
        }
    )*};
}
top_k_key_int!(u32, u64, i32, i64);

/// One row of a window's top K.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RankedKey<K> {
    pub window: Window,
    /// 1 for the heaviest.
    pub rank: usize,
    pub key: K,
    /// An upper bound of the key's count in the window (exact while the sketches
    /// held every key: `error` is then 0).
    pub count: u64,
    /// The true count is within `count - error ..= count`.
    pub error: u64,
    /// False for an intermediate result (emit on update).
    pub is_final: bool,
}

/// A pane's sketch, or several panes' merged.
#[derive(Debug, Clone)]
pub struct TopKAcc {
    sketch: FrequentItems,
}

impl TopKAcc {
    /// The sketch in [`FrequentItems::to_bytes`]'s format: a window's partial result
    /// travels between processes this way.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.sketch.to_bytes()
    }

    /// Reads [`TopKAcc::to_bytes`]'s bytes, refusing a sketch whose memory would pass
    /// `memory_bytes_max`.
    pub fn from_bytes(bytes: &[u8], memory_bytes_max: usize) -> Result<TopKAcc, SketchError> {
        Ok(TopKAcc {
            sketch: FrequentItems::from_bytes(bytes, memory_bytes_max)?,
        })
    }
}

/// Counts keys per pane in a [`FrequentItems`] of `budget_bytes`.
#[derive(Debug, Clone)]
pub struct TopKAggregator {
    k: usize,
    budget_bytes: usize,
}

/// The default budget of one pane's sketch for `k` wanted keys: 1 KiB per key, from
/// 64 KiB to 8 MiB, as SQL's `approx_top_k`.
pub fn default_budget_bytes(k: usize) -> usize {
    k.saturating_mul(1024).clamp(64 * 1024, 8 * 1024 * 1024)
}

impl TopKAggregator {
    /// Fails if `budget_bytes` cannot hold a sketch.
    pub fn new(k: usize, budget_bytes: usize) -> Result<TopKAggregator, SketchError> {
        FrequentItems::with_budget(budget_bytes)?;
        Ok(TopKAggregator { k, budget_bytes })
    }

    /// The top K of `acc` (a window's panes merged): by lower bound, then upper bound,
    /// then key bytes.
    pub fn rank<K: TopKKey>(
        &self,
        acc: &TopKAcc,
        window: Window,
        is_final: bool,
    ) -> Vec<RankedKey<K>> {
        let mut scored: Vec<(u64, u64, Vec<u8>)> = acc
            .sketch
            .items()
            .map(|item| (item.upper_bound, item.lower_bound, item.key))
            .filter(|(upper, _, _)| *upper > 0)
            .collect();
        scored.sort_unstable_by(|a, b| (b.1, b.0).cmp(&(a.1, a.0)).then_with(|| a.2.cmp(&b.2)));
        scored
            .into_iter()
            .filter_map(|(upper, lower, key)| Some((upper, lower, K::from_key_bytes(&key)?)))
            .take(self.k)
            .enumerate()
            .map(|(i, (upper, lower, key))| RankedKey {
                window,
                rank: i + 1,
                key,
                count: upper,
                error: upper - lower,
                is_final,
            })
            .collect()
    }
}

impl<K: TopKKey> Aggregator<K> for TopKAggregator {
    type Acc = TopKAcc;

    fn init(&self) -> TopKAcc {
        TopKAcc {
            sketch: FrequentItems::with_budget(self.budget_bytes)
                .expect("the budget was checked when the aggregator was made"),
        }
    }

    fn add(&self, acc: &mut TopKAcc, key: K) {
        acc.sketch.update(&key.to_key_bytes(), 1);
    }

    fn merge(&self, into: &mut TopKAcc, other: &TopKAcc) {
        into.sketch.merge(&other.sketch);
    }

    fn encode_acc(&self, acc: &TopKAcc, out: &mut Vec<u8>) -> bool {
        out.extend_from_slice(&acc.to_bytes());
        true
    }

    fn decode_acc(&self, bytes: &[u8]) -> Result<TopKAcc, String> {
        TopKAcc::from_bytes(bytes, self.budget_bytes).map_err(|e| e.to_string())
    }

    fn heap_bytes(&self, acc: &TopKAcc) -> usize {
        acc.sketch.memory_bytes() - size_of::<FrequentItems>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::{EmitMode, WindowSpec, WindowedAggregate};

    #[test]
    fn a_top_k_accumulator_round_trips_through_bytes_and_truncation_is_an_error() {
        let aggregator = TopKAggregator::new(2, 8 * 1024).unwrap();
        let mut acc = <TopKAggregator as Aggregator<String>>::init(&aggregator);
        let mut other = acc.clone();
        for i in 0..2000u32 {
            aggregator.add(&mut acc, format!("key-{}", i % 700));
            aggregator.add(&mut other, format!("other-{}", i % 300));
        }
        <TopKAggregator as Aggregator<String>>::merge(&aggregator, &mut acc, &other);
        let bytes = acc.to_bytes();
        let back = TopKAcc::from_bytes(&bytes, 1 << 20).unwrap();
        let window = Window {
            start_ms: 0,
            end_ms: 1,
        };
        assert_eq!(
            aggregator.rank::<String>(&back, window, true),
            aggregator.rank::<String>(&acc, window, true)
        );
        for cut in [0, 3, 10, bytes.len() / 2, bytes.len() - 1] {
            assert!(
                TopKAcc::from_bytes(&bytes[..cut], 1 << 20).is_err(),
                "cut at {cut}"
            );
        }
        assert!(
            TopKAcc::from_bytes(&bytes, 1024).is_err(),
            "over the memory bound"
        );
    }

    #[test]
    fn the_state_of_a_top_k_window_counts_its_sketch() {
        let budget_bytes = 64 * 1024;
        let aggregator = TopKAggregator::new(3, budget_bytes).unwrap();
        let spec = WindowSpec::tumbling(std::time::Duration::from_millis(10));
        let mut windows = WindowedAggregate::new(spec, 0, EmitMode::OnClose, aggregator).unwrap();
        assert_eq!(windows.state_bytes(), 0);
        windows.add((), 1, "a".to_string());
        let sketch_heap_bytes = FrequentItems::with_budget(budget_bytes)
            .unwrap()
            .memory_bytes()
            - size_of::<FrequentItems>();
        assert!(
            windows.state_bytes() >= sketch_heap_bytes,
            "{} < {sketch_heap_bytes}",
            windows.state_bytes()
        );
        windows.advance(10);
        assert_eq!(windows.state_bytes(), 0, "a closed window holds nothing");
    }

    #[test]
    fn a_key_heavy_over_the_window_but_never_first_in_a_pane_ranks_first() {
        // Three panes of a sliding window; "steady" is second in each pane, and first
        // over the window.
        let aggregator = TopKAggregator::new(1, 64 * 1024).unwrap();
        let spec = WindowSpec::Sliding {
            size_ms: 30,
            slide_ms: 10,
        };
        let mut windows =
            WindowedAggregate::new(spec, 0, EmitMode::OnClose, aggregator.clone()).unwrap();
        for (pane, spike) in [(0, "a"), (10, "b"), (20, "c")] {
            for i in 0..5 {
                windows.add((), pane + i, spike.to_string());
            }
            for i in 0..4 {
                windows.add((), pane + i, "steady".to_string());
            }
        }
        let results = windows.advance(30);
        let full = results
            .iter()
            .find(|r| {
                r.window
                    == Window {
                        start_ms: 0,
                        end_ms: 30,
                    }
            })
            .unwrap();
        let top: Vec<RankedKey<String>> = aggregator.rank(&full.value, full.window, true);
        assert_eq!(top.len(), 1);
        assert_eq!(
            (top[0].key.as_str(), top[0].count, top[0].error),
            ("steady", 12, 0)
        );
    }
}
