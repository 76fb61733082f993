//! `TopicTable`: one topic as a DataFusion table. Planning a scan snapshots every
//! partition's offsets, so the query reads a consistent prefix of a live topic, and turns
//! pushed filters into partition pruning and offset and time seeks.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::Result;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;

use crate::json::ValueSchema;
use crate::scan::{
    can_push, PartitionRange, Projection, ScanBounds, ScanSettings, TopicColumns, TopicScanExec,
};
use crate::source::TopicReader;

/// Bytes a scan asks of its source per read.
pub const READ_BYTES_MAX_DEFAULT: usize = 1024 * 1024;

/// A topic as a table.
pub struct TopicTable {
    reader: Arc<dyn TopicReader>,
    columns: TopicColumns,
    value_schema: Option<ValueSchema>,
    read_bytes_max: usize,
}

impl fmt::Debug for TopicTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TopicTable")
            .field("topic", &self.reader.topic())
            .field("columns", &self.columns.schema.fields().len())
            .finish()
    }
}

impl TopicTable {
    pub fn new(reader: Arc<dyn TopicReader>, value_schema: Option<ValueSchema>) -> TopicTable {
        TopicTable {
            columns: TopicColumns::new(value_schema.as_ref()),
            reader,
            value_schema,
            read_bytes_max: READ_BYTES_MAX_DEFAULT,
        }
    }

    /// Sets the bytes asked of the source per read (smaller reads skip more precisely).
    pub fn with_read_bytes_max(mut self, read_bytes_max: usize) -> TopicTable {
        self.read_bytes_max = read_bytes_max.max(1);
        self
    }

    pub fn value_schema(&self) -> Option<&ValueSchema> {
        self.value_schema.as_ref()
    }

    /// The offset range of each partition the filters leave, from a fresh snapshot.
    async fn plan_ranges(&self, bounds: &ScanBounds) -> Result<Vec<PartitionRange>> {
        let mut ranges = Vec::new();
        for snapshot in self.reader.snapshot().await? {
            if !bounds.allows_partition(snapshot.partition) {
                continue;
            }
            let (mut start, end) = bounds.clamp_offsets(snapshot.start_offset, snapshot.end_offset);
            if let (Some(timestamp_ms), true) = (bounds.timestamp_min_ms(), start < end) {
                match self
                    .reader
                    .offset_for_time(snapshot.partition, timestamp_ms)
                    .await?
                {
                    Some(offset) => start = start.max(offset).min(end),
                    None => start = end,
                }
            }
            ranges.push(PartitionRange {
                partition: snapshot.partition,
                start_offset: start,
                end_offset: end,
                snapshot_end_offset: snapshot.end_offset,
            });
        }
        Ok(ranges)
    }
}

#[async_trait]
impl TableProvider for TopicTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.columns.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|filter| {
                if can_push(filter) {
                    TableProviderFilterPushDown::Inexact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let bounds = ScanBounds::from_filters(filters);
        let ranges = self.plan_ranges(&bounds).await?;
        let projection = Projection::new(&self.columns, projection);
        let settings = ScanSettings {
            read_bytes_max: self.read_bytes_max,
            batch_rows: 8192,
            limit,
        };
        Ok(Arc::new(TopicScanExec::new(
            Arc::clone(&self.reader),
            projection,
            ranges,
            bounds.pushed().to_vec(),
            settings,
        )))
    }
}
