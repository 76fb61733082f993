//! Folding one [`FrequentItems`] into another: counts added as updates, and each counter's start
//! adjusted so that its lower bound stays certain for the union of both streams.

use super::super::frequent_slot::{OffsetCode, Probe};
use super::FrequentItems;

impl FrequentItems {
    /// Folds in a sketch of another partition or time slice, of any size: its counts are added
    /// as updates (a detached key's by its hash), then its offset, so every bound stays certain
    /// for the union of both streams.
    ///
    /// A key's lower bound is `count + offset − inserted_at`. Every counter here is first made
    /// unsure of the other stream's `offset` (a key it does not hold may have had that much
    /// there); a counter both hold then takes back that much and adds what the other was unsure
    /// of, and one only the other holds starts unsure of all this sketch could have missed (its
    /// offset now) and of what the other was. Purges during the merge take from counts and add
    /// to the offset alike, so they leave every lower bound as it was.
    pub fn merge(&mut self, other: &FrequentItems) {
        let total = self.total.saturating_add(other.total);
        if other.offset > 0 {
            for slot in self.slots.iter_mut().filter(|slot| !slot.is_empty()) {
                let unsure = slot.inserted_at().value().saturating_add(other.offset);
                slot.set_inserted_at(OffsetCode::at_least(unsure));
            }
        }
        for slot in other.held() {
            let inserted_at = slot.inserted_at().value();
            if slot.is_detached() {
                let probe = Probe::of_hash(slot.hash());
                self.merge_item(None, &probe, slot.count(), inserted_at, other.offset);
            } else {
                let key = other.key_ref(slot);
                let key = key.as_slice();
                self.merge_item(
                    Some(key),
                    &Probe::of(key),
                    slot.count(),
                    inserted_at,
                    other.offset,
                );
            }
        }
        self.add_error(other.offset);
        self.overflow = self.overflow.saturating_add(other.overflow);
        self.total = total;
    }

    /// Adds a counter of a sketch being merged in, `other_offset` being that sketch's offset:
    /// `count` more occurrences of its key (`None`: a long key known by the hash in `probe`),
    /// with the part of them certain (see [`merge`](Self::merge)).
    fn merge_item(
        &mut self,
        key: Option<&[u8]>,
        probe: &Probe,
        count: u64,
        inserted_at: u64,
        other_offset: u64,
    ) {
        let locate = |sketch: &Self| match key {
            Some(key) => sketch.locate(key, probe),
            None => sketch.locate_hash(probe),
        };
        match locate(self) {
            Ok(index) => {
                let slot = self.slots[index];
                let count = self.capped(slot.count().saturating_add(count));
                // Held here since `slot`'s start, less what `merge` added for the other stream,
                // plus what the other sketch is unsure of.
                let start = slot.inserted_at();
                let start = if start == OffsetCode::UNKNOWN {
                    start
                } else {
                    OffsetCode::at_least(
                        start
                            .value()
                            .saturating_add(inserted_at)
                            .saturating_sub(other_offset),
                    )
                };
                self.slots[index].set_count(count);
                self.slots[index].set_inserted_at(start);
                if let (Some(key), true) = (key, slot.is_detached()) {
                    self.log_if_heavy(index, key);
                }
            }
            Err(_) => {
                let count = self.capped(count);
                if self.len == self.capacity {
                    self.make_room();
                }
                let Err(index) = locate(self) else {
                    unreachable!("a key not held before making room is not held after it")
                };
                // Unsure of all this sketch saw of the key until now, and of what the other was.
                let uncertain = self.offset.saturating_add(inserted_at);
                self.occupy(index, key, probe, count);
                self.slots[index].set_inserted_at(OffsetCode::at_least(uncertain));
            }
        }
    }
}
