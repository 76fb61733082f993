//! `weir-processors`: stream operators, windows, state and sketches.
//!
//! Does not own: SQL (`weir-sql`) or the wire protocol (`weir-broker`).

pub mod sketch;
pub mod window;
