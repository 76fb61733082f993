//! Kafka's default partitioning, so a key lands on the same partition as it
//! would with the Java client: `to_positive(murmur2(key)) % partitions`.
//! Records without a key stick to one partition until its batch is sent.

/// Kafka's murmur2 (the Java client's `Utils.murmur2`), seed `0x9747b28c`.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let length = data.len();
    // Java hashes the length as an int; keys are far below 2^31 bytes.
    let mut h: u32 = SEED ^ (length as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// Kafka's `Utils.toPositive`: clears the sign bit (not `abs`, which
/// overflows on `i32::MIN`).
pub fn to_positive(n: i32) -> u32 {
    (n & 0x7fff_ffff) as u32
}

/// The partition of `key` among `partitions` (at least 1).
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    debug_assert!(partitions > 0);
    to_positive(murmur2(key)) % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Java client's `UtilsTest.testMurmur2` vectors (also what the
    /// Python port in kafka-python computes).
    #[test]
    fn murmur2_matches_the_java_client() {
        let cases: [(&[u8], i32); 9] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
            (b"", 275_646_681),
            (b"key-1", 193_331_640),
            (b"\xff\xfe\x80", -160_726_397),
        ];
        for (key, expected) in cases {
            assert_eq!(murmur2(key), expected, "key {key:?}");
        }
    }

    #[test]
    fn partition_matches_the_java_client() {
        let cases: [(&[u8], u32); 6] = [
            (b"21", 3),
            (b"foobar", 0),
            (b"a-little-bit-long-string", 1),
            (b"abc", 4),
            (b"key-1", 5),
            (b"\xff\xfe\x80", 3),
        ];
        for (key, expected) in cases {
            assert_eq!(partition_for_key(key, 7), expected, "key {key:?}");
        }
    }

    #[test]
    fn to_positive_clears_only_the_sign_bit() {
        assert_eq!(to_positive(i32::MIN), 0);
        assert_eq!(to_positive(-1), 0x7fff_ffff);
        assert_eq!(to_positive(5), 5);
    }
}
