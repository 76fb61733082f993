//! `SqlError`: every way opening topics, decoding their records or running a query can
//! fail, each a sentence naming the topic, partition, offset or file involved.

use std::path::PathBuf;

use datafusion::error::DataFusionError;
use weir_log::batch::BatchError;
use weir_log::LogError;

/// Why an operation of `weir-sql` failed.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    #[error("failed to {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{} is not a Weir data directory: {reason}", path.display())]
    NotADataDir { path: PathBuf, reason: String },

    /// Opening a partition that was not closed cleanly would run crash recovery on it,
    /// which writes to the directory; a live broker may own it.
    #[error(
        "partition directory {} was not closed cleanly (a broker may be running on it); \
         stop the broker cleanly, query it through the broker, or allow recovery explicitly",
        dir.display()
    )]
    NotClosedCleanly { dir: PathBuf },

    /// A broker holds the data directory (see `weir_log::DirLock`).
    #[error("{source}; stop the broker, or query through it with --broker")]
    DataDirInUse {
        #[source]
        source: LogError,
    },

    #[error("topic {topic} partition {partition}: {source}")]
    Log {
        topic: String,
        partition: u32,
        #[source]
        source: LogError,
    },

    #[error("topic {topic} partition {partition}: corrupt batch near offset {offset}: {source}")]
    Batch {
        topic: String,
        partition: u32,
        offset: u64,
        #[source]
        source: BatchError,
    },

    #[error("topic {topic} partition {partition}: a read at offset {offset} made no progress")]
    Stalled {
        topic: String,
        partition: u32,
        offset: u64,
    },

    #[error("value schema {origin}: {reason}")]
    ValueSchema { origin: String, reason: String },

    #[error("topic {topic}: {reason}")]
    Topic { topic: String, reason: String },

    #[error("SQL syntax error: {0}")]
    Parse(String),

    #[error("{0}")]
    DataFusion(#[from] DataFusionError),

    #[error("writing query results failed: {0}")]
    Output(String),

    #[error("broker: {0}")]
    Remote(String),
}

impl From<SqlError> for DataFusionError {
    fn from(error: SqlError) -> DataFusionError {
        match error {
            SqlError::DataFusion(inner) => inner,
            other => DataFusionError::External(Box::new(other)),
        }
    }
}
