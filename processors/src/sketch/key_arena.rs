//! Byte-string keys stored once, addressed by a dense slot id.
//!
//! Heavy-hitter tables replace keys constantly; a `Vec<u8>` per key would allocate on every
//! replacement and spend 24 bytes of header per key. Each slot instead owns `slot_bytes` bytes of
//! one preallocated buffer, and a key that fits is written there in place. Longer keys go to an
//! overflow area after the slots; the space they leave behind when replaced is reclaimed by
//! compacting the overflow area when it would otherwise grow.

use std::mem::size_of;

/// Longest key a heavy-hitter table tracks (16 MiB − 1): the length is packed into 24 bits.
pub const KEY_BYTES_MAX: usize = (1 << LEN_BITS) - 1;

/// Bytes reserved per key when the caller gives no hint.
pub const DEFAULT_KEY_BYTES: usize = 16;

const LEN_BITS: u32 = 24;
const LEN_MASK: u64 = (1 << LEN_BITS) - 1;

#[derive(Debug, Clone, Default)]
pub(super) struct KeyArena {
    /// `slots_max * slot_bytes` bytes of fixed slots, then the overflow area.
    bytes: Vec<u8>,
    slot_bytes: usize,
    slots_max: usize,
    /// Per slot: offset into `bytes` in the high 40 bits, length in the low 24.
    spans: Vec<u64>,
    /// Overflow bytes no slot refers to any more.
    garbage_bytes: usize,
}

impl KeyArena {
    /// Room for `slots` keys of up to `slot_bytes` bytes each without further allocation.
    pub(super) fn new(slots: usize, slot_bytes: usize) -> Self {
        let inline_bytes = slots.saturating_mul(slot_bytes);
        Self {
            bytes: vec![0; inline_bytes],
            slot_bytes,
            slots_max: slots,
            spans: Vec::with_capacity(slots),
            garbage_bytes: 0,
        }
    }

    #[inline]
    pub(super) fn get(&self, slot: u32) -> &[u8] {
        let span = self.spans.get(slot as usize).copied().unwrap_or(0);
        let (offset, len) = unpack(span);
        self.bytes.get(offset..offset + len).unwrap_or(&[])
    }

    /// Stores `key` in a new slot and returns its id. `key.len() <= KEY_BYTES_MAX`.
    pub(super) fn push(&mut self, key: &[u8]) -> u32 {
        debug_assert!(key.len() <= KEY_BYTES_MAX);
        let slot = self.spans.len();
        debug_assert!(slot < u32::MAX as usize);
        self.spans.push(pack(0, 0));
        self.store(slot, key);
        slot as u32
    }

    /// Replaces the key in `slot`. `key.len() <= KEY_BYTES_MAX`.
    pub(super) fn set(&mut self, slot: u32, key: &[u8]) {
        debug_assert!(key.len() <= KEY_BYTES_MAX);
        if (slot as usize) < self.spans.len() {
            self.store(slot as usize, key);
        }
    }

    fn store(&mut self, slot: usize, key: &[u8]) {
        let (offset, len) = unpack(self.spans[slot]);
        let inline_end = self.slots_max * self.slot_bytes;
        let was_overflow = offset >= inline_end && len > 0;
        let span = if slot < self.slots_max && key.len() <= self.slot_bytes {
            let start = slot * self.slot_bytes;
            self.bytes[start..start + key.len()].copy_from_slice(key);
            if was_overflow {
                self.garbage_bytes += len;
            }
            pack(start, key.len())
        } else if was_overflow && key.len() <= len {
            self.bytes[offset..offset + key.len()].copy_from_slice(key);
            self.garbage_bytes += len - key.len();
            pack(offset, key.len())
        } else {
            if was_overflow {
                self.garbage_bytes += len;
            }
            // Empty the slot first so a compaction triggered by the append drops its old bytes.
            self.spans[slot] = pack(0, 0);
            self.append(key)
        };
        self.spans[slot] = span;
    }

    pub(super) fn clear(&mut self) {
        self.bytes.truncate(self.slots_max * self.slot_bytes);
        self.spans.clear();
        self.garbage_bytes = 0;
    }

    pub(super) fn memory_bytes(&self) -> usize {
        self.bytes.capacity() + self.spans.capacity() * size_of::<u64>()
    }

    fn append(&mut self, key: &[u8]) -> u64 {
        let inline_end = self.slots_max * self.slot_bytes;
        let overflow_len = self.bytes.len() - inline_end;
        let would_grow = self.bytes.len() + key.len() > self.bytes.capacity();
        if would_grow && self.garbage_bytes > 0 && self.garbage_bytes * 2 >= overflow_len {
            self.compact(key.len());
        }
        let offset = self.bytes.len();
        self.bytes.extend_from_slice(key);
        pack(offset, key.len())
    }

    /// Copies the live overflow keys into a fresh buffer with room for `extra` more bytes.
    fn compact(&mut self, extra: usize) {
        let inline_end = self.slots_max * self.slot_bytes;
        let live = self.bytes.len() - self.garbage_bytes;
        let mut bytes = Vec::with_capacity(self.bytes.capacity().max(live + extra));
        bytes.extend_from_slice(&self.bytes[..inline_end]);
        for span in &mut self.spans {
            let (offset, len) = unpack(*span);
            if offset >= inline_end && len > 0 {
                let new_offset = bytes.len();
                bytes.extend_from_slice(&self.bytes[offset..offset + len]);
                *span = pack(new_offset, len);
            }
        }
        debug_assert_eq!(bytes.len(), live);
        self.bytes = bytes;
        self.garbage_bytes = 0;
    }
}

#[inline]
fn pack(offset: usize, len: usize) -> u64 {
    debug_assert!(len as u64 <= LEN_MASK);
    ((offset as u64) << LEN_BITS) | len as u64
}

#[inline]
fn unpack(span: u64) -> (usize, usize) {
    ((span >> LEN_BITS) as usize, (span & LEN_MASK) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacements_keep_every_key_intact_across_compactions() {
        let mut arena = KeyArena::new(4, 3);
        let mut expected: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; 2]).collect();
        let ids: Vec<u32> = expected.iter().map(|key| arena.push(key)).collect();
        for round in 0..500usize {
            let index = (round * 7) % 4;
            let key = vec![round as u8; 1 + (round * 5) % 9];
            arena.set(ids[index], &key);
            expected[index] = key;
            for (id, key) in ids.iter().zip(&expected) {
                assert_eq!(arena.get(*id), key.as_slice(), "round {round}");
            }
        }
        assert!(arena.bytes.len() - arena.garbage_bytes <= 4 * 3 + 4 * 9);
    }

    #[test]
    fn keys_that_fit_their_slot_never_grow_the_buffer() {
        let mut arena = KeyArena::new(8, 8);
        for i in 0..8u8 {
            arena.push(&[i; 8]);
        }
        let before = arena.memory_bytes();
        for round in 0..100u8 {
            arena.set(u32::from(round % 8), &[round; 5]);
        }
        assert_eq!(arena.memory_bytes(), before);
    }
}
