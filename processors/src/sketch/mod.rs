//! Sketches: approximate counts and heavy hitters in bounded memory, mergeable across partitions
//! and window slices.
//!
//! - [`CountMinSketch`]: per-key count estimates that never fall below the true count; plain or
//!   conservative update; serializable.
//! - [`TopK`]: the k heaviest keys, tracked in an indexed min-heap over a count-min sketch.
//! - [`SpaceSaving`]: the stream-summary of Metwally et al., with a deterministic error bound.
//!
//! [`TopK`] and [`SpaceSaving`] implement [`HeavyHitters`], so operators and SQL functions take
//! either.
//!
//! # Merging
//! - Count-min sketches of one shape merge **exactly**: the sum of plain sketches of two streams is
//!   bit-for-bit the plain sketch of their concatenation.
//! - [`TopK`] merges its sketches exactly and **re-ranks** the union of both candidate sets by the
//!   merged estimates; a key that was in neither heap cannot come back, so the merged top-k is
//!   approximate.
//! - [`SpaceSaving`] merges **approximately**, as in Agarwal et al., "Mergeable Summaries"
//!   (PODS 2012): counts are added (a key missing from a full summary counts that summary's minimum,
//!   as an upper bound and as error), then the largest `capacity` are kept. The bound
//!   `count − error ≤ true ≤ count` still holds, and error stays within N/capacity.

mod cms;
mod cms_codec;
mod error;
mod key_arena;
mod murmur3;
mod space_saving;
mod topk;

pub mod accuracy;

pub use cms::{CountMinSketch, KeyHash, UpdateRule, COUNTERS_MAX, DEPTH_MAX};
pub use cms_codec::HEADER_BYTES as CMS_HEADER_BYTES;
pub use error::{DecodeError, SketchError};
pub use key_arena::KEY_BYTES_MAX;
pub use murmur3::murmur3_x64_128;
pub use space_saving::SpaceSaving;
pub use topk::TopK;

/// A key reported as heavy, with its estimated count.
///
/// The true count lies in `count - error ..= count`. For [`SpaceSaving`] that bound is certain;
/// for [`TopK`], `error` is the count-min bound ε·N, which holds with probability 1 − δ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeavyHitter {
    pub key: Vec<u8>,
    pub count: u64,
    pub error: u64,
}

/// An algorithm that finds the heaviest keys of a stream in bounded memory.
pub trait HeavyHitters {
    /// Counts `count` more occurrences of `key`.
    fn update(&mut self, key: &[u8], count: u64);

    /// Up to `k` keys with the largest estimated counts, largest first (ties by key).
    fn top(&self, k: usize) -> Vec<HeavyHitter>;

    /// An estimate of `key`'s count that is never below its true count.
    fn estimate(&self, key: &[u8]) -> u64;

    /// Bytes the structure occupies, allocations included.
    fn memory_bytes(&self) -> usize;

    /// Folds `other` (a summary of another partition or time slice) into this one.
    fn merge(&mut self, other: &Self) -> Result<(), SketchError>
    where
        Self: Sized;
}

/// Orders heavy hitters largest count first, then by key, so reports are deterministic.
fn sort_heavy_hitters(hitters: &mut [HeavyHitter]) {
    hitters.sort_unstable_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
}
