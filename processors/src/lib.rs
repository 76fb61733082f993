//! `weir-processors`: stream operators, windows, state and sketches.
//!
//! Does not own: SQL (`weir-sql`), the wire protocol (`weir-broker`), or the
//! client (`weir-client`), which the pipeline runtime reads and writes topics with.

pub mod pipeline;
pub mod sketch;
pub mod window;
