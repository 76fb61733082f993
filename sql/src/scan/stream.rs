//! Reading one topic partition's offset range as a stream of Arrow batches: whole batches
//! are read by offset, checked (CRC-32C), and decoded only as far as the projection needs.
//! Control batches (transaction markers) are not rows.

use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::{DataFusionError, Result};
use datafusion::physical_plan::metrics::{Count, ExecutionPlanMetricsSet, MetricBuilder, Time};
use futures::Stream;
use weir_log::batch::{self, BatchHeader, RecordDecoder};

use super::columns::{DecodeLevel, Projection};
use super::rows::RowBuilder;
use crate::report::SharedProblems;
use crate::source::{BatchChunk, TopicReader};
use crate::SqlError;

/// A read started before the chunk before it was decoded.
struct ReadAhead {
    offset: u64,
    read: tokio::task::JoinHandle<std::result::Result<BatchChunk, SqlError>>,
}

impl Drop for ReadAhead {
    /// A scan dropped early (a satisfied LIMIT above it, a cancelled query) stops its read.
    fn drop(&mut self) {
        self.read.abort();
    }
}

/// One partition's share of a scan: the rows of offsets `start_offset..end_offset`, read
/// from batches below `snapshot_end_offset` (the end captured at planning, a batch boundary;
/// `end_offset` may fall inside a batch, which the log would then not return).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionRange {
    pub partition: u32,
    pub start_offset: u64,
    pub end_offset: u64,
    pub snapshot_end_offset: u64,
}

/// Scan metrics of one partition, shown by EXPLAIN ANALYZE.
#[derive(Debug, Clone)]
pub struct ScanMetrics {
    bytes_read: Count,
    batches_read: Count,
    output_rows: Count,
    /// Records decoded one by one (not counted from batch headers).
    records_decoded: Count,
    json_malformed: Count,
    json_type_mismatches: Count,
    elapsed_compute: Time,
}

impl ScanMetrics {
    pub fn new(metrics: &ExecutionPlanMetricsSet, partition: usize) -> ScanMetrics {
        let counter = |name: &'static str| MetricBuilder::new(metrics).counter(name, partition);
        ScanMetrics {
            bytes_read: counter("bytes_read"),
            batches_read: counter("batches_read"),
            output_rows: MetricBuilder::new(metrics).output_rows(partition),
            records_decoded: counter("records_decoded"),
            json_malformed: counter("json_malformed"),
            json_type_mismatches: counter("json_type_mismatches"),
            elapsed_compute: MetricBuilder::new(metrics).elapsed_compute(partition),
        }
    }
}

/// Settings of a partition scan.
#[derive(Debug, Clone, Copy)]
pub struct ScanSettings {
    /// Bytes asked of the source per read.
    pub read_bytes_max: usize,
    /// Rows at which a batch is emitted (it may be larger: whole reads are decoded).
    pub batch_rows: usize,
    /// Stop after this many rows.
    pub limit: Option<usize>,
}

/// The state of one partition scan between batches.
pub struct PartitionScan {
    reader: Arc<dyn TopicReader>,
    range: PartitionRange,
    next_offset: u64,
    rows_left: usize,
    settings: ScanSettings,
    level: DecodeLevel,
    decoder: RecordDecoder,
    rows: RowBuilder,
    metrics: ScanMetrics,
    json_counted: crate::json::JsonDecodeStats,
    /// Where the JSON problems of the whole scan are reported.
    problems: Arc<SharedProblems>,
    read_ahead: Option<ReadAhead>,
}

impl PartitionScan {
    pub fn new(
        reader: Arc<dyn TopicReader>,
        range: PartitionRange,
        projection: Arc<Projection>,
        settings: ScanSettings,
        metrics: ScanMetrics,
        problems: Arc<SharedProblems>,
    ) -> PartitionScan {
        PartitionScan {
            reader,
            next_offset: range.start_offset,
            rows_left: settings.limit.unwrap_or(usize::MAX),
            level: projection.level,
            rows: RowBuilder::new(projection, range.partition),
            range,
            settings,
            decoder: RecordDecoder::new(),
            metrics,
            json_counted: Default::default(),
            problems,
            read_ahead: None,
        }
    }

    /// The batches of the range, as a stream.
    pub fn into_stream(self) -> impl Stream<Item = Result<RecordBatch>> + Send {
        futures::stream::try_unfold(self, |mut scan| async move {
            let batch = scan.next_batch().await?;
            Ok(batch.map(|b| (b, scan)))
        })
    }

    fn done(&self) -> bool {
        self.next_offset >= self.range.end_offset || self.rows_left == 0
    }

    async fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        while !self.done() && self.rows.len() < self.settings.batch_rows {
            let chunk = self.read_next().await?;
            self.metrics.bytes_read.add(chunk.bytes.len());
            if chunk.bytes.is_empty() {
                // Nothing below the end offset (a compacted tail): the range is done.
                self.next_offset = self.range.end_offset;
                break;
            }
            if chunk.next_offset <= self.next_offset {
                return Err(SqlError::Stalled {
                    topic: self.reader.topic().to_string(),
                    partition: self.range.partition,
                    offset: self.next_offset,
                }
                .into());
            }
            self.start_read_ahead(chunk.next_offset);
            let elapsed = self.metrics.elapsed_compute.clone();
            let timer = elapsed.timer();
            self.decode_chunk(&chunk.bytes)?;
            timer.done();
            self.next_offset = chunk.next_offset;
        }
        if self.rows.is_empty() {
            return Ok(None);
        }
        let elapsed = self.metrics.elapsed_compute.clone();
        let timer = elapsed.timer();
        let batch = self.rows.finish().map_err(DataFusionError::from)?;
        timer.done();
        self.count_json();
        self.metrics.output_rows.add(batch.num_rows());
        Ok(Some(batch))
    }

    /// The chunk at `next_offset`: the read started ahead for it, or a new one.
    async fn read_next(&mut self) -> Result<BatchChunk> {
        if let Some(ahead) = self.read_ahead.take() {
            if ahead.offset == self.next_offset {
                let mut ahead = ahead;
                let joined = (&mut ahead.read).await;
                return match joined {
                    Ok(read) => Ok(read?),
                    Err(e) => Err(DataFusionError::External(Box::new(e))),
                };
            }
        }
        Ok(self
            .reader
            .read(
                self.range.partition,
                self.next_offset,
                self.range.snapshot_end_offset,
                self.settings.read_bytes_max,
            )
            .await?)
    }

    /// Starts reading the chunk at `offset` while this one is decoded, so a broker's
    /// fetch overlaps the decoding. Not under a pushed-down LIMIT, which may need no
    /// more, and not past the range, so the bytes read stay exactly what the range needs.
    fn start_read_ahead(&mut self, offset: u64) {
        if self.settings.limit.is_some() || offset >= self.range.end_offset {
            return;
        }
        let reader = Arc::clone(&self.reader);
        let (partition, end, max_bytes) = (
            self.range.partition,
            self.range.snapshot_end_offset,
            self.settings.read_bytes_max,
        );
        let read =
            tokio::spawn(async move { reader.read(partition, offset, end, max_bytes).await });
        self.read_ahead = Some(ReadAhead { offset, read });
    }

    fn count_json(&mut self) {
        let stats = self.rows.json_stats();
        let malformed = stats.malformed - self.json_counted.malformed;
        let mismatches = stats.type_mismatches - self.json_counted.type_mismatches;
        self.json_counted = stats;
        if malformed == 0 && mismatches == 0 {
            return;
        }
        self.metrics.json_malformed.add(malformed as usize);
        self.metrics.json_type_mismatches.add(mismatches as usize);
        if let Some(json) = self.rows.json() {
            self.problems.lock().add(
                self.range.partition,
                malformed,
                json.first_malformed_offset(),
                mismatches,
                json.first_mismatch(),
            );
        }
    }

    fn corrupt(&self, offset: u64, source: batch::BatchError) -> DataFusionError {
        SqlError::Batch {
            topic: self.reader.topic().to_string(),
            partition: self.range.partition,
            offset,
            source,
        }
        .into()
    }

    /// Decodes every batch of `bytes` that holds offsets in `next_offset..end_offset`.
    fn decode_chunk(&mut self, bytes: &[u8]) -> Result<()> {
        for item in batch::batches(bytes) {
            if self.rows_left == 0 {
                break;
            }
            let (header, batch_bytes) = item.map_err(|e| self.corrupt(self.next_offset, e))?;
            let Some((first, last)) = offsets_of(&header) else {
                return Err(SqlError::Topic {
                    topic: self.reader.topic().to_string(),
                    reason: format!(
                        "partition {}: a batch after offset {} has base offset {} and last offset delta {}",
                        self.range.partition,
                        self.next_offset,
                        header.base_offset,
                        header.last_offset_delta
                    ),
                }
                .into());
            };
            if last < self.next_offset || first >= self.range.end_offset {
                continue;
            }
            self.metrics.batches_read.add(1);
            if header.is_control() {
                // Control records are never returned, but the header must still be sound.
                batch::validate(batch_bytes, usize::MAX).map_err(|e| self.corrupt(first, e))?;
                continue;
            }
            let gapless = i64::from(header.record_count) == i64::from(header.last_offset_delta) + 1;
            match self.level {
                DecodeLevel::Counts | DecodeLevel::Offsets if gapless => {
                    batch::validate(batch_bytes, usize::MAX).map_err(|e| self.corrupt(first, e))?;
                    let from = first.max(self.next_offset);
                    let to = (last + 1).min(self.range.end_offset);
                    let count = usize::try_from(to - from)
                        .unwrap_or(usize::MAX)
                        .min(self.rows_left);
                    if self.level == DecodeLevel::Counts {
                        self.rows.push_counted(count);
                    } else {
                        self.rows.push_offsets(from as i64, count);
                    }
                    self.rows_left -= count;
                }
                _ => self.decode_records(batch_bytes, first)?,
            }
        }
        Ok(())
    }

    fn decode_records(&mut self, batch_bytes: &[u8], first: u64) -> Result<()> {
        let records = match self.decoder.records(batch_bytes) {
            Ok(records) => records,
            Err(e) => return Err(self.corrupt(first, e)),
        };
        let (next_offset, end_offset) = (self.next_offset, self.range.end_offset);
        let mut failure = None;
        let mut decoded = 0usize;
        for record in records {
            let record = match record {
                Ok(record) => {
                    decoded += 1;
                    record
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            };
            let Ok(offset) = u64::try_from(record.offset) else {
                continue;
            };
            if offset < next_offset || offset >= end_offset {
                continue;
            }
            if self.rows_left == 0 {
                break;
            }
            self.rows
                .push_record(&record)
                .map_err(DataFusionError::from)?;
            self.rows_left -= 1;
        }
        self.metrics.records_decoded.add(decoded);
        match failure {
            Some(e) => Err(self.corrupt(first, e)),
            None => Ok(()),
        }
    }
}

/// First and last offset of a batch, when its header holds sane values.
fn offsets_of(header: &BatchHeader) -> Option<(u64, u64)> {
    let first = u64::try_from(header.base_offset).ok()?;
    let last = u64::try_from(header.last_offset()).ok()?;
    (last >= first).then_some((first, last))
}
