//! HeavyKeeper (Gong et al., "HeavyKeeper: An Accurate Algorithm for Finding Top-k Elephant
//! Flows", USENIX ATC 2018): count with exponential-weakening decay, in front of a min-heap of the
//! k heaviest keys.
//!
//! `depth` rows of `width` buckets each hold a 32-bit key **fingerprint** and a count — 8 bytes a
//! bucket, no key bytes. A key arriving at a bucket of its own fingerprint raises the count; at a
//! bucket of another key it decays that count by one with probability `b^−count` (b = 1.08), and
//! takes the bucket over when the count reaches zero. Large counts almost never decay, so heavy
//! keys keep their buckets while the many light keys wear each other out.
//!
//! Only the heavy keys are stored in full, in a [`KeyHeap`] of `k` slots, because a report must
//! name them. A key in the heap is counted there exactly and leaves the buckets alone; a key enters
//! the heap when its bucket estimate exceeds the heap's smallest count, and the key it displaces
//! is written back to its buckets with its count. So every key is counted in one place, and an
//! estimate is its heap count or the largest count among the buckets holding its fingerprint.
//!
//! Guarantee: without fingerprint collisions, no count is ever above the key's true count (a
//! count is only raised by the key's own occurrences, written back from the key's own heap count,
//! or decayed). A collision — another key of the same fingerprint hashed to the same bucket —
//! adds that key's occurrences: per update of a bucket that holds another key the chance is
//! 2^−32, so over a stream of N events at most about N · 2^−32 updates collide.

use std::mem::size_of;

use super::cms::{check_grid, KeyHash, ShapeNames, COUNTERS_MAX};
use super::key_arena::{DEFAULT_KEY_BYTES, KEY_BYTES_MAX};
use super::key_heap::KeyHeap;
use super::{sort_heavy_hitters, HeavyHitter, HeavyHitters, SketchError};

/// The decay base b of the paper: a count C decays with probability b^−C.
pub const DECAY_BASE: f64 = 1.08;
/// Largest k supported (slot ids are `u32`).
pub const K_MAX: usize = 1 << 24;
/// Most of a memory budget the key heap may take; the buckets get the rest. Measured on Zipf
/// streams (s = 0.8 to 1.5) at 4–32 KiB, 0.7 beats 0.5, 0.6 and 0.8 on top-100 recall and on
/// error: a key counted exactly in the heap is worth the five buckets its slot costs.
const HEAP_SHARE_OF_BUDGET: f64 = 0.7;
/// Keys tracked per key to report, budget permitting: counts near the k-th are underestimated by
/// different amounts, and a margin of tracked keys below the k-th keeps the true k-th in the heap.
const TRACKED_PER_REPORTED: usize = 2;

/// Counts past which decay is impossible: b^−C · 2^64 < 1 for C ≥ 577.
const DECAY_TABLE_LEN: usize = 600;
/// `DECAY_THRESHOLDS[c]`: a uniform 64-bit draw below it decays a count of `c` (⌊b^−c · 2^64⌋).
static DECAY_THRESHOLDS: [u64; DECAY_TABLE_LEN] = decay_thresholds();

const fn decay_thresholds() -> [u64; DECAY_TABLE_LEN] {
    let mut table = [0u64; DECAY_TABLE_LEN];
    let mut probability = 1.0f64;
    let mut count = 0;
    while count < DECAY_TABLE_LEN {
        table[count] = if probability >= 1.0 {
            u64::MAX
        } else {
            (probability * 18_446_744_073_709_551_616.0) as u64
        };
        probability /= DECAY_BASE;
        count += 1;
    }
    table
}

const _: () = assert!(DECAY_THRESHOLDS_LAST_IS_ZERO);
const DECAY_THRESHOLDS_LAST_IS_ZERO: bool = decay_thresholds()[DECAY_TABLE_LEN - 1] == 0;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Bucket {
    fingerprint: u32,
    /// 0 means empty, whatever the fingerprint.
    count: u32,
}

/// The HeavyKeeper top-k structure.
#[derive(Debug, Clone)]
pub struct HeavyKeeper {
    /// Row-major: row `r` is `buckets[r * width .. (r + 1) * width]`.
    buckets: Vec<Bucket>,
    width: u32,
    depth: u32,
    seed: u32,
    /// State of the wyrand generator that draws decays; seeded from `seed`, so runs repeat.
    rng: u64,
    heap: KeyHeap,
    total: u64,
}

impl HeavyKeeper {
    /// Tracks `k` keys over `depth` rows of `width` buckets, with room for keys of up to 16 bytes
    /// in place.
    pub fn new(k: usize, width: u32, depth: u32, seed: u32) -> Result<Self, SketchError> {
        Self::with_key_bytes_hint(k, width, depth, seed, DEFAULT_KEY_BYTES)
    }

    /// Like [`new`](Self::new), reserving `key_bytes_hint` bytes per tracked key: keys up to that
    /// length are stored in place; longer ones in an overflow area that may grow.
    pub fn with_key_bytes_hint(
        k: usize,
        width: u32,
        depth: u32,
        seed: u32,
        key_bytes_hint: usize,
    ) -> Result<Self, SketchError> {
        check_k(k)?;
        check_shape(width, depth)?;
        Ok(Self {
            buckets: vec![Bucket::default(); width as usize * depth as usize],
            width,
            depth,
            seed,
            rng: u64::from(seed) ^ 0x853c_49e6_748f_ea9b,
            heap: KeyHeap::new(k, key_bytes_hint, seed),
            total: 0,
        })
    }

    /// The most accurate HeavyKeeper whose [`memory_bytes`](HeavyHitters::memory_bytes) fits
    /// `budget_bytes`: up to `2k` tracked keys of about `key_bytes_hint` bytes, taking at most 70 %
    /// of the budget, and `depth` rows of buckets in the rest.
    ///
    /// Tracking twice the keys to be reported keeps the true k-th key in the heap when counts near
    /// it are underestimated by different amounts. At small budgets fewer than `k` keys are
    /// tracked (and reported): a bucket is 8 bytes and a tracked key about 40 plus its bytes.
    pub fn with_memory_budget(
        budget_bytes: usize,
        k: usize,
        depth: u32,
        key_bytes_hint: usize,
        seed: u32,
    ) -> Result<Self, SketchError> {
        check_k(k)?;
        check_shape(1, depth)?;
        let footprint = |k: usize| -> Result<usize, SketchError> {
            let empty = Self::with_key_bytes_hint(k, 1, depth, seed, key_bytes_hint)?;
            Ok(empty.memory_bytes() - empty.buckets.capacity() * size_of::<Bucket>())
        };
        let heap_budget = (budget_bytes as f64 * HEAP_SHARE_OF_BUDGET) as usize;
        let too_small = |needed_bytes| SketchError::BudgetTooSmall {
            what: format!("a HeavyKeeper of depth {depth}"),
            budget_bytes,
            needed_bytes,
        };
        let smallest = footprint(1)? + depth as usize * size_of::<Bucket>();
        if smallest > budget_bytes {
            return Err(too_small(smallest));
        }
        // The footprint grows with k (the index steps in powers of two), so bisect.
        let wanted = k.saturating_mul(TRACKED_PER_REPORTED).min(K_MAX);
        let tracked = if footprint(wanted)? <= heap_budget {
            wanted
        } else {
            let (mut fits, mut too_big) = (1usize, wanted);
            while too_big - fits > 1 {
                let middle = fits + (too_big - fits) / 2;
                if footprint(middle)? <= heap_budget {
                    fits = middle;
                } else {
                    too_big = middle;
                }
            }
            fits
        };
        let bucket_bytes = budget_bytes - footprint(tracked)?;
        let width = bucket_bytes / (depth as usize * size_of::<Bucket>());
        if width == 0 {
            return Err(too_small(smallest));
        }
        let width = u32::try_from(width)
            .unwrap_or(u32::MAX)
            .min((COUNTERS_MAX / u64::from(depth)) as u32);
        Self::with_key_bytes_hint(tracked, width, depth, seed, key_bytes_hint)
    }

    /// Most keys tracked and reported.
    pub fn k(&self) -> usize {
        self.heap.capacity()
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

    /// Sum of all counts seen (N).
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Number of keys tracked (at most k).
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.len() == 0
    }

    /// Counts `count` more occurrences of `key`.
    #[inline]
    pub fn add(&mut self, key: &[u8], count: u64) {
        if count == 0 {
            return;
        }
        self.total = self.total.saturating_add(count);
        let hash = KeyHash::of(key, self.seed);
        if key.len() > KEY_BYTES_MAX {
            // Counted in the buckets; too long to track by identity.
            self.count_in_buckets(hash, count);
            return;
        }
        if let Some(slot) = self.heap.find(key, hash.low) {
            self.heap.add(slot, count);
            return;
        }
        let estimate = self.count_in_buckets(hash, count);
        if !self.heap.is_full() {
            if estimate > 0 {
                self.clear_buckets(hash);
                self.heap.push(key, hash.low, estimate);
            }
        } else if let Some((slot, smallest)) = self.heap.min() {
            if estimate > smallest {
                let evicted = KeyHash::of(self.heap.key(slot), self.seed);
                self.clear_buckets(hash);
                self.heap.replace_min(key, hash.low, estimate, evicted.low);
                self.write_back(evicted, smallest);
            }
        }
    }

    /// The estimated count of `key`: its heap count if tracked, else the largest count among the
    /// buckets holding its fingerprint (0 if none). Never above the true count, fingerprint
    /// collisions aside.
    pub fn estimate_of(&self, key: &[u8]) -> u64 {
        let hash = KeyHash::of(key, self.seed);
        match self.heap.find(key, hash.low) {
            Some(slot) => self.heap.count(slot),
            None => self.bucket_estimate(hash),
        }
    }

    /// The 32-bit fingerprint kept in the buckets: the top half of the hash's high word, which
    /// [`slot`](Self::slot) mixes with the low word, so fingerprint and bucket are independent.
    #[inline]
    fn fingerprint(hash: KeyHash) -> u32 {
        (hash.high >> 32) as u32
    }

    /// Bucket index of `hash` in `row`, by double hashing and a multiply-shift, as in the
    /// count-min sketch.
    #[inline(always)]
    fn slot(&self, hash: KeyHash, row: u32) -> usize {
        let combined = hash
            .low
            .wrapping_add(u64::from(row).wrapping_mul(hash.high));
        let column = ((u128::from(combined) * u128::from(self.width)) >> 64) as usize;
        debug_assert!(column < self.width as usize);
        row as usize * self.width as usize + column
    }

    /// The HeavyKeeper update in every row; returns the key's new bucket estimate.
    #[inline]
    fn count_in_buckets(&mut self, hash: KeyHash, count: u64) -> u64 {
        let fingerprint = Self::fingerprint(hash);
        let weight = u32::try_from(count).unwrap_or(u32::MAX);
        let mut estimate = 0u32;
        for row in 0..self.depth {
            let slot = self.slot(hash, row);
            let bucket = self.buckets[slot];
            let updated = if bucket.count == 0 {
                Bucket {
                    fingerprint,
                    count: weight,
                }
            } else if bucket.fingerprint == fingerprint {
                Bucket {
                    fingerprint,
                    count: bucket.count.saturating_add(weight),
                }
            } else {
                self.decay(bucket, fingerprint, weight)
            };
            self.buckets[slot] = updated;
            if updated.fingerprint == fingerprint {
                estimate = estimate.max(updated.count);
            }
        }
        u64::from(estimate)
    }

    /// `weight` occurrences of the key with `fingerprint` meet a bucket held by another key: each
    /// decays the count by one with probability b^−count; the occurrence that empties the bucket
    /// takes it over with the occurrences left (at least itself).
    #[inline]
    fn decay(&mut self, mut bucket: Bucket, fingerprint: u32, weight: u32) -> Bucket {
        if weight == 1 {
            if next_u64(&mut self.rng) < decay_threshold(bucket.count) {
                bucket.count -= 1;
                if bucket.count == 0 {
                    return Bucket {
                        fingerprint,
                        count: 1,
                    };
                }
            }
            return bucket;
        }
        // A weighted update is `weight` unit trials; the gap to the next successful trial is
        // geometric, so the loop runs once per decay, not once per occurrence.
        let mut remaining = u64::from(weight);
        while bucket.count > 0 {
            let threshold = decay_threshold(bucket.count);
            if threshold == 0 {
                return bucket;
            }
            let probability = threshold as f64 / 18_446_744_073_709_551_616.0;
            let uniform = 1.0 - (next_u64(&mut self.rng) >> 11) as f64 / (1u64 << 53) as f64;
            let trials = (uniform.ln() / (-probability).ln_1p()).ceil().max(1.0) as u64;
            if trials > remaining {
                return bucket;
            }
            remaining -= trials;
            bucket.count -= 1;
        }
        Bucket {
            fingerprint,
            count: u32::try_from(remaining.max(1)).unwrap_or(u32::MAX),
        }
    }

    fn bucket_estimate(&self, hash: KeyHash) -> u64 {
        let fingerprint = Self::fingerprint(hash);
        (0..self.depth)
            .map(|row| self.buckets[self.slot(hash, row)])
            .filter(|bucket| bucket.count > 0 && bucket.fingerprint == fingerprint)
            .map(|bucket| u64::from(bucket.count))
            .max()
            .unwrap_or(0)
    }

    /// Empties the buckets holding the key's fingerprint: the key is now counted in the heap.
    fn clear_buckets(&mut self, hash: KeyHash) {
        let fingerprint = Self::fingerprint(hash);
        for row in 0..self.depth {
            let slot = self.slot(hash, row);
            if self.buckets[slot].fingerprint == fingerprint {
                self.buckets[slot].count = 0;
            }
        }
    }

    /// Returns a key leaving the heap to its buckets with its count, where that count is larger
    /// than what the bucket holds.
    fn write_back(&mut self, hash: KeyHash, count: u64) {
        let fingerprint = Self::fingerprint(hash);
        let count = u32::try_from(count).unwrap_or(u32::MAX);
        for row in 0..self.depth {
            let slot = self.slot(hash, row);
            let bucket = &mut self.buckets[slot];
            if bucket.count < count {
                *bucket = Bucket { fingerprint, count };
            }
        }
    }

    fn shape(&self) -> String {
        format!("{} x {} with seed {}", self.width, self.depth, self.seed)
    }
}

impl HeavyHitters for HeavyKeeper {
    fn update(&mut self, key: &[u8], count: u64) {
        self.add(key, count);
    }

    /// `count` is never above the true count (fingerprint collisions aside); `error` is the part
    /// of it that came from the buckets when the key entered the heap, the rest was counted
    /// exactly, so `count − error` is a certain lower bound.
    fn top(&self, k: usize) -> Vec<HeavyHitter> {
        let mut hitters: Vec<HeavyHitter> = self
            .heap
            .slots()
            .map(|slot| HeavyHitter {
                key: self.heap.key(slot).to_vec(),
                count: self.heap.count(slot),
                error: self.heap.estimated(slot).min(self.heap.count(slot)),
            })
            .collect();
        sort_heavy_hitters(&mut hitters);
        hitters.truncate(k);
        hitters
    }

    /// Never above the true count (fingerprint collisions aside), and 0 for a key the structure
    /// holds nowhere: unlike [`TopK`](super::TopK) and [`SpaceSaving`](super::SpaceSaving), this
    /// is not an upper bound.
    fn estimate(&self, key: &[u8]) -> u64 {
        self.estimate_of(key)
    }

    fn memory_bytes(&self) -> usize {
        size_of::<Self>() + self.buckets.capacity() * size_of::<Bucket>() + self.heap.memory_bytes()
    }

    /// Adds the buckets (counts of one fingerprint add up; of different fingerprints the larger
    /// stays), and re-ranks the union of both tracked sets by their summed estimates; tracked keys
    /// that no longer fit go back to the buckets. Both must have the same width, depth and seed.
    fn merge(&mut self, other: &Self) -> Result<(), SketchError> {
        if (self.width, self.depth, self.seed) != (other.width, other.depth, other.seed) {
            return Err(SketchError::MergeMismatch {
                what: "HeavyKeeper sketches",
                left: self.shape(),
                right: other.shape(),
            });
        }
        let mut candidates: Vec<(Vec<u8>, u64, u64)> = self
            .heap
            .slots()
            .map(|slot| {
                let key = self.heap.key(slot);
                let count = self.heap.count(slot).saturating_add(other.estimate_of(key));
                (key.to_vec(), count, self.heap.estimated(slot))
            })
            .collect();
        for slot in other.heap.slots() {
            let key = other.heap.key(slot);
            let hash = KeyHash::of(key, self.seed);
            if self.heap.find(key, hash.low).is_none() {
                let count = other
                    .heap
                    .count(slot)
                    .saturating_add(self.bucket_estimate(hash));
                candidates.push((key.to_vec(), count, other.heap.estimated(slot)));
            }
        }
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            if theirs.count == 0 {
                continue;
            }
            if mine.count == 0 {
                *mine = *theirs;
            } else if mine.fingerprint == theirs.fingerprint {
                mine.count = mine.count.saturating_add(theirs.count);
            } else if theirs.count > mine.count {
                *mine = *theirs;
            }
        }
        candidates.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let kept = candidates.len().min(self.heap.capacity());
        for (key, _, _) in &candidates[..kept] {
            self.clear_buckets(KeyHash::of(key, self.seed));
        }
        for (key, count, _) in &candidates[kept..] {
            self.write_back(KeyHash::of(key, self.seed), *count);
        }
        self.heap.rebuild(&candidates[..kept]);
        self.total = self.total.saturating_add(other.total);
        Ok(())
    }
}

#[inline]
fn decay_threshold(count: u32) -> u64 {
    DECAY_THRESHOLDS.get(count as usize).copied().unwrap_or(0)
}

/// wyrand: one multiply per draw, statistically sound for Bernoulli trials.
#[inline]
fn next_u64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0xa076_1d64_78bd_642f);
    let product = u128::from(*state) * u128::from(*state ^ 0xe703_7ed1_a0b4_28db);
    (product >> 64) as u64 ^ product as u64
}

fn check_k(k: usize) -> Result<(), SketchError> {
    SketchError::check_count("HeavyKeeper k", k as u64, K_MAX as u64)
}

const HEAVY_KEEPER_SHAPE: ShapeNames = ShapeNames {
    width: "HeavyKeeper width",
    depth: "HeavyKeeper depth",
    cells: "HeavyKeeper buckets (width x depth)",
};

fn check_shape(width: u32, depth: u32) -> Result<(), SketchError> {
    check_grid(width, depth, &HEAVY_KEEPER_SHAPE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decay_probabilities_follow_the_base() {
        assert_eq!(decay_threshold(0), u64::MAX);
        for count in [1u32, 10, 100] {
            let expected = DECAY_BASE.powi(-(count as i32));
            let actual = decay_threshold(count) as f64 / 2f64.powi(64);
            assert!((actual / expected - 1.0).abs() < 1e-9, "count {count}");
        }
        assert_eq!(decay_threshold(600), 0);
        assert_eq!(decay_threshold(u32::MAX), 0);
    }

    #[test]
    fn heap_stays_consistent_under_churn() {
        let mut keeper = HeavyKeeper::new(8, 32, 2, 5).unwrap();
        for i in 0..20_000u32 {
            let key = format!("k{}", (i * 7919) % 211 + (i % 13) * (i % 5));
            keeper.add(key.as_bytes(), 1 + u64::from(i % 3 == 0) * 4);
            if i % 97 == 0 {
                assert!(keeper.heap.is_consistent(), "after update {i}");
            }
        }
        assert!(keeper.heap.is_consistent());
        assert_eq!(keeper.len(), 8);
    }

    /// Fingerprints must not depend on the bucket a key lands in: among keys sharing a bucket,
    /// pairs agree on `b` fingerprint bits at the rate 2^−b. (If the fingerprint reused the
    /// bucket's hash bits, keys of one bucket would agree far more often.)
    #[test]
    fn fingerprints_collide_within_a_bucket_at_the_expected_rate() {
        const BITS: u32 = 12;
        let keeper = HeavyKeeper::new(1, 16, 2, 3).unwrap();
        let keys = 1u32 << 14;
        for row in 0..2 {
            let mut per_bucket: Vec<Vec<u32>> = vec![Vec::new(); 16];
            for i in 0..keys {
                let hash = KeyHash::of(format!("key-{i}").as_bytes(), keeper.seed);
                let column = keeper.slot(hash, row) - row as usize * 16;
                per_bucket[column].push(HeavyKeeper::fingerprint(hash) >> (32 - BITS));
            }
            let (mut pairs, mut colliding) = (0u64, 0u64);
            for fingerprints in &mut per_bucket {
                let n = fingerprints.len() as u64;
                pairs += n * n.saturating_sub(1) / 2;
                fingerprints.sort_unstable();
                for run in fingerprints.chunk_by(|a, b| a == b) {
                    let m = run.len() as u64;
                    colliding += m * (m - 1) / 2;
                }
            }
            let expected = pairs as f64 / f64::from(1u32 << BITS);
            let sigma = expected.sqrt();
            assert!(
                (colliding as f64 - expected).abs() < 5.0 * sigma,
                "row {row}: {colliding} colliding pairs, expected {expected:.0} ± {sigma:.0}"
            );
        }
    }
}
