//! Every gRPC request's count and latency, per method, from a tower layer
//! around the whole router: the method comes from the request's path, looked
//! up in a fixed table (an unknown path counts as `Other`), so a label never
//! holds what a client chose. The latency ends when the response's headers
//! are ready; the hand-served `Produce` and `Fetch` have built their whole
//! response by then. Their per-partition errors are counted by their routes.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower::{Layer, Service};

use super::{Listener, RequestMetrics};
use crate::broker::Broker;

/// The gRPC methods served, by path, and their `api` label.
const METHODS: [(&str, &str); 23] = [
    ("/weir.v1.Admin/CreateTopic", "CreateTopic"),
    ("/weir.v1.Admin/ListTopics", "ListTopics"),
    ("/weir.v1.Admin/DescribeTopic", "DescribeTopic"),
    ("/weir.v1.Admin/DeleteTopic", "DeleteTopic"),
    ("/weir.v1.Admin/AlterConfigs", "AlterConfigs"),
    ("/weir.v1.Admin/CreatePartitions", "CreatePartitions"),
    ("/weir.v1.Produce/Produce", "Produce"),
    ("/weir.v1.Produce/InitProducerId", "InitProducerId"),
    ("/weir.v1.Fetch/Fetch", "Fetch"),
    ("/weir.v1.Fetch/ListOffsets", "ListOffsets"),
    (
        "/weir.v1.Group/ConsumerGroupHeartbeat",
        "ConsumerGroupHeartbeat",
    ),
    ("/weir.v1.Group/FindCoordinator", "FindCoordinator"),
    ("/weir.v1.Group/OffsetCommit", "OffsetCommit"),
    ("/weir.v1.Group/OffsetFetch", "OffsetFetch"),
    ("/weir.v1.Group/ListGroups", "ListGroups"),
    ("/weir.v1.Group/DescribeGroup", "DescribeGroup"),
    ("/weir.v1.Group/DeleteGroup", "DeleteGroup"),
    ("/weir.v1.Group/ResetOffsets", "ResetOffsets"),
    ("/weir.v1.Quorum/Step", "Step"),
    ("/weir.v1.Quorum/StepChunk", "StepChunk"),
    ("/weir.v1.Quorum/ClusterStatus", "ClusterStatus"),
    ("/weir.v1.Replica/ReplicaFetch", "ReplicaFetch"),
    (
        "/weir.v1.Replica/OffsetsForLeaderEpoch",
        "OffsetsForLeaderEpoch",
    ),
];

/// The `api` label of a request path.
pub(crate) fn grpc_api(path: &str) -> &'static str {
    METHODS
        .iter()
        .find(|(method_path, _)| *method_path == path)
        .map_or("Other", |(_, api)| api)
}

/// Counts and times every request of the service it wraps.
#[derive(Debug, Clone)]
pub struct GrpcMetricsLayer {
    broker: Arc<Broker>,
}

impl GrpcMetricsLayer {
    pub(crate) fn new(broker: Arc<Broker>) -> Self {
        GrpcMetricsLayer { broker }
    }
}

impl<S> Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> GrpcMetrics<S> {
        GrpcMetrics {
            inner,
            broker: Arc::clone(&self.broker),
        }
    }
}

#[derive(Debug, Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
    broker: Arc<Broker>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> Service<http::Request<B>> for GrpcMetrics<S>
where
    S: Service<http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let timer = RequestMetrics::start(Listener::Grpc, grpc_api(request.uri().path()));
        let served = self.inner.call(request);
        let broker = Arc::clone(&self.broker);
        Box::pin(async move {
            let response = served.await;
            timer.finish(&broker.metrics().requests);
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_of_weir_proto_has_its_own_label() {
        let proto = include_str!("../../../proto/weir.proto");
        let mut service = "";
        let mut methods = 0;
        for line in proto.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("service ") {
                service = rest.trim_end_matches('{').trim();
            } else if let Some(rest) = line.strip_prefix("rpc ") {
                let method = rest.split('(').next().unwrap().trim();
                let path = format!("/weir.v1.{service}/{method}");
                assert_eq!(grpc_api(&path), method, "{path}");
                methods += 1;
            }
        }
        assert_eq!(
            methods,
            METHODS.len(),
            "a method in the table is not in weir.proto"
        );
        assert_eq!(grpc_api("/weir.v1.Admin/Nothing"), "Other");
    }
}
