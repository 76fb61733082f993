//! The bounded key map of a compaction pass: key hash -> offset of its newest record, in
//! a fixed-size open-addressing table (Kafka's `SkimpyOffsetMap`). A key costs 24 bytes
//! (a 128-bit hash and an offset) whatever its length; the table holds at most
//! `load factor` of its slots, and a pass that fills it cleans only up to where the map
//! reaches (the next pass goes on from there).
//!
//! Two different keys with the same 128-bit hash would let the newer one remove the
//! other's records; with SipHash over 128 bits that takes about 2^64 keys in one pass.

use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher, Hasher};

/// Bytes one slot costs.
pub(crate) const KEY_MAP_SLOT_BYTES: u64 = 24;
/// Share of the slots a pass fills at most, in per mille (Kafka's
/// `log.cleaner.io.buffer.load.factor` default 0.9): probes stay short.
const LOAD_PER_MILLE: u64 = 900;

/// A key's 128-bit hash. Never all zero (zero marks a free slot).
pub(crate) type KeyHash = [u64; 2];

pub(crate) fn hash_key(key: &[u8]) -> KeyHash {
    // The hash only lives for one pass in one process, so the (unspecified but fixed)
    // std SipHash is enough; two domain-separated halves make 128 bits.
    let half = |domain: u8| {
        let mut hasher = BuildHasherDefault::<DefaultHasher>::default().build_hasher();
        hasher.write_u8(domain);
        hasher.write(key);
        hasher.finish()
    };
    let hash = [half(1), half(2)];
    if hash == [0, 0] {
        [0, 1]
    } else {
        hash
    }
}

#[derive(Debug)]
pub(crate) struct KeyMap {
    hashes: Vec<KeyHash>,
    /// Offset + 1 of the newest record per slot; 0 in free slots.
    offsets: Vec<u64>,
    len: usize,
    len_max: usize,
}

impl KeyMap {
    /// A map of at most `bytes_max` bytes, and no bigger than `keys_needed` keys need.
    /// The tables are zeroed memory: pages no key lands on cost nothing.
    pub fn new(bytes_max: u64, keys_needed: u64) -> KeyMap {
        let slots_max = (bytes_max / KEY_MAP_SLOT_BYTES).max(2);
        let slots_needed = keys_needed.saturating_mul(1000) / LOAD_PER_MILLE + 2;
        let slots = usize::try_from(slots_max.min(slots_needed)).unwrap_or(usize::MAX / 64);
        let len_max = usize::try_from(slots as u64 * LOAD_PER_MILLE / 1000)
            .unwrap_or(0)
            .max(1);
        KeyMap {
            hashes: vec![[0; 2]; slots],
            offsets: vec![0; slots],
            len: 0,
            len_max,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Keys the map can still take.
    pub fn room(&self) -> usize {
        self.len_max - self.len
    }

    fn slot(&self, hash: &KeyHash) -> usize {
        let slots = self.hashes.len();
        let mut at = (hash[0] % slots as u64) as usize;
        // The map never fills up (len_max < slots), so a free slot ends every probe.
        loop {
            let here = self.hashes.get(at).copied().unwrap_or_default();
            if here == *hash || here == [0, 0] {
                return at;
            }
            at = (at + 1) % slots;
        }
    }

    /// Records `offset` as the newest for `hash` if it is newer than what the map holds.
    /// False (and nothing changed) when a new key does not fit.
    pub fn put(&mut self, hash: KeyHash, offset: u64) -> bool {
        let at = self.slot(&hash);
        let stored = self.offsets.get(at).copied().unwrap_or(0);
        if stored == 0 {
            if self.len >= self.len_max {
                return false;
            }
            self.len += 1;
            if let Some(h) = self.hashes.get_mut(at) {
                *h = hash;
            }
        }
        if let Some(o) = self.offsets.get_mut(at) {
            *o = stored.max(offset + 1);
        }
        true
    }

    /// The offset of the newest record of the key, if the map holds it.
    pub fn get(&self, hash: &KeyHash) -> Option<u64> {
        let stored = self.offsets.get(self.slot(hash)).copied().unwrap_or(0);
        stored.checked_sub(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_offset_and_refuses_keys_past_its_load() {
        let mut map = KeyMap::new(24 * 10, u64::MAX);
        assert_eq!(map.room(), 9);
        for i in 0..9u64 {
            assert!(map.put(hash_key(&i.to_be_bytes()), i));
        }
        assert!(!map.put(hash_key(b"one too many"), 100));
        assert!(map.put(hash_key(&3u64.to_be_bytes()), 50));
        assert!(map.put(hash_key(&3u64.to_be_bytes()), 20));
        assert_eq!(map.get(&hash_key(&3u64.to_be_bytes())), Some(50));
        assert_eq!(map.get(&hash_key(&0u64.to_be_bytes())), Some(0));
        assert_eq!(map.get(&hash_key(b"absent")), None);
        assert_eq!(map.len(), 9);
    }
}
