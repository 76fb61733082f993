//! Weir's wire protocol, shared by the broker and the client: the generated
//! `weir.v1` messages, servers and clients (see `weir.proto`), and the rules
//! both ends must agree on beyond the message shapes ([`sequence`]).
//!
//! It owns no behaviour of either end: no connection handling, no retries,
//! no storage. The broker depends on this crate, never on the client.

#![allow(clippy::doc_markdown, clippy::large_enum_variant, missing_docs)]

pub mod sequence;

tonic::include_proto!("weir.v1");

/// gRPC metadata set on the RESOURCE_EXHAUSTED status of a request the broker
/// did not read because its memory pool (`queued_request_bytes_max`) stayed
/// full until the request's deadline: nothing of it was stored, and the same
/// request may be sent again later. Other RESOURCE_EXHAUSTED answers (a
/// request larger than `request_bytes_max`) are final and do not carry it.
pub const MEMORY_EXHAUSTED_METADATA: &str = "weir-memory-exhausted";
