//! `TopicScanExec`: the physical scan of one topic, one DataFusion partition per topic
//! partition it reads, each over the offset range fixed when the query was planned.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::Result;
use datafusion::execution::TaskContext;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning,
    PlanProperties, ReplaceChildrenOptions, SendableRecordBatchStream,
};

use super::columns::Projection;
use super::stream::{PartitionRange, PartitionScan, ScanMetrics, ScanSettings};
use crate::report::{JsonProblems, SharedProblems};
use crate::source::TopicReader;

/// Reads the offset ranges of some partitions of one topic.
#[derive(Debug)]
pub struct TopicScanExec {
    reader: Arc<dyn TopicReader>,
    projection: Arc<Projection>,
    ranges: Vec<PartitionRange>,
    /// The filters that narrowed `ranges`, for EXPLAIN.
    pushed: Vec<String>,
    settings: ScanSettings,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
    /// Malformed values and type mismatches met by the partitions executed so far.
    problems: Arc<SharedProblems>,
}

impl TopicScanExec {
    pub fn new(
        reader: Arc<dyn TopicReader>,
        projection: Projection,
        ranges: Vec<PartitionRange>,
        pushed: Vec<String>,
        settings: ScanSettings,
    ) -> TopicScanExec {
        // Zero output partitions confuse some operators: an empty scan has one, empty.
        let partition_count = ranges.len().max(1);
        let properties = PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&projection.schema)),
            Partitioning::UnknownPartitioning(partition_count),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        TopicScanExec {
            problems: SharedProblems::new(reader.topic()),
            reader,
            projection: Arc::new(projection),
            ranges,
            pushed,
            settings,
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }

    pub fn ranges(&self) -> &[PartitionRange] {
        &self.ranges
    }

    /// The JSON problems its partitions met so far (see [`crate::json_problems`]).
    pub fn json_problems(&self) -> JsonProblems {
        self.problems.lock().clone()
    }
}

impl DisplayAs for TopicScanExec {
    fn fmt_as(&self, format: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ranges: Vec<String> = self
            .ranges
            .iter()
            .map(|r| format!("{}:{}..{}", r.partition, r.start_offset, r.end_offset))
            .collect();
        match format {
            DisplayFormatType::Default | DisplayFormatType::Verbose => {
                write!(
                    f,
                    "TopicScanExec: topic={}, partitions=[{}], projection=[{}]",
                    self.reader.topic(),
                    ranges.join(", "),
                    self.projection.names().join(", "),
                )?;
                if let Some(limit) = self.settings.limit {
                    write!(f, ", limit={limit}")?;
                }
                if !self.pushed.is_empty() {
                    write!(f, ", pushdown=[{}]", self.pushed.join(", "))?;
                }
                Ok(())
            }
            DisplayFormatType::TreeRender => {
                writeln!(f, "topic={}", self.reader.topic())?;
                writeln!(f, "partitions=[{}]", ranges.join(", "))?;
                if let Some(limit) = self.settings.limit {
                    writeln!(f, "limit={limit}")?;
                }
                Ok(())
            }
        }
    }
}

impl ExecutionPlan for TopicScanExec {
    fn name(&self) -> &str {
        "TopicScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.projection.schema)
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let schema = Arc::clone(&self.projection.schema);
        let Some(range) = self.ranges.get(partition).copied() else {
            // The single partition of an empty scan.
            return Ok(Box::pin(RecordBatchStreamAdapter::new(
                schema,
                futures::stream::empty(),
            )));
        };
        let settings = ScanSettings {
            batch_rows: context.session_config().batch_size(),
            ..self.settings
        };
        let scan = PartitionScan::new(
            Arc::clone(&self.reader),
            range,
            Arc::clone(&self.projection),
            settings,
            ScanMetrics::new(&self.metrics, partition),
            Arc::clone(&self.problems),
        );
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            schema,
            scan.into_stream(),
        )))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn supports_limit_pushdown(&self) -> bool {
        true
    }

    fn with_fetch(&self, limit: Option<usize>) -> Option<Arc<dyn ExecutionPlan>> {
        Some(Arc::new(TopicScanExec {
            reader: Arc::clone(&self.reader),
            projection: Arc::clone(&self.projection),
            ranges: self.ranges.clone(),
            pushed: self.pushed.clone(),
            settings: ScanSettings {
                limit,
                ..self.settings
            },
            properties: Arc::clone(&self.properties),
            metrics: ExecutionPlanMetricsSet::new(),
            problems: SharedProblems::new(self.reader.topic()),
        }))
    }

    fn fetch(&self) -> Option<usize> {
        self.settings.limit
    }
}
