//! Kafka's framing: a request or response is a big-endian `i32` size, then
//! the header, then the body. Responses are encoded by `kafka-protocol` into
//! [`Chunks`], which keeps the fetched batches out of the encode buffer: the
//! bytes of a `records` field it was told about (recognised by address,
//! never read) become their own chunk; `send` writes them to the socket.

use std::collections::VecDeque;
use std::ops::Range;

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseHeader};
use kafka_protocol::protocol::buf::ByteBufMut;
use kafka_protocol::protocol::{Encodable, HeaderVersion};
use weir_log::FileSlice;

/// api key, api version and correlation id: the part of every request
/// header that is the same in all its versions.
pub const REQUEST_HEADER_BYTES_MIN: usize = 8;

/// Below this a slice is copied into the framing: a syscall vector entry
/// costs more than copying a few hundred bytes.
const SHARED_BYTES_MIN: usize = 512;

/// Bytes the encoder passes on instead of copying: fetched batches, mapped
/// from their segment file when `slice` is set.
#[derive(Clone)]
pub struct Shared {
    pub bytes: Bytes,
    pub slice: Option<FileSlice>,
}

/// A piece of a response frame.
pub enum Chunk {
    Bytes(Bytes),
    /// Sent from the file; `mapped` holds the same bytes, unread.
    File {
        slice: FileSlice,
        mapped: Bytes,
    },
}

impl Chunk {
    pub fn len(&self) -> usize {
        match self {
            Chunk::Bytes(bytes) => bytes.len(),
            Chunk::File { slice, .. } => slice.len(),
        }
    }
}

/// An encode buffer that keeps registered byte ranges as their own chunks.
pub struct Chunks {
    framing: BytesMut,
    chunks: VecDeque<Chunk>,
    /// Byte ranges that are not copied when the encoder writes them.
    shared: Vec<Shared>,
    /// Bytes in `chunks`: the offset of `framing`'s first byte.
    flushed_bytes: usize,
}

impl Chunks {
    pub fn new(shared: Vec<Shared>) -> Chunks {
        Chunks {
            framing: BytesMut::with_capacity(256),
            chunks: VecDeque::new(),
            shared,
            flushed_bytes: 0,
        }
    }

    pub fn into_chunks(mut self) -> VecDeque<Chunk> {
        if !self.framing.is_empty() {
            self.chunks.push_back(Chunk::Bytes(self.framing.freeze()));
        }
        self.chunks
    }

    /// The registered range `src` is, if any. A mapped one always matches,
    /// however small: copying it would fault its pages in.
    fn shared_match(&self, src: &[u8]) -> Option<Chunk> {
        if src.is_empty() {
            return None;
        }
        let shared = self.shared.iter().find(|shared| {
            shared.bytes.as_ptr() == src.as_ptr() && shared.bytes.len() == src.len()
        })?;
        match &shared.slice {
            Some(slice) => Some(Chunk::File {
                slice: slice.clone(),
                mapped: shared.bytes.clone(),
            }),
            None if src.len() >= SHARED_BYTES_MIN => Some(Chunk::Bytes(shared.bytes.clone())),
            None => None,
        }
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
                    self.chunks.push_back(Chunk::Bytes(framing));
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
    shared: Vec<Shared>,
) -> Result<VecDeque<Chunk>, EncodeError> {
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
        chunks.iter().map(Chunk::len).sum::<usize>(),
        usize::try_from(size).unwrap_or(0) + 4
    );
    Ok(chunks)
}

/// `kafka-protocol` reports errors as `anyhow::Error`; only the message is kept.
fn failed(error: impl std::fmt::Display) -> EncodeError {
    EncodeError(error.to_string())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use bytes::Buf;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::{FetchResponse, TopicName};
    use kafka_protocol::protocol::{Decodable, StrBytes};

    pub fn response(records: &[Bytes]) -> FetchResponse {
        let partitions = records
            .iter()
            .zip(0..)
            .map(|(records, index)| {
                PartitionData::default()
                    .with_partition_index(index)
                    .with_records(Some(records.clone()))
            })
            .collect();
        FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
            .with_topic(TopicName(StrBytes::from_static_str("t")))
            .with_partitions(partitions)])
    }

    pub fn wire(chunks: &VecDeque<Chunk>) -> Vec<u8> {
        chunks
            .iter()
            .flat_map(|chunk| match chunk {
                Chunk::Bytes(bytes) => bytes.to_vec(),
                Chunk::File { mapped, .. } => mapped.to_vec(),
            })
            .collect()
    }

    #[test]
    fn registered_records_become_their_own_chunks_and_the_frame_decodes_the_same() {
        let large = Bytes::from(vec![7u8; 4096]);
        let small = Bytes::from(vec![9u8; 10]);
        let body = response(&[large.clone(), small.clone()]);
        for version in [4, 12] {
            let shared = vec![
                Shared {
                    bytes: large.clone(),
                    slice: None,
                },
                Shared {
                    bytes: small.clone(),
                    slice: None,
                },
            ];
            let chunks = encode_response(ApiKey::Fetch, version, 5, &body, shared).unwrap();
            // The large records are passed on, not copied; the small ones are copied.
            let passed: Vec<&Bytes> = chunks
                .iter()
                .filter_map(|c| match c {
                    Chunk::Bytes(b) if b.as_ptr() == large.as_ptr() => Some(b),
                    _ => None,
                })
                .collect();
            assert_eq!(passed.len(), 1, "v{version}");
            assert!(chunks.iter().all(|c| match c {
                Chunk::Bytes(b) => b.as_ptr() != small.as_ptr(),
                Chunk::File { .. } => false,
            }));
            let mut frame = Bytes::from(wire(&chunks));
            let size = frame.get_i32();
            assert_eq!(usize::try_from(size).unwrap(), frame.len());
            let header =
                ResponseHeader::decode(&mut frame, FetchResponse::header_version(version)).unwrap();
            assert_eq!(header.correlation_id, 5);
            let decoded = FetchResponse::decode(&mut frame, version).unwrap();
            assert_eq!(decoded, body, "v{version}");
        }
    }

    #[test]
    fn api_versions_responses_use_header_version_0_even_when_flexible() {
        let body = kafka_protocol::messages::ApiVersionsResponse::default();
        let chunks = encode_response(ApiKey::ApiVersions, 3, 9, &body, Vec::new()).unwrap();
        let mut frame = Bytes::from(wire(&chunks));
        frame.advance(4);
        // Header v0 is the correlation id alone; v1 would add a tagged-field byte.
        assert_eq!(frame.get_i32(), 9);
        let decoded = kafka_protocol::messages::ApiVersionsResponse::decode(&mut frame, 3).unwrap();
        assert_eq!(decoded, body);
        assert!(frame.is_empty());
    }
}
