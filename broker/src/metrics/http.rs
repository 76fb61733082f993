//! The metrics listener (`metrics_listen`): plain HTTP/1.1 on hyper, which the
//! broker already builds for gRPC, with three paths:
//!
//! - `/metrics`: the exposition, in OpenMetrics text when the scraper asks
//!   for it (Prometheus does), else in Prometheus' text format 0.0.4;
//! - `/healthz`: 200 while the process serves at all;
//! - `/readyz`: 200 when every partition's log opened, else 503 naming the
//!   offline partitions and why (or that the broker is shutting down).
//!
//! Bounded like the rest of the broker: at most [`CONNECTIONS_MAX`] scrapers at
//! once (one more is closed at once), and a request's headers must arrive
//! within [`HEADER_READ_TIMEOUT`]. It stops when the broker begins to shut down.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};

use super::fsync::FsyncCollector;
use super::scrape::{BrokerCollector, GroupsCollector};
use super::text_format::{
    to_prometheus_text, wants_openmetrics, OPENMETRICS_CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE,
};
use crate::broker::Broker;
use crate::error::BrokerError;
use crate::group_service::GroupService;

/// Scrapers served at once; Prometheus uses one connection per target.
pub const CONNECTIONS_MAX: usize = 16;
/// How long a scraper may take to send its request headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A bound metrics listener, serving until the broker shuts down.
#[derive(Debug)]
pub struct MetricsServer {
    local_addr: SocketAddr,
    serving: JoinHandle<()>,
}

/// What every request of the metrics listener reads.
#[derive(Debug)]
struct Exposition {
    broker: Arc<Broker>,
    groups: Arc<GroupService>,
    registry: Registry,
}

impl MetricsServer {
    /// Binds `addr` (port 0 picks a free port) and serves until the broker's
    /// closing signal.
    pub async fn start(
        addr: SocketAddr,
        broker: Arc<Broker>,
        groups: Arc<GroupService>,
    ) -> Result<MetricsServer, BrokerError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| BrokerError::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| BrokerError::Bind { addr, source })?;
        let mut registry = Registry::default();
        broker.metrics().register(&mut registry);
        registry.register_collector(Box::new(BrokerCollector {
            broker: Arc::clone(&broker),
        }));
        registry.register_collector(Box::new(FsyncCollector));
        let exposition = Arc::new(Exposition {
            broker,
            groups,
            registry,
        });
        let serving = tokio::spawn(accept(listener, exposition));
        tracing::info!(%local_addr, "metrics listening");
        Ok(MetricsServer {
            local_addr,
            serving,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Waits for the accept loop, which the broker's closing signal ends,
    /// and closes every scraper's connection.
    pub async fn stop(self) {
        if let Err(error) = self.serving.await {
            if error.is_panic() {
                tracing::error!(%error, "the metrics listener panicked");
            }
        }
    }
}

async fn accept(listener: TcpListener, exposition: Arc<Exposition>) {
    let permits = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    let mut closing = exposition.broker.closing_signal();
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(%error, "cannot accept a metrics connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                    tracing::warn!(%peer, CONNECTIONS_MAX, "refused a metrics connection: too many open");
                    continue;
                };
                let exposition = Arc::clone(&exposition);
                connections.spawn(async move {
                    let service = service_fn(move |request| {
                        let exposition = Arc::clone(&exposition);
                        async move { Ok::<_, Infallible>(respond(&exposition, &request).await) }
                    });
                    let served = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(HEADER_READ_TIMEOUT)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                    if let Err(error) = served {
                        tracing::debug!(%peer, %error, "metrics connection ended");
                    }
                    drop(permit);
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = closed(&mut closing) => break,
        }
    }
    // Dropping the set closes every scraper's connection.
}

/// Completes once the broker begins to shut down (or is gone).
async fn closed(closing: &mut tokio::sync::watch::Receiver<bool>) {
    // Mapped to (): the guard `wait_for` returns must not live across an await.
    let _ = closing.wait_for(|closing| *closing).await.map(|_| ());
}

async fn respond<B>(
    exposition: &Exposition,
    request: &http::Request<B>,
) -> http::Response<Full<Bytes>> {
    if request.method() != http::Method::GET && request.method() != http::Method::HEAD {
        return text(
            http::StatusCode::METHOD_NOT_ALLOWED,
            "use GET\n".to_string(),
        );
    }
    match request.uri().path() {
        "/metrics" => {
            let openmetrics = wants_openmetrics(request.headers().get(http::header::ACCEPT));
            metrics(exposition, openmetrics).await
        }
        "/healthz" => text(http::StatusCode::OK, "ok\n".to_string()),
        "/readyz" => readiness(&exposition.broker),
        _ => text(
            http::StatusCode::NOT_FOUND,
            "not found: try /metrics, /healthz or /readyz\n".to_string(),
        ),
    }
}

async fn metrics(exposition: &Exposition, openmetrics: bool) -> http::Response<Full<Bytes>> {
    let groups = GroupsCollector::read(&exposition.groups, &exposition.broker).await;
    let mut per_scrape = Registry::default();
    per_scrape.register_collector(Box::new(groups));
    let mut body = String::new();
    let encoded = encode_registry(&mut body, &exposition.registry)
        .and_then(|()| encode_registry(&mut body, &per_scrape))
        .and_then(|()| encode_eof(&mut body));
    match encoded {
        Ok(()) if openmetrics => response(http::StatusCode::OK, OPENMETRICS_CONTENT_TYPE, body),
        Ok(()) => response(
            http::StatusCode::OK,
            PROMETHEUS_CONTENT_TYPE,
            to_prometheus_text(&body),
        ),
        Err(_) => text(
            http::StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode the metrics\n".to_string(),
        ),
    }
}

/// 200 when every partition is online; 503 naming the offline ones.
fn readiness(broker: &Broker) -> http::Response<Full<Bytes>> {
    if broker.is_closing() {
        return text(
            http::StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the broker is shutting down\n".to_string(),
        );
    }
    let topics = broker.topics().unwrap_or_default();
    let mut offline = String::new();
    for topic in &topics {
        for partition in &topic.partitions {
            if let Some(cause) = partition.offline_cause() {
                let _ = writeln!(
                    offline,
                    "topic {:?} partition {} is offline: {cause}",
                    topic.name,
                    partition.index()
                );
            }
        }
    }
    if offline.is_empty() {
        text(http::StatusCode::OK, "ready\n".to_string())
    } else {
        text(
            http::StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: partitions are offline\n{offline}"),
        )
    }
}

fn text(status: http::StatusCode, body: String) -> http::Response<Full<Bytes>> {
    response(status, "text/plain; charset=utf-8", body)
}

fn response(
    status: http::StatusCode,
    content_type: &'static str,
    body: String,
) -> http::Response<Full<Bytes>> {
    let mut response = http::Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response
}
