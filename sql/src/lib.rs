//! `weir-sql`: DataFusion over Weir topics.
//!
//! The only library crate that compiles DataFusion. Does not own storage or
//! the network protocol; it reads through `weir-broker`'s client or a local
//! data directory via `weir-log`.
