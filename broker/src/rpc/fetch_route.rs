//! `Fetch.Fetch` without copying the fetched batches into the response.
//!
//! tonic's codecs encode a message into one buffer, which would copy every
//! fetched byte once more after the read. This route serves the same gRPC
//! method by hand: it decodes the request (size-checked from its length
//! prefix before buffering), runs the same handler, then writes the
//! protobuf framing of the response (a few dozen bytes per partition) and
//! hands each partition's `batches` to HTTP/2 as its own body chunk. The
//! bytes on the wire are an ordinary `FetchResponse`: each
//! `PartitionFetchResult` has its `batches` field (7) last, which protobuf
//! allows. Every other method of `weir.v1.Fetch` goes to the generated server.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;
use tokio::time::Instant;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::Status;

use crate::broker::Broker;
use crate::connection_limit::ConnectionInfo;
use crate::metrics::{grpc_error_name, grpc_status_name, Listener};
use crate::partition::ReadInto;
use crate::proto::fetch_server::FetchServer;
use crate::proto::{FetchRequest, FetchResponse};
use crate::rpc::grpc_message::{memory_wait, read_message, response, GRPC_PREFIX_BYTES};
use crate::rpc::raw_route::RawRoute;
use crate::rpc::{fetch, FetchService};

const FETCH_PATH: &str = "/weir.v1.Fetch/Fetch";
/// `FetchResponse.partitions` and `PartitionFetchResult.batches`, length-delimited.
const PARTITIONS_TAG: u8 = (1 << 3) | 2;
const BATCHES_TAG: u8 = (7 << 3) | 2;

/// `weir.v1.Fetch` with `Fetch` served by hand (see the module docs).
pub type FetchRoute = RawRoute<FetchServer<FetchService>>;

impl NamedService for FetchRoute {
    const NAME: &'static str = <FetchServer<FetchService> as NamedService>::NAME;
}

/// The route for `generated`, with its `Fetch` method served here.
pub fn route(broker: Arc<Broker>, generated: FetchServer<FetchService>) -> FetchRoute {
    RawRoute::new(broker, generated, FETCH_PATH, |broker, request| {
        Box::pin(async move { serve(&broker, request).await })
    })
}

/// Serves one fetch and counts each failed partition's error code (or the
/// status of a request refused whole) and the bytes and records sent;
/// `metrics::grpc` times it.
async fn serve(
    broker: &Broker,
    request: http::Request<Body>,
) -> Result<http::Response<Body>, Status> {
    let metrics = &broker.metrics().requests;
    let served = fetch(broker, request).await;
    match &served {
        Ok(fetched) => {
            for result in &fetched.response.partitions {
                fetched
                    .topic_metrics
                    .fetched(Listener::Grpc, &result.batches);
                if result.error_code != 0 {
                    metrics.error(Listener::Grpc, "Fetch", grpc_error_name(result.error_code));
                }
            }
        }
        Err(status) => metrics.error(Listener::Grpc, "Fetch", grpc_status_name(status.code())),
    }
    let fetched = served?;
    Ok(response(encode(fetched.response), Some(fetched.memory)))
}

async fn fetch(broker: &Broker, request: http::Request<Body>) -> Result<fetch::Fetched, Status> {
    let memory_wait = memory_wait(request.headers());
    let rotation = request
        .extensions()
        .get::<ConnectionInfo>()
        .map_or(0, ConnectionInfo::next_fetch_rotation);
    let limit = broker.config().request_bytes_max;
    let (message, request_memory) = read_message(
        request.into_body(),
        limit,
        broker.memory_pool(),
        Instant::now() + memory_wait,
        Duration::from_millis(broker.config().request_body_timeout_ms),
        "a fetch request",
    )
    .await?;
    let fetch_request = FetchRequest::decode(message)
        .map_err(|e| Status::invalid_argument(format!("cannot decode the fetch request: {e}")))?;
    drop(request_memory);
    fetch::handle(broker, fetch_request, memory_wait, rotation, ReadInto::Copy)
        .await
        .map_err(Status::from)
}

/// The response as body chunks: gRPC prefix and protobuf framing in small
/// chunks, each partition's batches as they were read.
fn encode(mut response: FetchResponse) -> VecDeque<Bytes> {
    let mut framing = BytesMut::new();
    let mut chunks = VecDeque::with_capacity(response.partitions.len() * 2 + 1);
    let mut message_len = 0usize;
    let mut parts = Vec::with_capacity(response.partitions.len());
    for partition in &mut response.partitions {
        let batches = std::mem::take(&mut partition.batches);
        let fields_len = partition.encoded_len();
        let batches_field_len = if batches.is_empty() {
            0
        } else {
            1 + prost::encoding::encoded_len_varint(batches.len() as u64) + batches.len()
        };
        let inner_len = fields_len + batches_field_len;
        message_len += 1 + prost::encoding::encoded_len_varint(inner_len as u64) + inner_len;
        parts.push((inner_len, batches));
    }
    framing.put_u8(0);
    framing.put_u32(u32::try_from(message_len).unwrap_or(u32::MAX));
    for (partition, (inner_len, batches)) in response.partitions.iter().zip(parts) {
        framing.put_u8(PARTITIONS_TAG);
        prost::encoding::encode_varint(inner_len as u64, &mut framing);
        partition.encode_raw(&mut framing);
        if !batches.is_empty() {
            framing.put_u8(BATCHES_TAG);
            prost::encoding::encode_varint(batches.len() as u64, &mut framing);
            chunks.push_back(framing.split().freeze());
            chunks.push_back(batches);
        }
    }
    if !framing.is_empty() {
        chunks.push_back(framing.freeze());
    }
    debug_assert_eq!(
        chunks.iter().map(Bytes::len).sum::<usize>(),
        GRPC_PREFIX_BYTES + message_len
    );
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::PartitionFetchResult;

    #[test]
    fn chunks_decode_as_the_same_fetch_response() {
        let response = FetchResponse {
            partitions: vec![
                PartitionFetchResult {
                    partition: 3,
                    high_watermark: 1 << 40,
                    log_end_offset: 9,
                    batches: Bytes::from(vec![0xab; 300]),
                    ..Default::default()
                },
                PartitionFetchResult {
                    partition: 4,
                    error_code: 6,
                    error_message: "storage failed".to_string(),
                    ..Default::default()
                },
                PartitionFetchResult {
                    partition: 5,
                    batches: Bytes::from_static(b"x"),
                    ..Default::default()
                },
            ],
        };
        let chunks = encode(response.clone());
        let wire: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        assert_eq!(wire[0], 0);
        let len = u32::from_be_bytes([wire[1], wire[2], wire[3], wire[4]]) as usize;
        assert_eq!(len, wire.len() - GRPC_PREFIX_BYTES);
        let decoded = FetchResponse::decode(&wire[GRPC_PREFIX_BYTES..]).unwrap();
        assert_eq!(decoded, response);
    }
}
