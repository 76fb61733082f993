//! Rate-limited warnings for refused connections. A flood of connections past
//! `connections_max` or `connections_max_per_ip` is refused one by one, and a
//! line per refusal would let the flood fill the log too. The first refusal
//! after a quiet [`REFUSAL_LOG_INTERVAL`] is logged at once with its peer and
//! reason; the ones within the interval after it are only counted, and the
//! next line says how many it did not log (as the kernel's `printk`
//! rate limit reports "callbacks suppressed"). So a listener writes at most one
//! refusal line per interval, however many it refuses.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most one refusal warning per listener this often.
pub(crate) const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// One listener's refusal warnings.
#[derive(Debug)]
pub(crate) struct RefusalLog {
    interval: Duration,
    state: Mutex<RefusalState>,
}

#[derive(Debug, Default)]
struct RefusalState {
    logged_at: Option<Instant>,
    /// Refusals counted but not logged since `logged_at`.
    suppressed: u64,
}

impl RefusalLog {
    pub(crate) fn new(interval: Duration) -> Self {
        RefusalLog {
            interval,
            state: Mutex::new(RefusalState::default()),
        }
    }

    /// Counts one refusal at `now`. `Some(n)` when it is to be logged, `n`
    /// being the refusals not logged since the last line; `None` when it is
    /// only counted.
    pub(crate) fn refusal(&self, now: Instant) -> Option<u64> {
        // A poisoned lock only means a panic elsewhere while counting: keep counting.
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match state.logged_at {
            Some(logged_at) if now.saturating_duration_since(logged_at) < self.interval => {
                state.suppressed += 1;
                None
            }
            _ => {
                state.logged_at = Some(now);
                Some(std::mem::take(&mut state.suppressed))
            }
        }
    }

    /// Logs the refusal of `peer` on `listener` for `reason`, unless the
    /// rate limit only counts it.
    pub(crate) fn warn(
        &self,
        listener: &'static str,
        peer: SocketAddr,
        reason: impl std::fmt::Display,
    ) {
        match self.refusal(Instant::now()) {
            None => {}
            Some(0) => tracing::warn!(listener, %peer, "refused a connection: {reason}"),
            Some(suppressed) => tracing::warn!(
                listener,
                %peer,
                suppressed,
                "refused a connection: {reason} ({suppressed} more refused since the last of \
                 these warnings, not logged)"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_refusals_logs_one_line_per_interval_and_counts_the_rest() {
        let log = RefusalLog::new(Duration::from_secs(10));
        let start = Instant::now();
        // 60,000 refusals, one a millisecond for a minute.
        let mut lines = Vec::new();
        for ms in 0..60_000u64 {
            if let Some(suppressed) = log.refusal(start + Duration::from_millis(ms)) {
                lines.push((ms, suppressed));
            }
        }
        assert_eq!(
            lines,
            vec![
                (0, 0),
                (10_000, 9_999),
                (20_000, 9_999),
                (30_000, 9_999),
                (40_000, 9_999),
                (50_000, 9_999)
            ]
        );
        // The refusals since the last line are reported by the next one.
        let later = log.refusal(start + Duration::from_secs(3_600));
        assert_eq!(later, Some(9_999));
        assert_eq!(log.refusal(start + Duration::from_secs(3_600)), None);
    }

    #[test]
    fn a_refusal_after_a_quiet_interval_is_logged_at_once_with_nothing_suppressed() {
        let log = RefusalLog::new(Duration::from_secs(10));
        let start = Instant::now();
        assert_eq!(log.refusal(start), Some(0));
        assert_eq!(log.refusal(start + Duration::from_secs(11)), Some(0));
    }
}
