//! MurmurHash3 x64-128, bit-for-bit the function of Python's `mmh3.hash128(key, seed, x64arch=True)`
//! and `mmh3.hash64`, so sketches built here and in Python place keys in the same counters.

const C1: u64 = 0x87c3_7b91_1142_53d5;
const C2: u64 = 0x4cf5_ad43_2745_937f;

/// Hashes `key` with MurmurHash3 x64-128 and returns `(low, high)` 64-bit halves.
///
/// `low` and `high` are what `mmh3.hash64(key, seed, signed=False)` returns; `mmh3.hash128` is
/// `low | high << 64`.
#[inline]
pub fn murmur3_x64_128(key: &[u8], seed: u32) -> (u64, u64) {
    let mut h1 = u64::from(seed);
    let mut h2 = u64::from(seed);

    let mut blocks = key.chunks_exact(16);
    for block in &mut blocks {
        let (k1, k2) = block.split_at(8);
        let k1 = u64::from_le_bytes(k1.try_into().unwrap_or([0; 8]));
        let k2 = u64::from_le_bytes(k2.try_into().unwrap_or([0; 8]));

        h1 ^= mix_k1(k1);
        h1 = h1.rotate_left(27).wrapping_add(h2);
        h1 = h1.wrapping_mul(5).wrapping_add(0x52dc_e729);

        h2 ^= mix_k2(k2);
        h2 = h2.rotate_left(31).wrapping_add(h1);
        h2 = h2.wrapping_mul(5).wrapping_add(0x3849_5ab5);
    }

    let tail = blocks.remainder();
    if tail.len() > 8 {
        h2 ^= mix_k2(le_partial(&tail[8..]));
    }
    if !tail.is_empty() {
        h1 ^= mix_k1(le_partial(&tail[..tail.len().min(8)]));
    }

    // The length is mixed in as a 64-bit value, as the reference does with `(uint64_t)len`.
    let len = key.len() as u64;
    h1 ^= len;
    h2 ^= len;
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    h1 = fmix64(h1);
    h2 = fmix64(h2);
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    (h1, h2)
}

#[inline(always)]
fn mix_k1(k1: u64) -> u64 {
    k1.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2)
}

#[inline(always)]
fn mix_k2(k2: u64) -> u64 {
    k2.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1)
}

/// Little-endian value of up to 8 trailing bytes, as the reference's fall-through `switch` builds it.
#[inline(always)]
fn le_partial(bytes: &[u8]) -> u64 {
    debug_assert!(bytes.len() <= 8);
    let mut buf = [0u8; 8];
    buf[..bytes.len()].copy_from_slice(bytes);
    u64::from_le_bytes(buf)
}

#[inline(always)]
fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}
