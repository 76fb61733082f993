//! Making room in a full [`FrequentItems`]: the reverse purge, re-seating counters in their probe
//! runs after it; and in a full key log: detaching the lighter logged keys, and compacting.

use super::super::frequent_slot::{Probe, Slot};
use super::super::key_log::{HEADER_BYTES, LOGGED_KEY_BYTES_MAX};
use super::{FrequentItems, DETACH_QUANTILE};

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
    /// Purges until a counter is free.
    pub(super) fn make_room(&mut self) {
        while self.len == self.capacity {
            // A full table holds counters (capacity ≥ 3), so the purge drops at least one.
            self.purge();
        }
    }

    /// Subtracts a sampled quantile of the counts from every counter, dropping those it empties.
    fn purge(&mut self) {
        let amount = self.sampled_quantile(PURGE_QUANTILE, |_| true);
        debug_assert!(amount > 0);
        // Empty before the purge, so no probe run crosses it; at most 19/20 of the slots
        // are held, so there is one.
        let boundary = self
            .slots
            .iter()
            .position(Slot::is_empty)
            .expect("a table is never full");
        for slot in &mut self.slots {
            if slot.is_empty() {
                continue;
            }
            if slot.count() <= amount {
                if slot.is_logged() {
                    self.keys.kill(slot.key_at());
                }
                *slot = Slot::default();
                self.len -= 1;
            } else {
                slot.set_count(slot.count() - amount);
            }
        }
        self.add_error(amount);
        self.log_floor = self.log_floor.saturating_sub(amount);
        self.reseat(boundary);
    }

    /// The `quantile` of (a sample of) the counts of the counters `sampled` picks: one of those
    /// counts, so at least that counter is at or below it. At least one counter is picked.
    fn sampled_quantile(&self, quantile: f64, sampled: impl Fn(&Slot) -> bool) -> u64 {
        let mut sample = [0u64; PURGE_SAMPLE];
        let picked = |slot: &Slot| !slot.is_empty() && sampled(slot);
        let stride = (self.slots.len() / PURGE_SAMPLE).max(1);
        let mut taken = 0;
        // Strided first, then every slot if the strided pass found too few counters (always
        // when the picked ones are few).
        for step in [stride, 1] {
            taken = 0;
            for slot in self.slots.iter().step_by(step) {
                if picked(slot) && taken < PURGE_SAMPLE {
                    sample[taken] = slot.count();
                    taken += 1;
                }
            }
            if taken * 4 >= self.len.min(PURGE_SAMPLE) {
                break;
            }
        }
        debug_assert!(taken > 0, "a quantile of no counter");
        let sample = &mut sample[..taken];
        let rank = ((taken as f64 * quantile) as usize).min(taken.saturating_sub(1));
        *sample.select_nth_unstable(rank).1
    }

    /// Gives the detached key `key` at `index` its bytes, if the key log has room for them, or
    /// can be given it: by compacting, or by detaching the logged keys weighing the
    /// [`DETACH_QUANTILE`] of their counts or less, if `key` weighs more. No counter moves.
    pub(super) fn log_if_heavy(&mut self, index: usize, key: &[u8]) {
        debug_assert!(self.slots[index].is_detached());
        let count = self.slots[index].count();
        // The log cannot take the key even empty.
        if key.len() > LOGGED_KEY_BYTES_MAX || HEADER_BYTES + key.len() > self.keys.memory_bytes() {
            return;
        }
        loop {
            if self.keys.fits(key.len()) {
                let key_at = self.keys.append(key);
                self.slots[index].attach(key_at);
                self.log_floor = self.log_floor.min(count);
                return;
            }
            if self.keys.fits_after_compaction(key.len()) {
                self.compact_keys();
                continue;
            }
            if count <= self.log_floor {
                return;
            }
            // The log is full of live keys, so there is a logged one.
            let floor = self.sampled_quantile(DETACH_QUANTILE, Slot::is_logged);
            self.log_floor = floor;
            if count <= floor {
                return;
            }
            self.detach_at_most(floor);
        }
    }

    /// Detaches every logged key whose count is `floor` or less: its slot keeps its count and
    /// takes its hash; its bytes become garbage.
    fn detach_at_most(&mut self, floor: u64) {
        for slot in &mut self.slots {
            if slot.is_logged() && slot.count() <= floor {
                let hash = Probe::of(self.keys.get(slot.key_at())).hash;
                self.keys.kill(slot.key_at());
                slot.detach(hash);
            }
        }
    }

    /// Moves every counter to the first free slot from its home, after a purge emptied slots in
    /// the middle of probe runs. `boundary` was empty before the purge, so no run crosses it:
    /// starting there, each counter is re-seated after every slot of its run before it, and the
    /// slots from its home to where it lands are never emptied again. (Starting at a slot the
    /// purge emptied, a counter re-seated early could later have a slot of its path emptied by
    /// one re-seated after it, and not be found again: see the test below.) A counter never
    /// moves past the slot it was taken from.
    fn reseat(&mut self, boundary: usize) {
        debug_assert!(self.slots[boundary].is_empty());
        let mut index = boundary;
        for _ in 1..self.slots.len() {
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
            if slot.is_logged() {
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

#[cfg(test)]
mod tests {
    use super::super::super::frequent_slot::{OffsetCode, Probe};
    use super::super::super::key_log::KeyLog;
    use super::*;

    /// A short key whose home in a table of `slots` slots is `home`, not among `taken`.
    fn key_at_home(slots: usize, home: usize, taken: &[Vec<u8>]) -> Vec<u8> {
        (0u32..)
            .map(|i| format!("k{i}").into_bytes())
            .find(|key| {
                let hash = u64::from(Probe::of(key).home_hash);
                ((hash * slots as u64) >> 32) as usize == home && !taken.contains(key)
            })
            .unwrap()
    }

    /// A purge that empties slots 3, 4 and 14 of this table of 16 (`name@home`, count):
    ///
    /// ```text
    /// 0 w@14:5  1 y@1:5  2 z@0:5  3 d@3:1  4 e@4:1  5 x@1:5  6 v@1:5  7 -  ..  14 p@14:1  15 q@15:5
    /// ```
    ///
    /// Re-seated from slot 3 (the first empty slot after the purge, inside the run from 1), x
    /// lands in 3 and v in 4; then w moves to 14, z to 0, and slot 2 on v's path is empty. From
    /// slot 7, empty before the purge, every key is found again.
    #[test]
    fn every_held_key_is_found_after_a_purge_that_empties_slots_inside_runs() {
        const SLOTS: usize = 16;
        let layout: [(usize, usize, u64); 9] = [
            (0, 14, 5),
            (1, 1, 5),
            (2, 0, 5),
            (3, 3, 1),
            (4, 4, 1),
            (5, 1, 5),
            (6, 1, 5),
            (14, 14, 1),
            (15, 15, 5),
        ];
        let mut sketch = FrequentItems {
            slots: vec![Slot::default(); SLOTS],
            keys: KeyLog::new(64),
            len: 0,
            capacity: SLOTS * 19 / 20,
            offset: 0,
            offset_code: OffsetCode::at_least(0),
            overflow: 0,
            total: 0,
            log_floor: 0,
        };
        let mut keys = Vec::new();
        for (index, home, count) in layout {
            let key = key_at_home(SLOTS, home, &keys);
            sketch.slots[index] = Slot::new(&Probe::of(&key), count, OffsetCode::at_least(0), 0);
            sketch.len += 1;
            sketch.total += count;
            keys.push(key);
        }
        for (key, (index, ..)) in keys.iter().zip(layout) {
            assert_eq!(
                sketch.locate(key, &Probe::of(key)),
                Ok(index),
                "a valid table"
            );
        }
        sketch.purge();
        assert_eq!(sketch.maximum_error(), 1);
        // Held since the start, so exact: the purge took its amount from the count and added
        // it to the offset. The counters of 1 were dropped.
        for (key, (.., count)) in keys.iter().zip(layout) {
            let held = if count > 1 { count } else { 0 };
            assert_eq!(
                sketch.lower_bound(key),
                held,
                "{}",
                String::from_utf8_lossy(key)
            );
        }
        assert_eq!(sketch.len(), 6);
    }
}
