//! The serialized form of a [`CountMinSketch`]: a versioned, checksummed header and the counters.
//!
//! ```text
//! offset size field
//!  0     4    magic "WCMS"
//!  4     2    version (1), u16 LE
//!  6     1    update rule: 0 plain, 1 conservative
//!  7     1    reserved, 0
//!  8     4    width, u32 LE
//! 12     4    depth, u32 LE
//! 16     4    seed, u32 LE
//! 20     4    CRC-32C of bytes 0..20 followed by bytes 24..end
//! 24     8    total count N, u64 LE
//! 32     4·width·depth counters, u32 LE, row-major
//! ```
//!
//! Decoding checks every field and the length against the header before it allocates, so corrupt
//! or hostile bytes give a [`DecodeError`], never a panic or a huge allocation.

use super::cms::{check_shape, CountMinSketch, UpdateRule};
use super::{DecodeError, SketchError};

const MAGIC: [u8; 4] = *b"WCMS";
const VERSION: u16 = 1;
/// Bytes before the counters.
pub const HEADER_BYTES: usize = 32;
const CHECKSUM_OFFSET: usize = 20;

const _: () = assert!(CHECKSUM_OFFSET + 4 + 8 == HEADER_BYTES);

impl CountMinSketch {
    /// The sketch as bytes in the format above.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_BYTES + self.counters.len() * 4);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.push(match self.rule {
            UpdateRule::Plain => 0,
            UpdateRule::Conservative => 1,
        });
        out.push(0);
        out.extend_from_slice(&self.width.to_le_bytes());
        out.extend_from_slice(&self.depth.to_le_bytes());
        out.extend_from_slice(&self.seed.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&self.total.to_le_bytes());
        for counter in &self.counters {
            out.extend_from_slice(&counter.to_le_bytes());
        }
        let checksum = checksum(&out);
        out[CHECKSUM_OFFSET..CHECKSUM_OFFSET + 4].copy_from_slice(&checksum.to_le_bytes());
        debug_assert_eq!(out.len(), HEADER_BYTES + self.counters.len() * 4);
        out
    }

    /// Decodes bytes written by [`to_bytes`](Self::to_bytes), rejecting anything corrupt.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SketchError> {
        let header = bytes
            .get(..HEADER_BYTES)
            .ok_or(DecodeError::TruncatedHeader {
                needed: HEADER_BYTES,
                available: bytes.len(),
            })?;
        let magic: [u8; 4] = array_at(header, 0);
        if magic != MAGIC {
            return Err(DecodeError::BadMagic {
                found: magic,
                expected: MAGIC,
            }
            .into());
        }
        let version = u16::from_le_bytes(array_at(header, 4));
        if version != VERSION {
            return Err(DecodeError::UnsupportedVersion {
                found: version,
                supported: VERSION,
            }
            .into());
        }
        let rule = match header[6] {
            0 => UpdateRule::Plain,
            1 => UpdateRule::Conservative,
            other => return Err(bad_field("update rule", 6, other.into(), "must be 0 or 1")),
        };
        if header[7] != 0 {
            return Err(bad_field("reserved", 7, header[7].into(), "must be 0"));
        }
        let width = u32::from_le_bytes(array_at(header, 8));
        let depth = u32::from_le_bytes(array_at(header, 12));
        let seed = u32::from_le_bytes(array_at(header, 16));
        let stored = u32::from_le_bytes(array_at(header, CHECKSUM_OFFSET));
        let total = u64::from_le_bytes(array_at(header, 24));
        check_shape(width, depth).map_err(|_| {
            bad_field(
                "width x depth",
                8,
                u64::from(width) * u64::from(depth),
                "out of range",
            )
        })?;

        // check_shape bounds width·depth by COUNTERS_MAX, so this cannot overflow u64.
        let counters_len = u64::from(width) * u64::from(depth);
        let expected = HEADER_BYTES as u64 + counters_len * 4;
        if bytes.len() as u64 != expected {
            return Err(DecodeError::LengthMismatch {
                expected,
                actual: bytes.len(),
            }
            .into());
        }
        let computed = checksum(bytes);
        if computed != stored {
            return Err(DecodeError::ChecksumMismatch { stored, computed }.into());
        }
        let counters = bytes[HEADER_BYTES..]
            .chunks_exact(4)
            .map(|chunk| u32::from_le_bytes(array_at(chunk, 0)))
            .collect::<Vec<_>>();
        debug_assert_eq!(counters.len() as u64, counters_len);
        Ok(Self {
            counters,
            width,
            depth,
            seed,
            rule,
            total,
        })
    }
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
