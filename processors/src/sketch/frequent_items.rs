//! Frequent items in a fixed memory budget, keys included: Misra-Gries counters with a reverse
//! purge, as in Apache DataSketches' frequent-items sketch (Anderson et al., "A High-Performance
//! Algorithm for Identifying Frequent Items in Data Streams", IMC 2017).
//!
//! Counters live in one open-addressed table (linear probing, at most 19/20 full) of 16-byte
//! [`Slot`]s: a count and the key itself if it is at most 8 bytes; for a longer key, its offset
//! in a [`KeyLog`] and a fingerprint (*logged*), or its 64-bit hash alone (*detached*). While the
//! distinct keys fit in the table, every count is exact, whatever the keys' length. When a new
//! key finds the table full, a *purge* takes a quantile `c` of the counts (from a sample),
//! subtracts it from every counter, drops the counters it empties and adds `c` to the sketch's
//! `offset`.
//!
//! The key log holds bytes only for the long keys that may be reported: a long key is logged
//! while the log has room, and once it is full, a detached key that outweighs the lighter half of
//! the logged ones takes the bytes of that half (they are detached, their counts kept), at its
//! next occurrence. So a long key costs a counter like a short one, the table's size does not
//! depend on the keys' length, and the key log is sized for the keys a top-k shows, not for every
//! counter. Before, a full key log purged long keys for room: on Python's standard library
//! identifiers at 1 MiB (43,253 distinct, 19,477 longer than 8 bytes), counters and bytes for
//! all of them needed 1.07 MB, and counts stayed inexact where DataSketches' were exact.
//!
//! Each counter also records the offset when it started (`inserted_at`, 16 bits rounded up,
//! taken from the count's bits: counts go to 2^44). Guarantee, for every key and at all times:
//! `lower ≤ true ≤ upper`, where a held key has `lower = count + offset − inserted_at` and
//! `upper = count + offset`, and any other key `lower = 0`, `upper = offset`. A purge lowers a
//! surviving count by exactly `c` and a dropped count by at most `c`, and raises `offset` by `c`;
//! so each key loses at most `offset` in total and never gains, and since its counter started
//! exactly `offset − inserted_at`; before, it was not held, so it had at most `inserted_at`. A
//! key held from its first occurrence (`inserted_at` 0) therefore has exact bounds however many
//! purges ran, and the estimate, between the bounds, is exact for it. (A merge rounds the other
//! sketch's offset into the starts, so after one such a key's bounds are within about 1/2048 of
//! that offset.) Weight beyond a counter's range is counted apart, in the upper bounds only. DataSketches keeps
//! no such start and reports `count` and `count + offset`. The one exception is a collision of
//! 64-bit hashes: two long keys with the same hash, one of them detached, share its counter (for
//! 100,000 long keys, a chance of about 1 in 4 · 10^9).
//! `offset` is about N / ((1 − q) · capacity) at most for a purge quantile q: a purge takes `c`
//! from the (1 − q) · capacity counters at or above the quantile, and all counters together
//! never held more than N. (About: the quantile is taken from a sample.) That bound is argued,
//! not tested; the bounds above are tested.
//!
//! Only keys with bytes are reported ([`top_k`](FrequentItems::top_k),
//! [`items`](FrequentItems::items)); a detached key is still counted, and answered for by its key
//! ([`lower_bound`](FrequentItems::lower_bound) and the rest).
//!
//! Memory: both the table and the key log are allocated once, at construction, and their sum with
//! the struct is the budget or less. Unlike DataSketches the table size is not restricted to
//! powers of two (the home slot is a multiply-shift of the hash), so the whole budget is used.

use std::mem::size_of;

mod codec;
mod merge;
mod probe;
mod purge;

use super::frequent_slot::{OffsetCode, Probe, Slot, COUNT_MAX, INLINE_BYTES_MAX};
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
/// A detached key takes the bytes of the logged keys weighing this quantile of their counts or
/// less, when it outweighs it: half of them, so that the log is not reshuffled at every
/// occurrence of a key that is only a little heavier than the lightest logged one.
const DETACH_QUANTILE: f64 = 0.5;
/// For long expected keys, the key log has room for the hinted key of one counter in this many:
/// the keys a top-k can show, the heaviest long ones, as the rest are counted detached. A larger
/// log takes counters from the table. Chosen on identifiers from crates a–l (`rust-tune`, 1 M
/// identifiers, never a reported stream), R@100 / largest error over the top 100 at 4, 8 and
/// 16 KiB: one in 3, 0.46 / 3965, 0.82 / 1664, 0.96 / 517; one in 6, 0.48 / 3965, 0.87 / 1602,
/// 0.97 / 423; one in 12, 0.51 / 3001, 0.90 / 1463, 0.98 / 378; one in 24, 0.54 / 2840, 0.91 /
/// 1463, 0.98 / 356; one in 48, 0.54 / 2840, 0.91 / 914, 0.98 / 345. One in 24 is where the
/// gain flattens while a 4 KiB sketch can still show about ten long keys.
const LOGGED_KEY_ROOM_DENOMINATOR: usize = 24;

/// A reported frequent item with its certain bounds: `lower_bound ≤ true count ≤ upper_bound`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrequentItem {
    pub key: Vec<u8>,
    /// Three quarters of the way from the lower bound to the upper one
    /// ([`FrequentItems::estimate`]): exact for a key held since its first occurrence.
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
    /// Sum of the purge amounts: the most any key's count has lost to purges.
    offset: u64,
    /// Sum of the weights beyond a counter's range ([`COUNT_MAX`]): raises every upper bound
    /// and no lower one (added to `offset`, it would raise the lower bound of every key whose
    /// counter started before, though their counts lost nothing).
    overflow: u64,
    /// `offset` as a new counter records it.
    offset_code: OffsetCode,
    /// Sum of all weights (N).
    total: u64,
    /// While the key log is full, a detached key of at most this count stays detached without a
    /// look at the logged ones: the [`DETACH_QUANTILE`] of their counts when it was last taken,
    /// lowered with them by each purge, and to the count of any key logged since (which may
    /// have lowered the quantile).
    log_floor: u64,
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
            offset: 0,
            offset_code: OffsetCode::at_least(0),
            overflow: 0,
            total: 0,
            log_floor: 0,
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
        self.offset.saturating_add(self.overflow)
    }

    /// Adds `amount` to the offset.
    #[inline]
    fn add_error(&mut self, amount: u64) {
        self.set_offset(self.offset.saturating_add(amount));
    }

    fn set_offset(&mut self, offset: u64) {
        self.offset = offset;
        self.offset_code = OffsetCode::at_least(offset);
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
            let weight = self.capped(weight);
            self.insert_after_making_room(Some(key), &probe, weight);
            return;
        }
        let count = self.capped(slot.count().saturating_add(weight));
        let inserted_at = if inserting {
            self.offset_code
        } else {
            slot.inserted_at()
        };
        self.slots[index] = Slot::new(&probe, count, inserted_at, 0);
        self.len += usize::from(inserting);
    }

    /// [`update`](Self::update) for a key longer than 8 bytes.
    #[inline]
    fn update_long(&mut self, key: &[u8], probe: &Probe, weight: u64) {
        match self.locate(key, probe) {
            Ok(index) => {
                let count = self.capped(self.slots[index].count().saturating_add(weight));
                self.slots[index].set_count(count);
                if self.slots[index].is_detached() {
                    self.log_if_heavy(index, key);
                }
            }
            Err(index) => {
                let weight = self.capped(weight);
                if self.len < self.capacity {
                    self.occupy(index, Some(key), probe, weight);
                } else {
                    self.insert_after_making_room(Some(key), probe, weight);
                }
            }
        }
    }

    /// `count`, or [`COUNT_MAX`] with the excess counted as error (never in practice: 2^56).
    #[inline]
    fn capped(&mut self, count: u64) -> u64 {
        if count > COUNT_MAX {
            self.overflow = self.overflow.saturating_add(count - COUNT_MAX);
            COUNT_MAX
        } else {
            count
        }
    }

    /// Purges until a counter is free, then starts one for the key (`None`: known by its hash).
    #[cold]
    fn insert_after_making_room(&mut self, key: Option<&[u8]>, probe: &Probe, weight: u64) {
        self.make_room();
        // The purge dropped the key if it was held at all.
        let located = match key {
            Some(key) => self.locate(key, probe),
            None => self.locate_hash(probe),
        };
        let Err(index) = located else {
            unreachable!("a key not held before making room is not held after it")
        };
        self.occupy(index, key, probe, weight);
    }

    /// Starts a counter in the empty slot `index`: a long key is logged if the key log has room
    /// (or is owed it), else detached.
    #[inline]
    fn occupy(&mut self, index: usize, key: Option<&[u8]>, probe: &Probe, weight: u64) {
        debug_assert!(self.len < self.capacity && self.slots[index].is_empty());
        self.len += 1;
        let inserted_at = self.offset_code;
        let Some(key) = key.filter(|_| probe.is_long()) else {
            self.slots[index] = if probe.is_long() {
                Slot::detached(probe, weight, inserted_at)
            } else {
                Slot::new(probe, weight, inserted_at, 0)
            };
            return;
        };
        if self.keys.fits(key.len()) {
            self.slots[index] = Slot::new(probe, weight, inserted_at, self.keys.append(key));
            self.log_floor = self.log_floor.min(weight);
        } else {
            self.slots[index] = Slot::detached(probe, weight, inserted_at);
            self.log_if_heavy(index, key);
        }
    }

    /// The key of a short or logged slot (a detached one has none).
    fn key_ref<'a>(&'a self, slot: &Slot) -> KeyRef<'a> {
        debug_assert!(!slot.is_detached());
        if slot.is_logged() {
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

    /// Certainly at most `key`'s true count: for a held key its count plus what purges took
    /// from it since its counter started, 0 for any other.
    pub fn lower_bound(&self, key: &[u8]) -> u64 {
        self.find(key).map_or(0, |slot| self.lower_of(slot))
    }

    /// Certainly at least `key`'s true count: its count plus [`maximum_error`], or the
    /// maximum error alone for a key not held.
    ///
    /// [`maximum_error`]: Self::maximum_error
    pub fn upper_bound(&self, key: &[u8]) -> u64 {
        self.find(key)
            .map_or(0, Slot::count)
            .saturating_add(self.maximum_error())
    }

    /// Three quarters of the way from a held key's lower bound to its upper one, 0 for any other
    /// key. A key held since its first occurrence has equal bounds, so its estimate is exact.
    ///
    /// What a key had before its counter started is unknown, between 0 and the offset then; a
    /// key that comes back was often dropped shortly before, with nearly that. Chosen on Zipf
    /// streams of seeds 4–6 (s = 0.8, 1, 1.2) and on `rust-tune`, never on a reported stream:
    /// the middle had the smallest mean error where purges are many (Zipf 0.8 at 4 KiB: 1421
    /// against 1577 at three quarters and 1779 at the upper bound, DataSketches' choice), the
    /// upper bound where they are few (Zipf 1 at 32 KiB, largest error 2; 2 at three quarters, 4
    /// in the middle), and three quarters was never far from the better of the two.
    pub fn estimate(&self, key: &[u8]) -> u64 {
        self.find(key).map_or(0, |slot| self.estimate_of(slot))
    }

    /// The held keys whose bytes are held (short and logged), each with its bounds, in no order.
    pub fn items(&self) -> impl Iterator<Item = FrequentItem> + '_ {
        self.reportable().map(|slot| self.item(slot))
    }

    /// Every counter, detached ones included.
    fn held(&self) -> impl Iterator<Item = &Slot> + '_ {
        self.slots.iter().filter(|slot| !slot.is_empty())
    }

    /// The counters whose keys can be shown.
    fn reportable(&self) -> impl Iterator<Item = &Slot> + '_ {
        self.held().filter(|slot| !slot.is_detached())
    }

    /// A held key's upper bound.
    fn upper_of(&self, slot: &Slot) -> u64 {
        slot.count().saturating_add(self.maximum_error())
    }

    /// A held key's lower bound. Since its counter started, every purge took exactly its amount
    /// from the count, so the key has at least the count plus `offset − inserted_at`; what it
    /// had before is unknown (at most `inserted_at`). Rounding `inserted_at` up keeps it certain.
    fn lower_of(&self, slot: &Slot) -> u64 {
        slot.count()
            .saturating_add(self.offset.saturating_sub(slot.inserted_at().value()))
    }

    /// A held key's estimate: its upper bound less a quarter of the bounds' width, rounded down
    /// (exact when they meet, for a key held since its first occurrence).
    fn estimate_of(&self, slot: &Slot) -> u64 {
        let (lower, upper) = (self.lower_of(slot), self.upper_of(slot));
        upper - (upper - lower) / 4
    }

    fn item(&self, slot: &Slot) -> FrequentItem {
        FrequentItem {
            key: self.key_ref(slot).as_slice().to_vec(),
            estimate: self.estimate_of(slot),
            lower_bound: self.lower_of(slot),
            upper_bound: self.upper_of(slot),
        }
    }

    /// Up to `k` keys with the largest lower bounds, largest first, ties by count (so by
    /// estimate), then key;
    /// among the keys whose bytes are held, which a detached key gets back at its next
    /// occurrence once it outweighs the lighter half of the logged keys.
    ///
    /// Also tried: the lower bound plus three quarters of the unknown start weighted by what the
    /// key has shown since its counter started (`lower / (lower + width)`). On Zipf streams of
    /// seeds 13–20 (s = 0.8 and 1) it found 1 and 4 more of 1600 top-100 keys at 32 and 64 KiB;
    /// on identifiers, 1 fewer of 100 at 16 KiB on `rust-tune` and 1–3 fewer at 16–32 KiB on
    /// `rust-idents` and `python-idents`: in text a key comes in bursts, so its record since a
    /// late start says little about what it had before.
    pub fn top_k(&self, k: usize) -> Vec<FrequentItem> {
        let mut held: Vec<&Slot> = self.reportable().collect();
        let by_rank = |a: &&Slot, b: &&Slot| {
            self.lower_of(b)
                .cmp(&self.lower_of(a))
                .then_with(|| b.count().cmp(&a.count()))
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

    /// Forgets every key, keeping the memory.
    pub fn clear(&mut self) {
        self.slots.fill(Slot::default());
        self.keys.clear();
        self.len = 0;
        self.set_offset(0);
        self.overflow = 0;
        self.total = 0;
        self.log_floor = 0;
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

    /// `count` is the upper bound and `error` the width of the key's bounds, so the true count
    /// lies in `count − error ..= count`, as for [`SpaceSaving`](super::SpaceSaving).
    fn top(&self, k: usize) -> Vec<HeavyHitter> {
        self.top_k(k)
            .into_iter()
            .map(|item| HeavyHitter {
                error: item.upper_bound - item.lower_bound,
                key: item.key,
                count: item.upper_bound,
            })
            .collect()
    }

    /// Between a held key's bounds, 0 for any other (see [`FrequentItems::estimate`]).
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
mod tests;
