//! Top-k heavy hitters over a count-min sketch, tracked in an indexed min-heap.
//!
//! The heap holds the k keys with the largest estimates, smallest at the root. A hash table maps
//! each tracked key to its slot id and `positions` maps a slot id to its heap index, so a hit on a
//! tracked key costs one lookup and one sift (O(log k)), never a scan or a rebuild of the heap. Keys
//! live once, in a [`KeyArena`]; once k keys are tracked an update of a tracked key allocates nothing.

use std::mem::size_of;

use hashbrown::HashTable;

use super::cms::{CountMinSketch, KeyHash, UpdateRule};
use super::key_arena::{KeyArena, DEFAULT_KEY_BYTES, KEY_BYTES_MAX};
use super::{sort_heavy_hitters, HeavyHitter, HeavyHitters, SketchError};

/// Largest k supported (slot ids are `u32`).
pub const K_MAX: usize = 1 << 24;

#[derive(Debug, Clone, Copy)]
struct HeapEntry {
    /// The key's estimate when it was last updated; estimates only grow, so this is a lower bound
    /// on the current estimate and the heap order stays valid without re-reading the sketch.
    count: u64,
    slot: u32,
}

/// The k heaviest keys of a stream.
#[derive(Debug, Clone)]
pub struct TopK {
    sketch: CountMinSketch,
    k: usize,
    heap: Vec<HeapEntry>,
    /// Slot id → index in `heap`.
    positions: Vec<u32>,
    keys: KeyArena,
    /// Slot ids, hashed by the low 64 bits of their key's murmur3 hash.
    index: HashTable<u32>,
}

impl TopK {
    /// Tracks `k` keys over `sketch`, with room for keys of up to 16 bytes in place.
    pub fn new(k: usize, sketch: CountMinSketch) -> Result<Self, SketchError> {
        Self::with_key_bytes_hint(k, sketch, DEFAULT_KEY_BYTES)
    }

    /// Like [`new`](Self::new), reserving `key_bytes_hint` bytes per key up front: keys up to that
    /// length are stored in place; longer ones in an overflow area that may grow.
    pub fn with_key_bytes_hint(
        k: usize,
        sketch: CountMinSketch,
        key_bytes_hint: usize,
    ) -> Result<Self, SketchError> {
        check_k(k)?;
        Ok(Self {
            sketch,
            k,
            heap: Vec::with_capacity(k),
            positions: Vec::with_capacity(k),
            keys: KeyArena::new(k, key_bytes_hint),
            // Twice k keeps the load low, so removals of evicted keys rarely leave tombstones
            // that force an in-place rehash.
            index: HashTable::with_capacity(k * 2),
        })
    }

    /// A top-k whose total [`memory_bytes`](Self::memory_bytes) fits `budget_bytes`: the tracking
    /// structures for `k` keys of about `key_bytes_hint` bytes come first, the sketch of `depth`
    /// rows gets the rest.
    pub fn with_memory_budget(
        budget_bytes: usize,
        k: usize,
        depth: u32,
        key_bytes_hint: usize,
        seed: u32,
        rule: UpdateRule,
    ) -> Result<Self, SketchError> {
        check_k(k)?;
        let placeholder = CountMinSketch::new(1, depth, seed, rule)?;
        let empty = Self::with_key_bytes_hint(k, placeholder, key_bytes_hint)?;
        let tracking_bytes = empty.memory_bytes() - empty.sketch.memory_bytes();
        let sketch_budget = budget_bytes.saturating_sub(tracking_bytes);
        if CountMinSketch::width_for_budget(sketch_budget, depth) == 0 {
            return Err(SketchError::BudgetTooSmall {
                what: format!("a top-{k} over a count-min sketch of depth {depth}"),
                budget_bytes,
                needed_bytes: tracking_bytes + empty.sketch.memory_bytes(),
            });
        }
        let sketch = CountMinSketch::with_memory_budget(sketch_budget, depth, seed, rule)?;
        Ok(Self { sketch, ..empty })
    }

    pub fn k(&self) -> usize {
        self.k
    }

    /// The sketch the estimates come from.
    pub fn sketch(&self) -> &CountMinSketch {
        &self.sketch
    }

    /// Number of keys tracked (at most k).
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Counts `count` more occurrences of `key`.
    #[inline]
    pub fn add(&mut self, key: &[u8], count: u64) {
        let hash = self.sketch.hash(key);
        let estimate = self.sketch.add_hashed(hash, count);
        if key.len() > KEY_BYTES_MAX {
            // Counted in the sketch; too long to track by identity.
            return;
        }
        let keys = &self.keys;
        if let Some(&slot) = self.index.find(hash.low, |&slot| keys.get(slot) == key) {
            let position = self.positions[slot as usize] as usize;
            debug_assert!(
                estimate >= self.heap[position].count,
                "estimates never decrease"
            );
            self.heap[position].count = estimate;
            self.sift_down(position);
        } else if self.heap.len() < self.k {
            self.track_new(key, hash, estimate);
        } else if self.heap.first().is_some_and(|root| estimate > root.count) {
            self.replace_root(key, hash, estimate);
        }
    }

    fn track_new(&mut self, key: &[u8], hash: KeyHash, estimate: u64) {
        let slot = self.keys.push(key);
        debug_assert_eq!(slot as usize, self.positions.len());
        let position = self.heap.len();
        self.positions.push(position as u32);
        self.heap.push(HeapEntry {
            count: estimate,
            slot,
        });
        let (keys, seed) = (&self.keys, self.sketch.seed());
        self.index.insert_unique(hash.low, slot, |&slot| {
            KeyHash::of(keys.get(slot), seed).low
        });
        self.sift_up(position);
    }

    fn replace_root(&mut self, key: &[u8], hash: KeyHash, estimate: u64) {
        let slot = self.heap[0].slot;
        let seed = self.sketch.seed();
        let evicted_hash = KeyHash::of(self.keys.get(slot), seed).low;
        if let Ok(entry) = self.index.find_entry(evicted_hash, |&other| other == slot) {
            entry.remove();
        }
        self.keys.set(slot, key);
        let keys = &self.keys;
        self.index.insert_unique(hash.low, slot, |&slot| {
            KeyHash::of(keys.get(slot), seed).low
        });
        self.heap[0].count = estimate;
        self.sift_down(0);
    }

    fn sift_up(&mut self, mut position: usize) {
        while position > 0 {
            let parent = (position - 1) / 2;
            if self.heap[parent].count <= self.heap[position].count {
                break;
            }
            self.swap(parent, position);
            position = parent;
        }
    }

    fn sift_down(&mut self, mut position: usize) {
        let len = self.heap.len();
        loop {
            let left = 2 * position + 1;
            if left >= len {
                break;
            }
            let right = left + 1;
            let smaller = if right < len && self.heap[right].count < self.heap[left].count {
                right
            } else {
                left
            };
            if self.heap[position].count <= self.heap[smaller].count {
                break;
            }
            self.swap(position, smaller);
            position = smaller;
        }
    }

    #[inline]
    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.positions[self.heap[a].slot as usize] = a as u32;
        self.positions[self.heap[b].slot as usize] = b as u32;
    }

    /// Rebuilds the tracked set from `candidates`, keeping the k with the largest estimates.
    fn retrack(&mut self, candidates: Vec<Vec<u8>>) {
        let mut ranked: Vec<(u64, Vec<u8>)> = candidates
            .into_iter()
            .map(|key| (self.sketch.estimate(&key), key))
            .collect();
        ranked.sort_unstable_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        ranked.dedup_by(|a, b| a.1 == b.1);
        ranked.truncate(self.k);
        self.heap.clear();
        self.positions.clear();
        self.keys.clear();
        self.index.clear();
        for (estimate, key) in ranked {
            let hash = self.sketch.hash(&key);
            self.track_new(&key, hash, estimate);
        }
    }

    fn tracked_keys(&self) -> impl Iterator<Item = &[u8]> {
        self.heap.iter().map(|entry| self.keys.get(entry.slot))
    }
}

impl HeavyHitters for TopK {
    fn update(&mut self, key: &[u8], count: u64) {
        self.add(key, count);
    }

    /// Re-reads each tracked key's estimate from the sketch, so counts are current.
    fn top(&self, k: usize) -> Vec<HeavyHitter> {
        let error = self.sketch.error_bound().ceil() as u64;
        let mut hitters: Vec<HeavyHitter> = self
            .tracked_keys()
            .map(|key| HeavyHitter {
                key: key.to_vec(),
                count: self.sketch.estimate(key),
                error,
            })
            .collect();
        sort_heavy_hitters(&mut hitters);
        hitters.truncate(k);
        hitters
    }

    fn estimate(&self, key: &[u8]) -> u64 {
        self.sketch.estimate(key)
    }

    fn memory_bytes(&self) -> usize {
        size_of::<Self>() - size_of::<CountMinSketch>()
            + self.sketch.memory_bytes()
            + self.heap.capacity() * size_of::<HeapEntry>()
            + self.positions.capacity() * size_of::<u32>()
            + self.keys.memory_bytes()
            + self.index.allocation_size()
    }

    /// Merges the sketches exactly (same shape and seed required) and re-ranks the union of both
    /// tracked sets by the merged estimates.
    fn merge(&mut self, other: &Self) -> Result<(), SketchError> {
        self.sketch.merge(&other.sketch)?;
        let candidates: Vec<Vec<u8>> = self
            .tracked_keys()
            .chain(other.tracked_keys())
            .map(<[u8]>::to_vec)
            .collect();
        self.retrack(candidates);
        Ok(())
    }
}

fn check_k(k: usize) -> Result<(), SketchError> {
    SketchError::check_count("top-k k", k as u64, K_MAX as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heap_is_valid(topk: &TopK) -> bool {
        (1..topk.heap.len()).all(|i| topk.heap[(i - 1) / 2].count <= topk.heap[i].count)
            && topk
                .heap
                .iter()
                .enumerate()
                .all(|(i, e)| topk.positions[e.slot as usize] as usize == i)
    }

    #[test]
    fn heap_and_positions_stay_consistent_under_churn() {
        let sketch = CountMinSketch::new(64, 4, 7, UpdateRule::Conservative).unwrap();
        let mut topk = TopK::new(8, sketch).unwrap();
        for i in 0..5_000u32 {
            let key = format!("k{}", (i * 7919) % 97 + (i % 13) * (i % 5));
            topk.add(key.as_bytes(), 1);
            assert!(heap_is_valid(&topk), "after update {i}");
        }
        assert_eq!(topk.len(), 8);
        for entry in &topk.heap {
            let key = topk.keys.get(entry.slot);
            let hash = topk.sketch.hash(key).low;
            assert!(topk.index.find(hash, |&s| s == entry.slot).is_some());
        }
    }
}
