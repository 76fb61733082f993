//! A topic's traffic counters: bytes and records produced and fetched, per
//! listener. They live in an `Arc` next to the topic (`Topic::metrics`), so a
//! request that already holds the topic counts with a few atomic adds and
//! no lookup; the scrape reads them from the topic map, so a deleted topic's
//! series disappear with it.

use std::sync::atomic::{AtomicU64, Ordering};

use super::Listener;

#[derive(Debug, Default)]
pub(crate) struct TopicMetrics {
    traffic: [Traffic; 2],
}

#[derive(Debug, Default)]
struct Traffic {
    bytes_in: AtomicU64,
    records_in: AtomicU64,
    bytes_out: AtomicU64,
    records_out: AtomicU64,
}

/// One listener's totals, as read by a scrape.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TrafficTotals {
    pub bytes_in: u64,
    pub records_in: u64,
    pub bytes_out: u64,
    pub records_out: u64,
}

impl TopicMetrics {
    /// An append of `bytes` of batches holding `records` records succeeded.
    /// As Kafka's `BytesInPerSec` and `MessagesInPerSec`, a retry answered as
    /// a duplicate counts too: the bytes came in and were answered.
    pub(crate) fn produced(&self, listener: Listener, bytes: usize, records: u64) {
        let traffic = &self.traffic[listener.index()];
        traffic.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
        traffic.records_in.fetch_add(records, Ordering::Relaxed);
    }

    /// A fetch response carries `batches` (whole stored batches) of this
    /// topic. Records are counted from the batch headers, one step per batch;
    /// a fetch from inside a batch sends, and counts, the whole batch.
    pub(crate) fn fetched(&self, listener: Listener, batches: &[u8]) {
        if batches.is_empty() {
            return;
        }
        let records: u64 = weir_log::batch::batches(batches)
            .map_while(Result::ok)
            .map(|(header, _)| u64::try_from(header.record_count).unwrap_or(0))
            .sum();
        let traffic = &self.traffic[listener.index()];
        traffic
            .bytes_out
            .fetch_add(batches.len() as u64, Ordering::Relaxed);
        traffic.records_out.fetch_add(records, Ordering::Relaxed);
    }

    pub(crate) fn totals(&self, listener: Listener) -> TrafficTotals {
        let traffic = &self.traffic[listener.index()];
        TrafficTotals {
            bytes_in: traffic.bytes_in.load(Ordering::Relaxed),
            records_in: traffic.records_in.load(Ordering::Relaxed),
            bytes_out: traffic.bytes_out.load(Ordering::Relaxed),
            records_out: traffic.records_out.load(Ordering::Relaxed),
        }
    }
}

/// The records of an append, from the offsets the log gave it: offsets are
/// assigned one per record without gaps, so the count is exact.
pub(crate) fn appended_records(base_offset: u64, last_offset: u64) -> u64 {
    debug_assert!(last_offset >= base_offset);
    last_offset.saturating_sub(base_offset) + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_log::batch::{BatchBuilder, Compression};

    fn batch(records: usize) -> bytes::Bytes {
        let mut builder = BatchBuilder::new(Compression::None);
        for i in 0..records {
            builder.push(i as i64, None, Some(b"value"), &[]);
        }
        builder.build().unwrap()
    }

    #[test]
    fn fetched_counts_every_record_of_every_batch_and_each_listener_apart() {
        let metrics = TopicMetrics::default();
        let mut two = batch(3).to_vec();
        two.extend_from_slice(&batch(4));
        metrics.fetched(Listener::Kafka, &two);
        metrics.produced(Listener::Grpc, 100, 7);
        assert_eq!(
            metrics.totals(Listener::Kafka),
            TrafficTotals {
                bytes_out: two.len() as u64,
                records_out: 7,
                ..TrafficTotals::default()
            }
        );
        assert_eq!(
            metrics.totals(Listener::Grpc),
            TrafficTotals {
                bytes_in: 100,
                records_in: 7,
                ..TrafficTotals::default()
            }
        );
    }
}
