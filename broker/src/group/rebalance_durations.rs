//! How long a group's rebalances pause it: from the group-epoch bump that starts one
//! until every member holds its target assignment again (the group is `Stable`), for
//! `weir_consumer_group_rebalance_duration_seconds`.
//!
//! Bumps that come while a rebalance is under way (a third member joining before the
//! second is assigned) extend it: the pause is measured from the first. A rebalance that
//! ends with the group empty paused no one and is not counted. Kept in memory only: a
//! coordinator rebuilt from `__consumer_offsets` starts from none, and a rebalance under
//! way when it was rebuilt is not counted.

/// Finite bucket bounds in milliseconds: from a rebalance that ends in the joining
/// member's own heartbeat to one held up for `max.poll.interval.ms` (5 minutes) by a
/// member slow to give partitions up.
pub const REBALANCE_BUCKET_BOUNDS_MS: [i64; 8] =
    [10, 50, 250, 1_000, 5_000, 15_000, 60_000, 300_000];

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RebalanceDurations {
    /// When the rebalance under way started; `None` while the group is settled.
    started_ms: Option<i64>,
    /// Completed rebalances per bucket (not cumulative); the last is +Inf.
    counts: [u64; REBALANCE_BUCKET_BOUNDS_MS.len() + 1],
    sum_ms: u64,
}

impl RebalanceDurations {
    /// The group epoch moved: a rebalance starts, unless one is under way.
    pub fn started(&mut self, now_ms: i64) {
        self.started_ms.get_or_insert(now_ms);
    }

    /// The group settled: every member holds its target (`stable`), or no member is left.
    pub fn settled(&mut self, now_ms: i64, stable: bool) {
        let Some(started_ms) = self.started_ms.take() else {
            return;
        };
        if !stable {
            return;
        }
        // The coordinator's clock is the wall clock, which may step back.
        let duration_ms = now_ms.saturating_sub(started_ms).max(0);
        let index = REBALANCE_BUCKET_BOUNDS_MS
            .iter()
            .position(|&bound| duration_ms <= bound)
            .unwrap_or(REBALANCE_BUCKET_BOUNDS_MS.len());
        self.counts[index] += 1;
        self.sum_ms = self.sum_ms.saturating_add(duration_ms as u64);
    }

    pub fn in_progress(&self) -> bool {
        self.started_ms.is_some()
    }

    /// Completed rebalances.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    pub fn sum_ms(&self) -> u64 {
        self.sum_ms
    }

    /// Completed rebalances per bucket, not cumulative, the last one +Inf.
    pub fn bucket_counts(&self) -> &[u64] {
        &self.counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rebalance_counts_once_from_its_first_bump_and_an_emptied_group_counts_none() {
        let mut d = RebalanceDurations::default();
        d.started(100);
        d.started(130);
        assert!(d.in_progress());
        d.settled(160, true);
        assert_eq!((d.count(), d.sum_ms()), (1, 60));
        assert_eq!(d.bucket_counts()[2], 1, "60 ms is in the 250 ms bucket");
        d.settled(200, true);
        assert_eq!(d.count(), 1, "nothing was under way");
        d.started(300);
        d.settled(400, false);
        assert_eq!((d.count(), d.sum_ms()), (1, 60));
        assert!(!d.in_progress());
        d.started(0);
        d.settled(600_000, true);
        assert_eq!(d.bucket_counts()[REBALANCE_BUCKET_BOUNDS_MS.len()], 1);
    }
}
