//! The cap on open client connections: every accepted connection holds a
//! semaphore permit for as long as it is open; a connection accepted while
//! none is free is closed at once (the client sees the connection fail and
//! may retry), so a flood of connections cannot exhaust the broker's memory
//! or file descriptors.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::transport::server::{Connected, TcpConnectInfo};

/// An accepted connection that counts against the cap until dropped.
#[derive(Debug)]
pub struct CountedConnection {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
}

/// Yields the connections of `incoming` that fit under `connections_max`;
/// closes the others as soon as they are accepted.
pub fn limit<S>(
    incoming: S,
    connections_max: usize,
) -> impl Stream<Item = io::Result<CountedConnection>>
where
    S: Stream<Item = io::Result<TcpStream>>,
{
    let permits = Arc::new(Semaphore::new(connections_max.min(Semaphore::MAX_PERMITS)));
    incoming.filter_map(move |accepted| {
        let permits = Arc::clone(&permits);
        async move {
            match accepted {
                Err(error) => Some(Err(error)),
                Ok(stream) => match permits.try_acquire_owned() {
                    Ok(permit) => Some(Ok(CountedConnection {
                        stream,
                        _permit: permit,
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
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for CountedConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for CountedConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
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
