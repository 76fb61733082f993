//! The Kafka wire protocol on plain TCP, next to gRPC, over the same
//! partitions: existing Kafka clients (kcat, librdkafka, kafka-python, the
//! Java client) produce and fetch without knowing they talk to Weir.
//!
//! One file per job: `listener` accepts and bounds connections,
//! `connection` reads frames and dispatches them in order (Kafka answers a
//! connection's requests in the order they came), `frame` encodes responses
//! and `send` writes them (batches with `sendfile`),
//! and one file per API. Messages are decoded and encoded by the
//! `kafka-protocol` crate; record batches are never decoded: produce hands
//! them to the same append path as gRPC, fetch returns stored batches as
//! they are on disk.
//!
//! Consumer groups (`groups`, `offsets`, `classic`) are the broker's one
//! coordinator, which also serves gRPC. Not served yet: transactions, SASL. A request for an API the broker does not serve closes
//! the connection, as Kafka does for an API key it does not know.

mod alter_configs;
mod api_versions;
mod classic;
mod connection;
mod consumer_protocol;
mod create_partitions;
mod describe_configs;
mod error_code;
mod fetch;
mod frame;
mod group_admin;
mod groups;
mod init_producer_id;
mod leaders;
mod list_offsets;
mod listener;
mod metadata;
mod offsets;
mod produce;
mod send;
mod topics;

pub use listener::KafkaListener;
pub use send::sent_from_file_bytes;
