//! Broker settings: defaults, then a `weir.toml` file, then `WEIR_*`
//! environment variables; the command line applies its flags last.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;
use weir_log::{FsyncPolicy, LogConfig};

/// Default listen address of the broker and default address of clients.
pub const LISTEN_DEFAULT: &str = "127.0.0.1:9292";
/// The address Kafka clients expect a broker on (Kafka's own default port),
/// for a command line that turns the Kafka listener on by default.
pub const KAFKA_LISTEN_DEFAULT: &str = "127.0.0.1:9092";
/// Where a loaded broker serves `/metrics`, `/healthz` and `/readyz`: next to
/// the gRPC port (9292), as Kafka exporters sit next to their broker.
pub const METRICS_LISTEN_DEFAULT: &str = "127.0.0.1:9293";
/// Default data directory, relative to the working directory.
pub const DATA_DIR_DEFAULT: &str = "./weir-data";
/// Largest request the broker decodes by default: room for a few MiB batches.
pub const REQUEST_BYTES_MAX_DEFAULT: usize = 16 * 1024 * 1024;
/// Largest fetch response the broker builds by default.
pub const FETCH_BYTES_MAX_DEFAULT: usize = 16 * 1024 * 1024;
/// How often retention and compaction run (Kafka's `log.retention.check.interval.ms`).
pub const RETENTION_CHECK_INTERVAL_MS_DEFAULT: u64 = 300_000;
/// How long an idle idempotent producer is remembered (Kafka's
/// `producer.id.expiration.ms`: one day).
pub const PRODUCER_ID_EXPIRATION_MS_DEFAULT: u64 = 86_400_000;
/// Longest long poll a fetch may ask for.
pub const FETCH_WAIT_MS_MAX_DEFAULT: u32 = 30_000;
/// Open client connections at most (Kafka's `max.connections`).
pub const CONNECTIONS_MAX_DEFAULT: usize = 1024;
/// Open connections from one address at most (Kafka's `max.connections.per.ip`,
/// unbounded there): a quarter of `connections_max`, so one host cannot take
/// every slot. Connections that made no request yet give way to new ones (see
/// `connection_limit`), so this bounds working connections.
pub const CONNECTIONS_MAX_PER_IP_DEFAULT: usize = 256;
/// A connection with no byte read or written this long is closed (Kafka's
/// `connections.max.idle.ms`: 10 minutes).
pub const CONNECTIONS_MAX_IDLE_MS_DEFAULT: u64 = 600_000;
/// A connection that has made no request this long after it was accepted is
/// closed: a TCP and HTTP/2 handshake and a request take milliseconds, so 10 s
/// leaves room for a slow network while a socket that never speaks gives its
/// slot back soon. (Kafka has no such deadline.)
pub const CONNECTION_FIRST_REQUEST_TIMEOUT_MS_DEFAULT: u64 = 10_000;
/// HTTP/2 receive windows (hyper's defaults): the request bytes a client may
/// have sent that the broker has not read yet, per stream and per connection.
/// The connection window bounds what HTTP/2 buffers for one connection below
/// the memory pool, so `connections_max` times it (plus a frame and a header
/// block) is the broker's buffering outside the pool.
pub const STREAM_WINDOW_BYTES_DEFAULT: u32 = 1024 * 1024;
pub const CONNECTION_WINDOW_BYTES_DEFAULT: u32 = 1024 * 1024;
/// The largest HTTP/2 frame a client may send: one partly received frame is
/// buffered per connection, so it is part of the per-connection bound. 64 KiB
/// is 16 frames per MiB of request, where HTTP/2's 16 KiB minimum is 64.
pub const FRAME_BYTES_MAX_DEFAULT: u32 = 64 * 1024;
/// The largest HTTP/2 header block a client may send (hyper's default).
pub const HEADER_LIST_BYTES_MAX_DEFAULT: u32 = 16 * 1024;
/// Requests in progress on one connection at most (HTTP/2
/// `SETTINGS_MAX_CONCURRENT_STREAMS`); a client queues the rest.
pub const REQUESTS_PER_CONNECTION_MAX_DEFAULT: u32 = 128;
/// Request and fetch-response bytes held in memory at once, broker-wide
/// (Kafka's `queued.max.request.bytes`, unbounded there by default). A fixed
/// 512 MiB rather than a share of RAM, so a broker behaves the same on every
/// machine: room for 32 requests and 32 fetch responses of the 16 MiB
/// default maximum, more than enough to keep a disk busy, and small enough
/// for a 1 GiB container.
pub const QUEUED_REQUEST_BYTES_MAX_DEFAULT: usize = 512 * 1024 * 1024;
/// How long a shutdown lets in-flight requests finish before cutting them.
pub const SHUTDOWN_TIMEOUT_MS_DEFAULT: u64 = 30_000;
/// How long a produce or fetch request's body may take to arrive once the
/// broker reads it: Kafka's `request.timeout.ms` default (30 s), so a client
/// that stalls mid-body gives its pool memory back within the time a
/// well-behaved client would have given up on the request anyway.
pub const REQUEST_BODY_TIMEOUT_MS_DEFAULT: u64 = 30_000;
/// Partitions of `__consumer_offsets` when the broker creates it (Kafka's
/// `offsets.topic.num.partitions`).
/// Kafka's `num.partitions` default.
pub const NUM_PARTITIONS_DEFAULT: u32 = 1;

pub const OFFSETS_TOPIC_PARTITIONS_DEFAULT: u32 = crate::group::CONSUMER_OFFSETS_PARTITIONS_DEFAULT;

/// Where storage I/O of produce and fetch runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoMode {
    /// On tokio's blocking pool (`spawn_blocking`), off the executor threads.
    Blocking,
    /// On the executor thread that serves the request: fewer thread hand-offs,
    /// but a slow disk stalls other requests on that thread.
    Inline,
}

impl FromStr for IoMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "blocking" => Ok(IoMode::Blocking),
            "inline" => Ok(IoMode::Inline),
            other => Err(format!(
                "unknown io mode {other:?}; expected blocking or inline"
            )),
        }
    }
}

/// Everything a broker needs to start.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// This broker's node id (the leader id of its partitions).
    pub node_id: i32,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// Where the Kafka-protocol listener binds (port 0 picks one); `None`
    /// serves gRPC alone. Its requests are bounded by `request_bytes_max`
    /// and `queued_request_bytes_max` like gRPC's.
    pub kafka_listen: Option<SocketAddr>,
    /// Where the metrics listener (`/metrics`, `/healthz`, `/readyz`) binds
    /// (port 0 picks one); `None` serves no metrics.
    pub metrics_listen: Option<SocketAddr>,
    /// The cluster's voters, `1=HOST:PORT,2=HOST:PORT,...` (this broker's
    /// `node_id` among them); `None` runs a broker that is not in a cluster.
    /// Checked by [`BrokerConfig::cluster`].
    pub peers: Option<String>,
    /// In a cluster, entries of the metadata log applied between two
    /// snapshots of the metadata (after which the log drops them). Not read
    /// from `weir.toml` or the environment; tests lower it.
    pub metadata_snapshot_entries: u64,
    /// A follower not caught up with its leader for this long leaves the
    /// ISR (Kafka's `replica.lag.time.max.ms`).
    pub replica_lag_time_max_ms: i64,
    /// Largest request accepted; larger ones fail with RESOURCE_EXHAUSTED before
    /// they are buffered whole.
    pub request_bytes_max: usize,
    /// Largest fetch response (a fetch still returns one whole batch if bigger).
    pub fetch_bytes_max: usize,
    pub fetch_wait_ms_max: u32,
    /// How often every partition's retention and compaction run.
    pub retention_check_interval_ms: u64,
    /// Bytes of the key map of one compaction pass (Kafka's
    /// `log.cleaner.dedupe.buffer.size`); passes run one partition at a time, so this is
    /// also the broker-wide peak.
    pub compaction_key_map_bytes: u64,
    /// A producer that wrote nothing for this long is forgotten (checked with
    /// retention); a retry arriving later may then be stored twice.
    pub producer_id_expiration_ms: u64,
    pub io_mode: IoMode,
    /// Open connections at most, gRPC and Kafka together; past it, a new
    /// connection displaces the oldest that has made no request, or is
    /// closed at once.
    pub connections_max: usize,
    /// Open connections from one address at most, the same way (both
    /// listeners together too).
    pub connections_max_per_ip: usize,
    /// Per-address limits replacing `connections_max_per_ip`.
    pub connections_max_per_ip_overrides: BTreeMap<std::net::IpAddr, usize>,
    /// A connection with no byte read or written this long is closed.
    pub connections_max_idle_ms: u64,
    /// A connection that made no request this long after it was accepted is closed.
    pub connection_first_request_timeout_ms: u64,
    /// HTTP/2 receive window of one request (stream) and of one connection.
    pub stream_window_bytes: u32,
    pub connection_window_bytes: u32,
    /// Largest HTTP/2 frame and header block a client may send.
    pub frame_bytes_max: u32,
    pub header_list_bytes_max: u32,
    /// Requests served at once per connection; the client waits for the rest.
    pub requests_per_connection_max: u32,
    /// Request and fetch-response bytes held at once over all connections;
    /// past it, requests wait for memory (see `memory_pool`).
    pub queued_request_bytes_max: usize,
    /// How long a produce or fetch request's body may take to arrive: its
    /// gRPC length prefix within this of the request's start, the rest within
    /// this once its memory is reserved. Past it the request fails with
    /// DEADLINE_EXCEEDED and its memory goes back to the pool.
    pub request_body_timeout_ms: u64,
    /// How long shutdown waits for in-flight requests before it cuts them
    /// and closes the logs.
    pub shutdown_timeout_ms: u64,
    /// Partitions of `__consumer_offsets` when the broker creates it at its first start
    /// (Kafka's `offsets.topic.num.partitions`); an existing topic keeps its count.
    pub offsets_topic_partitions: u32,
    /// Whether a Kafka Metadata request naming a topic that does not exist
    /// creates it (Kafka's `auto.create.topics.enable`, there `true` by
    /// default): off unless asked, since a misspelt name then makes a topic
    /// nobody meant. Clients that ask not to (Metadata v4+
    /// `allow_auto_topic_creation` false, as Kafka's consumers do) never do.
    pub auto_create_topics: bool,
    /// Partitions of a topic created with no count given: auto-created, or
    /// CreateTopics with -1 (Kafka's `num.partitions`).
    pub num_partitions: u32,
    /// The group coordinator's timeouts and defaults (Kafka's `group.consumer.*`).
    pub groups: crate::group::GroupConfig,
    /// Topic settings applied to every new topic before its own (Kafka names),
    /// including `flush.policy` for the fsync policy.
    pub topic_defaults: BTreeMap<String, String>,
    /// Where to write the bound address once listening (for scripts and tests
    /// that listen on port 0).
    pub address_file: Option<PathBuf>,
}

/// Why the broker configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("failed to read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {} is invalid: {reason}", path.display())]
    Parse { path: PathBuf, reason: String },
    #[error("{source_name} {key} = {value:?} is invalid: {reason}")]
    Value {
        source_name: &'static str,
        key: String,
        value: String,
        reason: String,
    },
}

/// The shape of `weir.toml`; every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    node_id: Option<i32>,
    data_dir: Option<PathBuf>,
    listen: Option<String>,
    kafka_listen: Option<String>,
    metrics_listen: Option<String>,
    peers: Option<String>,
    fsync: Option<String>,
    request_bytes_max: Option<usize>,
    fetch_bytes_max: Option<usize>,
    fetch_wait_ms_max: Option<u32>,
    retention_check_interval_ms: Option<u64>,
    compaction_key_map_bytes: Option<u64>,
    producer_id_expiration_ms: Option<u64>,
    io_mode: Option<String>,
    connections_max: Option<usize>,
    connections_max_per_ip: Option<usize>,
    connections_max_per_ip_overrides: Option<String>,
    connections_max_idle_ms: Option<u64>,
    connection_first_request_timeout_ms: Option<u64>,
    stream_window_bytes: Option<u32>,
    connection_window_bytes: Option<u32>,
    frame_bytes_max: Option<u32>,
    header_list_bytes_max: Option<u32>,
    requests_per_connection_max: Option<u32>,
    queued_request_bytes_max: Option<usize>,
    request_body_timeout_ms: Option<u64>,
    shutdown_timeout_ms: Option<u64>,
    offsets_topic_partitions: Option<u32>,
    auto_create_topics: Option<bool>,
    num_partitions: Option<u32>,
    group_session_timeout_ms: Option<i64>,
    group_heartbeat_interval_ms: Option<i64>,
    group_initial_rebalance_delay_ms: Option<i64>,
    address_file: Option<PathBuf>,
    #[serde(default)]
    topic_defaults: BTreeMap<String, toml::Value>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            node_id: 0,
            data_dir: PathBuf::from(DATA_DIR_DEFAULT),
            listen: SocketAddr::from(([127, 0, 0, 1], 9292)),
            kafka_listen: None,
            metrics_listen: None,
            peers: None,
            metadata_snapshot_entries: crate::cluster::SNAPSHOT_ENTRIES_DEFAULT,
            replica_lag_time_max_ms: REPLICA_LAG_TIME_MAX_MS_DEFAULT,
            request_bytes_max: REQUEST_BYTES_MAX_DEFAULT,
            fetch_bytes_max: FETCH_BYTES_MAX_DEFAULT,
            fetch_wait_ms_max: FETCH_WAIT_MS_MAX_DEFAULT,
            retention_check_interval_ms: RETENTION_CHECK_INTERVAL_MS_DEFAULT,
            compaction_key_map_bytes: weir_log::COMPACTION_KEY_MAP_BYTES_DEFAULT,
            producer_id_expiration_ms: PRODUCER_ID_EXPIRATION_MS_DEFAULT,
            io_mode: IoMode::Blocking,
            connections_max: CONNECTIONS_MAX_DEFAULT,
            connections_max_per_ip: CONNECTIONS_MAX_PER_IP_DEFAULT,
            connections_max_per_ip_overrides: BTreeMap::new(),
            connections_max_idle_ms: CONNECTIONS_MAX_IDLE_MS_DEFAULT,
            connection_first_request_timeout_ms: CONNECTION_FIRST_REQUEST_TIMEOUT_MS_DEFAULT,
            stream_window_bytes: STREAM_WINDOW_BYTES_DEFAULT,
            connection_window_bytes: CONNECTION_WINDOW_BYTES_DEFAULT,
            frame_bytes_max: FRAME_BYTES_MAX_DEFAULT,
            header_list_bytes_max: HEADER_LIST_BYTES_MAX_DEFAULT,
            requests_per_connection_max: REQUESTS_PER_CONNECTION_MAX_DEFAULT,
            queued_request_bytes_max: QUEUED_REQUEST_BYTES_MAX_DEFAULT,
            request_body_timeout_ms: REQUEST_BODY_TIMEOUT_MS_DEFAULT,
            shutdown_timeout_ms: SHUTDOWN_TIMEOUT_MS_DEFAULT,
            offsets_topic_partitions: OFFSETS_TOPIC_PARTITIONS_DEFAULT,
            auto_create_topics: false,
            num_partitions: NUM_PARTITIONS_DEFAULT,
            groups: crate::group::GroupConfig::default(),
            topic_defaults: BTreeMap::new(),
            address_file: None,
        }
    }
}

impl BrokerConfig {
    /// Defaults, then `file` if given, then the environment variables that
    /// `env` returns (`WEIR_NODE_ID`, `WEIR_DATA_DIR`, `WEIR_LISTEN`,
    /// `WEIR_KAFKA_LISTEN` (empty: no Kafka listener), `WEIR_METRICS_LISTEN`
    /// (empty: no metrics listener), `WEIR_PEERS`, `WEIR_FSYNC`,
    /// `WEIR_REQUEST_BYTES_MAX`, `WEIR_FETCH_BYTES_MAX`, `WEIR_IO_MODE`,
    /// `WEIR_RETENTION_CHECK_INTERVAL_MS`, `WEIR_COMPACTION_KEY_MAP_BYTES`,
    /// `WEIR_PRODUCER_ID_EXPIRATION_MS`, `WEIR_CONNECTIONS_MAX`,
    /// `WEIR_CONNECTIONS_MAX_PER_IP`, `WEIR_CONNECTIONS_MAX_PER_IP_OVERRIDES`,
    /// `WEIR_CONNECTIONS_MAX_IDLE_MS`, `WEIR_CONNECTION_FIRST_REQUEST_TIMEOUT_MS`,
    /// `WEIR_STREAM_WINDOW_BYTES`, `WEIR_CONNECTION_WINDOW_BYTES`,
    /// `WEIR_FRAME_BYTES_MAX`, `WEIR_HEADER_LIST_BYTES_MAX`,
    /// `WEIR_REQUESTS_PER_CONNECTION_MAX`, `WEIR_QUEUED_REQUEST_BYTES_MAX`,
    /// `WEIR_REQUEST_BODY_TIMEOUT_MS`, `WEIR_SHUTDOWN_TIMEOUT_MS`,
    /// `WEIR_OFFSETS_TOPIC_PARTITIONS`, `WEIR_AUTO_CREATE_TOPICS`,
    /// `WEIR_NUM_PARTITIONS`, `WEIR_GROUP_SESSION_TIMEOUT_MS`,
    /// `WEIR_GROUP_HEARTBEAT_INTERVAL_MS`, `WEIR_GROUP_INITIAL_REBALANCE_DELAY_MS`).
    pub fn load(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<BrokerConfig, ConfigError> {
        // A loaded broker (`weir broker`) serves Kafka clients on the usual port unless
        // told otherwise; a config built in code serves gRPC alone unless asked, so
        // brokers embedded in tests and programs never fight over port 9092.
        // The metrics listener likewise, on 9293.
        let mut config = BrokerConfig {
            kafka_listen: Some(
                KAFKA_LISTEN_DEFAULT
                    .parse()
                    .expect("the default Kafka address parses"),
            ),
            metrics_listen: Some(
                METRICS_LISTEN_DEFAULT
                    .parse()
                    .expect("the default metrics address parses"),
            ),
            ..BrokerConfig::default()
        };
        if let Some(path) = file {
            config.apply_file(path)?;
        }
        for key in [
            "WEIR_NODE_ID",
            "WEIR_DATA_DIR",
            "WEIR_LISTEN",
            "WEIR_KAFKA_LISTEN",
            "WEIR_METRICS_LISTEN",
            "WEIR_PEERS",
            "WEIR_REPLICA_LAG_TIME_MAX_MS",
            "WEIR_FSYNC",
            "WEIR_REQUEST_BYTES_MAX",
            "WEIR_FETCH_BYTES_MAX",
            "WEIR_IO_MODE",
            "WEIR_RETENTION_CHECK_INTERVAL_MS",
            "WEIR_COMPACTION_KEY_MAP_BYTES",
            "WEIR_PRODUCER_ID_EXPIRATION_MS",
            "WEIR_CONNECTIONS_MAX",
            "WEIR_CONNECTIONS_MAX_PER_IP",
            "WEIR_CONNECTIONS_MAX_PER_IP_OVERRIDES",
            "WEIR_CONNECTIONS_MAX_IDLE_MS",
            "WEIR_CONNECTION_FIRST_REQUEST_TIMEOUT_MS",
            "WEIR_STREAM_WINDOW_BYTES",
            "WEIR_CONNECTION_WINDOW_BYTES",
            "WEIR_FRAME_BYTES_MAX",
            "WEIR_HEADER_LIST_BYTES_MAX",
            "WEIR_REQUESTS_PER_CONNECTION_MAX",
            "WEIR_QUEUED_REQUEST_BYTES_MAX",
            "WEIR_REQUEST_BODY_TIMEOUT_MS",
            "WEIR_SHUTDOWN_TIMEOUT_MS",
            "WEIR_OFFSETS_TOPIC_PARTITIONS",
            "WEIR_AUTO_CREATE_TOPICS",
            "WEIR_NUM_PARTITIONS",
            "WEIR_GROUP_SESSION_TIMEOUT_MS",
            "WEIR_GROUP_HEARTBEAT_INTERVAL_MS",
            "WEIR_GROUP_INITIAL_REBALANCE_DELAY_MS",
        ] {
            if let Some(value) = env(key) {
                config
                    .set(key, &value)
                    .map_err(|reason| ConfigError::Value {
                        source_name: "environment variable",
                        key: key.to_string(),
                        value,
                        reason,
                    })?;
            }
        }
        config.check()?;
        Ok(config)
    }

    fn apply_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let file: ConfigFile = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            reason: e.message().to_string(),
        })?;
        let bad = |key: &str, value: String, reason: String| ConfigError::Value {
            source_name: "config file setting",
            key: key.to_string(),
            value,
            reason,
        };
        if let Some(v) = file.node_id {
            self.node_id = v;
        }
        if let Some(v) = file.data_dir {
            self.data_dir = v;
        }
        if let Some(v) = file.listen {
            self.set("WEIR_LISTEN", &v)
                .map_err(|reason| bad("listen", v, reason))?;
        }
        if let Some(v) = file.kafka_listen {
            self.set("WEIR_KAFKA_LISTEN", &v)
                .map_err(|reason| bad("kafka_listen", v, reason))?;
        }
        if let Some(v) = file.metrics_listen {
            self.set("WEIR_METRICS_LISTEN", &v)
                .map_err(|reason| bad("metrics_listen", v, reason))?;
        }
        if let Some(v) = file.peers {
            self.set("WEIR_PEERS", &v)
                .map_err(|reason| bad("peers", v, reason))?;
        }
        if let Some(v) = file.fsync {
            self.set("WEIR_FSYNC", &v)
                .map_err(|reason| bad("fsync", v, reason))?;
        }
        if let Some(v) = file.request_bytes_max {
            self.request_bytes_max = v;
        }
        if let Some(v) = file.fetch_bytes_max {
            self.fetch_bytes_max = v;
        }
        if let Some(v) = file.fetch_wait_ms_max {
            self.fetch_wait_ms_max = v;
        }
        if let Some(v) = file.retention_check_interval_ms {
            self.retention_check_interval_ms = v;
        }
        if let Some(v) = file.compaction_key_map_bytes {
            self.compaction_key_map_bytes = v;
        }
        if let Some(v) = file.producer_id_expiration_ms {
            self.producer_id_expiration_ms = v;
        }
        if let Some(v) = file.io_mode {
            self.set("WEIR_IO_MODE", &v)
                .map_err(|reason| bad("io_mode", v, reason))?;
        }
        if let Some(v) = file.connections_max {
            self.connections_max = v;
        }
        if let Some(v) = file.connections_max_per_ip {
            self.connections_max_per_ip = v;
        }
        if let Some(v) = file.connections_max_per_ip_overrides {
            self.set("WEIR_CONNECTIONS_MAX_PER_IP_OVERRIDES", &v)
                .map_err(|reason| bad("connections_max_per_ip_overrides", v, reason))?;
        }
        if let Some(v) = file.connections_max_idle_ms {
            self.connections_max_idle_ms = v;
        }
        if let Some(v) = file.connection_first_request_timeout_ms {
            self.connection_first_request_timeout_ms = v;
        }
        if let Some(v) = file.stream_window_bytes {
            self.stream_window_bytes = v;
        }
        if let Some(v) = file.connection_window_bytes {
            self.connection_window_bytes = v;
        }
        if let Some(v) = file.frame_bytes_max {
            self.frame_bytes_max = v;
        }
        if let Some(v) = file.header_list_bytes_max {
            self.header_list_bytes_max = v;
        }
        if let Some(v) = file.requests_per_connection_max {
            self.requests_per_connection_max = v;
        }
        if let Some(v) = file.queued_request_bytes_max {
            self.queued_request_bytes_max = v;
        }
        if let Some(v) = file.request_body_timeout_ms {
            self.request_body_timeout_ms = v;
        }
        if let Some(v) = file.shutdown_timeout_ms {
            self.shutdown_timeout_ms = v;
        }
        if let Some(v) = file.offsets_topic_partitions {
            self.offsets_topic_partitions = v;
        }
        if let Some(v) = file.auto_create_topics {
            self.auto_create_topics = v;
        }
        if let Some(v) = file.num_partitions {
            self.num_partitions = v;
        }
        if let Some(v) = file.group_session_timeout_ms {
            self.groups.session_timeout_ms = v;
        }
        if let Some(v) = file.group_heartbeat_interval_ms {
            self.groups.heartbeat_interval_ms = v;
        }
        if let Some(v) = file.group_initial_rebalance_delay_ms {
            self.groups.initial_rebalance_delay_ms = v;
        }
        if let Some(v) = file.address_file {
            self.address_file = Some(v);
        }
        for (key, value) in file.topic_defaults {
            let value = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(x) => x.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                _ => {
                    return Err(bad(
                        &format!("topic_defaults.{key}"),
                        String::new(),
                        "expected a string, number or boolean".to_string(),
                    ))
                }
            };
            self.topic_defaults.insert(key, value);
        }
        Ok(())
    }

    /// Sets one setting by its environment-variable name; the error is the reason.
    fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        match key {
            "WEIR_NODE_ID" => self.node_id = value.parse().map_err(|_| "expected an integer")?,
            "WEIR_DATA_DIR" => self.data_dir = PathBuf::from(value),
            "WEIR_LISTEN" => self.listen = parse_listen(value)?,
            "WEIR_KAFKA_LISTEN" => self.kafka_listen = parse_optional_listen(value)?,
            "WEIR_METRICS_LISTEN" => self.metrics_listen = parse_optional_listen(value)?,
            "WEIR_REPLICA_LAG_TIME_MAX_MS" => {
                self.replica_lag_time_max_ms = value
                    .parse::<i64>()
                    .ok()
                    .filter(|&v| v > 0)
                    .ok_or("expected a number of milliseconds above 0")?
            }
            "WEIR_PEERS" => self.peers = Some(value.to_string()).filter(|v| !v.trim().is_empty()),
            "WEIR_FSYNC" => self.set_fsync(value.parse::<FsyncPolicy>()?),
            "WEIR_REQUEST_BYTES_MAX" => {
                self.request_bytes_max = value.parse().map_err(|_| "expected a byte count")?
            }
            "WEIR_FETCH_BYTES_MAX" => {
                self.fetch_bytes_max = value.parse().map_err(|_| "expected a byte count")?
            }
            "WEIR_IO_MODE" => self.io_mode = value.parse()?,
            "WEIR_RETENTION_CHECK_INTERVAL_MS" => {
                self.retention_check_interval_ms = value
                    .parse()
                    .map_err(|_| "expected a number of milliseconds")?
            }
            "WEIR_COMPACTION_KEY_MAP_BYTES" => {
                self.compaction_key_map_bytes =
                    value.parse().map_err(|_| "expected a byte count")?
            }
            "WEIR_PRODUCER_ID_EXPIRATION_MS" => {
                self.producer_id_expiration_ms = value
                    .parse()
                    .map_err(|_| "expected a number of milliseconds")?
            }
            "WEIR_CONNECTIONS_MAX" => {
                self.connections_max = value.parse().map_err(|_| "expected a count")?
            }
            "WEIR_CONNECTIONS_MAX_PER_IP" => {
                self.connections_max_per_ip = value.parse().map_err(|_| "expected a count")?
            }
            "WEIR_CONNECTIONS_MAX_PER_IP_OVERRIDES" => {
                self.connections_max_per_ip_overrides =
                    crate::connection_limit::parse_per_ip_overrides(value)?
            }
            "WEIR_CONNECTIONS_MAX_IDLE_MS" => {
                self.connections_max_idle_ms = value
                    .parse()
                    .map_err(|_| "expected a number of milliseconds")?
            }
            "WEIR_CONNECTION_FIRST_REQUEST_TIMEOUT_MS" => {
                self.connection_first_request_timeout_ms = value
                    .parse()
                    .map_err(|_| "expected a number of milliseconds")?
            }
            "WEIR_STREAM_WINDOW_BYTES" => {
                self.stream_window_bytes = value.parse().map_err(|_| "expected a byte count")?
            }
            "WEIR_CONNECTION_WINDOW_BYTES" => {
                self.connection_window_bytes = value.parse().map_err(|_| "expected a byte count")?
            }
            "WEIR_FRAME_BYTES_MAX" => {
                self.frame_bytes_max = value.parse().map_err(|_| "expected a byte count")?
            }
            "WEIR_HEADER_LIST_BYTES_MAX" => {
                self.header_list_bytes_max = value.parse().map_err(|_| "expected a byte count")?
            }
            "WEIR_REQUESTS_PER_CONNECTION_MAX" => {
                self.requests_per_connection_max = value.parse().map_err(|_| "expected a count")?
            }
            "WEIR_QUEUED_REQUEST_BYTES_MAX" => {
                self.queued_request_bytes_max =
                    value.parse().map_err(|_| "expected a byte count")?
            }
            "WEIR_REQUEST_BODY_TIMEOUT_MS" => {
                self.request_body_timeout_ms = value
                    .parse()
                    .map_err(|_| "expected a number of milliseconds")?
            }
            "WEIR_SHUTDOWN_TIMEOUT_MS" => {
                self.shutdown_timeout_ms = value
                    .parse()
                    .map_err(|_| "expected a number of milliseconds")?
            }
            "WEIR_OFFSETS_TOPIC_PARTITIONS" => {
                self.offsets_topic_partitions = value.parse().map_err(|_| "expected a count")?
            }
            "WEIR_AUTO_CREATE_TOPICS" => {
                self.auto_create_topics = value.parse().map_err(|_| "expected true or false")?
            }
            "WEIR_NUM_PARTITIONS" => {
                self.num_partitions = value.parse().map_err(|_| "expected a count")?
            }
            "WEIR_GROUP_SESSION_TIMEOUT_MS" => {
                self.groups.session_timeout_ms = value
                    .parse()
                    .map_err(|_| "expected a number of milliseconds")?
            }
            "WEIR_GROUP_HEARTBEAT_INTERVAL_MS" => {
                self.groups.heartbeat_interval_ms = value
                    .parse()
                    .map_err(|_| "expected a number of milliseconds")?
            }
            "WEIR_GROUP_INITIAL_REBALANCE_DELAY_MS" => {
                self.groups.initial_rebalance_delay_ms = value
                    .parse()
                    .map_err(|_| "expected a number of milliseconds")?
            }
            other => return Err(format!("unknown setting {other}")),
        }
        Ok(())
    }

    /// Sets the fsync policy of every topic that does not override it.
    pub fn set_fsync(&mut self, policy: FsyncPolicy) {
        self.topic_defaults
            .insert("flush.policy".to_string(), policy.to_string());
    }

    /// Parses and sets the listen address (`host:port`).
    pub fn set_listen(&mut self, value: &str) -> Result<(), ConfigError> {
        self.listen = parse_listen(value).map_err(|reason| ConfigError::Value {
            source_name: "flag",
            key: "--listen".to_string(),
            value: value.to_string(),
            reason,
        })?;
        Ok(())
    }

    /// The cluster this broker is a voter of, from `node_id` and `peers`;
    /// `None` without `peers`.
    pub fn cluster(&self) -> Result<Option<crate::cluster::ClusterConfig>, ConfigError> {
        let Some(peers) = &self.peers else {
            return Ok(None);
        };
        let node_id = u64::try_from(self.node_id).unwrap_or(0);
        crate::cluster::ClusterConfig::parse(node_id, peers)
            .map(|cluster| crate::cluster::ClusterConfig {
                snapshot_entries: self.metadata_snapshot_entries.max(1),
                ..cluster
            })
            .map(Some)
            .map_err(|e| ConfigError::Value {
                source_name: "setting",
                key: "peers".to_string(),
                value: peers.clone(),
                reason: match e {
                    crate::cluster::ClusterError::InvalidPeers { reason, .. } => reason,
                    other => other.to_string(),
                },
            })
    }

    /// Parses and sets the Kafka listener's address (`host:port`); an empty
    /// value turns the listener off.
    pub fn set_kafka_listen(&mut self, value: &str) -> Result<(), ConfigError> {
        self.kafka_listen = parse_optional_listen(value).map_err(|reason| ConfigError::Value {
            source_name: "flag",
            key: "--kafka-listen".to_string(),
            value: value.to_string(),
            reason,
        })?;
        Ok(())
    }

    /// Parses and sets the metrics listener's address (`host:port`); an empty
    /// value turns it off.
    pub fn set_metrics_listen(&mut self, value: &str) -> Result<(), ConfigError> {
        self.metrics_listen =
            parse_optional_listen(value).map_err(|reason| ConfigError::Value {
                source_name: "flag",
                key: "--metrics-listen".to_string(),
                value: value.to_string(),
                reason,
            })?;
        Ok(())
    }

    /// A topic's `min.insync.replicas` (broker-wide default, then the
    /// topic's own), 1 when neither sets it.
    pub fn min_insync_replicas(&self, overrides: &BTreeMap<String, String>) -> usize {
        overrides
            .get(MIN_INSYNC_REPLICAS_CONFIG)
            .or_else(|| self.topic_defaults.get(MIN_INSYNC_REPLICAS_CONFIG))
            .and_then(|v| parse_min_insync_replicas(v).ok())
            .unwrap_or(1)
    }

    /// The log settings of a new partition (`value.*` configs are checked and left out:
    /// they describe the records to readers such as `weir sql`): defaults, broker-wide topic
    /// defaults, then the topic's own `overrides`.
    pub fn log_config(
        &self,
        overrides: &BTreeMap<String, String>,
    ) -> Result<LogConfig, weir_log::LogError> {
        let mut config = LogConfig {
            compaction_key_map_bytes: self.compaction_key_map_bytes,
            ..LogConfig::default()
        };
        for (key, value) in self.topic_defaults.iter().chain(overrides) {
            if key.starts_with(VALUE_CONFIG_PREFIX) {
                check_value_config(key, value)?;
            } else if key == MIN_INSYNC_REPLICAS_CONFIG {
                // Replication policy, read by produce (`min_insync_replicas`).
                parse_min_insync_replicas(value)?;
            } else if key == UNCLEAN_LEADER_ELECTION_ENABLE_CONFIG {
                // Replication policy, read by the controller from the topic's
                // metadata (`replication::manager::leadership_changes`).
                parse_bool_config(key, value)?;
            } else if key == crate::topic_configs::MESSAGE_FORMAT_VERSION_CONFIG {
                // Taken and ignored, as Kafka 3 ignores it: every batch is RecordBatch v2.
                if value.trim().is_empty() {
                    return Err(weir_log::LogError::Config {
                        key: key.to_string(),
                        value: value.to_string(),
                        reason: "must name a version".to_string(),
                    });
                }
            } else {
                config.apply(key, value)?;
            }
        }
        Ok(config)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, value: String, reason: &str| ConfigError::Value {
            source_name: "setting",
            key: key.to_string(),
            value,
            reason: reason.to_string(),
        };
        if self.request_bytes_max < 1024 {
            return Err(bad(
                "request_bytes_max",
                self.request_bytes_max.to_string(),
                "must be at least 1024",
            ));
        }
        if self.connections_max == 0 {
            return Err(bad(
                "connections_max",
                "0".to_string(),
                "must be at least 1",
            ));
        }
        if self.connections_max_per_ip == 0 {
            return Err(bad(
                "connections_max_per_ip",
                "0".to_string(),
                "must be at least 1",
            ));
        }
        if self.connection_first_request_timeout_ms == 0 {
            return Err(bad(
                "connection_first_request_timeout_ms",
                "0".to_string(),
                "must be at least 1",
            ));
        }
        // The idle timeout counts socket activity, as Kafka's does: a long
        // poll sends nothing while it waits, so it must end first.
        if self.connections_max_idle_ms <= u64::from(self.fetch_wait_ms_max) {
            return Err(bad(
                "connections_max_idle_ms",
                self.connections_max_idle_ms.to_string(),
                "must be above fetch_wait_ms_max, or a long poll would lose its connection",
            ));
        }
        // HTTP/2's initial window is 65535 bytes; a smaller one only slows every request.
        for (key, bytes) in [
            ("stream_window_bytes", self.stream_window_bytes),
            ("connection_window_bytes", self.connection_window_bytes),
        ] {
            if !(65_535..=WINDOW_BYTES_LIMIT).contains(&bytes) {
                return Err(bad(
                    key,
                    bytes.to_string(),
                    "must be between 65535 and 2147483647 (HTTP/2's window limit)",
                ));
            }
        }
        // HTTP/2's SETTINGS_MAX_FRAME_SIZE range.
        if !(16_384..=16_777_215).contains(&self.frame_bytes_max) {
            return Err(bad(
                "frame_bytes_max",
                self.frame_bytes_max.to_string(),
                "must be between 16384 and 16777215 (HTTP/2's frame size range)",
            ));
        }
        // Room for a request's pseudo-headers, content type and deadline.
        if self.header_list_bytes_max < 1024 {
            return Err(bad(
                "header_list_bytes_max",
                self.header_list_bytes_max.to_string(),
                "must be at least 1024",
            ));
        }
        if self.stream_window_bytes > self.connection_window_bytes {
            return Err(bad(
                "stream_window_bytes",
                self.stream_window_bytes.to_string(),
                "must not exceed connection_window_bytes, which bounds every stream of a connection together",
            ));
        }
        if self.requests_per_connection_max == 0 {
            return Err(bad(
                "requests_per_connection_max",
                "0".to_string(),
                "must be at least 1",
            ));
        }
        if self.request_body_timeout_ms == 0 {
            return Err(bad(
                "request_body_timeout_ms",
                "0".to_string(),
                "must be at least 1",
            ));
        }
        if self.offsets_topic_partitions == 0
            || self.offsets_topic_partitions > crate::broker::PARTITIONS_MAX
        {
            return Err(bad(
                "offsets_topic_partitions",
                self.offsets_topic_partitions.to_string(),
                "must be between 1 and 10000",
            ));
        }
        if self.num_partitions == 0 || self.num_partitions > crate::broker::PARTITIONS_MAX {
            return Err(bad(
                "num_partitions",
                self.num_partitions.to_string(),
                "must be between 1 and 10000",
            ));
        }
        // Kafka requires the heartbeat interval below the session timeout: a member
        // heartbeating at the interval it is told must not be removed.
        if self.groups.heartbeat_interval_ms < 1
            || self.groups.heartbeat_interval_ms >= self.groups.session_timeout_ms
        {
            return Err(bad(
                "group_heartbeat_interval_ms",
                self.groups.heartbeat_interval_ms.to_string(),
                "must be at least 1 and below group_session_timeout_ms",
            ));
        }
        if self.groups.initial_rebalance_delay_ms < 0 {
            return Err(bad(
                "group_initial_rebalance_delay_ms",
                self.groups.initial_rebalance_delay_ms.to_string(),
                "must not be negative",
            ));
        }
        if self.retention_check_interval_ms == 0 {
            return Err(bad(
                "retention_check_interval_ms",
                "0".to_string(),
                "must be at least 1",
            ));
        }
        if self.compaction_key_map_bytes < 1024 * 1024 {
            return Err(bad(
                "compaction_key_map_bytes",
                self.compaction_key_map_bytes.to_string(),
                "must be at least 1048576",
            ));
        }
        if self.fetch_bytes_max < 1024 {
            return Err(bad(
                "fetch_bytes_max",
                self.fetch_bytes_max.to_string(),
                "must be at least 1024",
            ));
        }
        // A request or a fetch of the largest allowed size must fit, or it
        // could never be served.
        let largest = self.request_bytes_max.max(self.fetch_bytes_max);
        if self.queued_request_bytes_max < largest {
            return Err(bad(
                "queued_request_bytes_max",
                self.queued_request_bytes_max.to_string(),
                "must be at least request_bytes_max and fetch_bytes_max",
            ));
        }
        self.log_config(&BTreeMap::new())
            .map_err(|e| ConfigError::Value {
                source_name: "setting",
                key: "topic_defaults".to_string(),
                value: String::new(),
                reason: e.to_string(),
            })?;
        Ok(())
    }
}

/// HTTP/2's largest flow-control window, 2^31 - 1.
const WINDOW_BYTES_LIMIT: u32 = i32::MAX as u32;

impl BrokerConfig {
    /// What HTTP/2 may buffer for one connection outside the memory pool: its
    /// receive window of request bytes not read yet, one partly received frame
    /// and one header block.
    pub fn connection_buffer_bytes_max(&self) -> usize {
        self.connection_window_bytes as usize
            + self.frame_bytes_max as usize
            + self.header_list_bytes_max as usize
    }

    /// The bound on request and response bytes the broker holds: the memory
    /// pool plus every connection's HTTP/2 buffering.
    pub fn request_memory_bytes_max(&self) -> usize {
        self.queued_request_bytes_max.saturating_add(
            self.connections_max
                .saturating_mul(self.connection_buffer_bytes_max()),
        )
    }
}

fn parse_listen(value: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    value
        .to_socket_addrs()
        .map_err(|e| format!("expected host:port ({e})"))?
        .next()
        .ok_or_else(|| "the host name resolves to no address".to_string())
}

/// `host:port`, or nothing (an empty value) for a listener that is off.
fn parse_optional_listen(value: &str) -> Result<Option<SocketAddr>, String> {
    if value.trim().is_empty() {
        return Ok(None);
    }
    parse_listen(value).map(Some)
}

/// Topic configs under this prefix describe record values to readers; the log ignores them.
const VALUE_CONFIG_PREFIX: &str = "value.";
/// The format of record values: `json`, or `binary` for opaque bytes.
pub const VALUE_FORMAT_CONFIG: &str = "value.format";
/// The JSON Schema of record values (an object schema), for `value.format=json`.
pub const VALUE_SCHEMA_CONFIG: &str = "value.schema";

/// Checks a `value.*` topic config. The schema's meaning is the reader's business; the
/// broker only refuses what no reader could use.
fn check_value_config(key: &str, value: &str) -> Result<(), weir_log::LogError> {
    let bad = |reason: String| weir_log::LogError::Config {
        key: key.to_string(),
        value: value.to_string(),
        reason,
    };
    match key {
        VALUE_FORMAT_CONFIG => match value {
            "json" | "binary" => Ok(()),
            _ => Err(bad("expected json or binary".to_string())),
        },
        VALUE_SCHEMA_CONFIG => match serde_json::from_str::<serde_json::Value>(value) {
            Ok(serde_json::Value::Object(_)) => Ok(()),
            Ok(_) => Err(bad("a value schema must be a JSON object".to_string())),
            Err(e) => Err(bad(format!("not valid JSON: {e}"))),
        },
        _ => Err(bad(format!(
            "unknown value config key; expected {VALUE_FORMAT_CONFIG} or {VALUE_SCHEMA_CONFIG}"
        ))),
    }
}

/// Kafka's topic config: how many in-sync replicas an `acks=all` produce
/// needs, else NOT_ENOUGH_REPLICAS.
pub const MIN_INSYNC_REPLICAS_CONFIG: &str = "min.insync.replicas";

/// Kafka's topic config: whether a partition with no live in-sync replica
/// may elect a replica outside the ISR (losing what only the ISR held),
/// `false` by default.
pub const UNCLEAN_LEADER_ELECTION_ENABLE_CONFIG: &str = "unclean.leader.election.enable";

fn parse_bool_config(key: &str, value: &str) -> Result<bool, weir_log::LogError> {
    match value.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(weir_log::LogError::Config {
            key: key.to_string(),
            value: value.to_string(),
            reason: "must be true or false".to_string(),
        }),
    }
}

/// Kafka's default `replica.lag.time.max.ms`.
pub const REPLICA_LAG_TIME_MAX_MS_DEFAULT: i64 = 30_000;

fn parse_min_insync_replicas(value: &str) -> Result<usize, weir_log::LogError> {
    value
        .trim()
        .parse::<usize>()
        .ok()
        .filter(|&v| (1..=i32::MAX as usize).contains(&v))
        .ok_or_else(|| weir_log::LogError::Config {
            key: MIN_INSYNC_REPLICAS_CONFIG.to_string(),
            value: value.to_string(),
            reason: "must be a whole number of at least 1".to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_configs_are_checked_and_kept_out_of_the_log_config() {
        let config = BrokerConfig::default();
        let ok = BTreeMap::from([
            ("value.format".to_string(), "json".to_string()),
            (
                "value.schema".to_string(),
                r#"{"type":"object","properties":{"page":{"type":"string"}}}"#.to_string(),
            ),
            ("retention.ms".to_string(), "5".to_string()),
        ]);
        assert_eq!(config.log_config(&ok).unwrap().retention_ms, Some(5));
        for (key, value, reason) in [
            ("value.format", "avro", "expected json or binary"),
            ("value.schema", "{", "not valid JSON"),
            ("value.schema", "[1]", "must be a JSON object"),
            ("value.colour", "red", "unknown value config key"),
        ] {
            let bad = BTreeMap::from([(key.to_string(), value.to_string())]);
            let message = config.log_config(&bad).unwrap_err().to_string();
            assert!(message.contains(reason), "{key}={value}: {message}");
            assert!(message.contains(key), "{key}={value}: {message}");
        }
    }

    #[test]
    fn env_overrides_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weir.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:7000\"\ndata_dir = \"/tmp/x\"\nfsync = \"always\"\n\n[topic_defaults]\n\"retention.ms\" = 1000\n",
        )
        .unwrap();
        let config = BrokerConfig::load(Some(&path), |key| {
            (key == "WEIR_LISTEN").then(|| "127.0.0.1:7001".to_string())
        })
        .unwrap();
        assert_eq!(config.listen.port(), 7001);
        assert_eq!(config.data_dir, PathBuf::from("/tmp/x"));
        let log = config.log_config(&BTreeMap::new()).unwrap();
        assert_eq!(log.fsync, FsyncPolicy::Always);
        assert_eq!(log.retention_ms, Some(1000));
    }

    #[test]
    fn connection_limits_load_from_file_and_env_and_refuse_zero() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weir.toml");
        std::fs::write(
            &path,
            "connections_max = 10\nrequests_per_connection_max = 3\n",
        )
        .unwrap();
        let config = BrokerConfig::load(Some(&path), |key| {
            (key == "WEIR_CONNECTIONS_MAX").then(|| "20".to_string())
        })
        .unwrap();
        assert_eq!(
            (config.connections_max, config.requests_per_connection_max),
            (20, 3)
        );
        let defaults = BrokerConfig::load(None, |_| None).unwrap();
        assert_eq!(
            (
                defaults.connections_max,
                defaults.requests_per_connection_max
            ),
            (CONNECTIONS_MAX_DEFAULT, REQUESTS_PER_CONNECTION_MAX_DEFAULT)
        );
        let err = BrokerConfig::load(None, |key| {
            (key == "WEIR_REQUESTS_PER_CONNECTION_MAX").then(|| "0".to_string())
        })
        .unwrap_err();
        assert!(
            err.to_string().contains("requests_per_connection_max"),
            "{err}"
        );
    }

    #[test]
    fn memory_bound_and_shutdown_timeout_load_and_the_bound_fits_the_largest_request() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weir.toml");
        std::fs::write(
            &path,
            "queued_request_bytes_max = 67108864\nshutdown_timeout_ms = 500\n",
        )
        .unwrap();
        let config = BrokerConfig::load(Some(&path), |key| {
            (key == "WEIR_SHUTDOWN_TIMEOUT_MS").then(|| "700".to_string())
        })
        .unwrap();
        assert_eq!(
            (config.queued_request_bytes_max, config.shutdown_timeout_ms),
            (64 << 20, 700)
        );
        let defaults = BrokerConfig::load(None, |_| None).unwrap();
        assert_eq!(
            defaults.queued_request_bytes_max,
            QUEUED_REQUEST_BYTES_MAX_DEFAULT
        );
        let err = BrokerConfig::load(None, |key| {
            (key == "WEIR_QUEUED_REQUEST_BYTES_MAX").then(|| "1048576".to_string())
        })
        .unwrap_err();
        assert!(
            err.to_string().contains("queued_request_bytes_max"),
            "{err}"
        );
        assert!(err.to_string().contains("request_bytes_max"), "{err}");
    }

    #[test]
    fn connection_slots_and_deadlines_load_and_out_of_range_values_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weir.toml");
        std::fs::write(
            &path,
            "connections_max_per_ip = 8\nconnections_max_per_ip_overrides = \"10.0.0.1:100\"\nconnection_window_bytes = 2097152\n",
        )
        .unwrap();
        let config = BrokerConfig::load(Some(&path), |key| {
            (key == "WEIR_CONNECTIONS_MAX_IDLE_MS").then(|| "60000".to_string())
        })
        .unwrap();
        assert_eq!(config.connections_max_per_ip, 8);
        assert_eq!(
            config.connections_max_per_ip_overrides[&std::net::IpAddr::from([10, 0, 0, 1])],
            100
        );
        assert_eq!(config.connections_max_idle_ms, 60_000);
        assert_eq!(config.connection_window_bytes, 2 << 20);
        let defaults = BrokerConfig::load(None, |_| None).unwrap();
        assert_eq!(
            (
                defaults.connections_max_per_ip,
                defaults.connections_max_idle_ms,
                defaults.connection_first_request_timeout_ms
            ),
            (256, 600_000, 10_000)
        );
        // 512 MiB of pool and 1024 connections of 1 MiB window, a 64 KiB frame
        // and a 16 KiB header block each.
        assert_eq!(
            defaults.request_memory_bytes_max(),
            (512 << 20) + 1024 * (1104 << 10)
        );
        for (key, value, says) in [
            (
                "WEIR_CONNECTIONS_MAX_IDLE_MS",
                "30000",
                "above fetch_wait_ms_max",
            ),
            ("WEIR_STREAM_WINDOW_BYTES", "1000", "between 65535"),
            (
                "WEIR_STREAM_WINDOW_BYTES",
                "4194304",
                "connection_window_bytes",
            ),
            (
                "WEIR_CONNECTIONS_MAX_PER_IP_OVERRIDES",
                "localhost:5",
                "not an IP address",
            ),
            (
                "WEIR_CONNECTION_FIRST_REQUEST_TIMEOUT_MS",
                "0",
                "at least 1",
            ),
            ("WEIR_FRAME_BYTES_MAX", "1000", "between 16384 and 16777215"),
            ("WEIR_HEADER_LIST_BYTES_MAX", "10", "at least 1024"),
        ] {
            let err = BrokerConfig::load(None, |k| (k == key).then(|| value.to_string()))
                .unwrap_err()
                .to_string();
            assert!(err.contains(says), "{key}={value}: {err}");
        }
    }

    #[test]
    fn kafka_listen_loads_from_file_and_environment_and_an_empty_value_turns_it_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weir.toml");
        std::fs::write(&path, "kafka_listen = \"127.0.0.1:9092\"\n").unwrap();
        let from_file = BrokerConfig::load(Some(&path), |_| None).unwrap();
        assert_eq!(
            from_file.kafka_listen,
            Some("127.0.0.1:9092".parse().unwrap())
        );
        let off = BrokerConfig::load(Some(&path), |key| {
            (key == "WEIR_KAFKA_LISTEN").then(String::new)
        })
        .unwrap();
        assert_eq!(off.kafka_listen, None);
        assert_eq!(
            BrokerConfig::load(None, |_| None).unwrap().kafka_listen,
            Some(KAFKA_LISTEN_DEFAULT.parse().unwrap()),
            "a loaded config listens for Kafka clients by default"
        );
        assert_eq!(BrokerConfig::default().kafka_listen, None);
        let mut flag = BrokerConfig::default();
        flag.set_kafka_listen("127.0.0.1:0").unwrap();
        assert_eq!(flag.kafka_listen, Some("127.0.0.1:0".parse().unwrap()));
        let err = flag.set_kafka_listen("nowhere").unwrap_err();
        assert!(err.to_string().contains("--kafka-listen"), "{err}");
    }

    #[test]
    fn metrics_listen_is_on_when_loaded_off_in_code_and_an_empty_value_turns_it_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weir.toml");
        std::fs::write(&path, "metrics_listen = \"127.0.0.1:9999\"\n").unwrap();
        let from_file = BrokerConfig::load(Some(&path), |_| None).unwrap();
        assert_eq!(
            from_file.metrics_listen,
            Some("127.0.0.1:9999".parse().unwrap())
        );
        let off = BrokerConfig::load(Some(&path), |key| {
            (key == "WEIR_METRICS_LISTEN").then(String::new)
        })
        .unwrap();
        assert_eq!(off.metrics_listen, None);
        assert_eq!(
            BrokerConfig::load(None, |_| None).unwrap().metrics_listen,
            Some(METRICS_LISTEN_DEFAULT.parse().unwrap()),
            "a loaded config serves metrics by default"
        );
        assert_eq!(BrokerConfig::default().metrics_listen, None);
        let mut flag = BrokerConfig::default();
        flag.set_metrics_listen("127.0.0.1:0").unwrap();
        assert_eq!(flag.metrics_listen, Some("127.0.0.1:0".parse().unwrap()));
        flag.set_metrics_listen("").unwrap();
        assert_eq!(flag.metrics_listen, None);
        let err = flag.set_metrics_listen("nowhere").unwrap_err();
        assert!(err.to_string().contains("--metrics-listen"), "{err}");
        let err = BrokerConfig::load(None, |key| {
            (key == "WEIR_METRICS_LISTEN").then(|| "nowhere".to_string())
        })
        .unwrap_err();
        assert!(err.to_string().contains("WEIR_METRICS_LISTEN"), "{err}");
    }

    #[test]
    fn unknown_file_key_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weir.toml");
        std::fs::write(&path, "lisen = \"x\"\n").unwrap();
        let err = BrokerConfig::load(Some(&path), |_| None).unwrap_err();
        assert!(err.to_string().contains("weir.toml"), "{err}");
        assert!(err.to_string().contains("lisen"), "{err}");
    }

    #[test]
    fn bad_env_value_names_the_variable() {
        let err = BrokerConfig::load(None, |key| {
            (key == "WEIR_FSYNC").then(|| "sometimes".to_string())
        })
        .unwrap_err();
        assert!(err.to_string().contains("WEIR_FSYNC"), "{err}");
    }

    #[test]
    fn bad_topic_default_is_refused_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weir.toml");
        std::fs::write(&path, "[topic_defaults]\n\"segment.bytes\" = \"lots\"\n").unwrap();
        let err = BrokerConfig::load(Some(&path), |_| None).unwrap_err();
        assert!(err.to_string().contains("segment.bytes"), "{err}");
    }

    #[test]
    fn request_body_timeout_loads_from_file_and_environment_and_refuses_zero() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weir.toml");
        std::fs::write(&path, "request_body_timeout_ms = 5000\n").unwrap();
        let from_file = BrokerConfig::load(Some(&path), |_| None).unwrap();
        assert_eq!(from_file.request_body_timeout_ms, 5000);
        let from_env = BrokerConfig::load(Some(&path), |key| {
            (key == "WEIR_REQUEST_BODY_TIMEOUT_MS").then(|| "700".to_string())
        })
        .unwrap();
        assert_eq!(from_env.request_body_timeout_ms, 700);
        let defaults = BrokerConfig::load(None, |_| None).unwrap();
        assert_eq!(
            defaults.request_body_timeout_ms,
            REQUEST_BODY_TIMEOUT_MS_DEFAULT
        );
        let err = BrokerConfig::load(None, |key| {
            (key == "WEIR_REQUEST_BODY_TIMEOUT_MS").then(|| "0".to_string())
        })
        .unwrap_err();
        assert!(err.to_string().contains("request_body_timeout_ms"), "{err}");
    }

    #[test]
    fn auto_creation_is_off_by_default_and_loads_from_file_and_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weir.toml");
        std::fs::write(&path, "auto_create_topics = true\nnum_partitions = 3\n").unwrap();
        let config = BrokerConfig::load(Some(&path), |_| None).unwrap();
        assert!(config.auto_create_topics);
        assert_eq!(config.num_partitions, 3);
        let config = BrokerConfig::load(Some(&path), |key| match key {
            "WEIR_AUTO_CREATE_TOPICS" => Some("false".to_string()),
            "WEIR_NUM_PARTITIONS" => Some("6".to_string()),
            _ => None,
        })
        .unwrap();
        assert!(!config.auto_create_topics);
        assert_eq!(config.num_partitions, 6);
        let defaults = BrokerConfig::load(None, |_| None).unwrap();
        assert!(!defaults.auto_create_topics);
        assert_eq!(defaults.num_partitions, 1);
        for (key, value) in [
            ("WEIR_NUM_PARTITIONS", "0"),
            ("WEIR_AUTO_CREATE_TOPICS", "yes"),
        ] {
            let refused = BrokerConfig::load(None, |k| (k == key).then(|| value.to_string()));
            assert!(refused.is_err(), "{key}={value}");
        }
    }

    #[test]
    fn offsets_topic_partitions_loads_from_file_and_environment_and_refuses_zero() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weir.toml");
        std::fs::write(&path, "offsets_topic_partitions = 3\n").unwrap();
        let config = BrokerConfig::load(Some(&path), |_| None).unwrap();
        assert_eq!(config.offsets_topic_partitions, 3);
        let config = BrokerConfig::load(Some(&path), |key| {
            (key == "WEIR_OFFSETS_TOPIC_PARTITIONS").then(|| "7".to_string())
        })
        .unwrap();
        assert_eq!(config.offsets_topic_partitions, 7);
        let defaults = BrokerConfig::load(None, |_| None).unwrap();
        assert_eq!(defaults.offsets_topic_partitions, 50);
        let err = BrokerConfig::load(None, |key| {
            (key == "WEIR_OFFSETS_TOPIC_PARTITIONS").then(|| "0".to_string())
        })
        .unwrap_err();
        assert!(
            err.to_string().contains("offsets_topic_partitions"),
            "{err}"
        );
    }

    #[test]
    fn group_timeouts_load_and_the_heartbeat_interval_must_be_below_the_session_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weir.toml");
        std::fs::write(
            &path,
            "group_session_timeout_ms = 10000\ngroup_initial_rebalance_delay_ms = 0\n",
        )
        .unwrap();
        let config = BrokerConfig::load(Some(&path), |key| {
            (key == "WEIR_GROUP_HEARTBEAT_INTERVAL_MS").then(|| "2000".to_string())
        })
        .unwrap();
        assert_eq!(
            (
                config.groups.session_timeout_ms,
                config.groups.heartbeat_interval_ms,
                config.groups.initial_rebalance_delay_ms
            ),
            (10_000, 2_000, 0)
        );
        let err = BrokerConfig::load(Some(&path), |key| {
            (key == "WEIR_GROUP_HEARTBEAT_INTERVAL_MS").then(|| "10000".to_string())
        })
        .unwrap_err();
        assert!(
            err.to_string().contains("group_heartbeat_interval_ms"),
            "{err}"
        );
    }
}
