//! `Produce.Produce` without copying the batches into the request.
//!
//! tonic's codec encodes a request into one buffer, and the producer used to
//! concatenate a request's batches before that: two copies (and two fresh
//! multi-MiB allocations) of every produced byte. Here the protobuf framing
//! is written by hand (a few dozen bytes) and each encoded batch goes to
//! HTTP/2 as its own body chunk. The bytes on the wire are an ordinary
//! `ProduceRequest` with one partition, its `batches` field (2) last. The
//! answer is read and decoded as tonic would: status from headers or
//! trailers, one length-prefixed message, bounded by [`RESPONSE_BYTES_MAX`].

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use prost::Message;
use tonic::body::Body;
use tonic::{Code, Status};
use tower::{Service, ServiceExt};

use super::connection::RESPONSE_BYTES_MAX;
use super::written::{SignallingChannel, WrittenSignal};
use crate::proto::{PartitionProduceData, ProduceRequest, ProduceResponse};

const PRODUCE_PATH: &str = "/weir.v1.Produce/Produce";
const GRPC_PREFIX_BYTES: usize = 5;
/// `ProduceRequest.partitions` and `PartitionProduceData.batches`, length-delimited.
const PARTITIONS_TAG: u8 = (4 << 3) | 2;
const BATCHES_TAG: u8 = (2 << 3) | 2;

/// One partition's produce request: everything but the batches, and the batches.
#[derive(Debug, Clone)]
pub(crate) struct RawProduce {
    pub(crate) topic: String,
    pub(crate) acks: i32,
    pub(crate) timeout_ms: u32,
    pub(crate) partition: u32,
    pub(crate) batches: Vec<Bytes>,
}

impl RawProduce {
    /// The request body: framing chunks and the batches as they are.
    fn encode(&self) -> VecDeque<Bytes> {
        let header = ProduceRequest {
            topic: self.topic.clone(),
            acks: self.acks,
            timeout_ms: self.timeout_ms,
            partitions: Vec::new(),
        };
        let partition = PartitionProduceData {
            partition: self.partition,
            batches: Bytes::new(),
        };
        let batches_len: usize = self.batches.iter().map(Bytes::len).sum();
        let inner_len = partition.encoded_len()
            + 1
            + prost::encoding::encoded_len_varint(batches_len as u64)
            + batches_len;
        let message_len = header.encoded_len()
            + 1
            + prost::encoding::encoded_len_varint(inner_len as u64)
            + inner_len;
        let mut framing = BytesMut::with_capacity(GRPC_PREFIX_BYTES + message_len - batches_len);
        framing.put_u8(0);
        framing.put_u32(u32::try_from(message_len).unwrap_or(u32::MAX));
        header.encode_raw(&mut framing);
        framing.put_u8(PARTITIONS_TAG);
        prost::encoding::encode_varint(inner_len as u64, &mut framing);
        partition.encode_raw(&mut framing);
        framing.put_u8(BATCHES_TAG);
        prost::encoding::encode_varint(batches_len as u64, &mut framing);
        let mut chunks = VecDeque::with_capacity(self.batches.len() + 1);
        chunks.push_back(framing.freeze());
        chunks.extend(self.batches.iter().cloned());
        debug_assert_eq!(
            chunks.iter().map(Bytes::len).sum::<usize>(),
            GRPC_PREFIX_BYTES + message_len
        );
        chunks
    }
}

/// Sends `request` on `channel` and decodes the answer. With `written`, the
/// signal fires once the whole request body has been handed to the connection.
pub(crate) async fn produce(
    channel: &SignallingChannel,
    request: &RawProduce,
    written: Option<WrittenSignal>,
) -> Result<ProduceResponse, Status> {
    let mut http = http::Request::new(Body::new(ChunkBody {
        chunks: request.encode(),
    }));
    *http.method_mut() = http::Method::POST;
    *http.uri_mut() = http::Uri::from_static(PRODUCE_PATH);
    let headers = http.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    headers.insert(http::header::TE, http::HeaderValue::from_static("trailers"));
    // As tonic sends a request's timeout: the broker waits for memory for at
    // most half of it, so a full pool is answered before the client gives up.
    // gRPC allows 8 digits.
    let timeout_ms = request.timeout_ms.min(99_999_999);
    if let Ok(timeout) = http::HeaderValue::try_from(format!("{timeout_ms}m")) {
        headers.insert("grpc-timeout", timeout);
    }
    if let Some(signal) = written {
        http.extensions_mut().insert(signal);
    }
    let mut channel = channel.clone();
    let response = channel
        .ready()
        .await
        .map_err(transport)?
        .call(http)
        .await
        .map_err(transport)?;
    if let Some(status) = Status::from_header_map(response.headers()) {
        if status.code() != Code::Ok {
            return Err(status);
        }
    }
    let message = read_answer(response.into_body()).await?;
    ProduceResponse::decode(message)
        .map_err(|e| Status::internal(format!("cannot decode the produce answer: {e}")))
}

/// A connection that failed under the request: it may or may not have been
/// stored, which the retry (deduplicated by idempotence) settles.
fn transport(error: tonic::transport::Error) -> Status {
    Status::unavailable(format!(
        "produce request failed in transport: {}",
        super::error::chain(&error)
    ))
}

/// Collects the answer's one message and checks the trailing status.
async fn read_answer(mut body: tonic::body::Body) -> Result<Bytes, Status> {
    let mut buf = BytesMut::new();
    let mut trailer_status = None;
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        match frame.into_data() {
            Ok(data) => {
                if buf.len() + data.len() > RESPONSE_BYTES_MAX {
                    return Err(Status::resource_exhausted(format!(
                        "the produce answer is larger than {RESPONSE_BYTES_MAX} bytes"
                    )));
                }
                buf.extend_from_slice(&data);
            }
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    trailer_status = Status::from_header_map(&trailers);
                }
            }
        }
    }
    match trailer_status {
        Some(status) if status.code() != Code::Ok => return Err(status),
        Some(_) => {}
        None => {
            return Err(Status::internal(
                "the produce answer ended without a grpc-status",
            ))
        }
    }
    if buf.len() < GRPC_PREFIX_BYTES || buf[0] != 0 {
        return Err(Status::internal(
            "the produce answer is not one uncompressed gRPC message",
        ));
    }
    let len =
        usize::try_from(u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]])).unwrap_or(usize::MAX);
    if buf.len() != GRPC_PREFIX_BYTES + len {
        return Err(Status::internal(format!(
            "the produce answer announces {len} bytes but carries {}",
            buf.len() - GRPC_PREFIX_BYTES
        )));
    }
    buf.advance(GRPC_PREFIX_BYTES);
    Ok(buf.freeze())
}

/// Request body: the chunks, then end of stream (requests have no trailers).
struct ChunkBody {
    chunks: VecDeque<Bytes>,
}

impl HttpBody for ChunkBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        Poll::Ready(self.chunks.pop_front().map(|chunk| Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.chunks.iter().map(|c| c.len() as u64).sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_decode_as_the_same_produce_request() {
        let raw = RawProduce {
            topic: "clicks".to_string(),
            acks: 2,
            timeout_ms: 30_000,
            partition: 7,
            batches: vec![Bytes::from(vec![1u8; 200]), Bytes::from_static(b"second")],
        };
        let wire: Vec<u8> = raw
            .encode()
            .iter()
            .flat_map(|c| c.iter().copied())
            .collect();
        let len = u32::from_be_bytes([wire[1], wire[2], wire[3], wire[4]]) as usize;
        assert_eq!((wire[0], len), (0, wire.len() - GRPC_PREFIX_BYTES));
        let decoded = ProduceRequest::decode(&wire[GRPC_PREFIX_BYTES..]).unwrap();
        let mut batches = vec![1u8; 200];
        batches.extend_from_slice(b"second");
        assert_eq!(
            decoded,
            ProduceRequest {
                topic: "clicks".to_string(),
                acks: 2,
                timeout_ms: 30_000,
                partitions: vec![PartitionProduceData {
                    partition: 7,
                    batches: Bytes::from(batches),
                }],
            }
        );
    }
}
