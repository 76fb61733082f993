//! What a listener does when `accept` fails.
//!
//! An error that belongs to one connection (reset or aborted while it waited
//! in the backlog; Linux's accept(2) also hands up the new socket's pending
//! network errors) says nothing about the listener: the next connection is
//! accepted at once, and the error is logged at debug.
//!
//! Any other error, above all running out of file descriptors (EMFILE,
//! ENFILE) or socket memory (ENOBUFS, ENOMEM), comes back at once for as long
//! as it lasts, because the connection stays in the backlog: retrying at once
//! spins a core and writes a line per try. So the listener pauses before its
//! next accept, [`ACCEPT_PAUSE_MIN`] after the first failure and twice as long
//! after each further one, up to [`ACCEPT_PAUSE_MAX`], until an accept
//! succeeds (Go's `net/http` server does the same; Kafka's acceptor only
//! logs), and warns at most once per [`REFUSAL_LOG_INTERVAL`] with the count
//! of failures it did not log (`refusal_log.rs`). Connections already open
//! keep being served meanwhile, and those that close give their descriptors
//! back.

use std::io;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::metrics::Listener;
use crate::refusal_log::{RefusalLog, REFUSAL_LOG_INTERVAL};

/// The pause after the first failure in a row.
pub(crate) const ACCEPT_PAUSE_MIN: Duration = Duration::from_millis(5);
/// The longest pause: how late a listener may notice that descriptors are
/// free again.
pub(crate) const ACCEPT_PAUSE_MAX: Duration = Duration::from_secs(1);

/// One listener's failed accepts.
#[derive(Debug)]
pub(crate) struct AcceptErrors {
    listener: Listener,
    /// The pause after the last failure; `None` since an accept succeeded.
    pause: Mutex<Option<Duration>>,
    warnings: RefusalLog,
}

impl AcceptErrors {
    pub(crate) fn new(listener: Listener) -> Self {
        AcceptErrors {
            listener,
            pause: Mutex::new(None),
            warnings: RefusalLog::new(REFUSAL_LOG_INTERVAL),
        }
    }

    /// An accept succeeded: the next failure pauses briefly again.
    pub(crate) fn accepted(&self) {
        *self.lock() = None;
    }

    /// Logs `error` (rate-limited) and says how long to wait before the
    /// next accept.
    pub(crate) fn failed(&self, error: &io::Error) -> Duration {
        let listener = self.listener.as_str();
        let (pause, logged) = self.failed_at(error, Instant::now());
        let pause_ms = pause.as_millis();
        match logged {
            _ if pause.is_zero() => {
                tracing::debug!(listener, %error, "a connection failed before it was accepted");
            }
            None => {}
            Some(0) => tracing::warn!(
                listener,
                %error,
                pause_ms,
                "cannot accept a connection; pausing accepting"
            ),
            Some(suppressed) => tracing::warn!(
                listener,
                %error,
                pause_ms,
                suppressed,
                "cannot accept a connection ({suppressed} more failures since the last of these \
                 warnings, not logged); pausing accepting"
            ),
        }
        pause
    }

    /// The pause after `error` at `now`, and whether to warn of it: `Some(n)`
    /// to warn, `n` being the failures not logged since the last warning.
    fn failed_at(&self, error: &io::Error, now: Instant) -> (Duration, Option<u64>) {
        if belongs_to_one_connection(error) {
            return (Duration::ZERO, None);
        }
        let pause = {
            let mut last = self.lock();
            let pause = last.map_or(ACCEPT_PAUSE_MIN, |last| {
                last.saturating_mul(2).min(ACCEPT_PAUSE_MAX)
            });
            *last = Some(pause);
            pause
        };
        debug_assert!((ACCEPT_PAUSE_MIN..=ACCEPT_PAUSE_MAX).contains(&pause));
        (pause, self.warnings.refusal(now))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Duration>> {
        // A poisoned lock only means a panic elsewhere while pausing: keep going.
        self.pause.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Whether `error` is one connection's, not the listener's (the list of
/// accept(2)'s Linux notes, which says to retry these at once).
fn belongs_to_one_connection(error: &io::Error) -> bool {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused
    ) {
        return true;
    }
    #[cfg(target_os = "linux")]
    {
        matches!(
            error.raw_os_error(),
            Some(
                libc::ENETDOWN
                    | libc::EPROTO
                    | libc::ENOPROTOOPT
                    | libc::EHOSTDOWN
                    | libc::ENONET
                    | libc::EHOSTUNREACH
                    | libc::EOPNOTSUPP
                    | libc::ENETUNREACH
                    | libc::EPERM
            )
        )
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emfile() -> io::Error {
        io::Error::from_raw_os_error(libc::EMFILE)
    }

    #[test]
    fn descriptors_running_out_for_a_minute_pause_accepting_up_to_a_second_and_warn_once_per_interval(
    ) {
        let errors = AcceptErrors::new(Listener::Kafka);
        let start = Instant::now();
        let mut now = start;
        let (mut pauses, mut warnings) = (Vec::new(), Vec::new());
        // The listener retries after each pause, and fails again, for a minute.
        while now < start + Duration::from_secs(60) {
            let (pause, warned) = errors.failed_at(&emfile(), now);
            if let Some(suppressed) = warned {
                let second = now.duration_since(start).as_secs();
                warnings.push((pauses.len(), second, suppressed));
            }
            pauses.push(pause);
            now += pause;
        }
        let ms = Duration::from_millis;
        assert_eq!(
            pauses[..10],
            [
                ms(5),
                ms(10),
                ms(20),
                ms(40),
                ms(80),
                ms(160),
                ms(320),
                ms(640),
                ms(1_000),
                ms(1_000)
            ]
        );
        assert!(pauses[8..].iter().all(|&pause| pause == ACCEPT_PAUSE_MAX));
        // Eight tries in the first 1.275 s, then one a second: 67, not a spin.
        assert_eq!(pauses.len(), 67);
        // One warning per 10 s; together they account for every try up to the last.
        let seconds: Vec<u64> = warnings.iter().map(|&(_, second, _)| second).collect();
        assert_eq!(seconds, [0, 10, 20, 30, 40, 50]);
        assert_eq!(warnings[0].2, 0);
        let (last_try, _, _) = warnings[warnings.len() - 1];
        let suppressed: u64 = warnings.iter().map(|&(_, _, n)| n).sum();
        assert_eq!(warnings.len() as u64 + suppressed, last_try as u64 + 1);
    }

    #[test]
    fn an_accept_that_succeeds_makes_the_next_pause_brief_again() {
        let errors = AcceptErrors::new(Listener::Grpc);
        let now = Instant::now();
        for _ in 0..20 {
            errors.failed_at(&emfile(), now);
        }
        assert_eq!(errors.failed_at(&emfile(), now).0, ACCEPT_PAUSE_MAX);
        errors.accepted();
        assert_eq!(errors.failed_at(&emfile(), now).0, ACCEPT_PAUSE_MIN);
    }

    #[test]
    fn one_connections_failure_neither_pauses_accepting_nor_warns() {
        let errors = AcceptErrors::new(Listener::Kafka);
        let now = Instant::now();
        for error in [
            io::Error::from(io::ErrorKind::ConnectionAborted),
            io::Error::from_raw_os_error(libc::ECONNABORTED),
            io::Error::from_raw_os_error(libc::EPROTO),
        ] {
            assert_eq!(errors.failed_at(&error, now), (Duration::ZERO, None));
        }
        // Nor do they count towards the pause of a real exhaustion, or its warning.
        assert_eq!(
            errors.failed_at(&emfile(), now),
            (ACCEPT_PAUSE_MIN, Some(0))
        );
        for errno in [libc::ENFILE, libc::ENOBUFS, libc::ENOMEM] {
            let (pause, _) = errors.failed_at(&io::Error::from_raw_os_error(errno), now);
            assert!(
                pause > ACCEPT_PAUSE_MIN,
                "errno {errno} did not pause longer"
            );
        }
    }
}
