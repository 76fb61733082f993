//! Space-Saving (Metwally, Agrawal, El Abbadi 2005) on a stream-summary: counters grouped in
//! buckets of equal count, buckets in a doubly linked list in increasing count order.
//!
//! A unit increment moves a counter to the next bucket (or bumps its bucket in place when it is
//! alone), so an update costs one hash lookup and O(1) pointer changes. When every counter is in use,
//! a new key takes over a counter of the smallest bucket and inherits its count as error, which
//! gives the guarantee `count − error ≤ true ≤ count` and `error ≤ N / capacity`.
//!
//! Counters, buckets and keys live in arrays sized for `capacity` up front, so once warm an update
//! allocates nothing.

use std::mem::size_of;

use hashbrown::HashTable;

use super::cms::KeyHash;
use super::key_arena::{KeyArena, DEFAULT_KEY_BYTES, KEY_BYTES_MAX};
use super::{sort_heavy_hitters, HeavyHitter, HeavyHitters, SketchError};

const NIL: u32 = u32::MAX;
/// Largest capacity supported (ids are `u32`, `NIL` reserved).
pub const CAPACITY_MAX: usize = 1 << 28;
const HASH_SEED: u32 = 0;

#[derive(Debug, Clone, Copy)]
struct Counter {
    error: u64,
    bucket: u32,
    prev: u32,
    next: u32,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    count: u64,
    /// First counter of this bucket; never `NIL` for a bucket in the list.
    first: u32,
    prev: u32,
    next: u32,
}

/// The Space-Saving heavy-hitter summary with `capacity` counters.
#[derive(Debug, Clone)]
pub struct SpaceSaving {
    capacity: usize,
    counters: Vec<Counter>,
    keys: KeyArena,
    buckets: Vec<Bucket>,
    free_buckets: Vec<u32>,
    /// Bucket with the smallest count, `NIL` when no key is tracked.
    smallest: u32,
    index: HashTable<u32>,
    total: u64,
}

impl SpaceSaving {
    /// A summary of `capacity` counters, with room for keys of up to 16 bytes in place.
    pub fn new(capacity: usize) -> Result<Self, SketchError> {
        Self::with_key_bytes_hint(capacity, DEFAULT_KEY_BYTES)
    }

    /// Like [`new`](Self::new), reserving `key_bytes_hint` bytes per key: keys up to that length
    /// are stored in place; longer ones in an overflow area that may grow.
    pub fn with_key_bytes_hint(
        capacity: usize,
        key_bytes_hint: usize,
    ) -> Result<Self, SketchError> {
        SketchError::check_count(
            "space-saving capacity",
            capacity as u64,
            CAPACITY_MAX as u64,
        )?;
        Ok(Self {
            capacity,
            counters: Vec::with_capacity(capacity),
            keys: KeyArena::new(capacity, key_bytes_hint),
            // There are never more non-empty buckets than counters.
            buckets: Vec::with_capacity(capacity),
            free_buckets: Vec::with_capacity(capacity),
            smallest: NIL,
            // Twice the capacity: evictions leave tombstones, and hashbrown rehashes in place (no
            // allocation) only while the table is at most half full.
            index: HashTable::with_capacity(capacity * 2),
            total: 0,
        })
    }

    /// The largest summary whose [`memory_bytes`](HeavyHitters::memory_bytes) fits `budget_bytes`
    /// with keys of about `key_bytes_hint` bytes.
    pub fn with_memory_budget(
        budget_bytes: usize,
        key_bytes_hint: usize,
    ) -> Result<Self, SketchError> {
        let footprint = |capacity| {
            Self::with_key_bytes_hint(capacity, key_bytes_hint).map(|s| s.memory_bytes())
        };
        if footprint(1)? > budget_bytes {
            return Err(SketchError::BudgetTooSmall {
                what: "a space-saving summary".to_string(),
                budget_bytes,
                needed_bytes: footprint(1)?,
            });
        }
        // Footprint grows with capacity (table sizes step in powers of two), so bisect.
        let (mut fits, mut too_big) = (1usize, budget_bytes.min(CAPACITY_MAX) + 1);
        while too_big - fits > 1 {
            let middle = fits + (too_big - fits) / 2;
            if footprint(middle)? <= budget_bytes {
                fits = middle;
            } else {
                too_big = middle;
            }
        }
        Self::with_key_bytes_hint(fits, key_bytes_hint)
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Sum of all counts seen (N).
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Number of keys tracked.
    pub fn len(&self) -> usize {
        self.counters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.counters.is_empty()
    }

    /// The deterministic error bound N / capacity.
    pub fn error_bound(&self) -> f64 {
        self.total as f64 / self.capacity as f64
    }

    /// Smallest tracked count, or 0 while counters are still free: the most any untracked key can
    /// have occurred.
    pub fn untracked_count_max(&self) -> u64 {
        if self.counters.len() < self.capacity || self.smallest == NIL {
            0
        } else {
            self.buckets[self.smallest as usize].count
        }
    }

    /// `(count, error)` of a tracked key.
    pub fn get(&self, key: &[u8]) -> Option<(u64, u64)> {
        let id = self.find(key, KeyHash::of(key, HASH_SEED).low)?;
        let counter = &self.counters[id as usize];
        Some((self.buckets[counter.bucket as usize].count, counter.error))
    }

    /// Certain bounds `(lower, upper)` on `key`'s true count: `(count − error, count)` for a
    /// tracked key, `(0, smallest tracked count)` for an untracked one.
    pub fn bounds(&self, key: &[u8]) -> (u64, u64) {
        match self.get(key) {
            Some((count, error)) => (count - error, count),
            None => (0, self.untracked_count_max()),
        }
    }

    /// The estimate with the smaller error on skewed streams, which may fall below the true
    /// count: the lower bound `count − error` for a tracked key (exact for keys tracked since
    /// their first occurrence, which heavy keys mostly are), 0 for an untracked one.
    /// [`estimate`](HeavyHitters::estimate) is the upper bound instead.
    pub fn lower_estimate(&self, key: &[u8]) -> u64 {
        self.bounds(key).0
    }

    /// Counts `count` more occurrences of `key`.
    #[inline]
    pub fn add(&mut self, key: &[u8], count: u64) {
        if count == 0 {
            return;
        }
        self.total = self.total.saturating_add(count);
        if key.len() > KEY_BYTES_MAX {
            return;
        }
        let hash = KeyHash::of(key, HASH_SEED).low;
        if let Some(id) = self.find(key, hash) {
            self.increment(id, count);
        } else if self.counters.len() < self.capacity {
            let id = self.keys.push(key);
            debug_assert_eq!(id as usize, self.counters.len());
            self.counters.push(Counter {
                error: 0,
                bucket: NIL,
                prev: NIL,
                next: NIL,
            });
            let keys = &self.keys;
            self.index
                .insert_unique(hash, id, |&id| KeyHash::of(keys.get(id), HASH_SEED).low);
            self.place(id, count, NIL, self.smallest);
        } else {
            let bucket = self.smallest;
            let id = self.buckets[bucket as usize].first;
            let evicted_hash = KeyHash::of(self.keys.get(id), HASH_SEED).low;
            if let Ok(entry) = self.index.find_entry(evicted_hash, |&other| other == id) {
                entry.remove();
            }
            self.keys.set(id, key);
            let keys = &self.keys;
            self.index
                .insert_unique(hash, id, |&id| KeyHash::of(keys.get(id), HASH_SEED).low);
            self.counters[id as usize].error = self.buckets[bucket as usize].count;
            self.increment(id, count);
        }
    }

    #[inline]
    fn find(&self, key: &[u8], hash: u64) -> Option<u32> {
        let keys = &self.keys;
        self.index.find(hash, |&id| keys.get(id) == key).copied()
    }

    /// Moves counter `id` from its bucket to the bucket of count + `by`.
    fn increment(&mut self, id: u32, by: u64) {
        let bucket = self.counters[id as usize].bucket;
        let from = self.buckets[bucket as usize];
        let target = from.count.saturating_add(by);
        if target == from.count {
            return;
        }
        let alone = from.first == id && self.counters[id as usize].next == NIL;
        if alone && (from.next == NIL || self.buckets[from.next as usize].count > target) {
            // The bucket keeps its place in the order: bump it.
            self.buckets[bucket as usize].count = target;
            return;
        }
        self.detach(id);
        // `detach` may have freed `bucket`; walk from its neighbours, which are still linked.
        let prev = if alone { from.prev } else { bucket };
        self.place(id, target, prev, from.next);
    }

    /// Puts detached counter `id` in the bucket of count `target`, searching forward from the
    /// bucket after `prev` (`next`); creates the bucket if it does not exist.
    fn place(&mut self, id: u32, target: u64, mut prev: u32, mut next: u32) {
        while next != NIL && self.buckets[next as usize].count < target {
            prev = next;
            next = self.buckets[next as usize].next;
        }
        let bucket = if next != NIL && self.buckets[next as usize].count == target {
            next
        } else {
            self.link_new_bucket(target, prev, next)
        };
        self.attach(id, bucket);
    }

    fn link_new_bucket(&mut self, count: u64, prev: u32, next: u32) -> u32 {
        let bucket = Bucket {
            count,
            first: NIL,
            prev,
            next,
        };
        let id = match self.free_buckets.pop() {
            Some(id) => {
                self.buckets[id as usize] = bucket;
                id
            }
            None => {
                self.buckets.push(bucket);
                (self.buckets.len() - 1) as u32
            }
        };
        debug_assert!(self.buckets.len() <= self.capacity);
        if prev == NIL {
            self.smallest = id;
        } else {
            self.buckets[prev as usize].next = id;
        }
        if next != NIL {
            self.buckets[next as usize].prev = id;
        }
        id
    }

    fn attach(&mut self, id: u32, bucket: u32) {
        let first = self.buckets[bucket as usize].first;
        self.counters[id as usize] = Counter {
            bucket,
            prev: NIL,
            next: first,
            ..self.counters[id as usize]
        };
        if first != NIL {
            self.counters[first as usize].prev = id;
        }
        self.buckets[bucket as usize].first = id;
    }

    /// Unlinks counter `id` from its bucket, freeing the bucket if it empties.
    fn detach(&mut self, id: u32) {
        let Counter {
            bucket, prev, next, ..
        } = self.counters[id as usize];
        if prev == NIL {
            self.buckets[bucket as usize].first = next;
        } else {
            self.counters[prev as usize].next = next;
        }
        if next != NIL {
            self.counters[next as usize].prev = prev;
        }
        if self.buckets[bucket as usize].first == NIL {
            let Bucket { prev, next, .. } = self.buckets[bucket as usize];
            if prev == NIL {
                self.smallest = next;
            } else {
                self.buckets[prev as usize].next = next;
            }
            if next != NIL {
                self.buckets[next as usize].prev = prev;
            }
            self.free_buckets.push(bucket);
        }
    }

    /// Every tracked key with its count and error, unordered.
    fn entries(&self) -> impl Iterator<Item = HeavyHitter> + '_ {
        self.counters
            .iter()
            .enumerate()
            .map(|(id, counter)| HeavyHitter {
                key: self.keys.get(id as u32).to_vec(),
                count: self.buckets[counter.bucket as usize].count,
                error: counter.error,
            })
    }

    /// Replaces the contents with `entries` (at most `capacity`, any order).
    fn rebuild(&mut self, mut entries: Vec<HeavyHitter>, total: u64) {
        debug_assert!(entries.len() <= self.capacity);
        // Ascending count: each new counter lands at the end of the bucket list.
        entries.sort_unstable_by(|a, b| a.count.cmp(&b.count).then_with(|| a.key.cmp(&b.key)));
        self.counters.clear();
        self.keys.clear();
        self.buckets.clear();
        self.free_buckets.clear();
        self.index.clear();
        self.smallest = NIL;
        let mut largest = NIL;
        for entry in entries.into_iter().filter(|entry| entry.count > 0) {
            let hash = KeyHash::of(&entry.key, HASH_SEED).low;
            let id = self.keys.push(&entry.key);
            self.counters.push(Counter {
                error: entry.error,
                bucket: NIL,
                prev: NIL,
                next: NIL,
            });
            let keys = &self.keys;
            self.index
                .insert_unique(hash, id, |&id| KeyHash::of(keys.get(id), HASH_SEED).low);
            let bucket = if largest != NIL && self.buckets[largest as usize].count == entry.count {
                largest
            } else {
                largest = self.link_new_bucket(entry.count, largest, NIL);
                largest
            };
            self.attach(id, bucket);
        }
        self.total = total;
    }
}

impl HeavyHitters for SpaceSaving {
    fn update(&mut self, key: &[u8], count: u64) {
        self.add(key, count);
    }

    fn top(&self, k: usize) -> Vec<HeavyHitter> {
        let mut hitters: Vec<HeavyHitter> = self.entries().collect();
        sort_heavy_hitters(&mut hitters);
        hitters.truncate(k);
        hitters
    }

    /// The tracked count, or for an untracked key the most it can have occurred.
    fn estimate(&self, key: &[u8]) -> u64 {
        self.get(key)
            .map_or_else(|| self.untracked_count_max(), |(count, _)| count)
    }

    fn memory_bytes(&self) -> usize {
        size_of::<Self>()
            + self.counters.capacity() * size_of::<Counter>()
            + self.keys.memory_bytes()
            + self.buckets.capacity() * size_of::<Bucket>()
            + self.free_buckets.capacity() * size_of::<u32>()
            + self.index.allocation_size()
    }

    /// Mergeable-summaries merge (Agarwal et al.): add counts, charging a key missing from a full
    /// summary that summary's minimum as count and error, then keep the `capacity` largest.
    fn merge(&mut self, other: &Self) -> Result<(), SketchError> {
        if self.capacity != other.capacity {
            return Err(SketchError::MergeMismatch {
                what: "space-saving summaries",
                left: format!("capacity {}", self.capacity),
                right: format!("capacity {}", other.capacity),
            });
        }
        let (mine_missing, theirs_missing) =
            (self.untracked_count_max(), other.untracked_count_max());
        let mut merged: Vec<HeavyHitter> = self
            .entries()
            .map(|mut entry| {
                match other.get(&entry.key) {
                    Some((count, error)) => {
                        entry.count += count;
                        entry.error += error;
                    }
                    None => {
                        entry.count += theirs_missing;
                        entry.error += theirs_missing;
                    }
                }
                entry
            })
            .collect();
        merged.extend(
            other
                .entries()
                .filter(|entry| self.get(&entry.key).is_none())
                .map(|mut entry| {
                    entry.count += mine_missing;
                    entry.error += mine_missing;
                    entry
                }),
        );
        sort_heavy_hitters(&mut merged);
        merged.truncate(self.capacity);
        let total = self.total.saturating_add(other.total);
        self.rebuild(merged, total);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Walks the bucket list and checks order, back links and counter membership.
    fn check_structure(summary: &SpaceSaving) {
        let mut seen = 0;
        let (mut bucket, mut prev, mut last_count) = (summary.smallest, NIL, 0);
        while bucket != NIL {
            let b = summary.buckets[bucket as usize];
            assert_eq!(b.prev, prev);
            assert!(b.count > last_count, "bucket counts strictly increase");
            assert_ne!(b.first, NIL, "listed buckets are non-empty");
            let mut counter = b.first;
            while counter != NIL {
                assert_eq!(summary.counters[counter as usize].bucket, bucket);
                seen += 1;
                counter = summary.counters[counter as usize].next;
            }
            last_count = b.count;
            prev = bucket;
            bucket = b.next;
        }
        assert_eq!(seen, summary.counters.len());
    }

    #[test]
    fn stream_summary_stays_well_formed_with_weighted_updates() {
        let mut summary = SpaceSaving::new(16).unwrap();
        for i in 0..3_000u64 {
            let key = format!("k{}", (i * 31) % 53);
            summary.add(key.as_bytes(), 1 + i % 4);
            check_structure(&summary);
        }
        assert_eq!(summary.len(), 16);
        assert_eq!(
            summary.total(),
            (0..3_000u64).map(|i| 1 + i % 4).sum::<u64>()
        );
    }
}
