//! Accepts Kafka connections: each holds one of `connections_max` permits
//! (counted apart from gRPC's) for its lifetime; one accepted past the limit
//! is closed at once, with a warning. Shutdown stops accepting, lets every
//! connection finish the request it is serving (an idle one closes at once),
//! and cuts what is left at the deadline.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

use crate::broker::Broker;
use crate::error::BrokerError;
use crate::group_service::GroupService;
use crate::metrics::Listener;
use crate::refusal_log::{RefusalLog, REFUSAL_LOG_INTERVAL};

/// How long accepting pauses after the kernel refused a connection (out of
/// file descriptors, say), so the loop does not spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// A bound Kafka listener serving connections until the broker shuts down.
#[derive(Debug)]
pub struct KafkaListener {
    local_addr: SocketAddr,
    serving: JoinHandle<()>,
}

impl KafkaListener {
    /// Binds `addr` (port 0 picks a free port) and serves until the broker's
    /// closing signal.
    pub async fn start(
        addr: SocketAddr,
        broker: Arc<Broker>,
        groups: Arc<GroupService>,
    ) -> Result<KafkaListener, BrokerError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| BrokerError::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| BrokerError::Bind { addr, source })?;
        let serving = tokio::spawn(accept(listener, broker, groups));
        tracing::info!(%local_addr, "Kafka listener listening");
        Ok(KafkaListener {
            local_addr,
            serving,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Waits (the broker's closing signal must have been sent) until every
    /// connection finished its request, or `timeout`, then cuts the rest.
    pub async fn stop(mut self, timeout: Duration) {
        if tokio::time::timeout(timeout, &mut self.serving)
            .await
            .is_err()
        {
            tracing::warn!(
                timeout_ms = timeout.as_millis(),
                "Kafka requests still in flight at the shutdown deadline; cutting their connections"
            );
            // Dropping the accept task's connection set aborts every connection.
            self.serving.abort();
            let _ = self.serving.await;
        }
    }
}

async fn accept(listener: TcpListener, broker: Arc<Broker>, groups: Arc<GroupService>) {
    let connections_max = broker.config().connections_max;
    let permits = Arc::new(Semaphore::new(connections_max.min(Semaphore::MAX_PERMITS)));
    let mut closing = broker.closing_signal();
    let mut connections = JoinSet::new();
    let open = broker.metrics().connections(Listener::Kafka);
    let refusals = RefusalLog::new(REFUSAL_LOG_INTERVAL);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => match Arc::clone(&permits).try_acquire_owned() {
                    Ok(permit) => {
                        let broker = Arc::clone(&broker);
                        let counted = open.open();
                        let groups = Arc::clone(&groups);
                        connections.spawn(async move {
                            super::connection::serve(stream, peer, broker, groups).await;
                            drop(counted);
                            drop(permit);
                        });
                    }
                    Err(_) => {
                        open.refused();
                        refusals.warn(
                        peer,
                        format_args!("{connections_max} Kafka connections are open (connections_max)"),
                        );
                    }
                },
                Err(error) => {
                    tracing::warn!(%error, "cannot accept a Kafka connection");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                }
            },
            Some(joined) = connections.join_next(), if !connections.is_empty() => {
                if let Err(error) = joined {
                    if error.is_panic() {
                        tracing::error!(%error, "a Kafka connection's task panicked");
                    }
                }
            }
            () = closed(&mut closing) => break,
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// Completes once the broker begins to shut down (or is gone).
pub async fn closed(closing: &mut watch::Receiver<bool>) {
    // Mapped to (): the guard `wait_for` returns must not live across an await.
    let _ = closing.wait_for(|closing| *closing).await.map(|_| ());
}
