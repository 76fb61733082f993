//! Starting and stopping a broker: binds the listener, serves the gRPC
//! services, and shuts down cleanly (stop accepting, let in-flight requests
//! finish, close every log so it writes its clean checkpoint).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;

use crate::broker::Broker;
use crate::cluster::{
    BrokerRecord, ClusterConfig, MetadataCommand, MetadataQuorum, QuorumHandle, QuorumService,
};
use crate::config::BrokerConfig;
use crate::connection_limit::{self, ConnectionInfo, ConnectionLimits, ConnectionSlots};
use crate::error::BrokerError;
use crate::group_service::GroupService;
use crate::kafka::KafkaListener;
use crate::metrics::{GrpcMetricsLayer, Listener, MetricsServer};
use crate::proto::admin_server::AdminServer;
use crate::proto::fetch_server::FetchServer;
use crate::proto::group_server::GroupServer;
use crate::proto::produce_server::ProduceServer;
use crate::proto::quorum_server::QuorumServer;
use crate::proto::replica_server::ReplicaServer;
use crate::replication::ReplicaService;
use crate::rpc::{AdminService, FetchService, GroupRpc, ProduceService};

/// A broker serving requests on a bound address.
#[derive(Debug)]
pub struct RunningBroker {
    local_addr: SocketAddr,
    broker: Arc<Broker>,
    groups: Arc<GroupService>,
    stop: Option<oneshot::Sender<()>>,
    /// Turns true at the shutdown deadline: every connection, gRPC and
    /// Kafka, fails.
    cut: watch::Sender<bool>,
    /// The Kafka-protocol listener, when `kafka_listen` is set.
    kafka: Option<KafkaListener>,
    /// `/metrics`, `/healthz` and `/readyz`, when `metrics_listen` is set.
    metrics: Option<MetricsServer>,
    quorum: Option<MetadataQuorum>,
    serving: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl RunningBroker {
    /// Opens the data directory, reopens every partition and starts serving
    /// on `config.listen` (port 0 picks a free port; see [`Self::local_addr`]).
    pub async fn start(config: BrokerConfig) -> Result<RunningBroker, BrokerError> {
        RunningBroker::start_with_clock(config, crate::clock::system_clock()).await
    }

    /// [`Self::start`] with the clock that dates producers' appends.
    pub async fn start_with_clock(
        config: BrokerConfig,
        clock: crate::clock::SharedClock,
    ) -> Result<RunningBroker, BrokerError> {
        let listen = config.listen;
        let kafka_listen = config.kafka_listen;
        let metrics_listen = config.metrics_listen;
        let address_file = config.address_file.clone();
        let cluster = config.cluster()?;
        let broker = tokio::task::spawn_blocking(move || Broker::open_with_clock(config, clock))
            .await
            .map_err(|e| BrokerError::TaskFailed(e.to_string()))??;
        let broker = Arc::new(broker);
        let group_config = broker.config().groups.clone();
        let groups = Arc::new(GroupService::start(Arc::clone(&broker), group_config).await?);
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|source| BrokerError::Bind {
                addr: listen,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| BrokerError::Bind {
            addr: listen,
            source,
        })?;
        // Started before the Kafka listener, so a taken metrics port leaves
        // nothing running that holds the broker (and its data directory).
        let metrics = match metrics_listen {
            Some(addr) => {
                Some(MetricsServer::start(addr, Arc::clone(&broker), Arc::clone(&groups)).await?)
            }
            None => None,
        };
        // One pool of connection slots for both listeners (see `connection_limit`).
        let slots = ConnectionSlots::new(connection_limits(broker.config()));
        let (cut, cut_signal) = watch::channel(false);
        let kafka = match kafka_listen {
            Some(addr) => {
                let kafka_slots =
                    slots.listener(Listener::Kafka, broker.metrics(), cut_signal.clone());
                match KafkaListener::start(
                    addr,
                    Arc::clone(&broker),
                    Arc::clone(&groups),
                    kafka_slots,
                )
                .await
                {
                    Ok(kafka) => Some(kafka),
                    Err(error) => {
                        // Ends the metrics listener's accepting, which holds the broker.
                        broker.begin_shutdown();
                        return Err(error);
                    }
                }
            }
            None => None,
        };
        if let Some(path) = address_file {
            write_address_file(&path, local_addr)?;
        }
        let incoming = TcpIncoming::from(listener)
            .with_nodelay(Some(true))
            .with_keepalive(Some(Duration::from_secs(60)));
        let incoming = connection_limit::limit(
            incoming,
            slots.listener(Listener::Grpc, broker.metrics(), cut_signal),
        );
        let quorum = match &cluster {
            Some(cluster) => {
                let dir = crate::cluster::metadata_dir(&broker.config().data_dir);
                let cluster = cluster.clone();
                let quorum = match MetadataQuorum::start(&dir, &cluster) {
                    Ok(quorum) => quorum,
                    Err(error) => {
                        // Ends the Kafka and metrics listeners, which hold the broker.
                        broker.begin_shutdown();
                        return Err(error.into());
                    }
                };
                let registered = crate::replication::join(
                    &broker,
                    &cluster,
                    quorum.handle(),
                    broker.config().replica_lag_time_max_ms,
                );
                tokio::spawn(register_broker(
                    quorum.handle(),
                    cluster,
                    kafka_addr_of(&kafka),
                    registered,
                    broker.closing_signal(),
                ));
                Some(quorum)
            }
            None => None,
        };
        let quorum_service = quorum
            .as_ref()
            .zip(cluster.as_ref())
            .map(|(quorum, cluster)| QuorumServer::new(QuorumService::new(quorum, cluster)));
        let (stop, stopped) = oneshot::channel::<()>();
        let replica_service = quorum.as_ref().map(|_| {
            ReplicaServer::new(ReplicaService::new(Arc::clone(&broker)))
                .max_decoding_message_size(broker.config().request_bytes_max)
                .max_encoding_message_size(usize::MAX)
        });
        let router = router(&broker, &groups)
            .add_optional_service(quorum_service)
            .add_optional_service(replica_service);
        let serving = tokio::spawn(async move {
            router
                .serve_with_incoming_shutdown(incoming, async {
                    // A dropped sender also stops the server.
                    let _ = stopped.await;
                })
                .await
        });
        tokio::spawn(clean_periodically(Arc::clone(&broker)));
        tokio::spawn(crate::group_service::tick_periodically(
            Arc::clone(&groups),
            broker.closing_signal(),
        ));
        tracing::info!(%local_addr, "broker listening");
        Ok(RunningBroker {
            local_addr,
            broker,
            groups,
            stop: Some(stop),
            cut,
            kafka,
            metrics,
            quorum,
            serving,
        })
    }

    /// This broker's member of the metadata quorum, when it is in a cluster.
    pub fn quorum(&self) -> Option<&MetadataQuorum> {
        self.quorum.as_ref()
    }

    /// The address the broker listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address the Kafka-protocol listener is bound to, if it runs.
    pub fn kafka_addr(&self) -> Option<SocketAddr> {
        self.kafka.as_ref().map(KafkaListener::local_addr)
    }

    /// The address the metrics listener is bound to, if it runs.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(MetricsServer::local_addr)
    }

    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// The group coordinator.
    pub fn groups(&self) -> &Arc<GroupService> {
        &self.groups
    }

    /// Serves until `signal` completes, then shuts down cleanly.
    pub async fn run_until(self, signal: impl Future<Output = ()>) -> Result<(), BrokerError> {
        tokio::pin!(signal);
        let mut this = self;
        tokio::select! {
            () = &mut signal => {}
            served = &mut this.serving => {
                // The server stopped by itself: report why, still close the logs.
                let reason = match served {
                    Ok(Ok(())) => "stopped".to_string(),
                    Ok(Err(e)) => e.to_string(),
                    Err(e) => e.to_string(),
                };
                this.broker.close().await?;
                return Err(BrokerError::Serve { reason });
            }
        }
        this.shutdown().await
    }

    /// Stops accepting, wakes long polls, waits for in-flight requests for
    /// up to `shutdown_timeout_ms` (then cuts every connection and the
    /// requests on it), and closes every partition log.
    pub async fn shutdown(mut self) -> Result<(), BrokerError> {
        tracing::info!("broker shutting down");
        self.broker.begin_shutdown();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let timeout_ms = self.broker.config().shutdown_timeout_ms;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms);
        let served = match tokio::time::timeout(
            Duration::from_millis(timeout_ms),
            &mut self.serving,
        )
        .await
        {
            Ok(served) => served,
            Err(_) => {
                tracing::warn!(
                    shutdown_timeout_ms = timeout_ms,
                    "requests still in flight at the shutdown deadline; cutting their connections"
                );
                self.cut.send_replace(true);
                (&mut self.serving).await
            }
        };
        if let Some(kafka) = self.kafka.take() {
            // The closing signal sent by `begin_shutdown` stopped its accepting.
            kafka
                .stop(deadline.saturating_duration_since(tokio::time::Instant::now()))
                .await;
        }
        if let Some(metrics) = self.metrics.take() {
            // `begin_shutdown` ended its accepting too.
            metrics.stop().await;
        }
        if let Some(mut quorum) = self.quorum.take() {
            // Joins its thread, which finishes at most one Ready round.
            tokio::task::spawn_blocking(move || quorum.stop())
                .await
                .map_err(|e| BrokerError::TaskFailed(e.to_string()))?;
        }
        let closed = self.broker.close().await;
        match served {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "server ended with an error"),
            Err(e) => tracing::warn!(error = %e, "server task failed"),
        }
        closed?;
        tracing::info!("broker stopped");
        Ok(())
    }
}

fn kafka_addr_of(kafka: &Option<KafkaListener>) -> Option<String> {
    kafka.as_ref().map(|k| k.local_addr().to_string())
}

/// Announces this broker through the metadata log, retrying until a
/// controller takes it (a cluster whose majority is not up yet has none) or
/// the broker closes, then raises `registered`.
async fn register_broker(
    quorum: QuorumHandle,
    cluster: ClusterConfig,
    kafka_address: Option<String>,
    registered: watch::Sender<bool>,
    mut closing: watch::Receiver<bool>,
) {
    let record = BrokerRecord {
        node_id: cluster.node_id,
        address: cluster.peers[&cluster.node_id].clone(),
        kafka_address,
    };
    loop {
        let attempt = quorum.propose(
            MetadataCommand::RegisterBroker(record.clone()),
            Duration::from_secs(5),
        );
        tokio::select! {
            result = attempt => match result {
                Ok(index) => {
                    tracing::info!(node_id = record.node_id, index, "registered with the cluster");
                    registered.send_replace(true);
                    return;
                }
                Err(error) => tracing::debug!(%error, "registration not taken yet"),
            },
            _ = closing.changed() => return,
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = closing.changed() => return,
        }
    }
}

fn connection_limits(config: &BrokerConfig) -> ConnectionLimits {
    ConnectionLimits {
        connections_max: config.connections_max,
        connections_max_per_ip: config.connections_max_per_ip,
        connections_max_per_ip_overrides: config.connections_max_per_ip_overrides.clone(),
        first_request_timeout: Duration::from_millis(config.connection_first_request_timeout_ms),
        idle_timeout: Duration::from_millis(config.connections_max_idle_ms),
    }
}

type GrpcRequest = http::Request<tonic::body::Body>;
type GrpcResponse = http::Response<tonic::body::Body>;
type RewriteResponse = fn(GrpcResponse) -> GrpcResponse;
type SeeRequest = fn(GrpcRequest) -> GrpcRequest;
type BrokerRouter = tonic::transport::server::Router<
    tower::layer::util::Stack<
        GrpcMetricsLayer,
        tower::layer::util::Stack<
            tower::util::MapRequestLayer<SeeRequest>,
            tower::layer::util::Stack<
                tower::util::MapResponseLayer<RewriteResponse>,
                tower::layer::util::Identity,
            >,
        >,
    >,
>;

fn router(broker: &Arc<Broker>, groups: &Arc<GroupService>) -> BrokerRouter {
    let config = broker.config();
    let decode_max = config.request_bytes_max;
    let encode_max = config
        .fetch_bytes_max
        .saturating_add(config.request_bytes_max);
    let admin = AdminServer::new(AdminService::new(Arc::clone(broker)))
        .max_decoding_message_size(decode_max)
        .max_encoding_message_size(encode_max);
    let produce = ProduceServer::new(ProduceService::new(Arc::clone(broker)))
        .max_decoding_message_size(decode_max)
        .max_encoding_message_size(encode_max);
    let fetch = FetchServer::new(FetchService::new(Arc::clone(broker)))
        .max_decoding_message_size(decode_max)
        .max_encoding_message_size(encode_max);
    let group = GroupServer::new(GroupRpc::new(Arc::clone(groups)))
        .max_decoding_message_size(decode_max)
        .max_encoding_message_size(encode_max);
    Server::builder()
        // The windows and frame and header sizes bound what HTTP/2 buffers
        // per connection (`BrokerConfig::connection_buffer_bytes_max`).
        .initial_stream_window_size(config.stream_window_bytes)
        .initial_connection_window_size(config.connection_window_bytes)
        .max_frame_size(config.frame_bytes_max)
        .http2_max_header_list_size(config.header_list_bytes_max)
        .max_concurrent_streams(config.requests_per_connection_max)
        .layer(tower::util::MapResponseLayer::new(
            oversize_is_resource_exhausted as RewriteResponse,
        ))
        .layer(tower::util::MapRequestLayer::new(
            mark_request as SeeRequest,
        ))
        // Added last, so innermost: it sees each request as routed.
        .layer(GrpcMetricsLayer::new(Arc::clone(broker)))
        .add_service(admin)
        .add_service(group)
        .add_service(crate::rpc::produce_route::route(
            Arc::clone(broker),
            produce,
        ))
        .add_service(crate::rpc::fetch_route::route(Arc::clone(broker), fetch))
}

/// A request arrived on its connection: the connection keeps its slot from
/// its first request on (see `connection_limit`).
fn mark_request(request: GrpcRequest) -> GrpcRequest {
    if let Some(info) = request.extensions().get::<ConnectionInfo>() {
        info.mark_request();
    }
    request
}

/// tonic refuses a message over the decode limit from its length prefix,
/// before buffering it, but says OUT_OF_RANGE; gRPC's code for a request over
/// a size limit is RESOURCE_EXHAUSTED, which clients treat as not retriable.
fn oversize_is_resource_exhausted(
    mut response: http::Response<tonic::body::Body>,
) -> http::Response<tonic::body::Body> {
    let headers = response.headers_mut();
    let out_of_range = headers
        .get("grpc-status")
        .is_some_and(|code| code.as_bytes() == b"11");
    let oversize = headers.get("grpc-message").is_some_and(|message| {
        message
            .to_str()
            .is_ok_and(|m| m.contains("decoded%20message%20length%20too%20large"))
    });
    if out_of_range && oversize {
        headers.insert("grpc-status", http::HeaderValue::from_static("8"));
    }
    response
}

/// Retention and compaction every `retention_check_interval_ms`, until shutdown.
async fn clean_periodically(broker: Arc<Broker>) {
    let interval = Duration::from_millis(broker.config().retention_check_interval_ms);
    let mut closing = broker.closing_signal();
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            _ = closing.changed() => return,
        }
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        broker.clean_all(now_ms).await;
    }
}

fn write_address_file(path: &std::path::Path, addr: SocketAddr) -> Result<(), BrokerError> {
    // Write then rename, so a reader polling for the file never sees half an address.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{addr}\n"))
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|source| BrokerError::Io {
            op: "write address file",
            path: path.to_path_buf(),
            source,
        })
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; stopping on SIGINT only");
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
