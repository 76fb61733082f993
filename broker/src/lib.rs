//! `weir-broker`: topics, partitions and the gRPC API over them.
//!
//! [`RunningBroker::start`] opens a [`Broker`] (the topics under one data
//! directory, configured by [`BrokerConfig`]) and serves the `weir.v1` gRPC
//! services of `weir-proto`, one file per RPC under `rpc/`, and, with
//! `kafka_listen` set, Kafka's wire protocol on plain TCP (`kafka/`), and,
//! with `metrics_listen` set, Prometheus metrics, `/healthz` and `/readyz`
//! (`metrics/`).
//!
//! Does not own: the storage format (that is `weir-log`), the wire messages
//! (`weir-proto`), the Rust client (`weir-client`), stream operators
//! (`weir-processors`) or SQL (`weir-sql`).

mod accept_error;
mod append_queue;
mod broker;
mod clock;
pub mod cluster;
mod config;
mod connection;
mod connection_limit;
mod error;
pub mod group;
mod group_service;
mod internal_topics;
mod kafka;
mod mapped_batches;
mod memory_pool;
mod metrics;
mod partition;
mod producer_recovery;
mod producer_snapshot;
mod producer_state;
mod read_buffers;
mod refusal_log;
mod registry;
mod replication;
mod rpc;
mod server;
mod snapshot_writer;
mod topic_configs;
mod topic_deletion;
mod topic_name;

// The generated messages and services, under the name the RPC handlers use.
use weir_proto as proto;

pub use broker::{Broker, ProducerIdRequest, Topic, PARTITIONS_MAX};
pub use clock::{system_clock, Clock, ManualClock, SharedClock, SystemClock};
pub use config::{
    BrokerConfig, ConfigError, IoMode, CONNECTIONS_MAX_DEFAULT, CONNECTIONS_MAX_IDLE_MS_DEFAULT,
    CONNECTIONS_MAX_PER_IP_DEFAULT, CONNECTION_FIRST_REQUEST_TIMEOUT_MS_DEFAULT,
    CONNECTION_WINDOW_BYTES_DEFAULT, DATA_DIR_DEFAULT, FRAME_BYTES_MAX_DEFAULT,
    HEADER_LIST_BYTES_MAX_DEFAULT, KAFKA_LISTEN_DEFAULT, LISTEN_DEFAULT, METRICS_LISTEN_DEFAULT,
    OFFSETS_TOPIC_PARTITIONS_DEFAULT, PRODUCER_ID_EXPIRATION_MS_DEFAULT,
    REQUESTS_PER_CONNECTION_MAX_DEFAULT, STREAM_WINDOW_BYTES_DEFAULT, VALUE_FORMAT_CONFIG,
    VALUE_SCHEMA_CONFIG,
};
pub use connection_limit::parse_per_ip_overrides;
pub use error::BrokerError;
pub use group::{GroupCoordinator, GroupError};
pub use group_service::GroupService;
pub use internal_topics::{is_internal, OFFSETS_TOPIC_SEGMENT_BYTES};
pub use kafka::{sent_from_file_bytes as kafka_sent_from_file_bytes, KafkaListener};
pub use memory_pool::{MemoryPool, Reservation};
pub use metrics::{BrokerMetrics, Listener, MetricsServer};
pub use partition::{
    Appended, Cleaned, Partition, PartitionStatus, ReadInto, ReadResult, SNAPSHOT_INTERVAL_BYTES,
};
pub use registry::{partition_dir, recorded_topic_configs};
pub use server::{shutdown_signal, RunningBroker};
pub use topic_name::{TopicName, TopicNameError, TOPIC_NAME_BYTES_MAX};
