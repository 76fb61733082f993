//! Sketches: approximate counts and heavy hitters in bounded memory, mergeable across partitions
//! and window slices.
//!
//! - [`CountMinSketch`]: per-key count estimates that never fall below the true count; plain or
//!   conservative update; serializable.
//! - [`TopK`]: the k heaviest keys, tracked in an indexed min-heap over a count-min sketch.
//! - [`SpaceSaving`]: the stream-summary of Metwally et al., with a deterministic error bound.
//! - [`FrequentItems`]: Misra-Gries counters with a reverse purge (as DataSketches' frequent
//!   items) in a memory budget that includes the keys, with certain lower and upper bounds;
//!   serializable.
//! - [`HeavyKeeper`]: count with exponential-weakening decay (Gong et al.) over 32-bit key
//!   fingerprints, in front of a heap of the k heaviest keys; the most accurate per byte.
//!
//! [`FrequentItems`], [`TopK`], [`SpaceSaving`] and [`HeavyKeeper`] implement [`HeavyHitters`], so operators and SQL
//! functions take any of them.
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
//! - [`FrequentItems`] merges as DataSketches does: the other's counts are added as updates (which
//!   may purge), then its offset; bounds stay certain for the union, of sketches of any size.
//! - [`HeavyKeeper`] adds its buckets (same fingerprint: counts add; different: the larger stays)
//!   and re-ranks the union of both tracked sets by summed estimates (approximate).

mod cms;
mod cms_codec;
mod error;
mod frequent_items;
mod frequent_slot;
mod heavy_keeper;
mod key_arena;
mod key_heap;
mod key_log;
mod murmur3;
mod space_saving;
mod topk;

pub mod accuracy;

pub use cms::{CountMinSketch, KeyHash, UpdateRule, COUNTERS_MAX, DEPTH_MAX};
pub use cms_codec::HEADER_BYTES as CMS_HEADER_BYTES;
pub use error::{DecodeError, SketchError};
pub use frequent_items::{FrequentItem, FrequentItems};
pub use heavy_keeper::{HeavyKeeper, DECAY_BASE};
pub use key_arena::KEY_BYTES_MAX;
pub use murmur3::murmur3_x64_128;
pub use space_saving::SpaceSaving;
pub use topk::TopK;

/// A key reported as heavy, with its estimated count.
///
/// For [`SpaceSaving`] and [`TopK`] the true count lies in `count - error ..= count`: certainly for
/// Space-Saving; for [`TopK`], `error` is the count-min bound ε·N, which holds with probability
/// 1 − δ. For [`HeavyKeeper`] `count` is never above the true count (fingerprint collisions aside)
/// and `count - error` was counted exactly, so the true count is at least `count`.
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

    /// Up to `k` of the heaviest keys, heaviest first: by estimated count, except that
    /// [`FrequentItems`] ranks by lower bound (see [`FrequentItems::top_k`]) and reports its
    /// upper bound as the count.
    fn top(&self, k: usize) -> Vec<HeavyHitter>;

    /// An estimate of `key`'s count. [`TopK`] and [`SpaceSaving`] never answer below the true
    /// count; [`HeavyKeeper`] never above it (fingerprint collisions aside), 0 for keys it holds
    /// nowhere.
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
