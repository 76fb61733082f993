//! The watermark of a worker: how far event time has certainly come on the input
//! partitions it owns. One rule, [`stream_time`], for [`WatermarkTracker`] and for the
//! pipelines' window stages.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Which partitions a window stage's watermark is taken over.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StreamTime {
    /// The minimum over the input partitions the worker owns (as Flink takes the
    /// minimum over a task's inputs): a partition behind the others holds every
    /// window of the worker open, so none of its records is late for being read
    /// after another partition's. Which records are late then depends on which
    /// partitions share a worker and on the order they are read in.
    #[default]
    WorkerMinimum,
    /// One clock per input partition (as Kafka Streams keeps a task's stream time):
    /// a partition's windows close on its own records alone, so the results are the
    /// same however the partitions are spread over workers and read, late records
    /// included.
    PerPartition,
}

/// The event time of one input partition.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PartitionTime {
    /// The largest event time seen; `None` before the first record.
    pub max_event_ms: Option<i64>,
    /// When the last record arrived (or the partition was assigned).
    pub last_seen: Instant,
}

impl PartitionTime {
    /// A partition assigned at `now`, its time going on from `max_event_ms` if known.
    pub fn new(max_event_ms: Option<i64>, now: Instant) -> PartitionTime {
        PartitionTime {
            max_event_ms,
            last_seen: now,
        }
    }

    pub fn observe(&mut self, event_ms: i64, now: Instant) {
        self.max_event_ms = Some(self.max_event_ms.map_or(event_ms, |m| m.max(event_ms)));
        self.last_seen = now;
    }

    pub fn is_idle(&self, now: Instant, idle_timeout: Duration) -> bool {
        now.saturating_duration_since(self.last_seen) >= idle_timeout
    }
}

/// Stream time over `partitions` at `now`: the minimum of the largest event time seen
/// on each partition that had a record within `idle_timeout` (one that has had none
/// yet holds everything back, as it may hold older records); when every partition is
/// idle, the latest event time moved on by the wall time since it arrived, so windows
/// of a quiet topic still close. `i64::MIN` before anything is known. Not monotonic
/// (a partition assigned behind the others takes it back); each user keeps its own
/// watermark from never going back.
pub(crate) fn stream_time<'a>(
    partitions: impl Iterator<Item = &'a PartitionTime> + Clone,
    now: Instant,
    idle_timeout: Duration,
) -> i64 {
    let mut active = partitions
        .clone()
        .filter(|t| !t.is_idle(now, idle_timeout))
        .peekable();
    if active.peek().is_some() {
        return active
            .map(|t| t.max_event_ms.unwrap_or(i64::MIN))
            .min()
            .unwrap_or(i64::MIN);
    }
    partitions
        .filter_map(|t| {
            let waited = now.saturating_duration_since(t.last_seen);
            let waited_ms = i64::try_from(waited.as_millis()).unwrap_or(i64::MAX);
            t.max_event_ms.map(|m| m.saturating_add(waited_ms))
        })
        .max()
        .unwrap_or(i64::MIN)
}

/// The minimum, over the partitions a worker owns, of the largest event time seen on
/// each, by the rule of [`stream_time`]. It never goes back.
#[derive(Debug, Clone)]
pub struct WatermarkTracker {
    idle_timeout: Duration,
    partitions: BTreeMap<(String, u32), PartitionTime>,
    watermark_ms: i64,
}

impl WatermarkTracker {
    pub fn new(idle_timeout: Duration) -> WatermarkTracker {
        WatermarkTracker {
            idle_timeout,
            partitions: BTreeMap::new(),
            watermark_ms: i64::MIN,
        }
    }

    /// A partition now owned: until its first record (or `idle_timeout`) it holds
    /// the watermark where it is, since it may hold older records.
    pub fn assign(&mut self, topic: &str, partition: u32, now: Instant) {
        self.partitions
            .entry((topic.to_string(), partition))
            .or_insert(PartitionTime::new(None, now));
    }

    /// A partition no longer owned stops counting.
    pub fn revoke(&mut self, topic: &str, partition: u32) {
        self.partitions.remove(&(topic.to_string(), partition));
    }

    /// A record of `partition` with event time `event_ms`, arrived at `now`.
    pub fn observe(&mut self, topic: &str, partition: u32, event_ms: i64, now: Instant) {
        self.partitions
            .entry((topic.to_string(), partition))
            .or_insert(PartitionTime::new(None, now))
            .observe(event_ms, now);
    }

    /// The watermark at `now`.
    pub fn watermark_ms(&mut self, now: Instant) -> i64 {
        let candidate = stream_time(self.partitions.values(), now, self.idle_timeout);
        let before = self.watermark_ms;
        self.watermark_ms = self.watermark_ms.max(candidate);
        debug_assert!(self.watermark_ms >= before, "the watermark never goes back");
        self.watermark_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slowest_active_partition_holds_the_watermark() {
        let start = Instant::now();
        let mut tracker = WatermarkTracker::new(Duration::from_secs(10));
        tracker.assign("t", 0, start);
        tracker.assign("t", 1, start);
        tracker.observe("t", 0, 5_000, start);
        assert_eq!(
            tracker.watermark_ms(start),
            i64::MIN,
            "partition 1 has nothing yet"
        );
        tracker.observe("t", 1, 3_000, start);
        assert_eq!(tracker.watermark_ms(start), 3_000);
        tracker.observe("t", 1, 2_000, start);
        assert_eq!(
            tracker.watermark_ms(start),
            3_000,
            "out of order: no step back"
        );
    }

    #[test]
    fn an_idle_partition_stops_holding_it_and_all_idle_follow_the_wall_clock() {
        let start = Instant::now();
        let mut tracker = WatermarkTracker::new(Duration::from_secs(10));
        tracker.observe("t", 0, 5_000, start);
        tracker.observe("t", 1, 1_000, start);
        let later = start + Duration::from_secs(2);
        tracker.observe("t", 0, 9_000, later);
        assert_eq!(tracker.watermark_ms(later), 1_000);
        // Partition 1 is idle from 10 s on; partition 0 (last seen at 2 s) still active.
        let idle_one = start + Duration::from_secs(11);
        assert_eq!(tracker.watermark_ms(idle_one), 9_000);
        // Both idle at 12 s: 9 000 plus the 10 s since it arrived, and on with the clock.
        let all_idle = start + Duration::from_secs(12);
        assert_eq!(tracker.watermark_ms(all_idle), 19_000);
        assert_eq!(
            tracker.watermark_ms(all_idle + Duration::from_secs(1)),
            20_000
        );
        // A record brings the partition back; the watermark stays where it got to.
        tracker.observe("t", 1, 15_000, all_idle + Duration::from_secs(1));
        assert_eq!(
            tracker.watermark_ms(all_idle + Duration::from_secs(1)),
            20_000
        );
    }
}
