//! One 16-byte counter of [`FrequentItems`](super::FrequentItems), and how a key is written into it.
//!
//! A key of at most 8 bytes is held in the slot itself: no key log entry, no pointer, and the
//! comparison on a probe is one word. A longer key lives in the [`KeyLog`](super::key_log::KeyLog)
//! and the slot holds its offset with a 32-bit fingerprint that rejects most probes without
//! touching the log; or, *detached*, the slot holds the long key's 64-bit hash instead and no
//! bytes at all. So a counter costs 16 bytes for short and detached keys, as a DataSketches map
//! slot holding a `long` does, and 16 bytes plus the key and a 4-byte header for logged ones.
//!
//! Layout: `word0` = tag (top 4 bits: the key length plus one, 1..=9, [`LOGGED`] or
//! [`DETACHED`]) | inserted at (16 bits, an [`OffsetCode`]: the sketch's offset when the counter
//! started, rounded up) | count (low 44 bits);
//! `word1` = the key's bytes, little-endian and zero-padded; or fingerprint (high 32 bits) |
//! key log offset (low 32); or the 64-bit hash, whose high 32 bits are the fingerprint. An empty
//! slot is all zeros (a held key always has a count ≥ 1).

use super::murmur3::murmur3_x64_128;

/// Largest count a slot holds (2^44 − 1, 1.7 · 10^13); weight beyond it is counted as error.
pub(super) const COUNT_MAX: u64 = (1 << COUNT_BITS) - 1;
/// Longest key held in the slot itself.
pub(super) const INLINE_BYTES_MAX: usize = 8;

const COUNT_BITS: u32 = 44;
const CODE_SHIFT: u32 = COUNT_BITS;
const TAG_SHIFT: u32 = 60;
const TAG_MASK: u64 = 0xf << TAG_SHIFT;
const CODE_MASK: u64 = 0xffff << CODE_SHIFT;
/// Tag of a long key held in the key log.
const LOGGED: u64 = 0xf;
/// Tag of a long key counted by its 64-bit hash, its bytes not held.
const DETACHED: u64 = 0xe;
/// Slots a probe compares at once: four 16-byte slots, one cache line when aligned.
pub(super) const GROUP: usize = 4;
const HASH_SEED: u32 = 0x005e_edf1;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Slot {
    word0: u64,
    word1: u64,
}

/// A key as it is compared with slots: its tag, its inline word (or fingerprint), and its hash.
#[derive(Debug, Clone, Copy)]
pub(super) struct Probe {
    /// A short key's tag, or [`LOGGED`] for any long key.
    tag: u64,
    word: u64,
    /// A long key's 64-bit hash (its fingerprint is the high half); 0 for a short key.
    pub(super) hash: u64,
    /// Home slot = this × slots / 2^32.
    pub(super) home_hash: u32,
}

impl Probe {
    #[inline(always)]
    pub(super) fn of(key: &[u8]) -> Self {
        if key.len() <= INLINE_BYTES_MAX {
            let word = inline_word(key);
            // Plus one, so that no held slot has the empty slot's tag 0.
            let tag = key.len() as u64 + 1;
            Self {
                tag,
                word,
                hash: 0,
                home_hash: inline_hash(tag, word),
            }
        } else {
            Self::of_hash(murmur3_x64_128(key, HASH_SEED).0)
        }
    }

    /// The probe of a long key known by its 64-bit hash alone.
    #[inline]
    pub(super) fn of_hash(hash: u64) -> Self {
        let fingerprint = (hash >> 32) as u32;
        Self {
            tag: LOGGED,
            word: u64::from(fingerprint) << 32,
            hash,
            home_hash: fingerprint,
        }
    }

    /// Whether the key is longer than a slot holds: logged or detached.
    #[inline]
    pub(super) fn is_long(&self) -> bool {
        self.tag == LOGGED
    }

    /// Over [`GROUP`] consecutive slots of a short key: bit `j` set if slot `j` holds the key or
    /// is empty, where a probe stops. Fewer operations than [`scan`](Self::scan): tag and key
    /// words are compared in one, and a held slot's tag is never the empty slot's 0.
    #[inline(always)]
    pub(super) fn scan_short(&self, group: &[Slot; GROUP]) -> u32 {
        debug_assert!(!self.is_long());
        let tag = self.tag << TAG_SHIFT;
        let mut stops = 0u32;
        for (j, slot) in group.iter().enumerate() {
            let differs = ((slot.word0 & TAG_MASK) ^ tag) | (slot.word1 ^ self.word);
            stops |= u32::from((differs == 0) | (slot.word0 == 0)) << j;
        }
        stops
    }

    /// Over [`GROUP`] consecutive slots: `(candidates, empties)`, bit `j` set if slot `j`
    /// [`matches`](Slot::matches) this key, or is empty. For a long key a detached candidate is
    /// certain (its whole hash matched); a logged one must still be compared with the key. Computed without branches, so a probe
    /// takes one branch per group instead of three per slot, and that branch is mostly predicted
    /// (on Zipf 0.8 at 1 MiB, 60% of updates insert a new key and a probe runs 8 slots on
    /// average; the per-slot exits were mispredicted).
    #[inline(always)]
    pub(super) fn scan(&self, group: &[Slot; GROUP]) -> (u32, u32) {
        // A long key compares fingerprints only (the high half of `word1`).
        let word_mask = if self.is_long() {
            !u64::from(u32::MAX)
        } else {
            u64::MAX
        };
        let (mut candidates, mut empties) = (0u32, 0u32);
        let long = self.is_long();
        for (j, slot) in group.iter().enumerate() {
            let empty = slot.word0 == 0;
            let tag = slot.word0 >> TAG_SHIFT;
            // No key has the empty slot's tag 0.
            let candidate = ((tag == self.tag) & (slot.word1 & word_mask == self.word))
                | (long & (tag == DETACHED) & (slot.word1 == self.hash));
            candidates |= u32::from(candidate) << j;
            empties |= u32::from(empty) << j;
        }
        (candidates, empties)
    }
}

impl Slot {
    #[inline]
    pub(super) fn is_empty(&self) -> bool {
        self.word0 == 0
    }

    #[inline]
    pub(super) fn count(&self) -> u64 {
        self.word0 & COUNT_MAX
    }

    /// Sets the count, `1..=COUNT_MAX`.
    #[inline]
    pub(super) fn set_count(&mut self, count: u64) {
        debug_assert!((1..=COUNT_MAX).contains(&count));
        self.word0 = (self.word0 & !COUNT_MAX) | count;
    }

    /// The sketch's offset when this counter started (rounded up).
    #[inline]
    pub(super) fn inserted_at(&self) -> OffsetCode {
        OffsetCode(((self.word0 & CODE_MASK) >> CODE_SHIFT) as u16)
    }

    #[inline]
    pub(super) fn set_inserted_at(&mut self, code: OffsetCode) {
        self.word0 = (self.word0 & !CODE_MASK) | (u64::from(code.0) << CODE_SHIFT);
    }

    /// A slot for `probe`'s key with `count`, started at offset `inserted_at`; `key_at` is its
    /// key log offset if it is long.
    #[inline]
    pub(super) fn new(probe: &Probe, count: u64, inserted_at: OffsetCode, key_at: u32) -> Self {
        debug_assert!((1..=COUNT_MAX).contains(&count));
        let word1 = if probe.is_long() {
            probe.word | u64::from(key_at)
        } else {
            probe.word
        };
        Self {
            word0: (probe.tag << TAG_SHIFT) | (u64::from(inserted_at.0) << CODE_SHIFT) | count,
            word1,
        }
    }

    /// A detached slot for the long key of `probe`: its hash, no bytes.
    #[inline]
    pub(super) fn detached(probe: &Probe, count: u64, inserted_at: OffsetCode) -> Self {
        debug_assert!(probe.is_long() && (1..=COUNT_MAX).contains(&count));
        Self {
            word0: (DETACHED << TAG_SHIFT) | (u64::from(inserted_at.0) << CODE_SHIFT) | count,
            word1: probe.hash,
        }
    }

    /// This logged slot detached: `hash` (its key's) instead of its key log offset.
    #[inline]
    pub(super) fn detach(&mut self, hash: u64) {
        debug_assert!(self.is_logged() && hash >> 32 == self.word1 >> 32);
        self.word0 = (DETACHED << TAG_SHIFT) | (self.word0 & !TAG_MASK);
        self.word1 = hash;
    }

    /// This detached slot logged, its key's bytes at `key_at`.
    #[inline]
    pub(super) fn attach(&mut self, key_at: u32) {
        debug_assert!(self.is_detached());
        self.word0 = (LOGGED << TAG_SHIFT) | (self.word0 & !TAG_MASK);
        self.word1 = (self.word1 & !u64::from(u32::MAX)) | u64::from(key_at);
    }

    /// Whether this slot may hold `probe`'s key: certain for a short key and for a detached
    /// one (the whole hash matches); for a logged key the fingerprint matches and the caller
    /// compares the key log entry at [`key_at`](Self::key_at).
    #[inline]
    pub(super) fn matches(&self, probe: &Probe) -> bool {
        let tag = self.word0 >> TAG_SHIFT;
        if probe.is_long() {
            (tag == LOGGED && self.word1 >> 32 == probe.word >> 32)
                || (tag == DETACHED && self.word1 == probe.hash)
        } else {
            tag == probe.tag && self.word1 == probe.word
        }
    }

    /// Whether the key is longer than 8 bytes (logged or detached).
    #[inline]
    pub(super) fn is_long(&self) -> bool {
        self.word0 >> TAG_SHIFT >= DETACHED
    }

    /// Whether the key's bytes are in the key log.
    #[inline]
    pub(super) fn is_logged(&self) -> bool {
        self.word0 >> TAG_SHIFT == LOGGED
    }

    /// Whether only the key's hash is held.
    #[inline]
    pub(super) fn is_detached(&self) -> bool {
        self.word0 >> TAG_SHIFT == DETACHED
    }

    /// A detached key's 64-bit hash.
    #[inline]
    pub(super) fn hash(&self) -> u64 {
        debug_assert!(self.is_detached());
        self.word1
    }

    /// The key log offset of a long key (while compacting: what the log gave to hold instead).
    #[inline]
    pub(super) fn key_at(&self) -> u32 {
        self.word1 as u32
    }

    pub(super) fn set_key_at(&mut self, key_at: u32) {
        self.word1 = (self.word1 & !u64::from(u32::MAX)) | u64::from(key_at);
    }

    /// The bytes of a short key (empty for a long one: read the key log, if it is logged).
    pub(super) fn inline_key(&self) -> ([u8; INLINE_BYTES_MAX], usize) {
        let len = if self.is_long() {
            0
        } else {
            (self.word0 >> TAG_SHIFT) as usize - 1
        };
        (self.word1.to_le_bytes(), len)
    }

    /// The hash that chose this slot's home: recomputed for a short key, the fingerprint of a
    /// long one (the high half of a detached key's hash).
    #[inline]
    pub(super) fn home_hash(&self) -> u32 {
        if self.is_long() {
            (self.word1 >> 32) as u32
        } else {
            inline_hash(self.word0 >> TAG_SHIFT, self.word1)
        }
    }
}

/// A u64 in 16 bits, rounded up: 11 bits of mantissa and 5 of exponent, exact below 2^12 and within
/// 1/2048 above, up to about 4.4 · 10^12; larger values are [`OffsetCode::UNKNOWN`]. Rounding up
/// keeps a lower bound computed from it certain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct OffsetCode(u16);

impl OffsetCode {
    /// Too large to hold: read as "any value", which makes a lower bound fall back to the count.
    pub(super) const UNKNOWN: Self = Self(u16::MAX);
    const MANTISSA_BITS: u32 = 11;

    /// The smallest code whose value is `value` or more.
    #[inline]
    pub(super) fn at_least(value: u64) -> Self {
        let explicit = 1u64 << Self::MANTISSA_BITS;
        if value < explicit {
            return Self(value as u16);
        }
        // `value >> shift` in [2^11, 2^12): the implicit bit and 11 explicit ones.
        let mut shift = 64 - value.leading_zeros() - (Self::MANTISSA_BITS + 1);
        let mut mantissa = value.div_ceil(1 << shift);
        if mantissa == explicit << 1 {
            mantissa >>= 1;
            shift += 1;
        }
        let exponent = shift + 1;
        let code = (exponent << Self::MANTISSA_BITS) as u64 | (mantissa & (explicit - 1));
        if exponent > 31 || code >= u64::from(Self::UNKNOWN.0) {
            return Self::UNKNOWN;
        }
        Self(code as u16)
    }

    /// The value, `u64::MAX` for [`UNKNOWN`](Self::UNKNOWN).
    #[inline]
    pub(super) fn value(self) -> u64 {
        if self == Self::UNKNOWN {
            return u64::MAX;
        }
        let exponent = u32::from(self.0) >> Self::MANTISSA_BITS;
        let mantissa = u64::from(self.0) & ((1 << Self::MANTISSA_BITS) - 1);
        if exponent == 0 {
            mantissa
        } else {
            (mantissa | 1 << Self::MANTISSA_BITS) << (exponent - 1)
        }
    }

    /// The code as written by the codec.
    pub(super) fn bits(self) -> u16 {
        self.0
    }

    pub(super) fn from_bits(bits: u16) -> Self {
        Self(bits)
    }
}

/// A key of at most 8 bytes as a little-endian word, zero-padded. Two overlapping loads instead
/// of a copy into a zeroed buffer, which compiles to a call to `memcpy` for a length not known
/// at compile time (5% of update time at 1 MiB on Zipf 0.8).
#[inline(always)]
fn inline_word(key: &[u8]) -> u64 {
    debug_assert!(key.len() <= INLINE_BYTES_MAX);
    let len = key.len();
    if len >= 4 {
        let low = u32::from_le_bytes([key[0], key[1], key[2], key[3]]);
        let high = u32::from_le_bytes([key[len - 4], key[len - 3], key[len - 2], key[len - 1]]);
        // The two loads overlap for len < 8; the overlapping bytes are equal, so OR joins them.
        u64::from(low) | (u64::from(high) << ((len - 4) * 8))
    } else if len > 0 {
        // Bytes 0, len / 2 and len − 1 cover every byte of a 1- to 3-byte key.
        let (first, middle, last) = (key[0], key[len / 2], key[len - 1]);
        u64::from(first)
            | (u64::from(middle) << (len / 2 * 8))
            | (u64::from(last) << ((len - 1) * 8))
    } else {
        0
    }
}

/// Two rounds of a folded 64×64→128 multiply over the padded key and its length: short keys need
/// no byte loop, and every input bit reaches the high 32 bits the home is taken from.
#[inline]
fn inline_hash(tag: u64, word: u64) -> u32 {
    const K0: u64 = 0x9e37_79b9_7f4a_7c15;
    const K1: u64 = 0xd6e8_feb8_6659_fd93;
    let fold = |a: u64, b: u64| {
        let product = u128::from(a) * u128::from(b);
        (product as u64) ^ ((product >> 64) as u64)
    };
    let first = fold(word ^ K0, K1 ^ (tag << 56) ^ u64::from(HASH_SEED));
    (fold(first ^ K1, K0) >> 32) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_keys_differing_only_in_trailing_zeros_are_different_keys() {
        let (a, b) = (Probe::of(b"ab"), Probe::of(b"ab\0"));
        let slot = Slot::new(&a, 1, OffsetCode::at_least(0), 0);
        assert!(slot.matches(&a));
        assert!(!slot.matches(&b));
        assert_eq!(slot.inline_key().1, 2);
        assert_eq!(slot.home_hash(), a.home_hash);
    }

    #[test]
    fn a_slot_keeps_count_and_key_apart() {
        let probe = Probe::of(b"a key longer than eight bytes");
        let code = OffsetCode::at_least(123_456_789);
        let mut slot = Slot::new(&probe, COUNT_MAX, code, 1234);
        assert!(slot.is_long() && slot.matches(&probe));
        assert_eq!((slot.count(), slot.key_at()), (COUNT_MAX, 1234));
        slot.set_count(7);
        slot.set_key_at(99);
        assert_eq!((slot.count(), slot.key_at()), (7, 99));
        assert_eq!(slot.inserted_at(), code);
        slot.detach(probe.hash);
        assert!(slot.is_detached() && slot.matches(&probe));
        assert_eq!((slot.count(), slot.inserted_at()), (7, code));
        slot.attach(5);
        assert!(slot.is_logged() && slot.matches(&probe));
        assert_eq!(
            (slot.count(), slot.inserted_at(), slot.key_at()),
            (7, code, 5)
        );
        assert_eq!(slot.home_hash(), probe.home_hash);
    }

    #[test]
    fn a_group_scan_agrees_with_slot_by_slot_matching() {
        let keys: [&[u8]; 4] = [b"", b"ab", b"a key longer than eight bytes", b"abcdefgh"];
        let probes = keys.map(Probe::of);
        for empty_at in 0..GROUP {
            let mut group = [Slot::default(); GROUP];
            for (j, slot) in group.iter_mut().enumerate() {
                if j != empty_at {
                    *slot = Slot::new(
                        &probes[j],
                        1 + j as u64,
                        OffsetCode::at_least(j as u64 * 5000),
                        7,
                    );
                }
            }
            for probe in &probes {
                let (candidates, empties) = probe.scan(&group);
                assert_eq!(empties, 1 << empty_at);
                for (j, slot) in group.iter().enumerate() {
                    let expected = !slot.is_empty() && slot.matches(probe);
                    assert_eq!(
                        candidates >> j & 1 == 1,
                        expected,
                        "slot {j}, empty {empty_at}"
                    );
                }
                if !probe.is_long() {
                    assert_eq!(probe.scan_short(&group), candidates | empties);
                }
            }
        }
    }

    #[test]
    fn offset_codes_round_up_by_less_than_one_part_in_2048() {
        let mut values: Vec<u64> = (0..5000).collect();
        for shift in 11..64 {
            for delta in [0u64, 1, 2, 3] {
                values.push((1u64 << shift) - delta);
                values.push((1u64 << shift) + delta);
                values.push((3u64 << (shift - 1)) + delta);
            }
        }
        for value in values {
            let code = OffsetCode::at_least(value);
            let back = code.value();
            assert!(back >= value, "{value} read back as {back}");
            if code != OffsetCode::UNKNOWN {
                assert!(
                    (back - value) as f64 <= value as f64 / 2048.0,
                    "{value} -> {back}"
                );
                assert_eq!(
                    OffsetCode::at_least(back),
                    code,
                    "a value read back keeps its code"
                );
            } else {
                assert!(value > 4_000_000_000_000, "{value}");
            }
        }
        assert_eq!(OffsetCode::at_least(2047).value(), 2047);
        assert_eq!(OffsetCode::at_least(4095).value(), 4095);
        assert_eq!(OffsetCode::at_least(4097).value(), 4098);
    }

    #[test]
    fn inline_words_are_the_zero_padded_key() {
        for len in 0..=INLINE_BYTES_MAX {
            let key: Vec<u8> = (1..=len as u8).map(|i| i.wrapping_mul(37) | 0x80).collect();
            let mut padded = [0u8; INLINE_BYTES_MAX];
            padded[..len].copy_from_slice(&key);
            assert_eq!(
                inline_word(&key),
                u64::from_le_bytes(padded),
                "length {len}"
            );
        }
    }

    #[test]
    fn inline_hashes_spread_sequential_keys_over_homes() {
        let homes = 1000u64;
        let mut used = vec![0u32; homes as usize];
        for i in 0..10_000 {
            let probe = Probe::of(format!("k{i}").as_bytes());
            used[((u64::from(probe.home_hash) * homes) >> 32) as usize] += 1;
        }
        // 10 per home on average; a poor mix piles keys of one prefix into a few homes.
        assert!(used.iter().all(|&n| n < 40), "{:?}", used.iter().max());
    }
}
