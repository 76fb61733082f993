//! Column builders for decoded JSON fields that, unlike Arrow's builders, can be cut back
//! to an earlier length: a record found malformed halfway through is rolled back and
//! becomes one all-null row. Each builder owns plain vectors that become Arrow buffers
//! without copying when the batch is finished.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, ListArray, StringArray, StructArray,
};
use datafusion::arrow::buffer::{BooleanBuffer, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use datafusion::arrow::datatypes::{Field, Fields};
use datafusion::arrow::error::ArrowError;

use super::schema::{list_item_field, struct_fields, JsonField, JsonKind};

/// Validity bits as bytes (1 valid, 0 null): cheap to push and to truncate.
#[derive(Debug, Default)]
pub(crate) struct Validity {
    valid: Vec<bool>,
    null_count: usize,
}

impl Validity {
    pub(crate) fn push(&mut self, valid: bool) {
        self.valid.push(valid);
        self.null_count += usize::from(!valid);
    }

    fn len(&self) -> usize {
        self.valid.len()
    }

    fn truncate(&mut self, len: usize) {
        if len < self.valid.len() {
            let dropped = self.valid.iter().skip(len).filter(|v| !**v).count();
            self.null_count -= dropped;
            self.valid.truncate(len);
        }
    }

    fn finish(&mut self) -> Option<NullBuffer> {
        let valid = std::mem::take(&mut self.valid);
        let null_count = std::mem::replace(&mut self.null_count, 0);
        if null_count == 0 {
            return None;
        }
        Some(NullBuffer::new(BooleanBuffer::from(valid)))
    }
}

/// The i32 offsets and validity of a variable-length column (strings, lists): entry `i`
/// ends where entry `i + 1` starts, in the column's data or child.
#[derive(Debug)]
pub(crate) struct Offsets {
    ends: Vec<i32>,
    validity: Validity,
}

impl Offsets {
    fn new() -> Offsets {
        Offsets {
            ends: vec![0],
            validity: Validity::default(),
        }
    }

    fn len(&self) -> usize {
        self.validity.len()
    }

    /// Where the data of the next entry starts.
    fn last_end(&self) -> usize {
        usize::try_from(self.ends.last().copied().unwrap_or(0)).unwrap_or(0)
    }

    /// Closes a valid entry whose data ends at `end`; fails only past 2 GiB in one batch.
    fn close(&mut self, end: usize) -> Result<(), ()> {
        let end = i32::try_from(end).map_err(|_| ())?;
        self.ends.push(end);
        self.validity.push(true);
        Ok(())
    }

    fn push_null(&mut self) {
        let end = self.ends.last().copied().unwrap_or(0);
        self.ends.push(end);
        self.validity.push(false);
    }

    /// Keeps the first `len` entries; the caller cuts its data to [`Offsets::last_end`].
    fn truncate(&mut self, len: usize) {
        self.ends.truncate(len + 1);
        self.validity.truncate(len);
    }

    fn finish(&mut self) -> (OffsetBuffer<i32>, Option<NullBuffer>) {
        let ends = std::mem::replace(&mut self.ends, vec![0]);
        (
            OffsetBuffer::new(ScalarBuffer::from(ends)),
            self.validity.finish(),
        )
    }
}

/// String bytes with i32 offsets (Arrow Utf8).
#[derive(Debug)]
pub(crate) struct StringColumn {
    offsets: Offsets,
    pub(crate) data: Vec<u8>,
}

impl StringColumn {
    fn new() -> StringColumn {
        StringColumn {
            offsets: Offsets::new(),
            data: Vec::new(),
        }
    }

    /// Closes the value whose bytes were appended to `data` since the last call.
    /// Fails only past 2 GiB of string bytes in one batch.
    pub(crate) fn commit(&mut self) -> Result<(), ()> {
        self.offsets.close(self.data.len())
    }

    /// Drops bytes appended since the last commit (a value that failed to parse).
    pub(crate) fn abandon(&mut self) {
        self.data.truncate(self.offsets.last_end());
    }

    fn push_null(&mut self) {
        self.offsets.push_null();
    }

    fn truncate(&mut self, len: usize) {
        self.offsets.truncate(len);
        self.abandon();
    }

    fn finish(&mut self) -> Result<ArrayRef, ArrowError> {
        let (offsets, nulls) = self.offsets.finish();
        let data = std::mem::take(&mut self.data);
        let array = StringArray::try_new(offsets, Buffer::from_vec(data), nulls)?;
        Ok(Arc::new(array))
    }
}

/// Where a field's value was in the row being parsed, so that a duplicate key can take
/// it back: its bytes, and the type mismatches it counted.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ValueSpan {
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) mismatches: u64,
}

/// An object's fields, decoded in any key order; keys not declared are skipped.
#[derive(Debug)]
pub(crate) struct StructColumn {
    pub(crate) names: Vec<Box<[u8]>>,
    pub(crate) children: Vec<Column>,
    /// The value of each child in the current row (valid where `set_in_row` is the row).
    pub(crate) spans: Vec<ValueSpan>,
    /// Row number (plus one) in which each child was last set: detects duplicate keys
    /// and the children a row left unset, with no per-row reset.
    pub(crate) set_in_row: Vec<u64>,
    pub(crate) rows_started: u64,
    fields: Fields,
    validity: Validity,
}

impl StructColumn {
    pub(crate) fn new(fields: &[JsonField]) -> StructColumn {
        StructColumn {
            names: fields
                .iter()
                .map(|f| f.name.as_bytes().to_vec().into_boxed_slice())
                .collect(),
            children: fields.iter().map(|f| Column::new(&f.kind)).collect(),
            spans: vec![ValueSpan::default(); fields.len()],
            set_in_row: vec![0; fields.len()],
            rows_started: 0,
            fields: struct_fields(fields),
            validity: Validity::default(),
        }
    }

    /// Index of the child named `key`, trying `hint` first (records of one topic tend to
    /// list their keys in the same order).
    pub(crate) fn find(&self, key: &[u8], hint: usize) -> Option<usize> {
        if self.names.get(hint).is_some_and(|n| **n == *key) {
            return Some(hint);
        }
        self.names.iter().position(|n| **n == *key)
    }

    pub(crate) fn len(&self) -> usize {
        self.validity.len()
    }

    /// Starts a row; every child must then be pushed exactly once before `end_row`.
    pub(crate) fn begin_row(&mut self) -> u64 {
        self.rows_started += 1;
        self.rows_started
    }

    /// Pushes null into every child the row did not set, then marks the row valid.
    pub(crate) fn end_row(&mut self, row: u64) {
        for (child, set) in self.children.iter_mut().zip(&self.set_in_row) {
            if *set != row {
                child.push_null();
            }
        }
        self.validity.push(true);
        debug_assert!(self.children.iter().all(|c| c.len() == self.len()));
    }

    pub(crate) fn push_null(&mut self) {
        for child in &mut self.children {
            child.push_null();
        }
        self.validity.push(false);
    }

    pub(crate) fn truncate(&mut self, len: usize) {
        for child in &mut self.children {
            child.truncate(len);
        }
        self.validity.truncate(len);
    }

    /// The children as finished arrays (the top level of a record is a struct whose
    /// children are the table's typed columns).
    pub(crate) fn finish_children(&mut self) -> Result<Vec<ArrayRef>, ArrowError> {
        self.validity.finish();
        self.children.iter_mut().map(Column::finish).collect()
    }

    fn finish(&mut self) -> Result<ArrayRef, ArrowError> {
        let children = self
            .children
            .iter_mut()
            .map(Column::finish)
            .collect::<Result<Vec<_>, _>>()?;
        let len = self.validity.len();
        let nulls = self.validity.finish();
        let array = if self.fields.is_empty() {
            StructArray::new_empty_fields(len, nulls)
        } else {
            StructArray::try_new(self.fields.clone(), children, nulls)?
        };
        Ok(Arc::new(array))
    }
}

/// A JSON array as a list of one child column.
#[derive(Debug)]
pub(crate) struct ListColumn {
    offsets: Offsets,
    pub(crate) child: Box<Column>,
    item: Arc<Field>,
}

impl ListColumn {
    /// Closes the list whose items were pushed into `child` since the last call.
    pub(crate) fn commit(&mut self) -> Result<(), ()> {
        self.offsets.close(self.child.len())
    }

    /// Drops items pushed since the last commit (a list whose item failed to parse).
    pub(crate) fn abandon(&mut self) {
        self.child.truncate(self.offsets.last_end());
    }

    fn push_null(&mut self) {
        self.offsets.push_null();
    }

    fn truncate(&mut self, len: usize) {
        self.offsets.truncate(len);
        self.abandon();
    }

    fn finish(&mut self) -> Result<ArrayRef, ArrowError> {
        let (offsets, nulls) = self.offsets.finish();
        let child = self.child.finish()?;
        let array = ListArray::try_new(Arc::clone(&self.item), offsets, child, nulls)?;
        Ok(Arc::new(array))
    }
}

/// One typed column under construction.
#[derive(Debug)]
pub(crate) enum Column {
    Boolean(Vec<bool>, Validity),
    Int64(Vec<i64>, Validity),
    Float64(Vec<f64>, Validity),
    /// Strings only (`text == false`) or any value as JSON text (`text == true`).
    Utf8 {
        column: StringColumn,
        text: bool,
    },
    Struct(StructColumn),
    List(ListColumn),
}

impl Column {
    pub(crate) fn new(kind: &JsonKind) -> Column {
        match kind {
            JsonKind::Boolean => Column::Boolean(Vec::new(), Validity::default()),
            JsonKind::Int64 => Column::Int64(Vec::new(), Validity::default()),
            JsonKind::Float64 => Column::Float64(Vec::new(), Validity::default()),
            JsonKind::Utf8 => Column::Utf8 {
                column: StringColumn::new(),
                text: false,
            },
            JsonKind::Text => Column::Utf8 {
                column: StringColumn::new(),
                text: true,
            },
            JsonKind::Struct(fields) => Column::Struct(StructColumn::new(fields)),
            JsonKind::List(item) => Column::List(ListColumn {
                offsets: Offsets::new(),
                child: Box::new(Column::new(item)),
                item: Arc::new(list_item_field(item)),
            }),
        }
    }

    /// The column's SQL type as DataFusion names it, for reports.
    pub(crate) fn sql_type(&self) -> &'static str {
        match self {
            Column::Boolean(..) => "BOOLEAN",
            Column::Int64(..) => "BIGINT",
            Column::Float64(..) => "DOUBLE",
            Column::Utf8 { .. } => "VARCHAR",
            Column::Struct(_) => "STRUCT",
            Column::List(_) => "LIST",
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Column::Boolean(_, v) | Column::Int64(_, v) | Column::Float64(_, v) => v.len(),
            Column::Utf8 { column, .. } => column.offsets.len(),
            Column::Struct(s) => s.len(),
            Column::List(l) => l.offsets.len(),
        }
    }

    pub(crate) fn push_bool(values: &mut Vec<bool>, validity: &mut Validity, value: bool) {
        values.push(value);
        validity.push(true);
    }

    pub(crate) fn push_null(&mut self) {
        match self {
            Column::Boolean(values, v) => {
                values.push(false);
                v.push(false);
            }
            Column::Int64(values, v) => {
                values.push(0);
                v.push(false);
            }
            Column::Float64(values, v) => {
                values.push(0.0);
                v.push(false);
            }
            Column::Utf8 { column, .. } => column.push_null(),
            Column::Struct(s) => s.push_null(),
            Column::List(l) => l.push_null(),
        }
    }

    pub(crate) fn truncate(&mut self, len: usize) {
        match self {
            Column::Boolean(values, v) => {
                values.truncate(len);
                v.truncate(len);
            }
            Column::Int64(values, v) => {
                values.truncate(len);
                v.truncate(len);
            }
            Column::Float64(values, v) => {
                values.truncate(len);
                v.truncate(len);
            }
            Column::Utf8 { column, .. } => column.truncate(len),
            Column::Struct(s) => s.truncate(len),
            Column::List(l) => l.truncate(len),
        }
    }

    pub(crate) fn finish(&mut self) -> Result<ArrayRef, ArrowError> {
        Ok(match self {
            Column::Boolean(values, v) => {
                let values = std::mem::take(values);
                Arc::new(BooleanArray::new(BooleanBuffer::from(values), v.finish()))
            }
            Column::Int64(values, v) => {
                let values = std::mem::take(values);
                Arc::new(Int64Array::new(ScalarBuffer::from(values), v.finish()))
            }
            Column::Float64(values, v) => {
                let values = std::mem::take(values);
                Arc::new(Float64Array::new(ScalarBuffer::from(values), v.finish()))
            }
            Column::Utf8 { column, .. } => column.finish()?,
            Column::Struct(s) => s.finish()?,
            Column::List(l) => l.finish()?,
        })
    }
}
