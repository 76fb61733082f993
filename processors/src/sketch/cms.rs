//! Count-min sketch: `depth` rows of `width` 32-bit counters, one murmur3 hash per key, rows
//! derived by double hashing, plain or conservative update, exact merge.
//!
//! Counters are `u32`, not `u64`: at a fixed memory budget that doubles the width, which halves
//! the error bound `ε·N` (ε = e / width). A single sketch is meant for a window or a partition, where
//! a key counted more than 4 294 967 295 times is out of scope; counters saturate there instead of
//! wrapping, so estimates never wrap to small values. The stream total `N` is kept as `u64`.

use std::f64::consts::E;
use std::mem::size_of;

use super::murmur3::murmur3_x64_128;
use super::SketchError;

/// Most rows a sketch may have: δ = e^-64 is far below any useful failure probability.
pub const DEPTH_MAX: u32 = 64;
/// Most counters a sketch may hold (4 GiB of `u32`).
pub const COUNTERS_MAX: u64 = 1 << 30;

/// How [`CountMinSketch::add`] changes counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpdateRule {
    /// Add the count to the key's counter in every row. Merges are exact for this rule.
    Plain,
    /// Raise each of the key's counters only as far as the new minimum estimate (Estan and
    /// Varghese). Estimates are never above plain ones and still never below the true count.
    Conservative,
}

/// The 128-bit murmur3 hash of a key; computed once and shared by the counters and by the
/// heavy-hitter tables built on the sketch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyHash {
    pub low: u64,
    pub high: u64,
}

impl KeyHash {
    #[inline]
    pub fn of(key: &[u8], seed: u32) -> Self {
        let (low, high) = murmur3_x64_128(key, seed);
        Self { low, high }
    }
}

/// A count-min sketch over byte-string keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountMinSketch {
    /// Row-major: row `r` is `counters[r * width .. (r + 1) * width]`.
    pub(super) counters: Vec<u32>,
    pub(super) width: u32,
    pub(super) depth: u32,
    pub(super) seed: u32,
    pub(super) rule: UpdateRule,
    /// Sum of all counts added (N), saturating.
    pub(super) total: u64,
}

impl CountMinSketch {
    /// A sketch of `width` columns and `depth` rows.
    pub fn new(width: u32, depth: u32, seed: u32, rule: UpdateRule) -> Result<Self, SketchError> {
        check_shape(width, depth)?;
        let counters = vec![0u32; width as usize * depth as usize];
        Ok(Self {
            counters,
            width,
            depth,
            seed,
            rule,
            total: 0,
        })
    }

    /// A sketch whose estimates exceed the true count by more than `epsilon · N` with probability
    /// at most `delta`: width ⌈e/ε⌉, depth ⌈ln 1/δ⌉.
    pub fn with_error_bounds(
        epsilon: f64,
        delta: f64,
        seed: u32,
        rule: UpdateRule,
    ) -> Result<Self, SketchError> {
        check_probability("epsilon", epsilon)?;
        check_probability("delta", delta)?;
        let width = (E / epsilon).ceil();
        let depth = (1.0 / delta).ln().ceil().max(1.0);
        if width > f64::from(u32::MAX) {
            return Err(SketchError::TooLarge {
                name: "count-min sketch width",
                value: width as u64,
                max: u64::from(u32::MAX),
            });
        }
        if depth > f64::from(DEPTH_MAX) {
            return Err(SketchError::TooLarge {
                name: "count-min sketch depth",
                value: depth as u64,
                max: u64::from(DEPTH_MAX),
            });
        }
        Self::new(width as u32, depth as u32, seed, rule)
    }

    /// The widest sketch of `depth` rows whose [`memory_bytes`](Self::memory_bytes) fits in
    /// `budget_bytes`.
    pub fn with_memory_budget(
        budget_bytes: usize,
        depth: u32,
        seed: u32,
        rule: UpdateRule,
    ) -> Result<Self, SketchError> {
        if depth == 0 {
            return Err(SketchError::Zero {
                what: "count-min sketch depth",
            });
        }
        let width = Self::width_for_budget(budget_bytes, depth);
        if width == 0 {
            return Err(SketchError::BudgetTooSmall {
                what: format!("a count-min sketch of depth {depth}"),
                budget_bytes,
                needed_bytes: size_of::<Self>() + depth as usize * size_of::<u32>(),
            });
        }
        let width = u32::try_from(width).unwrap_or(u32::MAX);
        Self::new(width, depth, seed, rule)
    }

    /// Widest width of `depth` rows fitting in `budget_bytes` (0 if none).
    pub fn width_for_budget(budget_bytes: usize, depth: u32) -> usize {
        let counter_bytes = budget_bytes.saturating_sub(size_of::<Self>());
        counter_bytes / (depth.max(1) as usize * size_of::<u32>())
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn depth(&self) -> u32 {
        self.depth
    }

    pub fn seed(&self) -> u32 {
        self.seed
    }

    pub fn rule(&self) -> UpdateRule {
        self.rule
    }

    /// Sum of all counts added (N).
    pub fn total(&self) -> u64 {
        self.total
    }

    /// ε = e / width: with probability 1 − δ an estimate exceeds the true count by at most ε·N.
    pub fn epsilon(&self) -> f64 {
        E / f64::from(self.width)
    }

    /// δ = e^−depth.
    pub fn delta(&self) -> f64 {
        (-f64::from(self.depth)).exp()
    }

    /// The additive error bound ε·N for the stream seen so far.
    pub fn error_bound(&self) -> f64 {
        self.epsilon() * self.total as f64
    }

    /// Bytes this sketch occupies: the struct and its counter allocation.
    pub fn memory_bytes(&self) -> usize {
        size_of::<Self>() + self.counters.capacity() * size_of::<u32>()
    }

    /// The hash this sketch uses for `key`.
    #[inline]
    pub fn hash(&self, key: &[u8]) -> KeyHash {
        KeyHash::of(key, self.seed)
    }

    /// Adds `count` occurrences of `key` and returns the key's new estimate.
    #[inline]
    pub fn add(&mut self, key: &[u8], count: u64) -> u64 {
        self.add_hashed(self.hash(key), count)
    }

    /// [`add`](Self::add) with the hash already computed by [`hash`](Self::hash).
    #[inline]
    pub fn add_hashed(&mut self, hash: KeyHash, count: u64) -> u64 {
        self.total = self.total.saturating_add(count);
        let count = u32::try_from(count).unwrap_or(u32::MAX);
        match self.rule {
            UpdateRule::Plain => self.add_plain(hash, count),
            UpdateRule::Conservative => self.add_conservative(hash, count),
        }
    }

    #[inline]
    fn add_plain(&mut self, hash: KeyHash, count: u32) -> u64 {
        let mut estimate = u32::MAX;
        for row in 0..self.depth {
            let slot = self.slot(hash, row);
            let counter = &mut self.counters[slot];
            *counter = counter.saturating_add(count);
            estimate = estimate.min(*counter);
        }
        u64::from(estimate)
    }

    #[inline]
    fn add_conservative(&mut self, hash: KeyHash, count: u32) -> u64 {
        // Positions are recomputed in the second pass rather than stored: two multiplies are
        // cheaper than a bounded array, and any depth is supported without allocation.
        let mut minimum = u32::MAX;
        for row in 0..self.depth {
            minimum = minimum.min(self.counters[self.slot(hash, row)]);
        }
        let target = minimum.saturating_add(count);
        for row in 0..self.depth {
            let slot = self.slot(hash, row);
            let counter = &mut self.counters[slot];
            *counter = (*counter).max(target);
        }
        u64::from(target)
    }

    /// The estimated count of `key`: never below the true count (until a counter saturates).
    #[inline]
    pub fn estimate(&self, key: &[u8]) -> u64 {
        self.estimate_hashed(self.hash(key))
    }

    /// [`estimate`](Self::estimate) with the hash already computed.
    #[inline]
    pub fn estimate_hashed(&self, hash: KeyHash) -> u64 {
        let mut estimate = u32::MAX;
        for row in 0..self.depth {
            estimate = estimate.min(self.counters[self.slot(hash, row)]);
        }
        u64::from(estimate)
    }

    /// Adds `other`'s counters into this sketch. Both must have the same width, depth and seed.
    ///
    /// For plain sketches the result is bit-for-bit the sketch of the concatenated streams. For
    /// conservative sketches the sum is still never below the true count, and never above the plain
    /// sketch of the concatenation, but it is not the conservative sketch of the concatenation.
    pub fn merge(&mut self, other: &Self) -> Result<(), SketchError> {
        if (self.width, self.depth, self.seed) != (other.width, other.depth, other.seed) {
            return Err(SketchError::MergeMismatch {
                what: "count-min sketches",
                left: self.shape(),
                right: other.shape(),
            });
        }
        debug_assert_eq!(self.counters.len(), other.counters.len());
        for (mine, theirs) in self.counters.iter_mut().zip(&other.counters) {
            *mine = mine.saturating_add(*theirs);
        }
        self.total = self.total.saturating_add(other.total);
        Ok(())
    }

    /// Zeroes every counter, keeping shape and allocation.
    pub fn clear(&mut self) {
        self.counters.fill(0);
        self.total = 0;
    }

    /// The raw counters, row-major, for inspection and exact comparisons.
    pub fn counters(&self) -> &[u32] {
        &self.counters
    }

    fn shape(&self) -> String {
        format!("{} x {} with seed {}", self.width, self.depth, self.seed)
    }

    /// Counter index of `hash` in `row`: double hashing (Kirsch–Mitzenmacher) `low + row·high`,
    /// mapped to `[0, width)` by a multiply-shift instead of a division.
    #[inline(always)]
    fn slot(&self, hash: KeyHash, row: u32) -> usize {
        let combined = hash
            .low
            .wrapping_add(u64::from(row).wrapping_mul(hash.high));
        let column = ((u128::from(combined) * u128::from(self.width)) >> 64) as usize;
        debug_assert!(column < self.width as usize);
        row as usize * self.width as usize + column
    }
}

/// The names a sketch's shape errors use for its dimensions.
pub(super) struct ShapeNames {
    pub width: &'static str,
    pub depth: &'static str,
    /// width × depth: counters, buckets.
    pub cells: &'static str,
}

const CMS_SHAPE: ShapeNames = ShapeNames {
    width: "count-min sketch width",
    depth: "count-min sketch depth",
    cells: "count-min sketch counters (width x depth)",
};

/// A count-min sketch's width and depth are usable.
pub(super) fn check_shape(width: u32, depth: u32) -> Result<(), SketchError> {
    check_grid(width, depth, &CMS_SHAPE)
}

/// Rows of counters, as a count-min sketch and HeavyKeeper lay them out: neither
/// dimension zero, at most [`DEPTH_MAX`] rows, at most [`COUNTERS_MAX`] cells.
pub(super) fn check_grid(width: u32, depth: u32, names: &ShapeNames) -> Result<(), SketchError> {
    SketchError::check_count(names.width, u64::from(width), u64::from(u32::MAX))?;
    SketchError::check_count(names.depth, u64::from(depth), u64::from(DEPTH_MAX))?;
    let cells = u64::from(width) * u64::from(depth);
    if cells > COUNTERS_MAX {
        return Err(SketchError::TooLarge {
            name: names.cells,
            value: cells,
            max: COUNTERS_MAX,
        });
    }
    Ok(())
}

fn check_probability(name: &'static str, value: f64) -> Result<(), SketchError> {
    if value > 0.0 && value < 1.0 {
        Ok(())
    } else {
        Err(SketchError::ProbabilityOutOfRange { name, value })
    }
}
