//! Frequent items in a fixed memory budget, keys included: Misra-Gries counters with a reverse
//! purge, as in Apache DataSketches' frequent-items sketch (Anderson et al., "A High-Performance
//! Algorithm for Identifying Frequent Items in Data Streams", IMC 2017).
//!
//! Counters live in one open-addressed table (linear probing, at most 19/20 full) of 16-byte
//! [`Slot`]s: a count and the key itself if it is at most 8 bytes, else its offset in a
//! [`KeyLog`] and a fingerprint. While the distinct keys fit, every count is exact. When a new key finds the
//! table full (or the key log out of room), a *purge* takes a quantile `c` of the counts (from a
//! sample), subtracts it from every counter, drops the counters it empties and adds `c` to the
//! sketch's `offset`.
//!
//! Short keys (at most 8 bytes) and long keys each have their own `offset`. A purge for a full
//! table subtracts `c` from every counter and adds it to both offsets; a purge for key log room
//! (the table has counters free) subtracts it from the long keys' counters alone and adds it to
//! their offset only: dropping short keys frees no key log byte, and leaving them alone keeps them
//! exact. Most heavy identifiers are short: on the README's identifier streams, against one
//! offset for all keys, the largest error over the top 100 went from 38 to 16 on Rust's at
//! 128 KiB and from 6 to 4 on Python's at 512 KiB, and Rust's at 512 KiB became exact (4 to 0).
//!
//! Guarantee, for every key and at all times: `lower ≤ true ≤ upper`, where a held key has
//! `lower = count` and `upper = count + offset`, and any other key `lower = 0`, `upper = offset`,
//! `offset` being that of the key's class. A purge lowers a surviving count of the classes it
//! purges by exactly `c` and a dropped count by at most `c`, and raises their offsets by `c`; so
//! each key loses at most its class's `offset` in total and never gains. The offset of short
//! keys is about N / ((1 − q) · capacity) at most for a purge quantile q: a purge of a full table
//! takes `c` from the (1 − q) · capacity counters at or above the quantile, and all counters
//! together never held more than N. Long keys' offset is bounded likewise by their weight over
//! (1 − q) times the long counters a full key log holds (fewer, the longer the keys). (About: the
//! quantile is taken from a sample.) These bounds are argued, not tested; the bounds above are
//! tested.
//!
//! Memory: both the table and the key log are allocated once, at construction, and their sum with
//! the struct is the budget or less. A key that does not fit in the key log makes room by purging;
//! longer keys therefore mean fewer counters, never more memory. Unlike DataSketches the table
//! size is not restricted to powers of two (the home slot is a multiply-shift of the hash), so the
//! whole budget is used.

use std::mem::size_of;

mod codec;
mod probe;
mod purge;

use super::frequent_slot::{Probe, Slot, COUNT_MAX, INLINE_BYTES_MAX};
use super::key_arena::DEFAULT_KEY_BYTES;
use super::key_log::{KeyLog, HEADER_BYTES};
use super::{HeavyHitter, HeavyHitters, SketchError};

/// Most table slots held: 19/20. DataSketches stops at 3/4; measured on Zipf streams
/// (s = 0.8, 1.2) at 4–64 KiB, 19/20 holds more counters for the same bytes (top-100 recall at
/// 8 KiB, s = 1.2: 0.83 at 3/4, 0.90 at 9/10, 0.96 at 19/20), and a purge empties much of the table
/// so the long probes of a nearly full table are short-lived.
const LOAD_NUMERATOR: usize = 19;
const LOAD_DENOMINATOR: usize = 20;
/// Largest table: slot indexes are threaded through 30-bit key-log headers.
const SLOTS_MAX: usize = 1 << 30;
/// Smallest table.
const SLOTS_MIN: usize = 4;
/// Share of the budget kept for keys longer than 8 bytes when the expected keys are short.
const LONG_KEY_SHARE_MIN: usize = 32;
/// For long expected keys, the key log has room for the hinted key of one counter in this many.
/// The keys a sketch holds are not the average distinct key: the heavy ones are short (most fit
/// in their counter), and a log sized for every counter stayed mostly empty (at 4 KiB on Rust
/// identifiers, 180 of 2,000 bytes used at the end). Chosen on identifiers from crates a–l
/// (`rust-tune`, 1 M identifiers; R@100 at 4 / 8 / 16 KiB: 0.40 / 0.60 / 0.89 with room for
/// every counter, 0.49 / 0.72 / 0.95 for one in 2, 0.51 / 0.79 / 0.97 for one in 3, 0.48 / 0.66
/// / 0.89 for one in 7), never on a stream it is reported on. Longer keys than that make room
/// by purging, which keeps every bound.
const LOGGED_KEY_ROOM_DENOMINATOR: usize = 3;

/// A reported frequent item with its certain bounds: `lower_bound ≤ true count ≤ upper_bound`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrequentItem {
    pub key: Vec<u8>,
    /// The upper bound, as DataSketches estimates: exact for a key held since its first
    /// occurrence.
    pub estimate: u64,
    pub lower_bound: u64,
    pub upper_bound: u64,
}

/// Heavy hitters in at most a given number of bytes, keys included, with certain lower and upper
/// bounds on every count. Mergeable.
#[derive(Debug, Clone)]
pub struct FrequentItems {
    slots: Vec<Slot>,
    /// Keys longer than 8 bytes.
    keys: KeyLog,
    /// Counters in use.
    len: usize,
    /// Counters allowed: 19/20 of the slots.
    capacity: usize,
    /// Sum of the purge amounts taken from keys of at most 8 bytes (and of weights that could not
    /// be held): the most any such key's count has lost.
    offset_short: u64,
    /// The same for longer keys, which purges for key log room also take from.
    offset_long: u64,
    /// Sum of all weights (N).
    total: u64,
}

/// A held key's bytes: copied out of its slot, or borrowed from the key log.
enum KeyRef<'a> {
    Inline([u8; INLINE_BYTES_MAX], usize),
    Logged(&'a [u8]),
}

impl KeyRef<'_> {
    fn as_slice(&self) -> &[u8] {
        match self {
            KeyRef::Inline(bytes, len) => &bytes[..*len],
            KeyRef::Logged(key) => key,
        }
    }
}

impl FrequentItems {
    /// The most counters that fit in `budget_bytes`, all memory included, with room for keys of
    /// 16 bytes on average. Longer keys leave room for fewer counters; the budget holds anyway.
    pub fn with_budget(budget_bytes: usize) -> Result<Self, SketchError> {
        Self::with_budget_and_key_bytes(budget_bytes, DEFAULT_KEY_BYTES)
    }

    /// Like [`with_budget`](Self::with_budget), splitting the budget between counters and keys
    /// for keys of `key_bytes_hint` bytes on average. Keys of at most 8 bytes take no room
    /// beyond their counter.
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
            offset_short: 0,
            offset_long: 0,
            total: 0,
        })
    }

    /// `(table slots, key log bytes)` for a budget. Slots cost 16 bytes; for long keys one
    /// counter allowed (19/20 of a slot) in [`LOGGED_KEY_ROOM_DENOMINATOR`] also gets
    /// `HEADER_BYTES + key_bytes_hint` of key log. For short keys the key log gets 1/32 of the
    /// budget, for the odd long key.
    fn layout(budget_bytes: usize, key_bytes_hint: usize) -> Result<(usize, usize), SketchError> {
        let fixed = size_of::<Self>();
        let split = |budget: usize| Self::split(budget.checked_sub(fixed)?, key_bytes_hint);
        let Some((slots, key_log_bytes)) = split(budget_bytes) else {
            // The smallest budget that works, for the error: found by walking up, which ends
            // within a few slots' worth of bytes.
            let needed_bytes = (budget_bytes.max(fixed)..)
                .find(|&budget| split(budget).is_some())
                .unwrap_or(usize::MAX);
            return Err(SketchError::BudgetTooSmall {
                what: "a frequent-items sketch".to_string(),
                budget_bytes,
                needed_bytes,
            });
        };
        if key_log_bytes > u32::MAX as usize {
            return Err(SketchError::TooLarge {
                name: "frequent-items memory budget (bytes)",
                value: budget_bytes as u64,
                max: (fixed + SLOTS_MAX * size_of::<Slot>() + u32::MAX as usize) as u64,
            });
        }
        Ok((slots, key_log_bytes))
    }

    /// `(table slots, key log bytes)` out of `available` bytes, if that is at least 4 slots and
    /// one key of the hinted length.
    fn split(available: usize, key_bytes_hint: usize) -> Option<(usize, usize)> {
        let slots = if key_bytes_hint <= INLINE_BYTES_MAX {
            (available - available / LONG_KEY_SHARE_MIN) / size_of::<Slot>()
        } else {
            let per_slot = size_of::<Slot>() as f64
                + (HEADER_BYTES + key_bytes_hint) as f64 * LOAD_NUMERATOR as f64
                    / (LOAD_DENOMINATOR * LOGGED_KEY_ROOM_DENOMINATOR) as f64;
            (available as f64 / per_slot) as usize
        }
        .min(SLOTS_MAX);
        let key_log_bytes = available.saturating_sub(slots * size_of::<Slot>());
        let one_key = if key_bytes_hint <= INLINE_BYTES_MAX {
            0
        } else {
            HEADER_BYTES + key_bytes_hint
        };
        (slots >= SLOTS_MIN && key_log_bytes >= one_key).then_some((slots, key_log_bytes))
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
        self.offset_short.max(self.offset_long)
    }

    /// The most `key`'s count can be off, `upper_bound(key) − lower_bound(key)`: the offset of
    /// its class (at most 8 bytes, or longer).
    pub fn maximum_error_of(&self, key: &[u8]) -> u64 {
        self.offset_of(key.len() > INLINE_BYTES_MAX)
    }

    #[inline]
    fn offset_of(&self, long: bool) -> u64 {
        if long {
            self.offset_long
        } else {
            self.offset_short
        }
    }

    /// Adds `amount` to the offset of one class of keys.
    #[inline]
    fn add_error(&mut self, long: bool, amount: u64) {
        let offset = if long {
            &mut self.offset_long
        } else {
            &mut self.offset_short
        };
        *offset = offset.saturating_add(amount);
    }

    /// Counts `weight` more occurrences of `key`.
    #[inline]
    pub fn update(&mut self, key: &[u8], weight: u64) {
        if weight == 0 {
            return;
        }
        self.total = self.total.saturating_add(weight);
        let probe = Probe::of(key);
        if probe.is_long() {
            self.update_long(key, &probe, weight);
            return;
        }
        // The first slot of the run that holds the key or is empty. An empty slot counts 0, so
        // one write either adds to a held count or starts a new counter, with no branch on which:
        // on Zipf 0.8 at 1 MiB, 60% of updates insert, and that branch was mispredicted.
        let index = self.locate_short(&probe);
        let slot = self.slots[index];
        let inserting = slot.is_empty();
        // Only an insert into a full table: `len ≤ capacity`.
        if self.len + usize::from(inserting) > self.capacity {
            let weight = self.capped(false, weight);
            self.insert_after_making_room(key, &probe, weight);
            return;
        }
        let count = self.capped(false, slot.count().saturating_add(weight));
        self.slots[index] = Slot::new(&probe, count, 0);
        self.len += usize::from(inserting);
    }

    /// [`update`](Self::update) for a key held in the key log.
    #[inline]
    fn update_long(&mut self, key: &[u8], probe: &Probe, weight: u64) {
        let index = match self.locate(key, probe) {
            Ok(index) => {
                let count = self.capped(true, self.slots[index].count().saturating_add(weight));
                self.slots[index].set_count(count);
                return;
            }
            Err(empty) => empty,
        };
        let weight = self.capped(true, weight);
        if self.len < self.capacity && self.keys.fits(key.len()) {
            self.occupy(index, key, probe, weight);
        } else {
            self.insert_after_making_room(key, probe, weight);
        }
    }

    /// `count`, or [`COUNT_MAX`] with the excess counted as error of the key's class (never in
    /// practice: 2^56).
    #[inline]
    fn capped(&mut self, long: bool, count: u64) -> u64 {
        if count > COUNT_MAX {
            self.add_error(long, count - COUNT_MAX);
            COUNT_MAX
        } else {
            count
        }
    }

    #[cold]
    fn insert_after_making_room(&mut self, key: &[u8], probe: &Probe, weight: u64) {
        let key_bytes = if probe.is_long() { key.len() } else { 0 };
        if !self.make_room(key_bytes) {
            // The key can never be held (longer than the whole key log): count it as error, which
            // keeps every bound true.
            self.add_error(probe.is_long(), weight);
            return;
        }
        // The purge dropped the key if it was held at all.
        let Err(index) = self.locate(key, probe) else {
            unreachable!("a key not held before making room is not held after it")
        };
        self.occupy(index, key, probe, weight);
    }

    #[inline]
    fn occupy(&mut self, index: usize, key: &[u8], probe: &Probe, weight: u64) {
        debug_assert!(self.len < self.capacity && self.slots[index].is_empty());
        let key_at = if probe.is_long() {
            self.keys.append(key)
        } else {
            0
        };
        self.slots[index] = Slot::new(probe, weight, key_at);
        self.len += 1;
    }

    fn key_ref<'a>(&'a self, slot: &Slot) -> KeyRef<'a> {
        if slot.is_long() {
            KeyRef::Logged(self.keys.get(slot.key_at()))
        } else {
            let (bytes, len) = slot.inline_key();
            KeyRef::Inline(bytes, len)
        }
    }

    fn find(&self, key: &[u8]) -> Option<&Slot> {
        let index = self.locate(key, &Probe::of(key)).ok()?;
        Some(&self.slots[index])
    }

    /// The count held for `key` (certainly at most its true count), 0 if none is.
    pub fn lower_bound(&self, key: &[u8]) -> u64 {
        self.find(key).map_or(0, Slot::count)
    }

    /// Certainly at least `key`'s true count: its count plus [`maximum_error`], or the
    /// maximum error alone for a key not held.
    ///
    /// [`maximum_error`]: Self::maximum_error
    pub fn upper_bound(&self, key: &[u8]) -> u64 {
        self.lower_bound(key)
            .saturating_add(self.maximum_error_of(key))
    }

    /// The upper bound for a held key, 0 for any other, as DataSketches' `getEstimate`: heavy keys
    /// are held from their first occurrence and then estimated exactly (every purge since took
    /// exactly their class's offset from them).
    pub fn estimate(&self, key: &[u8]) -> u64 {
        self.find(key).map_or(0, |slot| self.upper_of(slot))
    }

    /// The held keys, each with its bounds, in no order.
    pub fn items(&self) -> impl Iterator<Item = FrequentItem> + '_ {
        self.held().map(|slot| self.item(slot))
    }

    fn held(&self) -> impl Iterator<Item = &Slot> + '_ {
        self.slots.iter().filter(|slot| !slot.is_empty())
    }

    /// A held key's upper bound, its estimate.
    fn upper_of(&self, slot: &Slot) -> u64 {
        slot.count().saturating_add(self.offset_of(slot.is_long()))
    }

    fn item(&self, slot: &Slot) -> FrequentItem {
        let upper_bound = self.upper_of(slot);
        FrequentItem {
            key: self.key_ref(slot).as_slice().to_vec(),
            estimate: upper_bound,
            lower_bound: slot.count(),
            upper_bound,
        }
    }

    /// Up to `k` held keys with the largest lower bounds (their counts), largest first; ties by
    /// estimate, then key. Among keys of one class that is the order of the estimates; across
    /// classes the long keys' larger offset is uncertainty, not weight, and ranking by estimate
    /// put long tail keys before heavy short ones (on an earlier stream of Rust identifiers from
    /// crates m–z: R@10 from 1.0 to 0.9 at 8–32 KiB, R@100 at 4 KiB from 0.86 to 0.73).
    pub fn top_k(&self, k: usize) -> Vec<FrequentItem> {
        let mut held: Vec<&Slot> = self.held().collect();
        let by_rank = |a: &&Slot, b: &&Slot| {
            b.count()
                .cmp(&a.count())
                .then_with(|| self.upper_of(b).cmp(&self.upper_of(a)))
                .then_with(|| self.key_ref(a).as_slice().cmp(self.key_ref(b).as_slice()))
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
    /// as updates, then its offsets, so every bound stays certain for the union of both streams.
    pub fn merge(&mut self, other: &FrequentItems) {
        let total = self.total.saturating_add(other.total);
        for slot in other.held() {
            self.update(other.key_ref(slot).as_slice(), slot.count());
        }
        self.add_error(false, other.offset_short);
        self.add_error(true, other.offset_long);
        self.total = total;
    }

    /// Forgets every key, keeping the memory.
    pub fn clear(&mut self) {
        self.slots.fill(Slot::default());
        self.keys.clear();
        self.len = 0;
        self.offset_short = 0;
        self.offset_long = 0;
        self.total = 0;
    }

    /// Bytes the sketch occupies: the struct, the table and the key log, all allocated at
    /// construction.
    pub fn memory_bytes(&self) -> usize {
        size_of::<Self>() + self.slots.capacity() * size_of::<Slot>() + self.keys.memory_bytes()
    }
}

impl HeavyHitters for FrequentItems {
    fn update(&mut self, key: &[u8], count: u64) {
        FrequentItems::update(self, key, count);
    }

    /// `count` is the estimate (the upper bound) and `error` the key's maximum error, so the true
    /// count lies in `count − error ..= count`, as for [`SpaceSaving`](super::SpaceSaving).
    fn top(&self, k: usize) -> Vec<HeavyHitter> {
        self.top_k(k)
            .into_iter()
            .map(|item| HeavyHitter {
                error: item.upper_bound - item.lower_bound,
                key: item.key,
                count: item.estimate,
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
        assert_eq!(sketch.held().count(), sketch.len);
        assert!(sketch.len <= sketch.capacity);
        for slot in sketch.held() {
            let key = sketch.key_ref(slot).as_slice().to_vec();
            assert_eq!(Probe::of(&key).home_hash, slot.home_hash());
            assert_eq!(sketch.find(&key), Some(slot));
        }
    }

    #[test]
    fn purges_and_compactions_keep_every_held_key_findable() {
        let mut sketch = FrequentItems::with_budget_and_key_bytes(2048, 20).unwrap();
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
    fn a_budget_too_small_is_refused_with_the_budget_that_fits() {
        for hint in [0, 8, 16, 300] {
            let Err(SketchError::BudgetTooSmall { needed_bytes, .. }) =
                FrequentItems::with_budget_and_key_bytes(64, hint)
            else {
                panic!("64 bytes cannot hold a sketch");
            };
            let sketch = FrequentItems::with_budget_and_key_bytes(needed_bytes, hint).unwrap();
            assert!(sketch.memory_bytes() <= needed_bytes);
            assert!(FrequentItems::with_budget_and_key_bytes(needed_bytes - 1, hint).is_err());
        }
    }
}
