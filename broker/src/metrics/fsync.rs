//! `weir_log_fsync_duration_seconds`: how long the logs' fsyncs take.
//!
//! `weir-log` times every fsync, fdatasync and msync it makes and tells one
//! process-wide observer (`weir_log::set_fsync_observer`), so the log crate
//! knows nothing of Prometheus. The observer here adds to a histogram of
//! atomics: the append path that fsyncs (`fsync = always`) takes no lock and
//! allocates nothing to be measured (`prometheus-client`'s own histogram takes
//! a lock per observation). A broker is one process, so the process's fsyncs
//! are the broker's; brokers embedded side by side in one process (tests)
//! share the histogram.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

/// Finite buckets: from 50 µs (a flash device's flush), doubling, to 6.6 s (a
/// device stalled behind writeback).
const BUCKETS: usize = 18;
const BUCKET_FIRST_NS: u64 = 50_000;

const fn bucket_bound_ns(index: usize) -> u64 {
    BUCKET_FIRST_NS << index
}

const _: () = assert!(bucket_bound_ns(BUCKETS - 1) == 6_553_600_000);

/// Counts per bucket (not cumulative; the last one is +Inf), and the sum.
struct FsyncHistogram {
    counts: [AtomicU64; BUCKETS + 1],
    sum_ns: AtomicU64,
}

static FSYNC_DURATIONS: FsyncHistogram = FsyncHistogram {
    counts: [const { AtomicU64::new(0) }; BUCKETS + 1],
    sum_ns: AtomicU64::new(0),
};

/// The observer `weir-log` calls after each fsync.
fn observe(duration: Duration) {
    let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
    let index = (0..BUCKETS)
        .find(|&index| nanos <= bucket_bound_ns(index))
        .unwrap_or(BUCKETS);
    if let Some(count) = FSYNC_DURATIONS.counts.get(index) {
        count.fetch_add(1, Ordering::Relaxed);
    }
    FSYNC_DURATIONS.sum_ns.fetch_add(nanos, Ordering::Relaxed);
}

/// Makes every log of this process report its fsyncs to the histogram. Called
/// before a broker opens its logs, so recovery's fsyncs count too; calling it
/// again changes nothing.
pub(crate) fn observe_fsyncs() {
    // `false` means an observer is already set: this one, by an earlier broker.
    let _ = weir_log::set_fsync_observer(observe);
}

/// Encodes the histogram at scrape time.
#[derive(Debug)]
pub(super) struct FsyncCollector;

impl Collector for FsyncCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut buckets = [(f64::MAX, 0u64); BUCKETS + 1];
        let mut count = 0u64;
        for (index, (bucket, observed)) in
            buckets.iter_mut().zip(&FSYNC_DURATIONS.counts).enumerate()
        {
            let observed = observed.load(Ordering::Relaxed);
            count += observed;
            if index < BUCKETS {
                bucket.0 = bucket_bound_ns(index) as f64 / 1e9;
            }
            bucket.1 = observed;
        }
        let sum_seconds = FSYNC_DURATIONS.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let mut metric = encoder.encode_descriptor(
            "weir_log_fsync_duration_seconds",
            "Time taken by each fsync, fdatasync or msync of the partition logs (segments, \
             indexes, checkpoints, directories), succeeded or failed",
            None,
            MetricType::Histogram,
        )?;
        metric.encode_histogram::<NoLabelSet>(sum_seconds, count, &buckets, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duration_lands_in_the_first_bucket_whose_bound_holds_it() {
        let before: Vec<u64> = FSYNC_DURATIONS
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        observe(Duration::from_micros(50));
        observe(Duration::from_micros(51));
        observe(Duration::from_secs(60));
        let after: Vec<u64> = FSYNC_DURATIONS
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        // Other tests of this binary may fsync at the same time: at least, not exactly.
        assert!(after[0] > before[0], "50 µs is in the first bucket");
        assert!(after[1] > before[1], "51 µs is in the second bucket");
        assert!(after[BUCKETS] > before[BUCKETS], "60 s is only in +Inf");
    }
}
