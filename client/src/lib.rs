//! The Rust client of the Weir broker: [`Producer`] (batching, partitioning,
//! compression, retries, idempotence, backpressure), [`Consumer`] (assign,
//! seek, poll, pipelined fetches), [`GroupConsumer`] (a consumer group member:
//! heartbeats, rebalances, committed offsets) and [`Admin`] (topics, configs
//! and groups).
//!
//! All three share one HTTP/2 connection setup ([`connect`]): TCP_NODELAY,
//! flow-control windows and message limits sized for batches of a few MiB.
//!
//! The wire messages are `weir-proto`'s, re-exported as [`proto`] for programs
//! that call an RPC directly. Does not own: the server, or the storage format
//! (batches are built and decoded with `weir-log`'s `batch` module, so the
//! client writes exactly what the log stores).

pub use weir_proto as proto;

mod accumulator;
mod admin;
mod admin_cluster;
mod admin_groups;
mod cluster_metadata;
mod connection;
mod consumer;
mod delivery;
mod error;
mod group;
mod leader_fetch;
mod partitioner;
mod producer;
mod raw_produce;
mod sender;
mod undelivered;
mod written;

pub use admin::{Admin, PartitionInfo, TopicInfo};
pub use admin_cluster::{ClusterBroker, ClusterPartition, ClusterStatus};
pub use admin_groups::{GroupDescription, GroupListing, GroupMember, GroupPartition, ResetTo};
pub use connection::{connect, RESPONSE_BYTES_MAX};
pub use consumer::{Consumer, ConsumerConfig, ConsumerRecord, OffsetReset, SeekTo};
pub use delivery::DeliveryFuture;
pub use error::ClientError;
pub use group::{
    Coordinator as GroupCoordinator, GroupConsumer, GroupConsumerConfig, Rebalance, RebalanceMode,
};
pub use partitioner::{murmur2, partition_for_key, to_positive};
pub use producer::{Acks, Producer, ProducerConfig, ProducerRecord, RecordMetadata};
/// The channel [`connect`] opens, for building the raw gRPC clients of
/// [`crate::proto`] on it.
pub use tonic::transport::Channel;
/// The gRPC status code of [`ClientError::Status`].
pub use tonic::Code;
