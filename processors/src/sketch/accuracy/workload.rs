//! Streams to measure sketches on: seeded Zipf streams or the lines of a file, interned to dense
//! key ids with their exact counts alongside.

mod builder;

use std::io::{self, Write};

use super::super::SketchError;

pub use builder::WorkloadBuilder;

/// Most distinct keys a workload may have (ids are `u32`).
pub const KEYS_MAX: u64 = 1 << 31;

/// A stream of keys with the exact count of every distinct key.
#[derive(Debug, Clone)]
pub struct Workload {
    name: String,
    /// Distinct keys, concatenated; key `id` is `key_bytes[key_offsets[id]..key_offsets[id + 1]]`.
    key_bytes: Vec<u8>,
    key_offsets: Vec<usize>,
    /// The stream, materialized as concatenated key bytes so that feeding a sketch reads memory
    /// sequentially, as a consumer reading records would; event `i` ends at `event_ends[i]`.
    event_bytes: Vec<u8>,
    event_ends: Vec<usize>,
    /// Exact count per key id.
    counts: Vec<u64>,
}

impl Workload {
    /// `events` draws from a Zipf(`skew`) law over `keys` keys named `k1`, `k2`, … (`k1` the most
    /// frequent), reproducible from `seed`.
    pub fn zipf(keys: u64, events: u64, skew: f64, seed: u64) -> Result<Self, SketchError> {
        if keys == 0 {
            return Err(SketchError::Zero {
                what: "number of keys",
            });
        }
        if keys > KEYS_MAX {
            return Err(SketchError::TooLarge {
                name: "number of keys",
                value: keys,
                max: KEYS_MAX,
            });
        }
        if events == 0 {
            return Err(SketchError::Zero {
                what: "number of events",
            });
        }
        let sampler = ZipfSampler::new(keys, skew)?;
        let mut rng = Xoshiro256::seed(seed ^ skew.to_bits());
        let mut key_bytes = Vec::with_capacity(keys as usize * 8);
        let mut key_offsets = Vec::with_capacity(keys as usize + 1);
        key_offsets.push(0);
        for rank in 1..=keys {
            write!(key_bytes, "k{rank}").map_err(|_| SketchError::InvalidParameter {
                name: "number of keys",
                reason: "key names do not fit in memory".to_string(),
            })?;
            key_offsets.push(key_bytes.len());
        }
        let events_len = usize::try_from(events).map_err(|_| SketchError::TooLarge {
            name: "number of events",
            value: events,
            max: usize::MAX as u64,
        })?;
        let mut workload = Self {
            name: format!("zipf s={skew}"),
            key_bytes,
            key_offsets,
            event_bytes: Vec::with_capacity(events_len.saturating_mul(8)),
            event_ends: Vec::with_capacity(events_len),
            counts: vec![0u64; keys as usize],
        };
        for _ in 0..events_len {
            workload.push_event((sampler.sample(&mut rng) - 1) as u32);
        }
        Ok(workload)
    }

    /// A workload of the given keys in order (one event each), named `name`.
    pub fn from_keys<'a>(
        name: impl Into<String>,
        keys: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Self, SketchError> {
        let mut builder = WorkloadBuilder::new(name);
        for key in keys {
            builder.push(key)?;
        }
        builder.finish()
    }

    fn push_event(&mut self, id: u32) {
        self.counts[id as usize] += 1;
        let start = self.key_offsets[id as usize];
        let end = self.key_offsets[id as usize + 1];
        self.event_bytes
            .extend_from_slice(&self.key_bytes[start..end]);
        self.event_ends.push(self.event_bytes.len());
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of events (N).
    pub fn total(&self) -> u64 {
        self.event_ends.len() as u64
    }

    /// Number of distinct keys in the key space (some may not occur in a Zipf stream).
    pub fn distinct(&self) -> usize {
        self.counts.len()
    }

    /// Key `id`'s bytes.
    #[inline]
    pub fn key(&self, id: u32) -> &[u8] {
        let id = id as usize;
        match (self.key_offsets.get(id), self.key_offsets.get(id + 1)) {
            (Some(&start), Some(&end)) => &self.key_bytes[start..end],
            _ => &[],
        }
    }

    /// The exact count of key `id`.
    pub fn count(&self, id: u32) -> u64 {
        self.counts.get(id as usize).copied().unwrap_or(0)
    }

    /// The stream's keys, in order.
    pub fn events(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.event_ends.iter().scan(0usize, |start, &end| {
            let key = self.event_bytes.get(*start..end).unwrap_or(&[]);
            *start = end;
            Some(key)
        })
    }

    /// Mean length of the distinct keys, to size key buffers.
    pub fn mean_key_bytes(&self) -> usize {
        self.key_bytes.len().div_ceil(self.counts.len().max(1))
    }

    /// Key ids that occur, largest exact count first (ties by id).
    pub fn ids_by_count(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = (0..self.counts.len() as u32)
            .filter(|&id| self.count(id) > 0)
            .collect();
        ids.sort_unstable_by(|&a, &b| self.count(b).cmp(&self.count(a)).then(a.cmp(&b)));
        ids
    }

    /// Writes the stream, one key per line.
    pub fn write_lines(&self, out: &mut impl Write) -> io::Result<()> {
        for key in self.events() {
            out.write_all(key)?;
            out.write_all(b"\n")?;
        }
        Ok(())
    }
}

/// Zipf sampler by rejection-inversion (Hörmann and Derflinger 1996): O(1) expected per sample
/// with no table, for any exponent > 0 and up to 2^31 elements. P(k) ∝ k^−s for k in 1..=n.
#[derive(Debug, Clone)]
pub struct ZipfSampler {
    n: f64,
    exponent: f64,
    h_integral_x1: f64,
    h_integral_n: f64,
    s: f64,
}

impl ZipfSampler {
    pub fn new(n: u64, exponent: f64) -> Result<Self, SketchError> {
        if !(exponent > 0.0 && exponent.is_finite()) {
            return Err(SketchError::InvalidParameter {
                name: "Zipf skew",
                reason: format!("must be a positive number, got {exponent}"),
            });
        }
        if n == 0 {
            return Err(SketchError::Zero {
                what: "number of Zipf elements",
            });
        }
        let mut sampler = Self {
            n: n as f64,
            exponent,
            h_integral_x1: 0.0,
            h_integral_n: 0.0,
            s: 0.0,
        };
        sampler.h_integral_x1 = sampler.h_integral(1.5) - 1.0;
        sampler.h_integral_n = sampler.h_integral(sampler.n + 0.5);
        sampler.s = 2.0 - sampler.h_integral_inverse(sampler.h_integral(2.5) - sampler.h(2.0));
        Ok(sampler)
    }

    /// A value in `1..=n`.
    pub fn sample(&self, rng: &mut Xoshiro256) -> u64 {
        loop {
            let u = self.h_integral_n + rng.next_f64() * (self.h_integral_x1 - self.h_integral_n);
            let x = self.h_integral_inverse(u);
            let k = (x + 0.5).floor().clamp(1.0, self.n);
            if k - x <= self.s || u >= self.h_integral(k + 0.5) - self.h(k) {
                return k as u64;
            }
        }
    }

    fn h(&self, x: f64) -> f64 {
        (-self.exponent * x.ln()).exp()
    }

    fn h_integral(&self, x: f64) -> f64 {
        let log_x = x.ln();
        helper2((1.0 - self.exponent) * log_x) * log_x
    }

    fn h_integral_inverse(&self, x: f64) -> f64 {
        let t = (x * (1.0 - self.exponent)).max(-1.0);
        (helper1(t) * x).exp()
    }
}

/// ln(1 + x) / x, accurate near 0.
fn helper1(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.ln_1p() / x
    } else {
        1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x))
    }
}

/// (e^x − 1) / x, accurate near 0.
fn helper2(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.exp_m1() / x
    } else {
        1.0 + x * 0.5 * (1.0 + x / 3.0 * (1.0 + 0.25 * x))
    }
}

/// xoshiro256++ seeded through SplitMix64: small, fast, and the same sequence on every platform
/// and version, so a seed names a stream for good.
#[derive(Debug, Clone)]
pub struct Xoshiro256 {
    state: [u64; 4],
}

impl Xoshiro256 {
    pub fn seed(seed: u64) -> Self {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        Self {
            state: [next(), next(), next(), next()],
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.state;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_frequencies_follow_the_law() {
        for skew in [0.8, 1.0, 1.5] {
            let n = 50u64;
            let sampler = ZipfSampler::new(n, skew).unwrap();
            let mut rng = Xoshiro256::seed(3);
            let draws = 400_000;
            let mut counts = vec![0u64; n as usize + 1];
            for _ in 0..draws {
                counts[sampler.sample(&mut rng) as usize] += 1;
            }
            let norm: f64 = (1..=n).map(|k| (k as f64).powf(-skew)).sum();
            for k in [1usize, 2, 5, 20, 50] {
                let expected = draws as f64 * (k as f64).powf(-skew) / norm;
                let observed = counts[k] as f64;
                assert!(
                    (observed - expected).abs() < 5.0 * expected.sqrt() + 5.0,
                    "s={skew} k={k}: {observed} vs {expected}"
                );
            }
        }
    }

    #[test]
    fn zipf_workload_is_reproducible_and_counted() {
        let a = Workload::zipf(1000, 5000, 1.2, 9).unwrap();
        let b = Workload::zipf(1000, 5000, 1.2, 9).unwrap();
        assert!(a.events().eq(b.events()));
        assert_eq!(a.events().count(), 5000);
        assert_eq!((0..1000).map(|id| a.count(id)).sum::<u64>(), 5000);
        assert_eq!(a.key(0), b"k1");
        assert_eq!(a.ids_by_count()[0], 0);
    }

    #[test]
    fn keys_are_interned_with_exact_counts() {
        let lines: [&[u8]; 5] = [b"a", b"b", b"a", b"", b"a"];
        let workload = Workload::from_keys("t", lines).unwrap();
        assert_eq!(workload.distinct(), 3);
        assert_eq!(workload.count(0), 3);
        assert_eq!(workload.key(2), b"");
        assert!(matches!(
            Workload::from_keys("t", std::iter::empty()),
            Err(SketchError::Zero { .. })
        ));
    }
}
