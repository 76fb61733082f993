//! Finding a key's slot in a [`FrequentItems`] table: linear probing from the key's home slot, a
//! cache line of [`GROUP`] slots compared at a time.

use std::mem::size_of;

use super::super::frequent_slot::{Probe, Slot, GROUP};
use super::FrequentItems;

/// Bytes of a cache line: [`GROUP`] slots.
const LINE_BYTES: usize = 64;
const _: () = assert!(GROUP * size_of::<Slot>() == LINE_BYTES);

impl FrequentItems {
    /// `Ok` with the slot holding `key`, or `Err` with the first empty slot of its probe run,
    /// where it would go.
    #[inline(always)]
    pub(super) fn locate(&self, key: &[u8], probe: &Probe) -> Result<usize, usize> {
        self.locate_where(probe, |logged| logged == key)
    }

    /// [`locate`](Self::locate) for a long key known by its hash alone: a logged key is its own
    /// if the hashes of the two agree.
    pub(super) fn locate_hash(&self, probe: &Probe) -> Result<usize, usize> {
        debug_assert!(probe.is_long());
        self.locate_where(probe, |logged| Probe::of(logged).hash == probe.hash)
    }

    /// The probe, `is_key` telling whether a logged key whose fingerprint matches is the one
    /// sought (a short key's or a detached key's match is certain).
    #[inline(always)]
    fn locate_where(&self, probe: &Probe, is_key: impl Fn(&[u8]) -> bool) -> Result<usize, usize> {
        let certain = |slot: &Slot| {
            !probe.is_long() || slot.is_detached() || is_key(self.keys.get(slot.key_at()))
        };
        let mut index = self.home(probe.home_hash);
        loop {
            if let Some((start, group)) = self.line_group(index) {
                let (candidates, empties) = probe.scan(group);
                let skip = index - start;
                let stops = (candidates | empties) >> skip << skip;
                if stops == 0 {
                    index = self.next_group(start);
                    continue;
                }
                let j = stops.trailing_zeros();
                index = start + j as usize;
                if empties >> j & 1 == 1 {
                    return Err(index);
                }
                if certain(&self.slots[index]) {
                    return Ok(index);
                }
                // Another long key with the same fingerprint.
                index = self.next(index);
                continue;
            }
            let slot = &self.slots[index];
            if slot.is_empty() {
                return Err(index);
            }
            if slot.matches(probe) && certain(slot) {
                return Ok(index);
            }
            index = self.next(index);
        }
    }

    /// For a short key: the slot holding it or the first empty slot of its run, whichever comes
    /// first (a candidate is certain for a short key). The home slot alone first: on a skewed
    /// stream most updates end there, and one slot is fewer instructions than a group (at 1 MiB,
    /// 95 instead of 160 an update on Zipf 1.2, in cachegrind).
    #[inline(always)]
    pub(super) fn locate_short(&self, probe: &Probe) -> usize {
        debug_assert!(!probe.is_long());
        let mut index = self.home(probe.home_hash);
        let home = &self.slots[index];
        if home.is_empty() || home.matches(probe) {
            return index;
        }
        loop {
            if let Some((start, group)) = self.line_group(index) {
                let skip = index - start;
                let stops = probe.scan_short(group) >> skip << skip;
                if stops != 0 {
                    return start + stops.trailing_zeros() as usize;
                }
                index = self.next_group(start);
                continue;
            }
            let slot = &self.slots[index];
            if slot.is_empty() || slot.matches(probe) {
                return index;
            }
            index = self.next(index);
        }
    }

    /// The [`GROUP`] slots of the cache line holding slot `index`, and the first one's index;
    /// `None` for the partial lines at the ends of the table, which are probed slot by slot. A
    /// group taken from `index` itself would straddle two lines for most indexes, and a second
    /// cache miss per update (on Zipf 1.2 at 1 MiB, where most keys are found in their home
    /// slot, that halved the update rate).
    #[inline(always)]
    fn line_group(&self, index: usize) -> Option<(usize, &[Slot; GROUP])> {
        // Slots that start a cache line have indexes ≡ `phase` (mod GROUP).
        let misalignment = self.slots.as_ptr() as usize % LINE_BYTES;
        let phase = (LINE_BYTES - misalignment) % LINE_BYTES / size_of::<Slot>();
        let start = index.checked_sub((index + GROUP - phase) % GROUP)?;
        let group = self.slots.get(start..start + GROUP)?;
        Some((start, group.try_into().ok()?))
    }

    /// The slot after the group starting at `start`, wrapping to 0.
    #[inline(always)]
    fn next_group(&self, start: usize) -> usize {
        if start + GROUP == self.slots.len() {
            0
        } else {
            start + GROUP
        }
    }

    #[inline]
    pub(super) fn home(&self, hash: u32) -> usize {
        ((u64::from(hash) * self.slots.len() as u64) >> 32) as usize
    }

    #[inline]
    pub(super) fn next(&self, index: usize) -> usize {
        if index + 1 == self.slots.len() {
            0
        } else {
            index + 1
        }
    }
}
