//! One gRPC method served by hand in front of its generated server: requests for
//! `path` go to `serve` (which reads and writes the gRPC framing itself), every
//! other method of the service to the generated server. `produce_route` and
//! `fetch_route` use it for the two methods whose bytes must not pass through
//! tonic's codec.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::Status;
use tower::Service;

use crate::broker::Broker;

pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Serves the hand-written method; an error becomes the response's gRPC status.
pub(crate) type RawServe =
    fn(Arc<Broker>, http::Request<Body>) -> BoxFuture<Result<http::Response<Body>, Status>>;

/// A generated server `S` with one of its methods served by [`RawServe`].
#[derive(Clone)]
pub struct RawRoute<S> {
    broker: Arc<Broker>,
    generated: S,
    path: &'static str,
    serve: RawServe,
}

impl<S> RawRoute<S> {
    pub(crate) fn new(
        broker: Arc<Broker>,
        generated: S,
        path: &'static str,
        serve: RawServe,
    ) -> Self {
        RawRoute {
            broker,
            generated,
            path,
            serve,
        }
    }
}

impl<S> Service<http::Request<Body>> for RawRoute<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if request.uri().path() != self.path {
            let mut generated = self.generated.clone();
            return Box::pin(async move { generated.call(request).await });
        }
        let served = (self.serve)(Arc::clone(&self.broker), request);
        let path = self.path;
        Box::pin(async move {
            Ok(match served.await {
                Ok(response) => response,
                Err(status) => {
                    tracing::debug!(%status, path, "request failed");
                    status.into_http()
                }
            })
        })
    }
}
