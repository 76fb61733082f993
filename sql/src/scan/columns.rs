//! The columns of a topic table: the record's metadata columns, then the typed columns of
//! its JSON value schema, and which of them a scan must decode.

use std::sync::Arc;

use datafusion::arrow::array::{Array, BinaryBuilder, MapBuilder, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::json::{JsonField, ValueSchema};

pub const PARTITION_COLUMN: &str = "partition";
pub const OFFSET_COLUMN: &str = "offset";
pub const TIMESTAMP_COLUMN: &str = "timestamp";
/// Prefix of a typed column whose JSON name equals a metadata column's name.
pub const RENAMED_FIELD_PREFIX: &str = "json_";

/// A column every topic table has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaColumn {
    Partition,
    Offset,
    Timestamp,
    Key,
    Value,
    KeyStr,
    ValueStr,
    Headers,
}

impl MetaColumn {
    pub const ALL: [MetaColumn; 8] = [
        MetaColumn::Partition,
        MetaColumn::Offset,
        MetaColumn::Timestamp,
        MetaColumn::Key,
        MetaColumn::Value,
        MetaColumn::KeyStr,
        MetaColumn::ValueStr,
        MetaColumn::Headers,
    ];

    pub fn name(self) -> &'static str {
        match self {
            MetaColumn::Partition => PARTITION_COLUMN,
            MetaColumn::Offset => OFFSET_COLUMN,
            MetaColumn::Timestamp => TIMESTAMP_COLUMN,
            MetaColumn::Key => "key",
            MetaColumn::Value => "value",
            MetaColumn::KeyStr => "key_str",
            MetaColumn::ValueStr => "value_str",
            MetaColumn::Headers => "headers",
        }
    }

    fn field(self) -> Field {
        let name = self.name();
        match self {
            MetaColumn::Partition => Field::new(name, DataType::Int32, false),
            MetaColumn::Offset => Field::new(name, DataType::Int64, false),
            MetaColumn::Timestamp => Field::new(
                name,
                DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                false,
            ),
            MetaColumn::Key | MetaColumn::Value => Field::new(name, DataType::Binary, true),
            // Null when the bytes are absent or not valid UTF-8 (never a lossy copy).
            MetaColumn::KeyStr | MetaColumn::ValueStr => Field::new(name, DataType::Utf8View, true),
            MetaColumn::Headers => Field::new(name, headers_data_type(), false),
        }
    }

    /// Whether the column needs each record decoded (not just its batch header).
    fn needs_records(self) -> bool {
        !matches!(self, MetaColumn::Partition | MetaColumn::Offset)
    }
}

/// `Map<Utf8, Binary>` exactly as the headers builder produces it.
pub fn headers_data_type() -> DataType {
    let mut builder = MapBuilder::new(None, StringBuilder::new(), BinaryBuilder::new());
    builder.finish().data_type().clone()
}

/// One column of a topic table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableColumn {
    Meta(MetaColumn),
    /// A typed field of the value; the JSON key is `field.name`, which may differ from
    /// the column name.
    Json(JsonField),
}

/// The schema of one topic table.
#[derive(Debug, Clone)]
pub struct TopicColumns {
    pub schema: SchemaRef,
    pub columns: Vec<TableColumn>,
}

impl TopicColumns {
    /// Metadata columns, then one column per top-level field of `value_schema`. A field
    /// whose name is already a column is renamed `json_<name>`, and dropped if that is
    /// taken too.
    pub fn new(value_schema: Option<&ValueSchema>) -> TopicColumns {
        let mut columns: Vec<TableColumn> =
            MetaColumn::ALL.into_iter().map(TableColumn::Meta).collect();
        let mut fields: Vec<Field> = MetaColumn::ALL.into_iter().map(MetaColumn::field).collect();
        for json in value_schema
            .map(|s| s.fields.as_slice())
            .unwrap_or_default()
        {
            let taken = |name: &str| fields.iter().any(|f| f.name() == name);
            let name = if taken(&json.name) {
                format!("{RENAMED_FIELD_PREFIX}{}", json.name)
            } else {
                json.name.clone()
            };
            if taken(&name) {
                continue;
            }
            fields.push(Field::new(name, json.kind.data_type(), true));
            columns.push(TableColumn::Json(json.clone()));
        }
        TopicColumns {
            schema: Arc::new(Schema::new(fields)),
            columns,
        }
    }
}

/// How much of each batch a scan decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DecodeLevel {
    /// Only record counts (batch headers): `count(*)`, `partition`.
    Counts,
    /// Record offsets too, computed from headers when a batch has no gaps.
    Offsets,
    /// Every record: timestamps, keys, values, headers, JSON.
    Records,
}

/// The columns one scan produces, in output order.
#[derive(Debug, Clone)]
pub struct Projection {
    pub schema: SchemaRef,
    pub meta: Vec<Option<MetaColumn>>,
    /// The typed fields to decode, in the order their columns appear.
    pub json_fields: Vec<JsonField>,
    pub level: DecodeLevel,
}

impl Projection {
    pub fn new(table: &TopicColumns, indices: Option<&Vec<usize>>) -> Projection {
        let all: Vec<usize> = (0..table.columns.len()).collect();
        let indices = indices.unwrap_or(&all);
        let mut meta = Vec::with_capacity(indices.len());
        let mut json_fields = Vec::new();
        let mut fields = Vec::with_capacity(indices.len());
        let mut level = DecodeLevel::Counts;
        for &index in indices {
            let (Some(column), Some(field)) =
                (table.columns.get(index), table.schema.fields().get(index))
            else {
                continue;
            };
            fields.push(Arc::clone(field));
            match column {
                TableColumn::Meta(m) => {
                    meta.push(Some(*m));
                    if m.needs_records() {
                        level = DecodeLevel::Records;
                    } else if *m == MetaColumn::Offset {
                        level = level.max(DecodeLevel::Offsets);
                    }
                }
                TableColumn::Json(json) => {
                    meta.push(None);
                    json_fields.push(json.clone());
                    level = DecodeLevel::Records;
                }
            }
        }
        Projection {
            schema: Arc::new(Schema::new(fields)),
            meta,
            json_fields,
            level,
        }
    }

    /// Column names, for EXPLAIN.
    pub fn names(&self) -> Vec<&str> {
        self.schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::JsonKind;

    #[test]
    fn typed_fields_named_like_metadata_columns_are_renamed() {
        let schema = ValueSchema {
            fields: vec![
                JsonField::new("page", JsonKind::Utf8),
                JsonField::new("offset", JsonKind::Int64),
                JsonField::new("json_offset", JsonKind::Int64),
            ],
        };
        let columns = TopicColumns::new(Some(&schema));
        let names: Vec<&str> = columns
            .schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .skip(8)
            .collect();
        assert_eq!(names, vec!["page", "json_offset", "json_json_offset"]);
        assert_eq!(columns.columns.len(), 11);
    }

    #[test]
    fn decode_level_follows_the_projection() {
        let columns = TopicColumns::new(None);
        assert_eq!(
            Projection::new(&columns, Some(&vec![])).level,
            DecodeLevel::Counts
        );
        assert_eq!(
            Projection::new(&columns, Some(&vec![0])).level,
            DecodeLevel::Counts
        );
        assert_eq!(
            Projection::new(&columns, Some(&vec![0, 1])).level,
            DecodeLevel::Offsets
        );
        assert_eq!(
            Projection::new(&columns, Some(&vec![1, 2])).level,
            DecodeLevel::Records
        );
    }
}
