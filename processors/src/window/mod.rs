//! Event-time windows: which windows a record belongs to, when a window closes, and
//! the aggregates kept per key and window until it does.
//!
//! Time is decided here, once, for every operator:
//! - A window is `[start_ms, end_ms)` of event time (record timestamps, or what a
//!   closure extracts).
//! - The watermark ([`WatermarkTracker`], and a pipeline's window stage by default) is
//!   the minimum over the input partitions a worker owns of the largest event time seen
//!   on each; a partition idle for `idle_timeout` stops holding it back, and when every
//!   partition is idle stream time moves on with the wall clock, so windows of a quiet
//!   topic still close. [`StreamTime::PerPartition`] applies the same rule to each
//!   partition alone.
//! - A window closes when the watermark reaches its end plus the allowed lateness;
//!   its result is emitted then ([`EmitMode::OnClose`], the default) or at every update
//!   ([`EmitMode::OnUpdate`]).
//! - A record all of whose windows have closed is late: counted and handed back to the
//!   caller (for a side topic), never dropped silently.
//!
//! A store's state also turns into bytes and back ([`Snapshot`]), for a changelog.
//!
//! Does not own: reading topics, partitions moving between workers, or where state
//! checkpoints are written.

mod aggregate;
mod session;
mod snapshot;
mod top_k;
mod watermark;

pub use aggregate::{
    AddOutcome, Aggregator, Count, EmitMode, Fold, WindowResult, WindowedAggregate,
};
pub use session::SessionAggregate;
pub use snapshot::{json_keys, KeyCodec, Snapshot, SnapshotError};
pub use top_k::{default_budget_bytes, RankedKey, TopKAcc, TopKAggregator, TopKKey};
pub(crate) use watermark::{stream_time, PartitionTime};
pub use watermark::{StreamTime, WatermarkTracker};

use std::time::Duration;

/// A window of event time, `[start_ms, end_ms)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Window {
    pub start_ms: i64,
    pub end_ms: i64,
}

/// How records are grouped in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowSpec {
    /// Fixed, non-overlapping windows of `size_ms`, aligned to the epoch.
    Tumbling { size_ms: i64 },
    /// Windows of `size_ms` starting every `advance_ms` (aligned to the epoch); a
    /// record belongs to `size_ms / advance_ms` of them.
    Hopping { size_ms: i64, advance_ms: i64 },
    /// The last `size_ms` of event time, re-evaluated every `slide_ms`: windows of
    /// `size_ms` ending at every multiple of `slide_ms`. Kept as a ring of
    /// `size_ms / slide_ms` panes of `slide_ms`, merged when a window is emitted, so
    /// an update touches one pane instead of every window.
    Sliding { size_ms: i64, slide_ms: i64 },
    /// Per key, records closer than `gap_ms` to each other share a window, which
    /// ends `gap_ms` after its last record (a session).
    Session { gap_ms: i64 },
}

/// A window specification that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid window: {0}")]
pub struct InvalidWindow(String);

fn ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

impl WindowSpec {
    pub fn tumbling(size: Duration) -> WindowSpec {
        WindowSpec::Tumbling { size_ms: ms(size) }
    }

    pub fn hopping(size: Duration, advance: Duration) -> WindowSpec {
        WindowSpec::Hopping {
            size_ms: ms(size),
            advance_ms: ms(advance),
        }
    }

    pub fn sliding(size: Duration, slide: Duration) -> WindowSpec {
        WindowSpec::Sliding {
            size_ms: ms(size),
            slide_ms: ms(slide),
        }
    }

    pub fn session(gap: Duration) -> WindowSpec {
        WindowSpec::Session { gap_ms: ms(gap) }
    }

    /// Checks sizes: positive, and a hop or slide that divides the size (so every
    /// window is made of whole panes, and each record is in the same number of windows).
    pub fn validate(&self) -> Result<(), InvalidWindow> {
        let check = |what: &str, size: i64, step: i64| {
            if size <= 0 || step <= 0 {
                return Err(InvalidWindow(format!(
                    "{what}: size {size} ms and step {step} ms must be positive"
                )));
            }
            if step > size || size % step != 0 {
                return Err(InvalidWindow(format!(
                    "{what}: the step ({step} ms) must divide the size ({size} ms)"
                )));
            }
            Ok(())
        };
        match *self {
            WindowSpec::Tumbling { size_ms } => check("tumbling window", size_ms, size_ms),
            WindowSpec::Hopping {
                size_ms,
                advance_ms,
            } => check("hopping window", size_ms, advance_ms),
            WindowSpec::Sliding { size_ms, slide_ms } => check("sliding window", size_ms, slide_ms),
            WindowSpec::Session { gap_ms } if gap_ms > 0 => Ok(()),
            WindowSpec::Session { gap_ms } => Err(InvalidWindow(format!(
                "session window: the gap ({gap_ms} ms) must be positive"
            ))),
        }
    }

    /// The time windows `timestamp_ms` belongs to, earliest first. Sessions depend
    /// on other records and are not assigned here.
    pub fn windows_of(&self, timestamp_ms: i64) -> Vec<Window> {
        let (size, step) = match *self {
            WindowSpec::Tumbling { size_ms } => (size_ms, size_ms),
            WindowSpec::Hopping {
                size_ms,
                advance_ms,
            } => (size_ms, advance_ms),
            WindowSpec::Sliding { size_ms, slide_ms } => (size_ms, slide_ms),
            WindowSpec::Session { .. } => return Vec::new(),
        };
        let last_start = timestamp_ms.div_euclid(step) * step;
        let count = size / step;
        (0..count)
            .rev()
            .map(|i| {
                let start = last_start - i * step;
                Window {
                    start_ms: start,
                    end_ms: start.saturating_add(size),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_falls_in_size_over_step_windows_that_contain_it() {
        let spec = WindowSpec::Hopping {
            size_ms: 30,
            advance_ms: 10,
        };
        let windows = spec.windows_of(25);
        assert_eq!(
            windows,
            vec![
                Window {
                    start_ms: 0,
                    end_ms: 30
                },
                Window {
                    start_ms: 10,
                    end_ms: 40
                },
                Window {
                    start_ms: 20,
                    end_ms: 50
                },
            ]
        );
        // Negative timestamps (before the epoch) are windowed the same way.
        let windows = WindowSpec::Tumbling { size_ms: 10 }.windows_of(-1);
        assert_eq!(
            windows,
            vec![Window {
                start_ms: -10,
                end_ms: 0
            }]
        );
    }

    #[test]
    fn a_fold_of_closures_aggregates_like_a_built_in() {
        let fold = Fold {
            init: || 0u64,
            add: |acc: &mut u64, _: &str| *acc += 1,
            merge: |into: &mut u64, other: &u64| *into += other,
        };
        let spec = WindowSpec::sliding(Duration::from_millis(20), Duration::from_millis(10));
        let mut by_fold = WindowedAggregate::new(spec, 0, EmitMode::OnClose, fold).unwrap();
        let mut by_count = WindowedAggregate::new(spec, 0, EmitMode::OnClose, Count).unwrap();
        for (key, t) in [("a", 1), ("b", 5), ("a", 12), ("a", 25)] {
            by_fold.add(key, t, key);
            by_count.add(key, t, key);
        }
        let folded = by_fold.advance(i64::MAX);
        assert_eq!(folded, by_count.advance(i64::MAX));
        let a_at_20: Vec<u64> = folded
            .iter()
            .filter(|r| r.key == "a" && r.window.end_ms == 20)
            .map(|r| r.value)
            .collect();
        assert_eq!(a_at_20, vec![2], "[0, 20) holds a@1 and a@12");
    }

    #[test]
    fn steps_that_do_not_divide_the_size_are_refused() {
        assert!(
            WindowSpec::hopping(Duration::from_secs(10), Duration::from_secs(3))
                .validate()
                .is_err()
        );
        assert!(
            WindowSpec::sliding(Duration::from_secs(300), Duration::from_secs(10))
                .validate()
                .is_ok()
        );
        assert!(WindowSpec::session(Duration::ZERO).validate().is_err());
    }
}
