//! Kafka's framing: a request or response is a big-endian `i32` size, then
//! the header, then the body. Responses are encoded by `kafka-protocol` into
//! [`Chunks`], which keeps the fetched batches out of the encode buffer: the
//! bytes of a `records` field it was told about become their own chunk, so a
//! fetch response is written with `writev` from the buffers the batches were
//! read into, never copied again.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::ops::Range;

use bytes::buf::UninitSlice;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseHeader};
use kafka_protocol::protocol::buf::ByteBufMut;
use kafka_protocol::protocol::{Encodable, HeaderVersion};
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// api key, api version and correlation id: the part of every request
/// header that is the same in all its versions.
pub const REQUEST_HEADER_BYTES_MIN: usize = 8;

/// Below this a slice is copied into the framing: a syscall vector entry
/// costs more than copying a few hundred bytes.
const SHARED_BYTES_MIN: usize = 512;

/// Slices per `writev`, below Linux's `IOV_MAX` of 1024.
const IO_SLICES_MAX: usize = 64;

/// An encode buffer that keeps registered byte ranges as their own chunks.
pub struct Chunks {
    framing: BytesMut,
    chunks: VecDeque<Bytes>,
    /// Byte ranges that are not copied when the encoder writes them.
    shared: Vec<Bytes>,
    /// Bytes in `chunks`: the offset of `framing`'s first byte.
    flushed_bytes: usize,
}

impl Chunks {
    pub fn new(shared: Vec<Bytes>) -> Chunks {
        Chunks {
            framing: BytesMut::with_capacity(256),
            chunks: VecDeque::new(),
            shared,
            flushed_bytes: 0,
        }
    }

    pub fn into_chunks(mut self) -> VecDeque<Bytes> {
        if !self.framing.is_empty() {
            self.chunks.push_back(self.framing.freeze());
        }
        self.chunks
    }

    fn shared_match(&self, src: &[u8]) -> Option<Bytes> {
        if src.len() < SHARED_BYTES_MIN {
            return None;
        }
        self.shared
            .iter()
            .find(|b| b.as_ptr() == src.as_ptr() && b.len() == src.len())
            .cloned()
    }
}

// SAFETY: every method forwards to the `BytesMut` that holds the framing.
unsafe impl BufMut for Chunks {
    fn remaining_mut(&self) -> usize {
        self.framing.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller's contract is the one `BytesMut::advance_mut` needs.
        unsafe { self.framing.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.framing.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        match self.shared_match(src) {
            Some(shared) => {
                let framing = self.framing.split().freeze();
                self.flushed_bytes += framing.len() + shared.len();
                if !framing.is_empty() {
                    self.chunks.push_back(framing);
                }
                self.chunks.push_back(shared);
            }
            None => self.framing.put_slice(src),
        }
    }
}

impl ByteBufMut for Chunks {
    fn offset(&self) -> usize {
        self.flushed_bytes + self.framing.len()
    }

    fn seek(&mut self, offset: usize) {
        // Only within the framing not yet split off; the encoders of the
        // messages served here never seek back.
        let local = offset.saturating_sub(self.flushed_bytes);
        debug_assert!(offset >= self.flushed_bytes);
        self.framing.resize(local, 0);
    }

    fn range(&mut self, r: Range<usize>) -> &mut [u8] {
        let start = r.start.saturating_sub(self.flushed_bytes);
        let end = r.end.saturating_sub(self.flushed_bytes);
        debug_assert!(r.start >= self.flushed_bytes);
        self.framing.get_mut(start..end).unwrap_or_default()
    }
}

/// Why a response could not be encoded: a field the API version cannot
/// carry, or one too long for the protocol. A bug of the handler.
#[derive(Debug)]
pub struct EncodeError(pub String);

/// The response frame: size, header (version 0 for ApiVersions, whose
/// response header is never flexible, so a client that does not know the
/// broker's versions yet can read it), body. `shared` are the records the
/// body holds, sent without a copy.
pub fn encode_response<R: Encodable + HeaderVersion>(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &R,
    shared: Vec<Bytes>,
) -> Result<VecDeque<Bytes>, EncodeError> {
    let header_version = match api_key {
        ApiKey::ApiVersions => 0,
        _ => R::header_version(version),
    };
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let size = header
        .compute_size(header_version)
        .and_then(|h| body.compute_size(version).map(|b| h + b))
        .map_err(failed)?;
    let size = i32::try_from(size)
        .map_err(|_| EncodeError(format!("a response of {size} bytes is too large")))?;
    let mut chunks = Chunks::new(shared);
    chunks.put_i32(size);
    header.encode(&mut chunks, header_version).map_err(failed)?;
    body.encode(&mut chunks, version).map_err(failed)?;
    let chunks = chunks.into_chunks();
    debug_assert_eq!(
        chunks.iter().map(Bytes::len).sum::<usize>(),
        usize::try_from(size).unwrap_or(0) + 4
    );
    Ok(chunks)
}

/// `kafka-protocol` reports errors as `anyhow::Error`; only the message is kept.
fn failed(error: impl std::fmt::Display) -> EncodeError {
    EncodeError(error.to_string())
}

/// Writes every chunk, several per `writev`.
pub async fn write_chunks<W: AsyncWrite + Unpin>(
    writer: &mut W,
    mut chunks: VecDeque<Bytes>,
) -> std::io::Result<()> {
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
            return Err(std::io::ErrorKind::WriteZero.into());
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
    writer.flush().await
}
