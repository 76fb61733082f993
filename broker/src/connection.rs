//! One accepted connection, as hyper and the Kafka listener see it: the
//! socket, its slot (see [`crate::connection_limit`]) and the reasons it is
//! closed from the broker's side. Each makes its reads and writes fail, so
//! hyper, or the Kafka connection's task, drops the connection and the
//! requests on it:
//!
//! - it made no request within the first-request deadline of being accepted;
//! - nothing was read from or written to it for the idle timeout (Kafka's
//!   `connections.max.idle.ms`, which also counts socket activity, not
//!   requests; `connections_max_idle_ms` is kept above the longest long poll);
//! - it was displaced, before its first request, to make room for a newer one;
//! - the broker cut every connection at its shutdown deadline.
//!
//! The deadline timer is reset lazily: activity only stamps `last_active`, and
//! when the timer fires early it is moved to the real deadline, so a busy
//! connection touches the timer wheel once per idle timeout, not per read.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};
use tonic::transport::server::Connected;

use crate::connection_limit::{ConnectionInfo, ConnectionShared};

/// An accepted connection holding a slot until dropped.
pub struct Connection {
    stream: TcpStream,
    shared: Arc<ConnectionShared>,
    accepted_at: Instant,
    last_active: Instant,
    first_request_timeout: Duration,
    idle_timeout: Duration,
    /// Fires at or before the current deadline (see the module docs).
    timer: Pin<Box<Sleep>>,
    /// Whether `timer` was last set after the first request.
    timer_after_request: bool,
    /// Completes when the broker cuts its connections.
    cut: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

impl Connection {
    pub(crate) fn new(
        stream: TcpStream,
        shared: Arc<ConnectionShared>,
        first_request_timeout: Duration,
        idle_timeout: Duration,
        mut cut: watch::Receiver<bool>,
    ) -> Connection {
        let now = Instant::now();
        Connection {
            stream,
            shared,
            accepted_at: now,
            last_active: now,
            first_request_timeout,
            idle_timeout,
            timer: Box::pin(tokio::time::sleep_until(now + first_request_timeout)),
            timer_after_request: false,
            cut: Box::pin(async move {
                // A dropped sender (the broker is gone) is not a cut.
                if cut.wait_for(|cut| *cut).await.is_err() {
                    std::future::pending::<()>().await;
                }
            }),
        }
    }

    /// When the connection is closed unless something happens first.
    fn deadline(&self) -> Instant {
        if self.shared.requested() {
            self.last_active + self.idle_timeout
        } else {
            self.accepted_at + self.first_request_timeout
        }
    }

    /// An error once the connection must close; otherwise registers to be
    /// woken when that may change.
    fn check_open(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if self.cut.as_mut().poll(cx).is_ready() {
            return Err(closed(
                io::ErrorKind::ConnectionAborted,
                "the broker cut its connections at the shutdown deadline",
            ));
        }
        self.shared.waker.register(cx.waker());
        if self.shared.displaced() {
            return Err(closed(
                io::ErrorKind::ConnectionAborted,
                "no connection slot was free and this connection had made no request",
            ));
        }
        let requested = self.shared.requested();
        if requested != self.timer_after_request {
            self.timer_after_request = requested;
            let deadline = self.deadline();
            self.timer.as_mut().reset(deadline);
        }
        while self.timer.as_mut().poll(cx).is_ready() {
            let deadline = self.deadline();
            if Instant::now() >= deadline {
                return Err(if requested {
                    closed(io::ErrorKind::TimedOut, "idle for connections_max_idle_ms")
                } else {
                    closed(
                        io::ErrorKind::TimedOut,
                        "no request within connection_first_request_timeout_ms",
                    )
                });
            }
            self.timer.as_mut().reset(deadline);
        }
        Ok(())
    }
}

fn closed(kind: io::ErrorKind, why: &'static str) -> io::Error {
    tracing::debug!(reason = why, "closing a connection");
    io::Error::new(kind, ClosedByBroker(why))
}

/// Why the broker closed a connection: the error inside the `io::Error`
/// its reads and writes fail with from then on.
#[derive(Debug)]
struct ClosedByBroker(&'static str);

impl std::fmt::Display for ClosedByBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for ClosedByBroker {}

/// Whether `error` is the broker closing the connection (a deadline, a
/// displacement, the shutdown cut), not the socket or the client failing.
pub(crate) fn closed_by_broker(error: &io::Error) -> bool {
    error
        .get_ref()
        .is_some_and(|inner| inner.is::<ClosedByBroker>())
}

/// What the Kafka listener, which reads and writes a connection itself,
/// needs beyond `AsyncRead` and `AsyncWrite`.
impl Connection {
    pub(crate) fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// A request began on the connection: its slot is its own from now on.
    pub(crate) fn mark_request(&self) {
        self.shared.mark_request();
    }

    /// The broker worked for the connection (served one of its requests):
    /// the idle clock starts again, as it would have if bytes had moved.
    pub(crate) fn touch(&mut self) {
        self.last_active = Instant::now();
    }

    /// Ready once the socket can take bytes, or an error once the
    /// connection must close, for writes made with [`Self::try_write_with`].
    pub(crate) fn poll_write_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check_open(cx)?;
        self.stream.poll_write_ready(cx)
    }

    /// Runs `write`, a non-blocking write to the socket by hand (`sendfile`),
    /// and counts its bytes as activity. `WouldBlock` clears readiness.
    pub(crate) fn try_write_with(
        &mut self,
        write: impl FnOnce() -> io::Result<usize>,
    ) -> io::Result<usize> {
        let written = self.stream.try_io(tokio::io::Interest::WRITABLE, write);
        if matches!(written, Ok(n) if n > 0) {
            self.last_active = Instant::now();
        }
        written
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.shared.release();
    }
}

impl Connected for Connection {
    type ConnectInfo = ConnectionInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        ConnectionInfo::new(Arc::clone(&self.shared))
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check_open(cx)?;
        let filled = buf.filled().len();
        let read = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() > filled {
            self.last_active = Instant::now();
        }
        read
    }
}

impl Connection {
    fn wrote(&mut self, written: &Poll<io::Result<usize>>) {
        if matches!(written, Poll::Ready(Ok(n)) if *n > 0) {
            self.last_active = Instant::now();
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check_open(cx)?;
        let written = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.wrote(&written);
        written
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.check_open(cx)?;
        let written = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.wrote(&written);
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
