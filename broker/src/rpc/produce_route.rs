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
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{BufMut, BytesMut};
use prost::Message;
use tokio::time::Instant;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::Status;
use tower::Service;

use crate::broker::Broker;
use crate::proto::produce_server::ProduceServer;
use crate::proto::ProduceRequest;
use crate::rpc::grpc_message::{memory_wait, read_message, response, GRPC_PREFIX_BYTES};
use crate::rpc::{produce, ProduceService};

const PRODUCE_PATH: &str = "/weir.v1.Produce/Produce";

/// `weir.v1.Produce` with the memory-bounded `Produce` method.
#[derive(Clone)]
pub struct ProduceRoute {
    broker: Arc<Broker>,
    generated: ProduceServer<ProduceService>,
}

impl ProduceRoute {
    pub fn new(broker: Arc<Broker>, generated: ProduceServer<ProduceService>) -> Self {
        ProduceRoute { broker, generated }
    }
}

impl NamedService for ProduceRoute {
    const NAME: &'static str = <ProduceServer<ProduceService> as NamedService>::NAME;
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl Service<http::Request<Body>> for ProduceRoute {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if request.uri().path() != PRODUCE_PATH {
            let mut generated = self.generated.clone();
            return Box::pin(async move { generated.call(request).await });
        }
        let broker = Arc::clone(&self.broker);
        Box::pin(async move {
            let response = match serve(&broker, request).await {
                Ok(response) => response,
                Err(status) => {
                    tracing::debug!(%status, "produce failed");
                    status.into_http()
                }
            };
            Ok(response)
        })
    }
}

async fn serve(
    broker: &Broker,
    request: http::Request<Body>,
) -> Result<http::Response<Body>, Status> {
    let deadline = Instant::now() + memory_wait(request.headers());
    let limit = broker.config().request_bytes_max;
    let (message, memory) = read_message(
        request.into_body(),
        limit,
        broker.memory_pool(),
        deadline,
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
    Ok(response(VecDeque::from([framed.freeze()]), None))
}
