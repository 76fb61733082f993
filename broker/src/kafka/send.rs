//! Writing a response frame's chunks to the connection: runs of bytes with
//! `writev`, batches that have a file slice with `sendfile(2)` from their
//! segment file, so they go from the page cache to the socket without
//! entering the broker. Where `sendfile` is refused before any byte went out
//! (another OS, a file system without it) the slice is copied with `pread`,
//! which also checks its framing, and written.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Buf, Bytes};
use tokio::io::AsyncWriteExt;
use weir_log::FileSlice;

use super::frame::Chunk;
use crate::connection::Connection;

/// Slices per `writev`, below Linux's `IOV_MAX` of 1024.
const IO_SLICES_MAX: usize = 64;

/// Batch bytes sent with `sendfile` since the process started.
static SENT_FROM_FILE_BYTES: AtomicU64 = AtomicU64::new(0);

/// Batch bytes Kafka fetches sent with `sendfile` since the process started.
pub fn sent_from_file_bytes() -> u64 {
    SENT_FROM_FILE_BYTES.load(Ordering::Relaxed)
}

/// Writes every chunk: runs of bytes with `writev`, file ranges with
/// `sendfile`. Either way the connection's deadlines hold (`connection.rs`).
pub async fn write_chunks(writer: &mut Connection, chunks: VecDeque<Chunk>) -> io::Result<()> {
    let mut run: VecDeque<Bytes> = VecDeque::new();
    for chunk in chunks {
        match chunk {
            Chunk::Bytes(bytes) => run.push_back(bytes),
            Chunk::File { slice, mapped } => {
                write_vectored_all(writer, &mut run).await?;
                send_file(writer, &slice, &mapped).await?;
            }
        }
    }
    write_vectored_all(writer, &mut run).await?;
    writer.flush().await
}

async fn write_vectored_all(
    writer: &mut Connection,
    chunks: &mut VecDeque<Bytes>,
) -> io::Result<()> {
    while !chunks.is_empty() {
        let written = {
            let slices: Vec<IoSlice<'_>> = chunks
                .iter()
                .take(IO_SLICES_MAX)
                .map(|c| IoSlice::new(c))
                .collect();
            writer.write_vectored(&slices).await?
        };
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        let mut left = written;
        while left > 0 {
            let Some(front) = chunks.front_mut() else {
                break;
            };
            if front.len() <= left {
                left -= front.len();
                chunks.pop_front();
            } else {
                front.advance(left);
                left = 0;
            }
        }
    }
    Ok(())
}

/// Sends the slice from its file. Falls back to a `pread` copy when the
/// kernel refuses `sendfile` before any byte went out.
async fn send_file(writer: &mut Connection, slice: &FileSlice, mapped: &Bytes) -> io::Result<()> {
    debug_assert_eq!(mapped.len(), slice.len());
    #[cfg(target_os = "linux")]
    {
        match sendfile_all(writer, slice).await {
            Ok(()) => return Ok(()),
            Err(SendFileError::Unsupported(error)) => {
                tracing::debug!(%error, "sendfile refused; copying the batches instead");
            }
            Err(SendFileError::Failed(error)) => return Err(error),
        }
    }
    let copied = slice
        .to_bytes()
        .map_err(|error| io::Error::other(error.to_string()))?;
    writer.write_all(&copied).await
}

#[cfg(target_os = "linux")]
enum SendFileError {
    /// Nothing was sent: the caller may copy instead.
    Unsupported(io::Error),
    Failed(io::Error),
}

#[cfg(target_os = "linux")]
async fn sendfile_all(connection: &mut Connection, slice: &FileSlice) -> Result<(), SendFileError> {
    use std::os::fd::AsRawFd;
    let failed = SendFileError::Failed;
    let start = libc::off_t::try_from(slice.position())
        .map_err(|_| SendFileError::Unsupported(io::Error::other("a file position above off_t")))?;
    let end = start
        + libc::off_t::try_from(slice.len())
            .map_err(|_| SendFileError::Unsupported(io::Error::other("a length above off_t")))?;
    let mut position = start;
    let file_fd = slice.file().as_raw_fd();
    let socket_fd = connection.stream().as_raw_fd();
    while position < end {
        std::future::poll_fn(|cx| connection.poll_write_ready(cx))
            .await
            .map_err(failed)?;
        let count = usize::try_from(end - position).unwrap_or(usize::MAX);
        let sent = connection.try_write_with(|| {
            // SAFETY: both descriptors are open for the call (the slice holds
            // its file, the stream its socket); `position` is a valid off_t.
            let sent = unsafe { libc::sendfile(socket_fd, file_fd, &mut position, count) };
            if sent < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(usize::try_from(sent).unwrap_or(0))
            }
        });
        match sent {
            Ok(0) if count > 0 => {
                // The file ended before the slice did: it was cut under us.
                return Err(failed(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the segment file ended inside the batches being sent",
                )));
            }
            Ok(sent) => {
                SENT_FROM_FILE_BYTES.fetch_add(sent as u64, Ordering::Relaxed);
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            Err(error)
                if position == start
                    && matches!(
                        error.raw_os_error(),
                        Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)
                    ) =>
            {
                return Err(SendFileError::Unsupported(error));
            }
            Err(error) => return Err(failed(error)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::frame::{
        encode_response,
        tests::{response, wire},
        Shared,
    };
    use bytes::BytesMut;
    use kafka_protocol::messages::ApiKey;

    #[tokio::test]
    async fn mapped_batches_are_sent_from_the_file_and_arrive_as_stored() {
        let dir = tempfile::tempdir().unwrap();
        let partition = crate::partition::Partition::open(
            dir.path(),
            "t",
            0,
            weir_log::LogConfig::default(),
            0,
        )
        .unwrap();
        let mut builder = weir_log::batch::BatchBuilder::new(weir_log::batch::Compression::None);
        for i in 0..50u8 {
            builder.push(1_000, None, Some(&[i; 100]), &[]);
        }
        let mut batch = BytesMut::from(&builder.build().unwrap()[..]);
        partition.append(&mut batch).unwrap();
        let read = partition
            .read_into(0, 1 << 20, false, crate::partition::ReadInto::Mapped)
            .unwrap();
        let slice = read.slice.clone().unwrap();
        assert_eq!(
            read.batches[..],
            batch[..],
            "the mapping holds the stored bytes"
        );
        let body = response(std::slice::from_ref(&read.batches));
        let shared = vec![Shared {
            bytes: read.batches.clone(),
            slice: Some(slice.clone()),
        }];
        let chunks = encode_response(ApiKey::Fetch, 12, 1, &body, shared).unwrap();
        assert!(chunks.iter().any(|c| matches!(c, Chunk::File { .. })));
        let expected = wire(&chunks);

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        let slots = crate::connection_limit::ConnectionSlots::new(
            crate::connection_limit::ConnectionLimits {
                connections_max: 1,
                connections_max_per_ip: 1,
                connections_max_per_ip_overrides: Default::default(),
                first_request_timeout: std::time::Duration::from_secs(600),
                idle_timeout: std::time::Duration::from_secs(600),
            },
        );
        let (_cut, cut_signal) = tokio::sync::watch::channel(false);
        let kafka = slots.listener(
            crate::metrics::Listener::Kafka,
            &crate::metrics::BrokerMetrics::default(),
            cut_signal,
        );
        let mut writer = kafka.admit(accepted.unwrap().0).unwrap();
        let before = sent_from_file_bytes();
        write_chunks(&mut writer, chunks).await.unwrap();
        drop(writer);
        let mut received = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut client.unwrap(), &mut received)
            .await
            .unwrap();
        assert_eq!(received, expected);
        assert!(sent_from_file_bytes() - before >= slice.len() as u64);
    }
}
