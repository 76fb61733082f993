//! The cap on open client connections: every accepted connection holds a
//! semaphore permit for as long as it is open; a connection accepted while
//! none is free is closed at once (the client sees the connection fail and
//! may retry), so a flood of connections cannot exhaust the broker's memory
//! or file descriptors.
//!
//! Every connection also watches the broker's cut signal: once shutdown's
//! deadline has passed, its reads and writes fail, so hyper drops it and the
//! requests still on it, whatever they were waiting for.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tonic::transport::server::Connected;

/// An accepted connection that counts against the cap until dropped.
pub struct CountedConnection {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
    info: ConnectionInfo,
    /// Completes when the broker cuts its connections.
    cut: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl std::fmt::Debug for CountedConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CountedConnection")
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

/// What every request of one connection sees in its extensions: the
/// connection's fetch count, which rotates the order in
/// which a fetch serves its partitions (KIP-74; Kafka keeps it in the fetch
/// session, which a connection stands in for here).
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    fetches: Arc<AtomicUsize>,
}

impl ConnectionInfo {
    /// The rotation of this fetch: one more than the connection's last.
    pub fn next_fetch_rotation(&self) -> usize {
        self.fetches.fetch_add(1, Ordering::Relaxed)
    }
}

/// Yields the connections of `incoming` that fit under `connections_max`;
/// closes the others as soon as they are accepted. When `cut` turns true,
/// every connection yielded fails its reads and writes.
pub fn limit<S>(
    incoming: S,
    connections_max: usize,
    cut: watch::Receiver<bool>,
) -> impl Stream<Item = io::Result<CountedConnection>>
where
    S: Stream<Item = io::Result<TcpStream>>,
{
    let permits = Arc::new(Semaphore::new(connections_max.min(Semaphore::MAX_PERMITS)));
    incoming.filter_map(move |accepted| {
        let permits = Arc::clone(&permits);
        let mut cut = cut.clone();
        async move {
            match accepted {
                Err(error) => Some(Err(error)),
                Ok(stream) => match permits.try_acquire_owned() {
                    Ok(permit) => Some(Ok(CountedConnection {
                        info: ConnectionInfo {
                            fetches: Arc::new(AtomicUsize::new(0)),
                        },
                        stream,
                        _permit: permit,
                        cut: Box::pin(async move {
                            // A dropped sender (the broker is gone) is not a cut.
                            if cut.wait_for(|cut| *cut).await.is_err() {
                                std::future::pending::<()>().await;
                            }
                        }),
                    })),
                    Err(_) => {
                        let peer = stream.peer_addr().ok();
                        tracing::warn!(
                            ?peer,
                            connections_max,
                            "refused a connection: connections_max are open"
                        );
                        drop(stream);
                        None
                    }
                },
            }
        }
    })
}

impl Connected for CountedConnection {
    type ConnectInfo = ConnectionInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.info.clone()
    }
}

impl CountedConnection {
    /// An error once the broker has cut its connections.
    fn check_cut(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        match self.cut.as_mut().poll(cx) {
            Poll::Ready(()) => Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the broker cut its connections at the shutdown deadline",
            )),
            Poll::Pending => Ok(()),
        }
    }
}

impl AsyncRead for CountedConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check_cut(cx)?;
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for CountedConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check_cut(cx)?;
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.check_cut(cx)?;
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
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
