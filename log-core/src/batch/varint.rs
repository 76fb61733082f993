//! Kafka's zigzag varints (protobuf style, at most 5 bytes for 32 bits and 10
//! for 64) and a checked cursor over untrusted record bytes.

/// Why a read failed; becomes the `reason` of a corrupt-record error.
pub(crate) type ReadError = &'static str;

/// A cursor that never reads past its slice and never panics.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, position: 0 }
    }

    pub(crate) fn position(&self) -> usize {
        self.position
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.position
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// Bytes between two positions this reader has passed.
    pub(crate) fn slice(&self, start: usize, end: usize) -> &'a [u8] {
        debug_assert!(start <= end && end <= self.position);
        self.buf.get(start..end).unwrap_or_default()
    }

    pub(crate) fn read_u8(&mut self) -> Result<u8, ReadError> {
        let byte = *self.buf.get(self.position).ok_or("ends inside a field")?;
        self.position += 1;
        Ok(byte)
    }

    pub(crate) fn read_bytes(&mut self, len: usize) -> Result<&'a [u8], ReadError> {
        let end = self
            .position
            .checked_add(len)
            .ok_or("a length exceeds the data")?;
        let bytes = self
            .buf
            .get(self.position..end)
            .ok_or("a length exceeds the data")?;
        self.position = end;
        Ok(bytes)
    }

    fn read_unsigned(&mut self, bytes_max: u32) -> Result<u64, ReadError> {
        let mut value = 0u64;
        for index in 0..bytes_max {
            let byte = self.read_u8()?;
            value |= u64::from(byte & 0x7f) << (7 * index);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("a varint is longer than its maximum size")
    }

    /// The next varint when it takes one or two bytes: the common case of
    /// record lengths, deltas and value lengths below 8 KiB, decoded without
    /// the general loop.
    #[inline]
    fn take_short(&mut self) -> Option<u16> {
        let first = *self.buf.get(self.position)?;
        if first < 0x80 {
            self.position += 1;
            return Some(u16::from(first));
        }
        let second = *self.buf.get(self.position + 1)?;
        if second >= 0x80 {
            return None;
        }
        self.position += 2;
        Some(u16::from(first & 0x7f) | (u16::from(second) << 7))
    }

    #[inline]
    pub(crate) fn read_varint(&mut self) -> Result<i32, ReadError> {
        if let Some(raw) = self.take_short() {
            return Ok(zigzag_decode_32(u32::from(raw)));
        }
        let raw = self.read_unsigned(5)?;
        let raw = u32::try_from(raw).map_err(|_| "a varint overflows 32 bits")?;
        Ok(zigzag_decode_32(raw))
    }

    #[inline]
    pub(crate) fn read_varlong(&mut self) -> Result<i64, ReadError> {
        if let Some(raw) = self.take_short() {
            return Ok(zigzag_decode_64(u64::from(raw)));
        }
        // The 10th byte may carry only the top bit of a 64-bit value.
        let start = self.position;
        let raw = self.read_unsigned(10)?;
        if self.position - start == 10 && self.buf.get(self.position - 1).copied().unwrap_or(0) > 1
        {
            return Err("a varlong overflows 64 bits");
        }
        Ok(zigzag_decode_64(raw))
    }

    /// A varint length that is -1 (null) or a count of following bytes.
    pub(crate) fn read_nullable_bytes(&mut self) -> Result<Option<&'a [u8]>, ReadError> {
        let len = self.read_varint()?;
        if len == -1 {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| "a length is negative")?;
        self.read_bytes(len).map(Some)
    }
}

fn zigzag_decode_32(raw: u32) -> i32 {
    ((raw >> 1) as i32) ^ -((raw & 1) as i32)
}

fn zigzag_decode_64(raw: u64) -> i64 {
    ((raw >> 1) as i64) ^ -((raw & 1) as i64)
}

fn zigzag_encode_64(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

/// Bytes taken by a zigzag varint (32-bit) or varlong (64-bit) of `value`.
#[inline]
pub(crate) fn varlong_len(value: i64) -> usize {
    let raw = zigzag_encode_64(value);
    if raw < 0x80 {
        return 1;
    }
    // 1 byte per started 7 bits; a zero value still takes one byte.
    let bits = 64 - (raw | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

#[inline]
pub(crate) fn varint_len(value: i32) -> usize {
    varlong_len(i64::from(value))
}

/// Appends the zigzag varlong encoding of `value` (also right for 32-bit
/// varints: zigzag of an `i32` widened to `i64` is the same number).
#[inline]
pub(crate) fn put_varlong(out: &mut Vec<u8>, value: i64) {
    let mut raw = zigzag_encode_64(value);
    while raw >= 0x80 {
        out.push((raw as u8) | 0x80);
        raw >>= 7;
    }
    out.push(raw as u8);
}

#[inline]
pub(crate) fn put_varint(out: &mut Vec<u8>, value: i32) {
    put_varlong(out, i64::from(value));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip_64(value: i64) {
        let mut out = Vec::new();
        put_varlong(&mut out, value);
        assert_eq!(out.len(), varlong_len(value), "length of {value}");
        let mut reader = Reader::new(&out);
        assert_eq!(reader.read_varlong(), Ok(value));
        assert!(reader.is_empty());
    }

    #[test]
    fn varlongs_round_trip_at_the_edges() {
        for value in [
            0,
            1,
            -1,
            63,
            -64,
            64,
            -65,
            i64::from(i32::MAX),
            i64::MIN,
            i64::MAX,
        ] {
            round_trip_64(value);
        }
    }

    #[test]
    fn varints_match_kafka_encoding() {
        // Values from Kafka's ByteUtilsTest.
        let cases: [(i32, &[u8]); 5] = [
            (0, &[0x00]),
            (-1, &[0x01]),
            (1, &[0x02]),
            (i32::MAX, &[0xfe, 0xff, 0xff, 0xff, 0x0f]),
            (i32::MIN, &[0xff, 0xff, 0xff, 0xff, 0x0f]),
        ];
        for (value, bytes) in cases {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(out, bytes, "encoding of {value}");
            assert_eq!(Reader::new(bytes).read_varint(), Ok(value));
        }
    }

    #[test]
    fn short_varints_decode_at_the_one_and_two_byte_edges() {
        for value in [0, -1, 63, -64, 64, -65, 8191, -8192, 8192, -8193] {
            round_trip_64(value);
            let mut out = Vec::new();
            put_varint(&mut out, value as i32);
            let mut reader = Reader::new(&out);
            assert_eq!(reader.read_varint(), Ok(value as i32));
            assert!(reader.is_empty());
        }
        // A two-byte prefix of a longer varint is not taken as a short one.
        assert_eq!(
            Reader::new(&[0x80, 0x80]).read_varint(),
            Err("ends inside a field")
        );
    }

    #[test]
    fn overlong_and_truncated_varints_are_errors() {
        assert!(Reader::new(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x01])
            .read_varint()
            .is_err());
        assert!(Reader::new(&[0xff, 0xff, 0xff, 0xff, 0x1f])
            .read_varint()
            .is_err());
        assert!(Reader::new(&[0x80]).read_varint().is_err());
        assert!(Reader::new(&[0xff; 10]).read_varlong().is_err());
        assert!(Reader::new(&[]).read_varlong().is_err());
    }
}
