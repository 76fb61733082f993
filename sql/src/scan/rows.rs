//! Building the output rows of one scan partition: a builder per projected column, filled
//! from decoded records (or from batch headers alone when only counts or offsets are
//! needed), finished into one Arrow `RecordBatch` at a time.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BinaryBuilder, Int32Array, Int64Array, MapBuilder, StringBuilder, StringViewBuilder,
    TimestampMillisecondArray,
};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use weir_log::batch::RecordView;

use super::columns::{MetaColumn, Projection};
use crate::json::{JsonDecodeStats, JsonDecoder};

/// Rows under construction for one topic partition.
pub struct RowBuilder {
    projection: Arc<Projection>,
    partition: i32,
    rows: usize,
    offsets: Option<Vec<i64>>,
    timestamps: Option<Vec<i64>>,
    keys: Option<BinaryBuilder>,
    values: Option<BinaryBuilder>,
    key_strs: Option<StringViewBuilder>,
    value_strs: Option<StringViewBuilder>,
    headers: Option<MapBuilder<StringBuilder, BinaryBuilder>>,
    json: Option<JsonDecoder>,
}

impl RowBuilder {
    pub fn new(projection: Arc<Projection>, partition: u32) -> RowBuilder {
        let wants = |column: MetaColumn| projection.meta.contains(&Some(column));
        let json =
            (!projection.json_fields.is_empty()).then(|| JsonDecoder::new(&projection.json_fields));
        RowBuilder {
            partition: i32::try_from(partition).unwrap_or(i32::MAX),
            rows: 0,
            offsets: wants(MetaColumn::Offset).then(Vec::new),
            timestamps: wants(MetaColumn::Timestamp).then(Vec::new),
            keys: wants(MetaColumn::Key).then(BinaryBuilder::new),
            values: wants(MetaColumn::Value).then(BinaryBuilder::new),
            key_strs: wants(MetaColumn::KeyStr).then(StringViewBuilder::new),
            value_strs: wants(MetaColumn::ValueStr).then(StringViewBuilder::new),
            headers: wants(MetaColumn::Headers)
                .then(|| MapBuilder::new(None, StringBuilder::new(), BinaryBuilder::new())),
            json,
            projection,
        }
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    pub fn json_stats(&self) -> JsonDecodeStats {
        self.json
            .as_ref()
            .map(JsonDecoder::stats)
            .unwrap_or_default()
    }

    /// The decoder, when the projection has typed columns.
    pub fn json(&self) -> Option<&JsonDecoder> {
        self.json.as_ref()
    }

    /// Rows known only by count (no projected column needs more than the partition).
    pub fn push_counted(&mut self, count: usize) {
        debug_assert!(self.offsets.is_none());
        self.rows += count;
    }

    /// Rows of consecutive offsets `first..first + count` known from a batch header.
    pub fn push_offsets(&mut self, first: i64, count: usize) {
        if let Some(offsets) = &mut self.offsets {
            offsets.extend((0..count as i64).map(|i| first + i));
        }
        self.rows += count;
    }

    /// One decoded record.
    pub fn push_record(&mut self, record: &RecordView<'_>) -> Result<(), ArrowError> {
        if let Some(offsets) = &mut self.offsets {
            offsets.push(record.offset);
        }
        if let Some(timestamps) = &mut self.timestamps {
            timestamps.push(record.timestamp);
        }
        if let Some(keys) = &mut self.keys {
            keys.append_option(record.key);
        }
        if let Some(values) = &mut self.values {
            values.append_option(record.value);
        }
        if let Some(key_strs) = &mut self.key_strs {
            key_strs.append_option(record.key.and_then(|k| std::str::from_utf8(k).ok()));
        }
        if let Some(value_strs) = &mut self.value_strs {
            value_strs.append_option(record.value.and_then(|v| std::str::from_utf8(v).ok()));
        }
        if let Some(headers) = &mut self.headers {
            for (key, value) in record.headers() {
                headers.keys().append_value(key);
                headers.values().append_option(value);
            }
            headers.append(true)?;
        }
        if let Some(json) = &mut self.json {
            json.push(record.value, record.offset);
        }
        self.rows += 1;
        Ok(())
    }

    /// The rows pushed since the last call, in the projection's column order.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let rows = std::mem::replace(&mut self.rows, 0);
        let mut json_columns = match &mut self.json {
            Some(json) => json.finish()?,
            None => Vec::new(),
        }
        .into_iter();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.projection.meta.len());
        for meta in &self.projection.meta {
            let column: ArrayRef = match meta {
                None => json_columns.next().ok_or_else(|| {
                    ArrowError::InvalidArgumentError("a typed column is missing".to_string())
                })?,
                Some(MetaColumn::Partition) => {
                    Arc::new(Int32Array::from_value(self.partition, rows))
                }
                Some(MetaColumn::Offset) => Arc::new(Int64Array::from(take(&mut self.offsets))),
                Some(MetaColumn::Timestamp) => Arc::new(
                    TimestampMillisecondArray::from(take(&mut self.timestamps))
                        .with_timezone("UTC"),
                ),
                Some(MetaColumn::Key) => finish_builder(&mut self.keys, BinaryBuilder::finish)?,
                Some(MetaColumn::Value) => finish_builder(&mut self.values, BinaryBuilder::finish)?,
                Some(MetaColumn::KeyStr) => {
                    finish_builder(&mut self.key_strs, StringViewBuilder::finish)?
                }
                Some(MetaColumn::ValueStr) => {
                    finish_builder(&mut self.value_strs, StringViewBuilder::finish)?
                }
                Some(MetaColumn::Headers) => finish_builder(&mut self.headers, MapBuilder::finish)?,
            };
            columns.push(column);
        }
        RecordBatch::try_new_with_options(
            Arc::clone(&self.projection.schema),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(rows)),
        )
    }
}

fn take(values: &mut Option<Vec<i64>>) -> Vec<i64> {
    values.as_mut().map(std::mem::take).unwrap_or_default()
}

fn finish_builder<B, A: datafusion::arrow::array::Array + 'static>(
    builder: &mut Option<B>,
    finish: impl FnOnce(&mut B) -> A,
) -> Result<ArrayRef, ArrowError> {
    match builder {
        Some(builder) => Ok(Arc::new(finish(builder))),
        None => Err(ArrowError::InvalidArgumentError(
            "a projected column has no builder".to_string(),
        )),
    }
}
