//! Writing query results as a text table, CSV or newline-delimited JSON.

use std::io::Write;
use std::str::FromStr;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, StringArray};
use datafusion::arrow::csv::WriterBuilder;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::json::LineDelimitedWriter;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::arrow::util::pretty::pretty_format_batches;

use crate::SqlError;

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// A boxed text table.
    #[default]
    Table,
    /// CSV with a header line; nested values as their display text.
    Csv,
    /// One JSON object per row.
    Json,
}

impl FromStr for OutputFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "table" => Ok(OutputFormat::Table),
            "csv" => Ok(OutputFormat::Csv),
            "json" => Ok(OutputFormat::Json),
            other => Err(format!(
                "unknown output format {other:?}; expected table, csv or json"
            )),
        }
    }
}

/// Writes `batches` to `out` in `format`.
pub fn write_batches(
    format: OutputFormat,
    batches: &[RecordBatch],
    out: &mut dyn Write,
) -> Result<(), SqlError> {
    let output = |e: ArrowError| SqlError::Output(e.to_string());
    match format {
        OutputFormat::Table => {
            let table = pretty_format_batches(batches).map_err(output)?;
            writeln!(out, "{table}").map_err(|e| SqlError::Output(e.to_string()))
        }
        OutputFormat::Csv => {
            let mut writer = WriterBuilder::new().with_header(true).build(out);
            for batch in batches {
                writer
                    .write(&flatten_nested(batch).map_err(output)?)
                    .map_err(output)?;
            }
            Ok(())
        }
        OutputFormat::Json => {
            let mut writer = LineDelimitedWriter::new(out);
            for batch in batches {
                writer.write(batch).map_err(output)?;
            }
            writer.finish().map_err(output)
        }
    }
}

/// CSV has no nested values: lists, structs, maps and binary become their display text.
fn flatten_nested(batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    let options = FormatOptions::default().with_null("");
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        let nested = matches!(
            field.data_type(),
            DataType::List(_)
                | DataType::LargeList(_)
                | DataType::Struct(_)
                | DataType::Map(_, _)
                | DataType::Binary
                | DataType::LargeBinary
                | DataType::BinaryView
        );
        if !nested {
            fields.push(Arc::clone(field));
            columns.push(Arc::clone(column));
            continue;
        }
        let formatter = ArrayFormatter::try_new(column.as_ref(), &options)?;
        let text: StringArray = (0..column.len())
            .map(|i| (!column.is_null(i)).then(|| formatter.value(i).to_string()))
            .collect();
        fields.push(Arc::new(Field::new(field.name(), DataType::Utf8, true)));
        columns.push(Arc::new(text));
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}
