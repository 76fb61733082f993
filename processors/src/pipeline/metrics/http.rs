//! The metrics listener of pipelines (`Runnable::metrics_listen`,
//! `PipelineMetrics::serve`): plain HTTP/1.1 on hyper, which tonic already
//! builds for the client, serving `/metrics` in OpenMetrics text when the
//! scraper asks for it (Prometheus does), else in Prometheus' text format 0.0.4.
//!
//! Bounded as the broker's: at most [`CONNECTIONS_MAX`] scrapers at once (one
//! more is closed at once), and a request's headers must arrive within
//! [`HEADER_READ_TIMEOUT`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

use super::text_format::{
    to_prometheus_text, wants_openmetrics, OPENMETRICS_CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE,
};
use super::PipelineMetrics;

/// Scrapers served at once; Prometheus uses one connection per target.
pub const CONNECTIONS_MAX: usize = 16;
/// How long a scraper may take to send its request headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A bound metrics listener, serving until [`MetricsServer::stop`] or until
/// it is dropped.
#[derive(Debug)]
pub struct MetricsServer {
    local_addr: SocketAddr,
    stopping: watch::Sender<bool>,
    serving: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Serves `metrics` on `listener`, from a task of the current runtime.
    pub(crate) fn start(
        listener: TcpListener,
        metrics: PipelineMetrics,
    ) -> std::io::Result<MetricsServer> {
        let local_addr = listener.local_addr()?;
        let (stopping, stopped) = watch::channel(false);
        let serving = tokio::spawn(accept(listener, Arc::new(metrics), stopped));
        tracing::info!(%local_addr, "pipeline metrics listening");
        Ok(MetricsServer {
            local_addr,
            stopping,
            serving: Some(serving),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, closes every scraper's connection, and waits until the
    /// listener is closed.
    pub async fn stop(mut self) {
        let _ = self.stopping.send(true);
        if let Some(serving) = self.serving.take() {
            if let Err(error) = serving.await {
                if error.is_panic() {
                    tracing::error!(%error, "the pipeline metrics listener panicked");
                }
            }
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        // The accept loop ends on its own; nothing waits for it.
        let _ = self.stopping.send(true);
    }
}

async fn accept(
    listener: TcpListener,
    metrics: Arc<PipelineMetrics>,
    mut stopped: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors, say: a pause, not a busy loop.
                        tracing::warn!(%error, "cannot accept a metrics connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                    tracing::warn!(%peer, CONNECTIONS_MAX, "refused a metrics connection: too many open");
                    continue;
                };
                let metrics = Arc::clone(&metrics);
                connections.spawn(async move {
                    let service = service_fn(move |request| {
                        let metrics = Arc::clone(&metrics);
                        async move { Ok::<_, Infallible>(respond(&metrics, &request)) }
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
            () = stop_asked(&mut stopped) => break,
        }
    }
    // Dropping the set closes every scraper's connection.
}

/// Completes once a stop is asked, or the server is dropped.
async fn stop_asked(stopped: &mut watch::Receiver<bool>) {
    // Mapped to (): the guard `wait_for` returns must not live across an await.
    let _ = stopped.wait_for(|stopped| *stopped).await.map(|_| ());
}

fn respond<B>(
    metrics: &PipelineMetrics,
    request: &http::Request<B>,
) -> http::Response<Full<Bytes>> {
    if request.method() != http::Method::GET && request.method() != http::Method::HEAD {
        return response(
            http::StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "use GET\n".to_string(),
        );
    }
    if request.uri().path() != "/metrics" {
        return response(
            http::StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found: try /metrics\n".to_string(),
        );
    }
    let openmetrics = metrics.encode_openmetrics();
    if wants_openmetrics(request.headers().get(http::header::ACCEPT)) {
        response(http::StatusCode::OK, OPENMETRICS_CONTENT_TYPE, openmetrics)
    } else {
        response(
            http::StatusCode::OK,
            PROMETHEUS_CONTENT_TYPE,
            to_prometheus_text(&openmetrics),
        )
    }
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

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    async fn get(addr: SocketAddr, path: &str, accept: &str) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: weir\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    }

    #[tokio::test]
    async fn serves_the_format_asked_for_until_stopped() {
        let metrics = PipelineMetrics::new();
        let mut meter = super::super::OperatorMeter::new("map-1".to_string());
        meter.bind(&metrics, &Arc::from("g"), false);
        let server = metrics.serve("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr();
        let openmetrics = get(addr, "/metrics", "application/openmetrics-text").await;
        assert!(openmetrics.starts_with("HTTP/1.1 200"), "{openmetrics}");
        assert!(openmetrics.contains(OPENMETRICS_CONTENT_TYPE));
        assert!(openmetrics.contains("# TYPE weir_processor_records_in counter"));
        assert!(openmetrics.ends_with("# EOF\n"));
        let text = get(addr, "/metrics", "*/*").await;
        assert!(text.contains(PROMETHEUS_CONTENT_TYPE));
        assert!(text.contains("# TYPE weir_processor_records_in_total counter"));
        assert!(!text.contains("# EOF"));
        let missing = get(addr, "/other", "*/*").await;
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
        server.stop().await;
        assert!(TcpStream::connect(addr).await.is_err());
    }
}
