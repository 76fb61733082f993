//! Accepts Kafka connections: each holds a slot of the broker's one pool,
//! shared with the gRPC listener, for its lifetime, under the same limits and
//! deadlines (`connection_limit.rs`); a failed accept pauses accepting as
//! `accept_error.rs` says. Shutdown stops accepting, lets every connection
//! finish the request it is serving (an idle one closes at once), and cuts
//! what is left at the deadline.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::accept_error::AcceptErrors;
use crate::broker::Broker;
use crate::connection_limit::ListenerSlots;
use crate::error::BrokerError;
use crate::group_service::GroupService;
use crate::metrics::Listener;

/// A bound Kafka listener serving connections until the broker shuts down.
#[derive(Debug)]
pub struct KafkaListener {
    local_addr: SocketAddr,
    serving: JoinHandle<()>,
}

impl KafkaListener {
    /// Binds `addr` (port 0 picks a free port) and serves, admitting
    /// connections through `slots`, until the broker's closing signal.
    pub async fn start(
        addr: SocketAddr,
        broker: Arc<Broker>,
        groups: Arc<GroupService>,
        slots: ListenerSlots,
    ) -> Result<KafkaListener, BrokerError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| BrokerError::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| BrokerError::Bind { addr, source })?;
        let serving = tokio::spawn(accept(listener, broker, groups, slots));
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

async fn accept(
    listener: TcpListener,
    broker: Arc<Broker>,
    groups: Arc<GroupService>,
    slots: ListenerSlots,
) {
    let mut closing = broker.closing_signal();
    let mut connections = JoinSet::new();
    let accept_errors = AcceptErrors::new(Listener::Kafka);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    accept_errors.accepted();
                    if let Some(connection) = slots.admit(stream) {
                        let broker = Arc::clone(&broker);
                        let groups = Arc::clone(&groups);
                        connections.spawn(super::connection::serve(connection, broker, groups));
                    }
                }
                Err(error) => {
                    let pause = accept_errors.failed(&error);
                    if !pause.is_zero() {
                        tokio::select! {
                            () = tokio::time::sleep(pause) => {}
                            () = closed(&mut closing) => break,
                        }
                    }
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
