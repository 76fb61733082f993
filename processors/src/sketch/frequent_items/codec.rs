//! The serialized form of a [`FrequentItems`]: a versioned, checksummed header, then the held
//! keys with their counts. Empty slots and unused key log bytes are not written, so a sketch of a
//! 1 MiB budget holding ten keys encodes in about 200 bytes.
//!
//! ```text
//! offset size field
//!  0     4    magic "WFIS"
//!  4     2    version (3), u16 LE
//!  6     2    reserved, 0
//!  8     4    table slots, u32 LE
//! 12     4    key log bytes, u32 LE
//! 16     4    items, u32 LE
//! 20     4    CRC-32C of bytes 0..20 followed by bytes 24..end
//! 24     8    encoded length in bytes, this header included, u64 LE
//! 32     8    total weight N, u64 LE
//! 40     8    maximum error (the offset), u64 LE
//! 48     8    log floor: a detached key of at most this count is not logged while the key log
//!             is full, u64 LE
//! 56     8    overflow: weight beyond a counter's range, in every upper bound, u64 LE
//! 64     items, each: a key, its count (LEB128, 1 ..= 2^44 − 1), and the offset when its counter
//!        started, rounded up (u16 LE, the table's 16-bit code). A key is its length plus one
//!        (LEB128) and its bytes, or, detached, 0 and its 64-bit hash (u64 LE).
//! ```
//!
//! Older versions are read too. Version 2 had an offset for keys of at most 8 bytes at 40 and one
//! for longer keys at 48, and its items start at 56; the larger offset is read. Version 1 had the
//! one offset, and its items start at 48. Both allowed counts to 2^56 − 1: the part above 2^44 − 1
//! is read as overflow. In both, an item's key is its length (not plus one) and its bytes, and no
//! start offset follows its count: it is read as the sketch's offset, so the lower bound is the
//! count, as those versions had it.
//!
//! Items are written in table order, starting after an empty slot. Inserting them in that order
//! into an empty table of the same size puts every key back in the slot it came from (each key's
//! probe run from its home up to its slot is already filled by the keys before it), so a restored
//! sketch is the original: it purges, ranks and merges exactly as the original would.
//!
//! Decoding checks the header, the length and the checksum before it allocates, and refuses a
//! sketch whose memory would exceed the caller's limit, so corrupt or hostile bytes give a
//! [`DecodeError`] or [`SketchError::TooLarge`], never a panic or an unbounded allocation.

use std::mem::size_of;

use super::super::frequent_slot::{OffsetCode, Probe, Slot, COUNT_MAX};
use super::super::key_log::KeyLog;
use super::super::{DecodeError, SketchError};
use super::{FrequentItems, LOAD_DENOMINATOR, LOAD_NUMERATOR, SLOTS_MAX, SLOTS_MIN};

const MAGIC: [u8; 4] = *b"WFIS";
const VERSION: u16 = 3;
/// Bytes before the items.
const HEADER_BYTES: usize = 64;
/// Bytes before the items in version 2.
const V2_HEADER_BYTES: usize = 56;
/// Largest count versions 1 and 2 wrote (2^56 − 1); beyond [`COUNT_MAX`] it is read as overflow.
const V2_COUNT_MAX: u64 = (1 << 56) - 1;
/// Bytes before the items in version 1.
const V1_HEADER_BYTES: usize = 48;
const CHECKSUM_OFFSET: usize = 20;
/// Longest LEB128 encoding of a u64.
const VARINT_BYTES_MAX: usize = 10;

impl FrequentItems {
    /// The sketch as bytes in the format above.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_BYTES + self.len * 12);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&[0; 2]);
        out.extend_from_slice(&(self.slots.len() as u32).to_le_bytes());
        out.extend_from_slice(&(self.keys.memory_bytes() as u32).to_le_bytes());
        out.extend_from_slice(&(self.len as u32).to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&[0; 8]);
        out.extend_from_slice(&self.total.to_le_bytes());
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.log_floor.to_le_bytes());
        out.extend_from_slice(&self.overflow.to_le_bytes());
        debug_assert_eq!(out.len(), HEADER_BYTES);
        // There is an empty slot: capacity < slots.
        let start = self.slots.iter().position(Slot::is_empty).unwrap_or(0);
        let in_table_order = self.slots[start..].iter().chain(&self.slots[..start]);
        for slot in in_table_order.filter(|slot| !slot.is_empty()) {
            if slot.is_detached() {
                write_varint(&mut out, 0);
                out.extend_from_slice(&slot.hash().to_le_bytes());
            } else {
                let key = self.key_ref(slot);
                let key = key.as_slice();
                write_varint(&mut out, key.len() as u64 + 1);
                out.extend_from_slice(key);
            }
            write_varint(&mut out, slot.count());
            out.extend_from_slice(&slot.inserted_at().bits().to_le_bytes());
        }
        let len = out.len() as u64;
        out[24..32].copy_from_slice(&len.to_le_bytes());
        let checksum = checksum(&out);
        out[CHECKSUM_OFFSET..CHECKSUM_OFFSET + 4].copy_from_slice(&checksum.to_le_bytes());
        out
    }

    /// Restores a sketch written by [`to_bytes`](Self::to_bytes), with the same table, key log
    /// and memory as the original, refusing it if that memory is above `memory_bytes_max`
    /// (the decoder allocates it before reading a single key, whatever the input's length).
    pub fn from_bytes(bytes: &[u8], memory_bytes_max: usize) -> Result<Self, SketchError> {
        let header_of = |len: usize| {
            bytes.get(..len).ok_or(DecodeError::TruncatedHeader {
                needed: len,
                available: bytes.len(),
            })
        };
        let header = header_of(V1_HEADER_BYTES)?;
        let magic: [u8; 4] = array_at(header, 0);
        if magic != MAGIC {
            return Err(DecodeError::BadMagic {
                found: magic,
                expected: MAGIC,
            }
            .into());
        }
        let version = u16::from_le_bytes(array_at(header, 4));
        if !(1..=VERSION).contains(&version) {
            return Err(DecodeError::UnsupportedVersion {
                found: version,
                supported: VERSION,
            }
            .into());
        }
        let header_bytes = match version {
            1 => V1_HEADER_BYTES,
            2 => V2_HEADER_BYTES,
            _ => HEADER_BYTES,
        };
        let header = header_of(header_bytes)?;
        let reserved = u16::from_le_bytes(array_at(header, 6));
        if reserved != 0 {
            return Err(bad_field("reserved", 6, reserved.into(), "must be 0"));
        }
        let encoded_len = u64::from_le_bytes(array_at(header, 24));
        if encoded_len != bytes.len() as u64 {
            return Err(DecodeError::LengthMismatch {
                expected: encoded_len,
                actual: bytes.len(),
            }
            .into());
        }
        let stored = u32::from_le_bytes(array_at(header, CHECKSUM_OFFSET));
        let computed = checksum(bytes);
        if computed != stored {
            return Err(DecodeError::ChecksumMismatch { stored, computed }.into());
        }
        let slots = u32::from_le_bytes(array_at(header, 8)) as usize;
        if !(SLOTS_MIN..=SLOTS_MAX).contains(&slots) {
            return Err(bad_field(
                "table slots",
                8,
                slots as u64,
                "out of range (4 ..= 2^30)",
            ));
        }
        let key_log_bytes = u32::from_le_bytes(array_at(header, 12)) as usize;
        let memory_bytes = size_of::<Self>() + slots * size_of::<Slot>() + key_log_bytes;
        if memory_bytes > memory_bytes_max {
            return Err(SketchError::TooLarge {
                name: "memory of the decoded frequent-items sketch (bytes)",
                value: memory_bytes as u64,
                max: memory_bytes_max as u64,
            });
        }
        let capacity = slots * LOAD_NUMERATOR / LOAD_DENOMINATOR;
        let items = u32::from_le_bytes(array_at(header, 16)) as usize;
        if items > capacity {
            return Err(bad_field(
                "items",
                16,
                items as u64,
                "more than the table holds",
            ));
        }
        let word_at = |offset| u64::from_le_bytes(array_at(header, offset));
        let (offset, log_floor, overflow) = match version {
            1 => (word_at(40), 0, 0),
            2 => (word_at(40).max(word_at(48)), 0, 0),
            _ => (word_at(40), word_at(48), word_at(56)),
        };
        let mut sketch = Self {
            slots: vec![Slot::default(); slots],
            keys: KeyLog::new(key_log_bytes),
            len: 0,
            capacity,
            offset,
            offset_code: OffsetCode::at_least(offset),
            overflow,
            total: word_at(32),
            log_floor,
        };
        let mut at = header_bytes;
        for _ in 0..items {
            sketch.restore_item(bytes, &mut at, version)?;
        }
        if at != bytes.len() {
            return Err(bad_field(
                "items",
                at,
                (bytes.len() - at) as u64,
                "bytes left after the last item",
            ));
        }
        Ok(sketch)
    }

    /// Reads the item at `*at` into the table and moves `*at` past it.
    fn restore_item(
        &mut self,
        bytes: &[u8],
        at: &mut usize,
        version: u16,
    ) -> Result<(), SketchError> {
        let key_at = *at;
        let mut key_len = read_varint(bytes, at, "key length")?;
        if version >= 3 {
            if key_len == 0 {
                return self.restore_detached(bytes, at);
            }
            key_len -= 1;
        }
        let key = usize::try_from(key_len)
            .ok()
            .and_then(|len| bytes.get(*at..at.checked_add(len)?))
            .ok_or_else(|| bad_field("key length", key_at, key_len, "past the end of the input"))?;
        *at += key.len();
        let count = if version >= 3 {
            read_count(bytes, at, COUNT_MAX)?
        } else {
            let count = read_count(bytes, at, V2_COUNT_MAX)?;
            self.capped(count)
        };
        let inserted_at = self.read_inserted_at(bytes, at, version)?;
        let probe = Probe::of(key);
        let Err(index) = self.locate(key, &probe) else {
            return Err(bad_field("key", key_at, key_len, "repeats an earlier key"));
        };
        self.slots[index] = if probe.is_long() {
            if !self.keys.fits(key.len()) {
                return Err(bad_field("key", key_at, key_len, "overflows the key log"));
            }
            Slot::new(&probe, count, inserted_at, self.keys.append(key))
        } else {
            Slot::new(&probe, count, inserted_at, 0)
        };
        self.len += 1;
        Ok(())
    }

    /// The start offset after an item's count (version 3), or the sketch's offset (before).
    fn read_inserted_at(
        &self,
        bytes: &[u8],
        at: &mut usize,
        version: u16,
    ) -> Result<OffsetCode, SketchError> {
        if version < 3 {
            return Ok(OffsetCode::at_least(self.offset));
        }
        let Some(code) = bytes.get(*at..*at + 2) else {
            return Err(bad_field(
                "start offset",
                *at,
                0,
                "past the end of the input",
            ));
        };
        *at += 2;
        Ok(OffsetCode::from_bits(u16::from_le_bytes(array_at(code, 0))))
    }

    /// Reads a detached item's hash (at `*at`) and count into the table.
    fn restore_detached(&mut self, bytes: &[u8], at: &mut usize) -> Result<(), SketchError> {
        let hash_at = *at;
        let Some(hash) = bytes.get(hash_at..hash_at + 8) else {
            return Err(bad_field(
                "key hash",
                hash_at,
                0,
                "past the end of the input",
            ));
        };
        let hash = u64::from_le_bytes(array_at(hash, 0));
        *at += 8;
        let count = read_count(bytes, at, COUNT_MAX)?;
        let inserted_at = self.read_inserted_at(bytes, at, 3)?;
        let probe = Probe::of_hash(hash);
        let Err(index) = self.locate_hash(&probe) else {
            return Err(bad_field(
                "key hash",
                hash_at,
                hash,
                "repeats an earlier key",
            ));
        };
        self.slots[index] = Slot::detached(&probe, count, inserted_at);
        self.len += 1;
        Ok(())
    }
}

/// A count at `*at`, in `1 ..= max`.
fn read_count(bytes: &[u8], at: &mut usize, max: u64) -> Result<u64, SketchError> {
    let count_at = *at;
    let count = read_varint(bytes, at, "count")?;
    if !(1..=max).contains(&count) {
        return Err(bad_field(
            "count",
            count_at,
            count,
            if max == COUNT_MAX {
                "must be 1 ..= 2^44 - 1"
            } else {
                "must be 1 ..= 2^56 - 1"
            },
        ));
    }
    Ok(count)
}

fn write_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// The LEB128 value at `*at`, moving `*at` past it; an error names `field` and its offset.
fn read_varint(bytes: &[u8], at: &mut usize, field: &'static str) -> Result<u64, SketchError> {
    let start = *at;
    let mut value = 0u64;
    for shift in 0..VARINT_BYTES_MAX {
        let Some(&byte) = bytes.get(start + shift) else {
            return Err(bad_field(field, start, value, "truncated"));
        };
        let bits = u64::from(byte & 0x7f);
        // The tenth byte holds bit 63 only.
        if shift == VARINT_BYTES_MAX - 1 && bits > 1 {
            return Err(bad_field(field, start, value, "does not fit in 64 bits"));
        }
        value |= bits << (7 * shift);
        if byte & 0x80 == 0 {
            *at = start + shift + 1;
            return Ok(value);
        }
    }
    Err(bad_field(field, start, value, "does not fit in 64 bits"))
}

/// CRC-32C over the whole encoding except the checksum field itself.
fn checksum(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(&bytes[..CHECKSUM_OFFSET]);
    crc32c::crc32c_append(crc, &bytes[CHECKSUM_OFFSET + 4..])
}

/// `N` bytes at `offset`; callers have checked `offset + N <= bytes.len()`.
fn array_at<const N: usize>(bytes: &[u8], offset: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(src) = bytes.get(offset..offset + N) {
        out.copy_from_slice(src);
    }
    debug_assert!(offset + N <= bytes.len());
    out
}

fn bad_field(field: &'static str, offset: usize, value: u64, reason: &'static str) -> SketchError {
    DecodeError::BadField {
        field,
        offset,
        value,
        reason,
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `bytes` with its checksum recomputed, as a hostile writer would.
    fn resealed(mut bytes: Vec<u8>) -> Vec<u8> {
        let checksum = checksum(&bytes);
        bytes[CHECKSUM_OFFSET..CHECKSUM_OFFSET + 4].copy_from_slice(&checksum.to_le_bytes());
        bytes
    }

    fn sample() -> FrequentItems {
        let mut sketch = FrequentItems::with_budget(4096).unwrap();
        for (i, key) in ["a", "bb", "a key longer than eight bytes", "a"]
            .iter()
            .enumerate()
        {
            sketch.update(key.as_bytes(), 1 + i as u64);
        }
        sketch
    }

    #[test]
    fn varints_round_trip_at_every_width() {
        for value in [0, 1, 127, 128, 300, COUNT_MAX, u64::MAX] {
            let mut out = Vec::new();
            write_varint(&mut out, value);
            let mut at = 0;
            assert_eq!(read_varint(&out, &mut at, "v"), Ok(value));
            assert_eq!(at, out.len());
        }
        let mut at = 0;
        assert!(read_varint(&[0xff; 10], &mut at, "v").is_err(), "11 bytes");
        assert!(read_varint(&[0x80], &mut at, "v").is_err(), "truncated");
    }

    #[test]
    fn a_huge_table_is_refused_before_anything_is_allocated() {
        let mut bytes = sample().to_bytes();
        bytes[8..12].copy_from_slice(&(1u32 << 30).to_le_bytes());
        let error = FrequentItems::from_bytes(&resealed(bytes), 1 << 20).unwrap_err();
        assert!(matches!(error, SketchError::TooLarge { .. }), "{error}");
    }

    #[test]
    fn a_repeated_key_is_refused() {
        let mut sketch = FrequentItems::with_budget(4096).unwrap();
        sketch.update(b"k", 3);
        sketch.update(b"j", 3);
        let mut bytes = sketch.to_bytes();
        // Both items are `02 xx 03 c c`: make the second key the first's.
        let first_key = bytes[HEADER_BYTES + 1];
        bytes[HEADER_BYTES + 6] = first_key;
        let error = FrequentItems::from_bytes(&resealed(bytes), 4096).unwrap_err();
        assert_eq!(error.to_string(), format!("cannot decode sketch: field key at offset {} holds 1, which is not valid: repeats an earlier key", HEADER_BYTES + 5));
    }

    #[test]
    fn a_zero_count_and_trailing_bytes_are_refused() {
        let mut sketch = FrequentItems::with_budget(4096).unwrap();
        sketch.update(b"k", 3);
        let mut bytes = sketch.to_bytes();
        bytes[HEADER_BYTES + 2] = 0;
        let error = FrequentItems::from_bytes(&resealed(bytes.clone()), 4096).unwrap_err();
        assert!(error.to_string().contains("field count"), "{error}");
        bytes[HEADER_BYTES + 2] = 3;
        bytes.push(0);
        let len = bytes.len() as u64;
        bytes[24..32].copy_from_slice(&len.to_le_bytes());
        let error = FrequentItems::from_bytes(&resealed(bytes), 4096).unwrap_err();
        assert!(error.to_string().contains("bytes left"), "{error}");
    }

    #[test]
    fn a_long_key_past_the_key_log_is_refused() {
        let mut bytes = sample().to_bytes();
        // Shrink the key log below the one long key it holds.
        bytes[12..16].copy_from_slice(&8u32.to_le_bytes());
        let error = FrequentItems::from_bytes(&resealed(bytes), 4096).unwrap_err();
        assert!(
            error.to_string().contains("overflows the key log"),
            "{error}"
        );
    }

    /// `sketch` (short keys only) as an older version wrote it: its items with plain key
    /// lengths, after `header_bytes` of header whose offset fields hold `offsets`.
    fn older(sketch: &FrequentItems, version: u16, offsets: &[u64]) -> Vec<u8> {
        let v3 = sketch.to_bytes();
        let mut bytes = v3[..40].to_vec();
        for offset in offsets {
            bytes.extend_from_slice(&offset.to_le_bytes());
        }
        if version == 1 {
            bytes.truncate(V1_HEADER_BYTES);
        }
        let mut at = HEADER_BYTES;
        while at < v3.len() {
            let key_len = read_varint(&v3, &mut at, "key length").unwrap() - 1;
            write_varint(&mut bytes, key_len);
            bytes.extend_from_slice(&v3[at..at + key_len as usize]);
            at += key_len as usize;
            write_varint(&mut bytes, read_count(&v3, &mut at, COUNT_MAX).unwrap());
            at += 2;
        }
        bytes[4..6].copy_from_slice(&version.to_le_bytes());
        let len = bytes.len() as u64;
        bytes[24..32].copy_from_slice(&len.to_le_bytes());
        resealed(bytes)
    }

    fn short_keys_with_error() -> FrequentItems {
        let mut sketch = FrequentItems::with_budget_and_key_bytes(600, 8).unwrap();
        for i in 0..2_000u64 {
            sketch.update(format!("k{}", i % 300 + i % 7).as_bytes(), 1 + i % 3);
        }
        assert!(sketch.maximum_error() > 0);
        sketch
    }

    #[test]
    fn version_1_and_2_bytes_are_read_with_their_largest_offset() {
        let sketch = short_keys_with_error();
        let offset = sketch.maximum_error();
        let v1 = older(&sketch, 1, &[offset]);
        let v2 = older(&sketch, 2, &[offset - 1, offset]);
        for old in [v1, v2] {
            let copy = FrequentItems::from_bytes(&old, sketch.memory_bytes()).unwrap();
            assert_eq!(copy.maximum_error(), offset);
            assert_eq!(copy.len(), sketch.len());
            // Older versions did not record when a counter started: the lower bound is the count.
            for item in sketch.items() {
                let count = sketch.find(&item.key).unwrap().count();
                assert_eq!(copy.lower_bound(&item.key), count);
                assert_eq!(copy.upper_bound(&item.key), item.upper_bound);
            }
            let again = FrequentItems::from_bytes(&copy.to_bytes(), copy.memory_bytes()).unwrap();
            assert_eq!(
                again.top_k(usize::MAX),
                copy.top_k(usize::MAX),
                "written as version 3"
            );
        }
    }

    #[test]
    fn a_version_2_count_past_2_to_the_44_is_read_as_overflow() {
        let mut sketch = FrequentItems::with_budget_and_key_bytes(600, 8).unwrap();
        sketch.update(b"k", 3);
        let v2 = older(&sketch, 2, &[0, 0]);
        // The one item is `01 'k' 03`: give it a count of 2^50.
        let mut bytes = v2[..V2_HEADER_BYTES + 2].to_vec();
        write_varint(&mut bytes, 1 << 50);
        let len = bytes.len() as u64;
        bytes[24..32].copy_from_slice(&len.to_le_bytes());
        let copy = FrequentItems::from_bytes(&resealed(bytes), sketch.memory_bytes()).unwrap();
        assert_eq!(copy.lower_bound(b"k"), COUNT_MAX);
        assert_eq!(copy.upper_bound(b"k"), 1 << 50);
        assert_eq!(copy.maximum_error(), (1 << 50) - COUNT_MAX);
        let again = FrequentItems::from_bytes(&copy.to_bytes(), copy.memory_bytes()).unwrap();
        assert_eq!(again.upper_bound(b"k"), 1 << 50, "the overflow is written");
    }

    #[test]
    fn detached_keys_round_trip_by_their_hash() {
        let mut sketch = FrequentItems::with_budget_and_key_bytes(1024, 8).unwrap();
        let huge = vec![b'x'; 4096];
        sketch.update(&huge, 7);
        sketch.update(b"a key longer than eight bytes", 2);
        sketch.update(b"k", 1);
        assert!(sketch.find(&huge).unwrap().is_detached());
        let bytes = sketch.to_bytes();
        let copy = FrequentItems::from_bytes(&bytes, sketch.memory_bytes()).unwrap();
        assert_eq!(copy.lower_bound(&huge), 7);
        assert!(copy.find(&huge).unwrap().is_detached());
        assert_eq!(copy.top_k(usize::MAX), sketch.top_k(usize::MAX));
        assert_eq!(copy.to_bytes(), bytes);
        // The same hash twice is refused.
        let mut twice = FrequentItems::with_budget_and_key_bytes(1024, 8).unwrap();
        twice.update(&huge, 7);
        let mut bytes = twice.to_bytes();
        let item = bytes[HEADER_BYTES..].to_vec();
        bytes.extend_from_slice(&item);
        bytes[16..20].copy_from_slice(&2u32.to_le_bytes());
        let len = bytes.len() as u64;
        bytes[24..32].copy_from_slice(&len.to_le_bytes());
        let error = FrequentItems::from_bytes(&resealed(bytes), 1024).unwrap_err();
        assert!(
            error.to_string().contains("repeats an earlier key"),
            "{error}"
        );
    }

    #[test]
    fn a_version_after_3_is_refused() {
        let mut bytes = sample().to_bytes();
        bytes[4..6].copy_from_slice(&4u16.to_le_bytes());
        let error = FrequentItems::from_bytes(&resealed(bytes), 4096).unwrap_err();
        assert!(
            matches!(
                error,
                SketchError::Decode(DecodeError::UnsupportedVersion { found: 4, .. })
            ),
            "{error}"
        );
    }
}
