//! The serialized form of a [`FrequentItems`]: a versioned, checksummed header, then the held
//! keys with their counts. Empty slots and unused key log bytes are not written, so a sketch of a
//! 1 MiB budget holding ten keys encodes in about 200 bytes.
//!
//! ```text
//! offset size field
//!  0     4    magic "WFIS"
//!  4     2    version (2), u16 LE
//!  6     2    reserved, 0
//!  8     4    table slots, u32 LE
//! 12     4    key log bytes, u32 LE
//! 16     4    items, u32 LE
//! 20     4    CRC-32C of bytes 0..20 followed by bytes 24..end
//! 24     8    encoded length in bytes, this header included, u64 LE
//! 32     8    total weight N, u64 LE
//! 40     8    maximum error of keys of at most 8 bytes (their offset), u64 LE
//! 48     8    maximum error of longer keys (their offset), u64 LE
//! 56     items, each: key length (LEB128), key bytes, count (LEB128, 1 ..= 2^56 − 1)
//! ```
//!
//! Version 1, written before short and long keys had offsets of their own, has no field at 48:
//! its items start there, and its one offset is read as both.
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

use super::super::frequent_slot::{Probe, Slot, COUNT_MAX};
use super::super::key_log::{KeyLog, LOGGED_KEY_BYTES_MAX};
use super::super::{DecodeError, SketchError};
use super::{FrequentItems, LOAD_DENOMINATOR, LOAD_NUMERATOR, SLOTS_MAX, SLOTS_MIN};

const MAGIC: [u8; 4] = *b"WFIS";
const VERSION: u16 = 2;
/// Bytes before the items.
const HEADER_BYTES: usize = 56;
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
        out.extend_from_slice(&self.offset_short.to_le_bytes());
        out.extend_from_slice(&self.offset_long.to_le_bytes());
        debug_assert_eq!(out.len(), HEADER_BYTES);
        // There is an empty slot: capacity < slots.
        let start = self.slots.iter().position(Slot::is_empty).unwrap_or(0);
        let in_table_order = self.slots[start..].iter().chain(&self.slots[..start]);
        for slot in in_table_order.filter(|slot| !slot.is_empty()) {
            let key = self.key_ref(slot);
            let key = key.as_slice();
            write_varint(&mut out, key.len() as u64);
            out.extend_from_slice(key);
            write_varint(&mut out, slot.count());
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
        let header_bytes = if version == 1 {
            V1_HEADER_BYTES
        } else {
            HEADER_BYTES
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
        let mut sketch = Self {
            slots: vec![Slot::default(); slots],
            keys: KeyLog::new(key_log_bytes),
            len: 0,
            capacity,
            offset_short: u64::from_le_bytes(array_at(header, 40)),
            offset_long: if version == 1 {
                u64::from_le_bytes(array_at(header, 40))
            } else {
                u64::from_le_bytes(array_at(header, 48))
            },
            total: u64::from_le_bytes(array_at(header, 32)),
        };
        let mut at = header_bytes;
        for _ in 0..items {
            sketch.restore_item(bytes, &mut at)?;
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
    fn restore_item(&mut self, bytes: &[u8], at: &mut usize) -> Result<(), SketchError> {
        let key_at = *at;
        let key_len = read_varint(bytes, at, "key length")?;
        let key = usize::try_from(key_len)
            .ok()
            .and_then(|len| bytes.get(*at..at.checked_add(len)?))
            .ok_or_else(|| bad_field("key length", key_at, key_len, "past the end of the input"))?;
        *at += key.len();
        let count_at = *at;
        let count = read_varint(bytes, at, "count")?;
        if !(1..=COUNT_MAX).contains(&count) {
            return Err(bad_field(
                "count",
                count_at,
                count,
                "must be 1 ..= 2^56 - 1",
            ));
        }
        let probe = Probe::of(key);
        let Err(index) = self.locate(key, &probe) else {
            return Err(bad_field("key", key_at, key_len, "repeats an earlier key"));
        };
        if probe.is_long() && (key.len() > LOGGED_KEY_BYTES_MAX || !self.keys.fits(key.len())) {
            return Err(bad_field("key", key_at, key_len, "overflows the key log"));
        }
        self.occupy(index, key, &probe, count);
        Ok(())
    }
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
        // Both items are `01 xx 03`: make the second key the first's.
        let first_key = bytes[HEADER_BYTES + 1];
        bytes[HEADER_BYTES + 4] = first_key;
        let error = FrequentItems::from_bytes(&resealed(bytes), 4096).unwrap_err();
        assert_eq!(error.to_string(), format!("cannot decode sketch: field key at offset {} holds 1, which is not valid: repeats an earlier key", HEADER_BYTES + 3));
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

    #[test]
    fn version_1_bytes_read_their_one_offset_as_both() {
        // Short keys only: one offset for both classes, as version 1 had.
        let mut sketch = FrequentItems::with_budget_and_key_bytes(600, 8).unwrap();
        for i in 0..2_000u64 {
            sketch.update(format!("k{}", i % 300 + i % 7).as_bytes(), 1 + i % 3);
        }
        let offset = sketch.maximum_error();
        assert!(offset > 0);
        let v2 = sketch.to_bytes();
        let mut v1 = [&v2[..V1_HEADER_BYTES], &v2[HEADER_BYTES..]].concat();
        v1[4..6].copy_from_slice(&1u16.to_le_bytes());
        let len = v1.len() as u64;
        v1[24..32].copy_from_slice(&len.to_le_bytes());
        let copy = FrequentItems::from_bytes(&resealed(v1), sketch.memory_bytes()).unwrap();
        assert_eq!(copy.top_k(usize::MAX), sketch.top_k(usize::MAX));
        assert_eq!(copy.maximum_error_of(b"k1"), offset);
        assert_eq!(
            copy.maximum_error_of(b"a key longer than eight bytes"),
            offset
        );
        assert_eq!(copy.to_bytes(), v2, "written back as version 2");
    }

    #[test]
    fn a_version_after_2_is_refused() {
        let mut bytes = sample().to_bytes();
        bytes[4..6].copy_from_slice(&3u16.to_le_bytes());
        let error = FrequentItems::from_bytes(&resealed(bytes), 4096).unwrap_err();
        assert!(
            matches!(
                error,
                SketchError::Decode(DecodeError::UnsupportedVersion { found: 3, .. })
            ),
            "{error}"
        );
    }
}
