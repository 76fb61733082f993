//! Byte-string keys stored once, in one buffer, addressed by a dense slot id.
//!
//! Heavy-hitter tables replace keys constantly; a `Vec<u8>` per key would allocate on every
//! replacement and spend 24 bytes of header per key. Here a replacement overwrites the slot in place
//! when the new key fits, and otherwise appends; the space left behind is reclaimed by compacting the
//! buffer when it would otherwise grow.

use std::mem::size_of;

/// Longest key a heavy-hitter table tracks (16 MiB − 1): the length is packed into 24 bits.
pub const KEY_BYTES_MAX: usize = (1 << LEN_BITS) - 1;

const LEN_BITS: u32 = 24;
const LEN_MASK: u64 = (1 << LEN_BITS) - 1;

#[derive(Debug, Clone, Default)]
pub(super) struct KeyArena {
    bytes: Vec<u8>,
    /// Per slot: offset into `bytes` in the high 40 bits, length in the low 24.
    spans: Vec<u64>,
    /// Bytes in `bytes` no slot refers to any more.
    garbage_bytes: usize,
}

impl KeyArena {
    pub(super) fn with_capacity(slots: usize, bytes: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(bytes),
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
        let span = self.append(key);
        self.spans.push(span);
        debug_assert!(self.spans.len() <= u32::MAX as usize);
        (self.spans.len() - 1) as u32
    }

    /// Replaces the key in `slot`. `key.len() <= KEY_BYTES_MAX`.
    pub(super) fn set(&mut self, slot: u32, key: &[u8]) {
        debug_assert!(key.len() <= KEY_BYTES_MAX);
        let index = slot as usize;
        let Some(&span) = self.spans.get(index) else {
            return;
        };
        let (offset, len) = unpack(span);
        if key.len() <= len {
            self.bytes[offset..offset + key.len()].copy_from_slice(key);
            self.garbage_bytes += len - key.len();
            self.spans[index] = pack(offset, key.len());
        } else {
            self.garbage_bytes += len;
            // Mark the slot empty first so a compaction triggered by the append drops its bytes.
            self.spans[index] = pack(0, 0);
            let span = self.append(key);
            self.spans[index] = span;
        }
    }

    pub(super) fn clear(&mut self) {
        self.bytes.clear();
        self.spans.clear();
        self.garbage_bytes = 0;
    }

    pub(super) fn memory_bytes(&self) -> usize {
        self.bytes.capacity() + self.spans.capacity() * size_of::<u64>()
    }

    fn append(&mut self, key: &[u8]) -> u64 {
        let would_grow = self.bytes.len() + key.len() > self.bytes.capacity();
        if would_grow && self.garbage_bytes * 2 >= self.bytes.len() {
            self.compact(key.len());
        }
        let offset = self.bytes.len();
        self.bytes.extend_from_slice(key);
        pack(offset, key.len())
    }

    /// Copies live keys into a fresh buffer with room for `extra` more bytes.
    fn compact(&mut self, extra: usize) {
        let live = self.bytes.len() - self.garbage_bytes;
        let mut bytes = Vec::with_capacity(self.bytes.capacity().max(live + extra));
        for span in &mut self.spans {
            let (offset, len) = unpack(*span);
            let new_offset = bytes.len();
            bytes.extend_from_slice(&self.bytes[offset..offset + len]);
            *span = pack(new_offset, len);
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
    fn replacements_keep_every_other_key_intact_across_compactions() {
        let mut arena = KeyArena::with_capacity(4, 8);
        let ids: Vec<u32> = (0..4u8).map(|i| arena.push(&[i; 2])).collect();
        for round in 0..200usize {
            let slot = ids[round % 4];
            let key = vec![round as u8; 1 + round % 7];
            arena.set(slot, &key);
            assert_eq!(arena.get(slot), key.as_slice());
            for &other in &ids {
                if other != slot {
                    let len = arena.get(other).len();
                    assert!(len >= 1, "slot {other} lost its key in round {round}");
                }
            }
        }
        assert!(arena.bytes.len() - arena.garbage_bytes <= 4 * 7);
    }
}
