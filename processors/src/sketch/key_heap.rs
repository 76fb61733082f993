//! An indexed min-heap of at most `capacity` exact keys with their counts: the part of a
//! heavy-hitter structure that names the heavy keys.
//!
//! The heap holds slot ids ordered by their count, smallest at the root; `positions` maps a slot to
//! its heap index and a hash table maps a key to its slot, so finding a key costs one lookup and
//! raising its count one sift (O(log k)). Keys live once, in a [`KeyArena`]. Every array is sized
//! for `capacity` up front, so once full an update or a replacement allocates nothing.

use std::mem::size_of;

use hashbrown::HashTable;

use super::cms::KeyHash;
use super::key_arena::KeyArena;

#[derive(Debug, Clone)]
pub(super) struct KeyHeap {
    capacity: usize,
    /// Slot ids, a min-heap by `counts[slot]`.
    heap: Vec<u32>,
    /// Slot id → index in `heap`.
    positions: Vec<u32>,
    /// Slot id → count.
    counts: Vec<u64>,
    /// Slot id → the part of the count that was estimated rather than counted (saturating).
    estimated: Vec<u32>,
    keys: KeyArena,
    /// Slot ids, hashed by the low 64 bits of their key's murmur3 hash with `seed`.
    index: HashTable<u32>,
    seed: u32,
}

impl KeyHeap {
    pub(super) fn new(capacity: usize, key_bytes_hint: usize, seed: u32) -> Self {
        Self {
            capacity,
            heap: Vec::with_capacity(capacity),
            positions: Vec::with_capacity(capacity),
            counts: Vec::with_capacity(capacity),
            estimated: Vec::with_capacity(capacity),
            keys: KeyArena::new(capacity, key_bytes_hint),
            // Twice the capacity: replacements leave tombstones, and hashbrown rehashes in place
            // (no allocation) only while the table is at most half full.
            index: HashTable::with_capacity(capacity * 2),
            seed,
        }
    }

    pub(super) fn capacity(&self) -> usize {
        self.capacity
    }

    pub(super) fn len(&self) -> usize {
        self.heap.len()
    }

    pub(super) fn is_full(&self) -> bool {
        self.heap.len() >= self.capacity
    }

    /// The slot and count at the root (the smallest count), if any key is held.
    pub(super) fn min(&self) -> Option<(u32, u64)> {
        let &slot = self.heap.first()?;
        Some((slot, self.counts[slot as usize]))
    }

    #[inline]
    pub(super) fn find(&self, key: &[u8], hash_low: u64) -> Option<u32> {
        let keys = &self.keys;
        self.index
            .find(hash_low, |&slot| keys.get(slot) == key)
            .copied()
    }

    pub(super) fn key(&self, slot: u32) -> &[u8] {
        self.keys.get(slot)
    }

    pub(super) fn count(&self, slot: u32) -> u64 {
        self.counts.get(slot as usize).copied().unwrap_or(0)
    }

    pub(super) fn estimated(&self, slot: u32) -> u64 {
        u64::from(self.estimated.get(slot as usize).copied().unwrap_or(0))
    }

    /// Raises the count of the held key in `slot` by `by`.
    #[inline]
    pub(super) fn add(&mut self, slot: u32, by: u64) {
        let count = &mut self.counts[slot as usize];
        *count = count.saturating_add(by);
        let position = self.positions[slot as usize] as usize;
        self.sift_down(position);
    }

    /// Holds a new key whose count so far is the estimate `count`. The heap must not be full.
    pub(super) fn push(&mut self, key: &[u8], hash_low: u64, count: u64) {
        debug_assert!(!self.is_full());
        let slot = self.keys.push(key);
        debug_assert_eq!(slot as usize, self.counts.len());
        let position = self.heap.len();
        self.heap.push(slot);
        self.positions.push(position as u32);
        self.counts.push(count);
        self.estimated.push(saturate_u32(count));
        self.insert_index(hash_low, slot);
        self.sift_up(position);
    }

    /// Replaces the root's key (whose hash is `evicted_hash_low`) with `key`, counted `count`.
    pub(super) fn replace_min(
        &mut self,
        key: &[u8],
        hash_low: u64,
        count: u64,
        evicted_hash_low: u64,
    ) {
        let Some(&slot) = self.heap.first() else {
            return;
        };
        if let Ok(entry) = self
            .index
            .find_entry(evicted_hash_low, |&other| other == slot)
        {
            entry.remove();
        }
        self.keys.set(slot, key);
        self.insert_index(hash_low, slot);
        self.counts[slot as usize] = count;
        self.estimated[slot as usize] = saturate_u32(count);
        self.sift_down(0);
    }

    /// Held slots, in heap order.
    pub(super) fn slots(&self) -> impl Iterator<Item = u32> + '_ {
        self.heap.iter().copied()
    }

    /// Holds exactly `entries` (`(key, count, estimated part)`, at most `capacity`).
    pub(super) fn rebuild(&mut self, entries: &[(Vec<u8>, u64, u64)]) {
        debug_assert!(entries.len() <= self.capacity);
        self.heap.clear();
        self.positions.clear();
        self.counts.clear();
        self.estimated.clear();
        self.keys.clear();
        self.index.clear();
        for (key, count, estimated) in entries.iter().take(self.capacity) {
            let hash_low = KeyHash::of(key, self.seed).low;
            self.push(key, hash_low, *count);
            if let Some(last) = self.estimated.last_mut() {
                *last = saturate_u32(*estimated);
            }
        }
    }

    pub(super) fn memory_bytes(&self) -> usize {
        self.heap.capacity() * size_of::<u32>()
            + self.positions.capacity() * size_of::<u32>()
            + self.counts.capacity() * size_of::<u64>()
            + self.estimated.capacity() * size_of::<u32>()
            + self.keys.memory_bytes()
            + self.index.allocation_size()
    }

    fn insert_index(&mut self, hash_low: u64, slot: u32) {
        let (keys, seed) = (&self.keys, self.seed);
        self.index.insert_unique(hash_low, slot, |&slot| {
            KeyHash::of(keys.get(slot), seed).low
        });
    }

    #[inline]
    fn count_at(&self, position: usize) -> u64 {
        self.counts[self.heap[position] as usize]
    }

    fn sift_up(&mut self, mut position: usize) {
        while position > 0 {
            let parent = (position - 1) / 2;
            if self.count_at(parent) <= self.count_at(position) {
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
            let smaller = if right < len && self.count_at(right) < self.count_at(left) {
                right
            } else {
                left
            };
            if self.count_at(position) <= self.count_at(smaller) {
                break;
            }
            self.swap(position, smaller);
            position = smaller;
        }
    }

    #[inline]
    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.positions[self.heap[a] as usize] = a as u32;
        self.positions[self.heap[b] as usize] = b as u32;
    }

    #[cfg(test)]
    pub(super) fn is_consistent(&self) -> bool {
        let ordered = (1..self.heap.len()).all(|i| self.count_at((i - 1) / 2) <= self.count_at(i));
        let positioned = self
            .heap
            .iter()
            .enumerate()
            .all(|(i, &slot)| self.positions[slot as usize] as usize == i);
        let indexed = self.heap.iter().all(|&slot| {
            let hash = KeyHash::of(self.keys.get(slot), self.seed).low;
            self.find(self.keys.get(slot), hash) == Some(slot)
        });
        ordered && positioned && indexed
    }
}

fn saturate_u32(count: u64) -> u32 {
    u32::try_from(count).unwrap_or(u32::MAX)
}
