//! Scanning a topic: its columns, the filters a scan can push down, the physical plan and
//! the per-partition stream that decodes batches into Arrow rows.

mod columns;
mod exec;
mod pushdown;
mod rows;
mod stream;

pub use columns::{
    headers_data_type, DecodeLevel, MetaColumn, Projection, TableColumn, TopicColumns,
    OFFSET_COLUMN, PARTITION_COLUMN, RENAMED_FIELD_PREFIX, TIMESTAMP_COLUMN,
};
pub use exec::TopicScanExec;
pub use pushdown::{can_push, ScanBounds};
pub use stream::{PartitionRange, ScanSettings};
