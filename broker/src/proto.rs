//! The generated `weir.v1` messages, servers and clients (see `proto/weir.proto`).

#![allow(clippy::doc_markdown, clippy::large_enum_variant, missing_docs)]

tonic::include_proto!("weir.v1");
