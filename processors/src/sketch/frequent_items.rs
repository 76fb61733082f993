//! Frequent items in a fixed memory budget, keys included: Misra-Gries counters with a reverse
//! purge, as in Apache DataSketches' frequent-items sketch (Anderson et al., "A High-Performance
//! Algorithm for Identifying Frequent Items in Data Streams", IMC 2017).
//!
//! Counters live in one open-addressed table (linear probing, at most 3/4 full) of 16-byte slots:
//! count, offset of the key in a [`KeyLog`], and a 32-bit hash that rejects most probes without
//! touching the key. While the distinct keys fit, every count is exact. When a new key finds the
//! table full (or the key log out of room), a *purge* takes a quantile `c` of the counts (from a
//! sample), subtracts it from every counter, drops the counters it empties and adds `c` to the
//! sketch's `offset`.
//!
//! Guarantee, for every key and at all times: `lower ≤ true ≤ upper`, where a held key has
//! `lower = count` and `upper = count + offset`, and any other key `lower = 0`, `upper = offset`.
//! A purge lowers a surviving count by exactly `c` and a dropped count by at most `c`, and raises
//! `offset` by `c`; so each key loses at most `offset` in total and never gains. `offset` itself is
//! at most N / ((1 − q) · capacity) for a purge quantile q: each purge takes `c` from at least
//! (1 − q) · capacity counters, and they hold no more than N between them.
//!
//! Memory: both the table and the key log are allocated once, at construction, and their sum with
//! the struct is the budget or less. A key that does not fit in the key log makes room by purging;
//! longer keys therefore mean fewer counters, never more memory. Unlike DataSketches the table
//! size is not restricted to powers of two (the home slot is a multiply-shift of the hash), so the
//! whole budget is used.

use std::mem::size_of;

use super::cms::KeyHash;
use super::key_arena::DEFAULT_KEY_BYTES;
use super::key_log::{KeyLog, HEADER_BYTES, LOGGED_KEY_BYTES_MAX};
use super::{HeavyHitter, HeavyHitters, SketchError};

/// Most table slots held (3/4): linear probing stays short, and a probe for a new key always
/// ends at an empty slot.
const LOAD_NUMERATOR: usize = 3;
const LOAD_DENOMINATOR: usize = 4;
/// Fraction of the counters a purge aims to drop: the purge subtracts this quantile of the
/// counts. DataSketches uses the median; see `PURGE_QUANTILE` measurements in the README.
const PURGE_QUANTILE: f64 = 0.5;
/// Counts sampled to estimate the purge quantile (DataSketches samples 1024).
const PURGE_SAMPLE: usize = 1024;
/// Largest table: slot indexes are threaded through 30-bit key-log headers.
const SLOTS_MAX: usize = 1 << 30;
const HASH_SEED: u32 = 0x005e_edf1;

/// One counter. `count == 0` marks an empty slot.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C)]
struct Slot {
    count: u64,
    /// Offset of the key's entry in the key log (while compacting: the key's length).
    key_at: u32,
    hash: u32,
}

/// A reported frequent item with its certain bounds: `lower_bound ≤ true count ≤ upper_bound`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrequentItem {
    pub key: Vec<u8>,
    /// The upper bound, as DataSketches estimates: exact for a key held since its first
    /// occurrence and never purged.
    pub estimate: u64,
    pub lower_bound: u64,
    pub upper_bound: u64,
}

/// Heavy hitters in at most a given number of bytes, keys included, with certain lower and upper
/// bounds on every count. Mergeable.
#[derive(Debug, Clone)]
pub struct FrequentItems {
    slots: Vec<Slot>,
    keys: KeyLog,
    /// Counters in use.
    len: usize,
    /// Counters allowed: 3/4 of the slots.
    capacity: usize,
    /// Sum of all purge amounts (and of weights that could not be held): the most any key's
    /// count has lost.
    offset: u64,
    /// Sum of all weights (N).
    total: u64,
}

impl FrequentItems {
    /// The most counters that fit in `budget_bytes`, all memory included, with room for keys of
    /// 16 bytes on average. Longer keys leave room for fewer counters; the budget holds anyway.
    pub fn with_budget(budget_bytes: usize) -> Result<Self, SketchError> {
        Self::with_budget_and_key_bytes(budget_bytes, DEFAULT_KEY_BYTES)
    }

    /// Like [`with_budget`](Self::with_budget), splitting the budget between counters and keys
    /// for keys of `key_bytes_hint` bytes on average.
    pub fn with_budget_and_key_bytes(
        budget_bytes: usize,
        key_bytes_hint: usize,
    ) -> Result<Self, SketchError> {
        let (slots, key_log_bytes) = Self::layout(budget_bytes, key_bytes_hint)?;
        Ok(Self {
            slots: vec![Slot::default(); slots],
            keys: KeyLog::new(key_log_bytes),
            len: 0,
            capacity: slots * LOAD_NUMERATOR / LOAD_DENOMINATOR,
            offset: 0,
            total: 0,
        })
    }

    /// `(table slots, key log bytes)` for a budget: slots cost 16 bytes, and each counter allowed
    /// (3/4 of a slot) `HEADER_BYTES + key_bytes_hint` of key log; the key log takes whatever the
    /// table leaves.
    fn layout(budget_bytes: usize, key_bytes_hint: usize) -> Result<(usize, usize), SketchError> {
        let too_small = |needed_bytes| SketchError::BudgetTooSmall {
            what: "a frequent-items sketch".to_string(),
            budget_bytes,
            needed_bytes,
        };
        let fixed = size_of::<Self>();
        // Four slots (three counters) and one key of the hinted length.
        let smallest = fixed + 4 * size_of::<Slot>() + HEADER_BYTES + key_bytes_hint;
        let available = budget_bytes.checked_sub(fixed).ok_or(too_small(smallest))?;
        let per_slot = size_of::<Slot>() as f64
            + (HEADER_BYTES + key_bytes_hint) as f64 * LOAD_NUMERATOR as f64
                / LOAD_DENOMINATOR as f64;
        let slots = ((available as f64 / per_slot) as usize).min(SLOTS_MAX);
        let key_log_bytes = available.saturating_sub(slots * size_of::<Slot>());
        if slots < 4 || key_log_bytes < HEADER_BYTES + key_bytes_hint {
            return Err(too_small(smallest));
        }
        if key_log_bytes > u32::MAX as usize {
            return Err(SketchError::TooLarge {
                name: "frequent-items memory budget (bytes)",
                value: budget_bytes as u64,
                max: (fixed + SLOTS_MAX * size_of::<Slot>() + u32::MAX as usize) as u64,
            });
        }
        Ok((slots, key_log_bytes))
    }

    /// Counters the table holds at most.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Sum of all weights seen (N).
    pub fn total_weight(&self) -> u64 {
        self.total
    }

    /// The most any key's count can be off: 0 while every key seen is held exactly.
    pub fn maximum_error(&self) -> u64 {
        self.offset
    }

    /// Counts `weight` more occurrences of `key`.
    #[inline]
    pub fn update(&mut self, key: &[u8], weight: u64) {
        if weight == 0 {
            return;
        }
        self.total = self.total.saturating_add(weight);
        let hash = hash_of(key);
        let mut index = self.home(hash);
        loop {
            let slot = self.slots[index];
            if slot.count == 0 {
                break;
            }
            if slot.hash == hash && self.keys.get(slot.key_at) == key {
                self.slots[index].count = slot.count.saturating_add(weight);
                return;
            }
            index = self.next(index);
        }
        if self.len < self.capacity && self.keys.fits(key.len()) {
            self.occupy(index, key, hash, weight);
        } else {
            self.insert_after_making_room(key, hash, weight);
        }
    }

    #[cold]
    fn insert_after_making_room(&mut self, key: &[u8], hash: u32, weight: u64) {
        if !self.make_room(key.len()) {
            // The key can never be held (longer than the whole key log): count it as error, which
            // keeps every bound true.
            self.offset = self.offset.saturating_add(weight);
            return;
        }
        let mut index = self.home(hash);
        while self.slots[index].count != 0 {
            index = self.next(index);
        }
        self.occupy(index, key, hash, weight);
    }

    fn occupy(&mut self, index: usize, key: &[u8], hash: u32, weight: u64) {
        debug_assert!(self.len < self.capacity && self.slots[index].count == 0);
        let key_at = self.keys.append(key);
        self.slots[index] = Slot {
            count: weight,
            key_at,
            hash,
        };
        self.len += 1;
    }

    /// Purges and compacts until a counter is free and a key of `len` bytes fits; false if it
    /// never can.
    fn make_room(&mut self, len: usize) -> bool {
        // A key the empty log could not hold is not worth purging for.
        if len > LOGGED_KEY_BYTES_MAX || HEADER_BYTES + len > self.keys.memory_bytes() {
            return false;
        }
        loop {
            if self.len < self.capacity {
                if self.keys.fits(len) {
                    return true;
                }
                if self.keys.garbage_bytes() > 0 {
                    self.compact_keys();
                    continue;
                }
            }
            if self.len == 0 {
                return false;
            }
            self.purge();
        }
    }

    /// Subtracts a sampled quantile of the counts from every counter, dropping those it empties.
    fn purge(&mut self) {
        let amount = self.purge_amount();
        debug_assert!(amount > 0);
        for slot in &mut self.slots {
            if slot.count == 0 {
                continue;
            }
            if slot.count <= amount {
                self.keys.kill(slot.key_at);
                slot.count = 0;
                self.len -= 1;
            } else {
                slot.count -= amount;
            }
        }
        self.offset = self.offset.saturating_add(amount);
        self.reseat();
    }

    /// The [`PURGE_QUANTILE`] of (a sample of) the counts: one of the counts held, so the purge
    /// drops at least that counter.
    fn purge_amount(&self) -> u64 {
        let mut sample = [0u64; PURGE_SAMPLE];
        let stride = (self.slots.len() / PURGE_SAMPLE).max(1);
        let mut taken = 0;
        // Strided first, then every slot if the strided pass found too few counters.
        for step in [stride, 1] {
            taken = 0;
            for slot in self.slots.iter().step_by(step) {
                if slot.count != 0 && taken < PURGE_SAMPLE {
                    sample[taken] = slot.count;
                    taken += 1;
                }
            }
            if taken * 4 >= self.len.min(PURGE_SAMPLE) {
                break;
            }
        }
        let sample = &mut sample[..taken];
        let rank = ((taken as f64 * PURGE_QUANTILE) as usize).min(taken.saturating_sub(1));
        *sample.select_nth_unstable(rank).1
    }

    /// Moves every counter to the first free slot from its home, after a purge emptied slots in
    /// the middle of probe runs. Starting after an empty slot, each run is rebuilt in order; a
    /// counter never moves past the slot it was taken from, so runs stay contiguous.
    fn reseat(&mut self) {
        let Some(empty) = self.slots.iter().position(|slot| slot.count == 0) else {
            return;
        };
        let mut index = empty;
        for _ in 0..self.slots.len() {
            index = self.next(index);
            let slot = self.slots[index];
            if slot.count == 0 {
                continue;
            }
            self.slots[index].count = 0;
            let mut to = self.home(slot.hash);
            while self.slots[to].count != 0 {
                to = self.next(to);
            }
            self.slots[to] = slot;
        }
    }

    /// Reclaims the key log's dead entries, with no memory beyond the log and the table.
    fn compact_keys(&mut self) {
        for (index, slot) in self.slots.iter_mut().enumerate() {
            if slot.count != 0 {
                slot.key_at = self.keys.thread(slot.key_at, index as u32);
            }
        }
        let slots = &mut self.slots;
        self.keys.slide(|owner, new_at| {
            let slot = &mut slots[owner as usize];
            std::mem::replace(&mut slot.key_at, new_at)
        });
    }

    #[inline]
    fn home(&self, hash: u32) -> usize {
        ((u64::from(hash) * self.slots.len() as u64) >> 32) as usize
    }

    #[inline]
    fn next(&self, index: usize) -> usize {
        if index + 1 == self.slots.len() {
            0
        } else {
            index + 1
        }
    }

    fn find(&self, key: &[u8]) -> Option<&Slot> {
        let hash = hash_of(key);
        let mut index = self.home(hash);
        loop {
            let slot = &self.slots[index];
            if slot.count == 0 {
                return None;
            }
            if slot.hash == hash && self.keys.get(slot.key_at) == key {
                return Some(slot);
            }
            index = self.next(index);
        }
    }

    /// The count held for `key` (certainly at most its true count), 0 if none is.
    pub fn lower_bound(&self, key: &[u8]) -> u64 {
        self.find(key).map_or(0, |slot| slot.count)
    }

    /// Certainly at least `key`'s true count: its count plus [`maximum_error`], or the
    /// maximum error alone for a key not held.
    ///
    /// [`maximum_error`]: Self::maximum_error
    pub fn upper_bound(&self, key: &[u8]) -> u64 {
        self.lower_bound(key).saturating_add(self.offset)
    }

    /// The upper bound for a held key, 0 for any other, as DataSketches' `getEstimate`: heavy keys
    /// are held from their first occurrence and then estimated exactly.
    pub fn estimate(&self, key: &[u8]) -> u64 {
        self.find(key)
            .map_or(0, |slot| slot.count.saturating_add(self.offset))
    }

    /// The held keys, each with its bounds, in no order.
    pub fn items(&self) -> impl Iterator<Item = FrequentItem> + '_ {
        self.slots
            .iter()
            .filter(|slot| slot.count != 0)
            .map(|slot| self.item(slot))
    }

    fn item(&self, slot: &Slot) -> FrequentItem {
        let upper_bound = slot.count.saturating_add(self.offset);
        FrequentItem {
            key: self.keys.get(slot.key_at).to_vec(),
            estimate: upper_bound,
            lower_bound: slot.count,
            upper_bound,
        }
    }

    /// Up to `k` held keys with the largest estimates, largest first (ties by key).
    pub fn top_k(&self, k: usize) -> Vec<FrequentItem> {
        let mut held: Vec<&Slot> = self.slots.iter().filter(|slot| slot.count != 0).collect();
        let by_rank = |a: &&Slot, b: &&Slot| {
            b.count
                .cmp(&a.count)
                .then_with(|| self.keys.get(a.key_at).cmp(self.keys.get(b.key_at)))
        };
        if k < held.len() {
            held.select_nth_unstable_by(k, by_rank);
            held.truncate(k);
        }
        held.sort_unstable_by(by_rank);
        held.into_iter().map(|slot| self.item(slot)).collect()
    }

    /// Keys whose lower bound exceeds `threshold`: no false positives (DataSketches'
    /// `NO_FALSE_POSITIVES`), largest first.
    pub fn above_threshold(&self, threshold: u64) -> Vec<FrequentItem> {
        let mut items: Vec<FrequentItem> = self
            .items()
            .filter(|item| item.lower_bound > threshold)
            .collect();
        items.sort_unstable_by(|a, b| b.estimate.cmp(&a.estimate).then_with(|| a.key.cmp(&b.key)));
        items
    }

    /// Folds in a sketch of another partition or time slice, of any size: its counts are added
    /// as updates, then its offset, so every bound stays certain for the union of both streams.
    pub fn merge(&mut self, other: &FrequentItems) {
        let total = self.total.saturating_add(other.total);
        for slot in other.slots.iter().filter(|slot| slot.count != 0) {
            self.update(other.keys.get(slot.key_at), slot.count);
        }
        self.offset = self.offset.saturating_add(other.offset);
        self.total = total;
    }

    /// Forgets every key, keeping the memory.
    pub fn clear(&mut self) {
        self.slots.fill(Slot::default());
        self.keys.clear();
        self.len = 0;
        self.offset = 0;
        self.total = 0;
    }

    /// Bytes the sketch occupies: the struct, the table and the key log, all allocated at
    /// construction.
    pub fn memory_bytes(&self) -> usize {
        size_of::<Self>() + self.slots.capacity() * size_of::<Slot>() + self.keys.memory_bytes()
    }
}

#[inline]
fn hash_of(key: &[u8]) -> u32 {
    (KeyHash::of(key, HASH_SEED).low >> 32) as u32
}

impl HeavyHitters for FrequentItems {
    fn update(&mut self, key: &[u8], count: u64) {
        FrequentItems::update(self, key, count);
    }

    /// `count` is the estimate (the upper bound) and `error` the maximum error, so the true count
    /// lies in `count − error ..= count`, as for [`SpaceSaving`](super::SpaceSaving).
    fn top(&self, k: usize) -> Vec<HeavyHitter> {
        self.top_k(k)
            .into_iter()
            .map(|item| HeavyHitter {
                key: item.key,
                count: item.estimate,
                error: self.offset,
            })
            .collect()
    }

    /// The upper bound for a held key, 0 for any other (see [`FrequentItems::estimate`]).
    fn estimate(&self, key: &[u8]) -> u64 {
        FrequentItems::estimate(self, key)
    }

    fn memory_bytes(&self) -> usize {
        FrequentItems::memory_bytes(self)
    }

    fn merge(&mut self, other: &Self) -> Result<(), SketchError> {
        FrequentItems::merge(self, other);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_table(sketch: &FrequentItems) {
        let held = sketch.slots.iter().filter(|slot| slot.count != 0).count();
        assert_eq!(held, sketch.len);
        assert!(sketch.len <= sketch.capacity);
        for slot in sketch.slots.iter().filter(|slot| slot.count != 0) {
            let key = sketch.keys.get(slot.key_at);
            assert_eq!(hash_of(key), slot.hash);
            assert_eq!(sketch.find(key).map(|found| found.count), Some(slot.count));
        }
    }

    #[test]
    fn purges_and_compactions_keep_every_held_key_findable() {
        let mut sketch = FrequentItems::with_budget_and_key_bytes(2048, 6).unwrap();
        for i in 0..20_000u64 {
            // Keys of 1 to 40 bytes, a few of them heavy.
            let id = if i % 3 == 0 {
                i % 7
            } else {
                i * 2_654_435_761 % 5_003
            };
            let key = format!("{id:0width$}", width = 1 + (id % 40) as usize);
            sketch.update(key.as_bytes(), 1 + i % 3);
            if i % 997 == 0 {
                check_table(&sketch);
            }
        }
        check_table(&sketch);
        assert!(sketch.maximum_error() > 0);
    }

    #[test]
    fn a_key_longer_than_the_key_log_is_counted_as_error() {
        let mut sketch = FrequentItems::with_budget_and_key_bytes(1024, 8).unwrap();
        sketch.update(b"short", 2);
        sketch.update(&vec![b'x'; 4096], 5);
        assert_eq!(sketch.maximum_error(), 5);
        assert_eq!(
            sketch.lower_bound(b"short"),
            2,
            "not purged for a key that cannot fit"
        );
        assert_eq!(sketch.upper_bound(&vec![b'x'; 4096]), 5);
        assert_eq!(sketch.estimate(&vec![b'x'; 4096]), 0);
    }

    #[test]
    fn budgets_too_small_for_one_key_are_refused() {
        assert!(matches!(
            FrequentItems::with_budget(64),
            Err(SketchError::BudgetTooSmall { .. })
        ));
    }
}
