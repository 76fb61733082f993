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
            let table_full = self.len == self.capacity;
            if !table_full {
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
            // With counters free, only the key log is short of room: only long keys are purged.
            // A full key log with no garbage holds live long keys, so such a purge drops one.
            self.purge(!table_full);
        }
    }

    /// Subtracts a sampled quantile of the counts from every counter (or every long key's
    /// counter, if `long_only`), dropping those it empties.
    fn purge(&mut self, long_only: bool) {
        let amount = self.purge_amount(long_only);
        debug_assert!(amount > 0);
        // Empty before the purge, so no probe run crosses it; at most 19/20 of the slots
        // are held, so there is one.
        let boundary = self
            .slots
            .iter()
            .position(Slot::is_empty)
            .expect("a table is never full");
        for slot in &mut self.slots {
            if slot.is_empty() || (long_only && !slot.is_long()) {
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
        self.add_error(true, amount);
        if !long_only {
            self.add_error(false, amount);
        }
        self.reseat(boundary);
    }

    /// The [`PURGE_QUANTILE`] of (a sample of) the counts purged: one of the counts held, so the
    /// purge drops at least that counter.
    fn purge_amount(&self, long_only: bool) -> u64 {
        let mut sample = [0u64; PURGE_SAMPLE];
        let purged = |slot: &Slot| !slot.is_empty() && (!long_only || slot.is_long());
        let stride = (self.slots.len() / PURGE_SAMPLE).max(1);
        let mut taken = 0;
        // Strided first, then every slot if the strided pass found too few counters (always
        // fewer than a quarter of the long ones, if those are few).
        for step in [stride, 1] {
            taken = 0;
            for slot in self.slots.iter().step_by(step) {
                if purged(slot) && taken < PURGE_SAMPLE {
                    sample[taken] = slot.count();
                    taken += 1;
                }
            }
            if taken * 4 >= self.len.min(PURGE_SAMPLE) {
                break;
            }
        }
        debug_assert!(taken > 0, "a purge finds a counter to drop");
        let sample = &mut sample[..taken];
        let rank = ((taken as f64 * PURGE_QUANTILE) as usize).min(taken.saturating_sub(1));
        *sample.select_nth_unstable(rank).1
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

#[cfg(test)]
mod tests {
    use super::super::super::frequent_slot::Probe;
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
            offset_short: 0,
            offset_long: 0,
            total: 0,
        };
        let mut keys = Vec::new();
        for (index, home, count) in layout {
            let key = key_at_home(SLOTS, home, &keys);
            sketch.slots[index] = Slot::new(&Probe::of(&key), count, 0);
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
        sketch.purge(false);
        assert_eq!(sketch.maximum_error(), 1);
        for (key, (.., count)) in keys.iter().zip(layout) {
            let held = count - 1;
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
