//! Making room in a full [`FrequentItems`]: the reverse purge, re-seating counters in their probe
//! runs after it, and compacting the key log.

use super::super::frequent_slot::Slot;
use super::super::key_log::{HEADER_BYTES, LOGGED_KEY_BYTES_MAX};
use super::FrequentItems;

/// Fraction of the counters a purge aims to drop: it subtracts this quantile of the counts.
/// DataSketches uses the median. A smaller quantile keeps more counters after a purge, which
/// tightens the bound on `offset` (about N / ((1 − q) · capacity)) at the cost of more frequent
/// purges. On unit-weight Zipf streams it makes no difference, as most counters tie at the
/// smallest counts and go together; on text it does. Chosen on Rust identifiers from crates a–l
/// (`rust-tune`, never a reported stream): R@100 / max error over the top 100 at 4 KiB 0.43 /
/// 6041 at the median, 0.52 / 5026 at 0.25, 0.52 / 3684 at 0.1 and at 0.05; at 8 KiB 0.64, 0.79,
/// 0.81, 0.81.
const PURGE_QUANTILE: f64 = 0.1;
/// Counts sampled to estimate the purge quantile (DataSketches samples 1024).
const PURGE_SAMPLE: usize = 1024;

impl FrequentItems {
    /// Purges and compacts until a counter is free and `key_bytes` (0 for a short key) fit in the
    /// key log; false if they never can.
    pub(super) fn make_room(&mut self, key_bytes: usize) -> bool {
        // A key the empty log could not hold is not worth purging for.
        let long = key_bytes > 0;
        if long
            && (key_bytes > LOGGED_KEY_BYTES_MAX
                || HEADER_BYTES + key_bytes > self.keys.memory_bytes())
        {
            return false;
        }
        loop {
            if self.len < self.capacity {
                if !long || self.keys.fits(key_bytes) {
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
            if slot.is_empty() {
                continue;
            }
            if slot.count() <= amount {
                if slot.is_long() {
                    self.keys.kill(slot.key_at());
                }
                *slot = Slot::default();
                self.len -= 1;
            } else {
                slot.set_count(slot.count() - amount);
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
                if !slot.is_empty() && taken < PURGE_SAMPLE {
                    sample[taken] = slot.count();
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
        let Some(empty) = self.slots.iter().position(Slot::is_empty) else {
            return;
        };
        let mut index = empty;
        for _ in 0..self.slots.len() {
            index = self.next(index);
            let slot = self.slots[index];
            if slot.is_empty() {
                continue;
            }
            let home = self.home(slot.home_hash());
            if home == index {
                continue;
            }
            self.slots[index] = Slot::default();
            let mut to = home;
            while !self.slots[to].is_empty() {
                to = self.next(to);
            }
            self.slots[to] = slot;
        }
    }

    /// Reclaims the key log's dead entries, with no memory beyond the log and the table.
    fn compact_keys(&mut self) {
        for (index, slot) in self.slots.iter_mut().enumerate() {
            if !slot.is_empty() && slot.is_long() {
                let len = self.keys.thread(slot.key_at(), index as u32);
                slot.set_key_at(len);
            }
        }
        let slots = &mut self.slots;
        self.keys.slide(|owner, new_at| {
            let slot = &mut slots[owner as usize];
            let len = slot.key_at();
            slot.set_key_at(new_at);
            len
        });
    }
}
