//! The watermark of a worker: how far event time has certainly come on the input
//! partitions it owns.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
struct PartitionTime {
    /// The largest event time seen; `None` before the first record.
    max_event_ms: Option<i64>,
    /// When the last record arrived (or the partition was assigned).
    last_seen: Instant,
}

/// The minimum, over the partitions a worker owns, of the largest event time seen on
/// each. A partition with no record for `idle_timeout` stops holding it back; when
/// every partition is idle, stream time moves on with the wall clock from the latest
/// event time seen, so windows of a quiet topic still close. It never goes back.
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
            .or_insert(PartitionTime {
                max_event_ms: None,
                last_seen: now,
            });
    }

    /// A partition no longer owned stops counting.
    pub fn revoke(&mut self, topic: &str, partition: u32) {
        self.partitions.remove(&(topic.to_string(), partition));
    }

    /// A record of `partition` with event time `event_ms`, arrived at `now`.
    pub fn observe(&mut self, topic: &str, partition: u32, event_ms: i64, now: Instant) {
        let time = self
            .partitions
            .entry((topic.to_string(), partition))
            .or_insert(PartitionTime {
                max_event_ms: None,
                last_seen: now,
            });
        time.max_event_ms = Some(time.max_event_ms.map_or(event_ms, |m| m.max(event_ms)));
        time.last_seen = now;
    }

    /// The watermark at `now`.
    pub fn watermark_ms(&mut self, now: Instant) -> i64 {
        let idle =
            |t: &PartitionTime| now.saturating_duration_since(t.last_seen) >= self.idle_timeout;
        let active: Vec<&PartitionTime> = self.partitions.values().filter(|t| !idle(t)).collect();
        let candidate = if !active.is_empty() {
            // An active partition with no record yet holds everything back.
            active
                .iter()
                .map(|t| t.max_event_ms.unwrap_or(i64::MIN))
                .min()
                .unwrap_or(i64::MIN)
        } else {
            // All idle: the latest event time, moved on by the wall time since it
            // arrived.
            self.partitions
                .values()
                .filter_map(|t| {
                    let waited = now.saturating_duration_since(t.last_seen);
                    let waited_ms = i64::try_from(waited.as_millis()).unwrap_or(i64::MAX);
                    t.max_event_ms.map(|m| m.saturating_add(waited_ms))
                })
                .max()
                .unwrap_or(i64::MIN)
        };
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
