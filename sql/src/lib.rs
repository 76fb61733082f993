//! `weir-sql`: SQL over Weir topics with DataFusion.
//!
//! Every topic is a table with the columns `partition`, `offset`, `timestamp`, `key`,
//! `value`, `key_str`, `value_str`, `headers`, plus typed columns decoded from JSON values
//! when the topic has a declared or inferred value schema. Scans read one DataFusion
//! partition per topic partition and push down projection, `LIMIT`, and filters on
//! partition, offset and timestamp.
//!
//! Does not own storage or the network protocol: topics come from a [`TopicSource`], local
//! (partition directories through `weir-log`) or remote (the broker).

mod catalog;
mod error;
pub mod functions;
pub mod json;
mod output;
mod report;
pub mod scan;
pub mod source;
mod statements;
mod table;

pub use catalog::{
    new_session, SqlOptions, TopicSchema, CATALOG_NAME, INFER_SAMPLE_RECORDS_DEFAULT, SCHEMA_NAME,
    VALUE_FORMAT_CONFIG, VALUE_SCHEMA_CONFIG,
};
pub use error::SqlError;
pub use json::ValueSchema;
pub use output::{write_batches, OutputFormat};
pub use report::{json_problems, JsonProblems, MismatchAt, RecordAt};
pub use source::{
    BatchChunk, ByteCounter, LocalOptions, LocalSource, PartitionSnapshot, ReadBound, RemoteSource,
    TopicReader, TopicSource,
};
pub use statements::{run_statements, run_statements_reporting, StatementOutput};
pub use table::{TopicTable, READ_BYTES_MAX_DEFAULT};

/// DataFusion, as this crate uses it, for applications that build on the session.
pub use datafusion;
