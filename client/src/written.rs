//! Knowing when a request has been written: a channel wrapper that, for a
//! request carrying a [`WrittenSignal`] extension, fires it once the HTTP/2
//! connection has taken the whole request body (every byte handed to the
//! connection's send queue, within its flow-control window).
//!
//! acks=0 resolves delivery futures at that point, as Kafka's producer does
//! once its request is on the socket, instead of after the broker's answer.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::oneshot;
use tonic::body::Body;
use tonic::transport::Channel;
use tower::Service;

/// Put into a request's extensions; fires when its body has been written.
#[derive(Debug, Clone)]
pub(crate) struct WrittenSignal(Arc<Mutex<Option<oneshot::Sender<()>>>>);

impl WrittenSignal {
    pub(crate) fn new() -> (WrittenSignal, oneshot::Receiver<()>) {
        let (sender, receiver) = oneshot::channel();
        (WrittenSignal(Arc::new(Mutex::new(Some(sender)))), receiver)
    }

    fn fire(&self) {
        if let Some(sender) = self.0.lock().ok().and_then(|mut s| s.take()) {
            let _ = sender.send(());
        }
    }
}

/// A [`Channel`] that fires the [`WrittenSignal`] of the requests that carry one.
#[derive(Debug, Clone)]
pub(crate) struct SignallingChannel {
    inner: Channel,
}

impl SignallingChannel {
    pub(crate) fn new(inner: Channel) -> Self {
        SignallingChannel { inner }
    }
}

impl Service<http::Request<Body>> for SignallingChannel {
    type Response = <Channel as Service<http::Request<Body>>>::Response;
    type Error = <Channel as Service<http::Request<Body>>>::Error;
    type Future = <Channel as Service<http::Request<Body>>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Service::<http::Request<Body>>::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        if let Some(signal) = request.extensions_mut().remove::<WrittenSignal>() {
            request = request.map(|inner| Body::new(SignallingBody { inner, signal }));
        }
        self.inner.call(request)
    }
}

/// Passes the body through and fires the signal at its end.
struct SignallingBody {
    inner: Body,
    signal: WrittenSignal,
}

impl HttpBody for SignallingBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            self.signal.fire();
        } else if let Poll::Ready(Some(Ok(_))) = polled {
            if self.inner.is_end_stream() {
                self.signal.fire();
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
