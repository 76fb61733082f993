//! Weir: stream analytics on a partitioned commit log.
//!
//! This facade re-exports the workspace crates so applications depend on one
//! package.

pub use weir_broker as broker;
pub use weir_client as client;
pub use weir_log as log;
pub use weir_processors as processors;
pub use weir_sql as sql;
