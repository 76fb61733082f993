//! `Produce.Produce` with its request bytes counted against the broker's
//! memory pool before they are buffered.
//!
//! tonic's codec buffers a whole request before the handler runs, growing
//! its buffer as the frames arrive (up to twice the message, plus the copy
//! when it grows), and nothing bounds how many requests do so at once. This
//! route serves the method by hand: it reads the gRPC length prefix, reserves
//! that many bytes from the pool (waiting while it is full, as Kafka stops
//! reading from its sockets), reads the message into a buffer of exactly
//! that size, and keeps the reservation until the handler has appended or
//! dropped the batches. The bytes on the wire are ordinary gRPC; every other
//! method of `weir.v1.Produce` goes to the generated server.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use prost::Message;
use tokio::time::Instant;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::Status;

use crate::broker::Broker;
use crate::metrics::{grpc_error_name, grpc_status_name, Listener};
use crate::proto::produce_server::ProduceServer;
use crate::proto::{ProduceRequest, ProduceResponse};
use crate::rpc::grpc_message::{memory_wait, read_message, response, GRPC_PREFIX_BYTES};
use crate::rpc::raw_route::RawRoute;
use crate::rpc::{produce, ProduceService};

const PRODUCE_PATH: &str = "/weir.v1.Produce/Produce";

/// `weir.v1.Produce` with `Produce` served by hand (see the module docs).
pub type ProduceRoute = RawRoute<ProduceServer<ProduceService>>;

impl NamedService for ProduceRoute {
    const NAME: &'static str = <ProduceServer<ProduceService> as NamedService>::NAME;
}

/// The route for `generated`, with its `Produce` method served here.
pub fn route(broker: Arc<Broker>, generated: ProduceServer<ProduceService>) -> ProduceRoute {
    RawRoute::new(broker, generated, PRODUCE_PATH, |broker, request| {
        Box::pin(async move { serve(&broker, request).await })
    })
}

/// Serves one produce request and counts each failed partition's error code
/// (or the status of a request refused whole); `metrics::grpc` times it.
async fn serve(
    broker: &Broker,
    request: http::Request<Body>,
) -> Result<http::Response<Body>, Status> {
    let metrics = &broker.metrics().requests;
    let served = produce(broker, request).await;
    match &served {
        Ok((_, produced)) => {
            for result in produced.partitions.iter().filter(|r| r.error_code != 0) {
                metrics.error(
                    Listener::Grpc,
                    "Produce",
                    grpc_error_name(result.error_code),
                );
            }
        }
        Err(status) => metrics.error(Listener::Grpc, "Produce", grpc_status_name(status.code())),
    }
    served.map(|(response, _)| response)
}

async fn produce(
    broker: &Broker,
    request: http::Request<Body>,
) -> Result<(http::Response<Body>, ProduceResponse), Status> {
    let deadline = Instant::now() + memory_wait(request.headers());
    let limit = broker.config().request_bytes_max;
    let (message, memory) = read_message(
        request.into_body(),
        limit,
        broker.memory_pool(),
        deadline,
        Duration::from_millis(broker.config().request_body_timeout_ms),
        "a produce request",
    )
    .await?;
    let produce_request = ProduceRequest::decode(message)
        .map_err(|e| Status::invalid_argument(format!("cannot decode the produce request: {e}")))?;
    let produced = produce::handle(broker, produce_request)
        .await
        .map_err(Status::from)?;
    // The batches are appended or dropped by now.
    drop(memory);
    let len = produced.encoded_len();
    let mut framed = BytesMut::with_capacity(GRPC_PREFIX_BYTES + len);
    framed.put_u8(0);
    framed.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
    produced
        .encode(&mut framed)
        .map_err(|e| Status::internal(format!("cannot encode the produce response: {e}")))?;
    Ok((response(VecDeque::from([framed.freeze()]), None), produced))
}
