//! `weir-broker`: topics, partitions, replication, consumer groups, the gRPC
//! API and the Rust client.
//!
//! Does not own: the storage format (that is `weir-log`), stream operators
//! (`weir-processors`) or SQL (`weir-sql`).

pub mod proto;
