//! Weir's wire protocol, shared by the broker and the client: the generated
//! `weir.v1` messages, servers and clients (see `weir.proto`), and the rules
//! both ends must agree on beyond the message shapes ([`sequence`]).
//!
//! It owns no behaviour of either end: no connection handling, no retries,
//! no storage. The broker depends on this crate, never on the client.

#![allow(clippy::doc_markdown, clippy::large_enum_variant, missing_docs)]

pub mod sequence;

tonic::include_proto!("weir.v1");
