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

/// The zigzag varint at the start of `bytes` and the bytes after it; `None`
/// where [`Reader::read_varint`] would fail. Varints of up to three bytes
/// (lengths below 1 MiB, offset deltas of batches of up to a million records,
/// timestamp deltas of up to 17 minutes) take one length check each; longer
/// ones go through the reader.
#[inline(always)]
pub(crate) fn split_varint(bytes: &[u8]) -> Option<(i32, &[u8])> {
    match bytes {
        [first, rest @ ..] if *first < 0x80 => Some((zigzag_decode_32(u32::from(*first)), rest)),
        [first, second, rest @ ..] if *second < 0x80 => {
            let raw = u32::from(first & 0x7f) | (u32::from(*second) << 7);
            Some((zigzag_decode_32(raw), rest))
        }
        [first, second, third, rest @ ..] if *third < 0x80 => {
            let raw = u32::from(first & 0x7f)
                | (u32::from(second & 0x7f) << 7)
                | (u32::from(*third) << 14);
            Some((zigzag_decode_32(raw), rest))
        }
        _ => split_long(bytes, Reader::read_varint),
    }
}

/// As [`split_varint`], for a varlong ([`Reader::read_varlong`]).
#[inline(always)]
pub(crate) fn split_varlong(bytes: &[u8]) -> Option<(i64, &[u8])> {
    match bytes {
        [first, rest @ ..] if *first < 0x80 => Some((zigzag_decode_64(u64::from(*first)), rest)),
        [first, second, rest @ ..] if *second < 0x80 => {
            let raw = u64::from(first & 0x7f) | (u64::from(*second) << 7);
            Some((zigzag_decode_64(raw), rest))
        }
        [first, second, third, rest @ ..] if *third < 0x80 => {
            let raw = u64::from(first & 0x7f)
                | (u64::from(second & 0x7f) << 7)
                | (u64::from(*third) << 14);
            Some((zigzag_decode_64(raw), rest))
        }
        _ => split_long(bytes, Reader::read_varlong),
    }
}

/// A varint of three bytes or more (or a truncated or overlong one), read by
/// the reader's general loop: kept out of line so that the short paths inline.
#[cold]
#[inline(never)]
fn split_long<'a, T>(
    bytes: &'a [u8],
    read: impl FnOnce(&mut Reader<'a>) -> Result<T, ReadError>,
) -> Option<(T, &'a [u8])> {
    let mut reader = Reader::new(bytes);
    let value = read(&mut reader).ok()?;
    Some((value, bytes.get(reader.position()..)?))
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

    /// `split_varint` and `split_varlong` against the reader on `bytes`: the same value,
    /// the same bytes left, the same refusals.
    fn assert_split_reads_as_the_reader(bytes: &[u8]) {
        let mut reader = Reader::new(bytes);
        let expected = reader
            .read_varint()
            .ok()
            .map(|value| (value, &bytes[reader.position()..]));
        assert_eq!(split_varint(bytes), expected, "varint {bytes:02x?}");
        let mut reader = Reader::new(bytes);
        let expected = reader
            .read_varlong()
            .ok()
            .map(|value| (value, &bytes[reader.position()..]));
        assert_eq!(split_varlong(bytes), expected, "varlong {bytes:02x?}");
    }

    #[test]
    fn split_varints_read_as_the_reader_reads() {
        // Every one- and two-byte input, and every third byte that matters (end, no
        // continuation, continuation, top bits), then a byte left after the varint.
        let thirds = [0x00, 0x01, 0x0f, 0x10, 0x7f, 0x80, 0x8f, 0xff];
        assert_split_reads_as_the_reader(&[]);
        for first in 0..=255u8 {
            assert_split_reads_as_the_reader(&[first]);
            for second in 0..=255u8 {
                assert_split_reads_as_the_reader(&[first, second]);
                for third in thirds {
                    assert_split_reads_as_the_reader(&[first, second, third]);
                    assert_split_reads_as_the_reader(&[first, second, third, 0x2a]);
                }
            }
        }
        // Encodings of every length up to ten bytes, whole, cut short, and followed by more.
        for value in [
            1i64 << 20,
            -(1 << 20) - 1,
            (1 << 20) - 1,
            1 << 27,
            i64::from(i32::MAX),
            i64::from(i32::MIN),
            1 << 34,
            1 << 48,
            i64::MAX,
            i64::MIN,
        ] {
            let mut out = Vec::new();
            put_varlong(&mut out, value);
            for cut in 0..=out.len() {
                assert_split_reads_as_the_reader(&out[..cut]);
            }
            out.push(0x05);
            assert_split_reads_as_the_reader(&out);
        }
        // Overlong: six and eleven bytes with continuation bits.
        assert_split_reads_as_the_reader(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x01]);
        assert_split_reads_as_the_reader(&[0xff; 11]);
        assert_split_reads_as_the_reader(&[
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02,
        ]);
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
