//! The typed JSON decoder: parses each record value straight into the column builders of
//! the projected typed fields, with no intermediate value tree.
//!
//! A value that is not one JSON object (bad syntax, invalid UTF-8, trailing bytes, nesting
//! deeper than [`super::JSON_DEPTH_MAX`]) is *malformed*: its row is rolled back and becomes all
//! nulls. A field whose JSON type does not fit its column is a *type mismatch*: that field
//! is null, the rest of the row is kept. Both are counted, never raised, and the first of
//! each kept for the report a query prints. A key repeated in an object takes its last
//! value, as serde_json (and `--key-field`) and browsers do.

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::error::ArrowError;

use super::column::StructColumn;
use super::parser::{Malformed, Parser, PathStep};
use super::schema::JsonField;

/// What decoding counted so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JsonDecodeStats {
    pub malformed: u64,
    pub type_mismatches: u64,
}

/// A value whose JSON type did not fit its column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeMismatch {
    /// The record's offset.
    pub offset: i64,
    /// The field's path in the value: `price`, `user.id`, `tags[]` (an item of `tags`).
    pub column: String,
    /// The column's SQL type: `BIGINT`, `DOUBLE`, `BOOLEAN`, `VARCHAR`, `STRUCT`, `LIST`.
    pub expected: &'static str,
    /// The value's JSON text, cut after 40 bytes (marked `…`).
    pub found: String,
}

/// Decodes record values into the typed columns of `fields` (the projected top-level
/// fields of a topic's value schema).
#[derive(Debug)]
pub struct JsonDecoder {
    root: StructColumn,
    /// Keys with escapes are unescaped here; reused across records.
    key_scratch: Vec<u8>,
    stats: JsonDecodeStats,
    first_malformed_offset: Option<i64>,
    first_mismatch: Option<TypeMismatch>,
}

impl JsonDecoder {
    pub fn new(fields: &[JsonField]) -> JsonDecoder {
        JsonDecoder {
            root: StructColumn::new(fields),
            key_scratch: Vec::new(),
            stats: JsonDecodeStats::default(),
            first_malformed_offset: None,
            first_mismatch: None,
        }
    }

    pub fn stats(&self) -> JsonDecodeStats {
        self.stats
    }

    /// The offset of the first value pushed that was malformed.
    pub fn first_malformed_offset(&self) -> Option<i64> {
        self.first_malformed_offset
    }

    /// The first type mismatch in the values pushed.
    pub fn first_mismatch(&self) -> Option<&TypeMismatch> {
        self.first_mismatch.as_ref()
    }

    /// Rows pushed since the last `finish`.
    pub fn len(&self) -> usize {
        self.root.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends one row, the value of the record at `offset`: a null value (a tombstone)
    /// gives nulls and counts nothing.
    pub fn push(&mut self, value: Option<&[u8]>, offset: i64) {
        let Some(value) = value else {
            self.root.push_null();
            return;
        };
        let row_start = self.root.len();
        let want_mismatch = self.first_mismatch.is_none();
        let mut parser = Parser::new(value, &mut self.key_scratch, want_mismatch);
        match parser.whole_object(&mut self.root) {
            Ok(()) => {
                self.stats.type_mismatches += parser.mismatches();
                if let Some(found) = parser.take_mismatch() {
                    self.first_mismatch = Some(TypeMismatch {
                        offset,
                        column: path_text(&found.path),
                        expected: found.expected,
                        found: found.found,
                    });
                }
            }
            Err(Malformed) => {
                self.root.truncate(row_start);
                self.root.push_null();
                self.stats.malformed += 1;
                self.first_malformed_offset.get_or_insert(offset);
            }
        }
        debug_assert_eq!(self.root.len(), row_start + 1);
    }

    /// The typed columns of the rows pushed so far, in field order; the decoder is then
    /// empty and reusable.
    pub fn finish(&mut self) -> Result<Vec<ArrayRef>, ArrowError> {
        self.root.finish_children()
    }
}

/// `user.id`, `tags[]`, `a.b[][].c`.
fn path_text(path: &[PathStep]) -> String {
    let mut text = String::new();
    for step in path {
        match step {
            PathStep::Field(name) => {
                if !text.is_empty() {
                    text.push('.');
                }
                text.push_str(name);
            }
            PathStep::Item => text.push_str("[]"),
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Array, AsArray, ListArray, StructArray};
    use datafusion::arrow::datatypes::Int64Type;

    use super::*;
    use crate::json::{JsonField, JsonKind};

    fn fields() -> Vec<JsonField> {
        vec![
            JsonField::new("s", JsonKind::Utf8),
            JsonField::new("i", JsonKind::Int64),
            JsonField::new("f", JsonKind::Float64),
            JsonField::new("b", JsonKind::Boolean),
            JsonField::new("t", JsonKind::Text),
            JsonField::new(
                "o",
                JsonKind::Struct(vec![JsonField::new("x", JsonKind::Int64)]),
            ),
            JsonField::new("l", JsonKind::List(Box::new(JsonKind::Int64))),
        ]
    }

    fn decode(values: &[Option<&str>]) -> (Vec<ArrayRef>, JsonDecodeStats) {
        let mut decoder = JsonDecoder::new(&fields());
        for (offset, value) in values.iter().enumerate() {
            decoder.push(value.map(str::as_bytes), offset as i64);
        }
        let stats = decoder.stats();
        (decoder.finish().unwrap(), stats)
    }

    fn strings(array: &ArrayRef) -> Vec<Option<&str>> {
        array.as_string::<i32>().iter().collect()
    }

    fn ints(array: &ArrayRef) -> Vec<Option<i64>> {
        array.as_primitive::<Int64Type>().iter().collect()
    }

    #[test]
    fn decodes_every_kind_in_any_key_order() {
        let (columns, stats) = decode(&[
            Some(
                r#"{"s":"a\"\u00e9\ud83d\ude00","i":-12,"f":1.5e3,"b":true,"t":{"k":[1]},"o":{"x":3,"y":4},"l":[1,2]}"#,
            ),
            Some(
                r#" { "l" : [ ] , "o" : {} , "b":false,"i":9223372036854775807,"zz":{"a":[null]},"t":"txt" } "#,
            ),
        ]);
        assert_eq!(stats, JsonDecodeStats::default());
        assert_eq!(strings(&columns[0]), vec![Some("a\"é😀"), None]);
        assert_eq!(ints(&columns[1]), vec![Some(-12), Some(i64::MAX)]);
        assert_eq!(
            columns[2]
                .as_primitive::<datafusion::arrow::datatypes::Float64Type>()
                .value(0),
            1500.0
        );
        assert_eq!(
            columns[3].as_boolean().iter().collect::<Vec<_>>(),
            vec![Some(true), Some(false)]
        );
        assert_eq!(
            strings(&columns[4]),
            vec![Some(r#"{"k":[1]}"#), Some("txt")]
        );
        let o = columns[5].as_any().downcast_ref::<StructArray>().unwrap();
        assert_eq!(ints(o.column(0)), vec![Some(3), None]);
        let l = columns[6].as_any().downcast_ref::<ListArray>().unwrap();
        assert_eq!(ints(&l.value(0)), vec![Some(1), Some(2)]);
        assert_eq!(l.value(1).len(), 0);
    }

    #[test]
    fn type_mismatches_null_one_field_and_are_counted() {
        let (columns, stats) = decode(&[Some(
            r#"{"s":5,"i":1.5,"f":"x","b":1,"o":[1],"l":[1,"two"],"t":null}"#,
        )]);
        assert_eq!(stats.type_mismatches, 6);
        assert_eq!(stats.malformed, 0);
        for column in &columns[..6] {
            assert!(column.is_null(0));
        }
        let l = columns[6].as_any().downcast_ref::<ListArray>().unwrap();
        assert_eq!(ints(&l.value(0)), vec![Some(1), None]);
    }

    #[test]
    fn malformed_values_roll_back_to_one_null_row() {
        let (columns, stats) = decode(&[
            Some(r#"{"s":"ok","i":1}"#),
            Some(r#"{"s":"half","l":[1,2"#),
            Some("not json"),
            Some(r#"{"s":"a"} trailing"#),
            Some(r#"["array"]"#),
            Some(""),
            None,
            Some(r#"{"s":"\ud800"}"#),
            Some(r#"{"i":01}"#),
            Some(r#"{"s":"b","i":2}"#),
        ]);
        assert_eq!(stats.malformed, 7);
        assert_eq!(
            strings(&columns[0]),
            vec![
                Some("ok"),
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                Some("b")
            ]
        );
        assert_eq!(ints(&columns[1])[9], Some(2));
        let l = columns[6].as_any().downcast_ref::<ListArray>().unwrap();
        assert_eq!(l.len(), 10);
        assert_eq!(l.values().len(), 0);
    }

    #[test]
    fn invalid_utf8_or_a_lone_surrogate_in_any_string_is_malformed() {
        let mut decoder = JsonDecoder::new(&fields());
        decoder.push(Some(b"{\"s\":\"\xff\"}"), 0);
        decoder.push(Some(b"{\"skipped\":\"\xff\",\"i\":1}"), 1);
        decoder.push(Some(b"{\"skipped\":\"\\ud800\",\"i\":1}"), 2);
        decoder.push(Some(b"{\"\xff\":1,\"i\":1}"), 3);
        decoder.push(Some(b"{\"skipped\":\"\xc3\xa9\\n\",\"i\":1}"), 4);
        assert_eq!(decoder.stats().malformed, 4);
        assert_eq!(decoder.first_malformed_offset(), Some(0));
        let columns = decoder.finish().unwrap();
        assert_eq!(ints(&columns[1]), vec![None, None, None, None, Some(1)]);
    }

    #[test]
    fn numbers_beyond_f64_are_malformed_as_serde_json_says() {
        let mut decoder = JsonDecoder::new(&fields());
        decoder.push(Some(br#"{"skipped":1e400}"#), 0);
        decoder.push(
            Some(format!(r#"{{"i":{}}}"#, "9".repeat(400)).as_bytes()),
            1,
        );
        decoder.push(Some(br#"{"f":1e-400,"i":-9223372036854775808}"#), 2);
        assert_eq!(decoder.stats().malformed, 2);
        let columns = decoder.finish().unwrap();
        assert_eq!(ints(&columns[1]), vec![None, None, Some(i64::MIN)]);
    }

    #[test]
    fn nesting_deeper_than_the_limit_is_malformed_not_a_crash() {
        let deep = format!("{{\"t\":{}{}}}", "[".repeat(10_000), "]".repeat(10_000));
        let mut decoder = JsonDecoder::new(&fields());
        decoder.push(Some(deep.as_bytes()), 0);
        assert_eq!(decoder.stats().malformed, 1);
    }

    #[test]
    fn a_duplicate_key_takes_its_last_value() {
        let (columns, stats) = decode(&[
            Some(r#"{"i":1,"i":2}"#),
            Some(r#"{"i":"x","s":"a","i":3}"#),
            Some(r#"{"i":4,"i":"y"}"#),
            Some(r#"{"o":{"x":1,"x":2},"o":{"y":0},"l":[1],"l":[2,3],"s":"a","s":"\u00e9"}"#),
        ]);
        assert_eq!(ints(&columns[1]), vec![Some(2), Some(3), None, None]);
        // Only the value kept counts: "x" was replaced, "y" was not.
        assert_eq!(stats.type_mismatches, 1);
        assert_eq!(strings(&columns[0]), vec![None, Some("a"), None, Some("é")]);
        let o = columns[5].as_any().downcast_ref::<StructArray>().unwrap();
        assert!(o.is_valid(3));
        assert_eq!(ints(o.column(0)), vec![None, None, None, None]);
        let l = columns[6].as_any().downcast_ref::<ListArray>().unwrap();
        assert_eq!(ints(&l.value(3)), vec![Some(2), Some(3)]);
    }

    #[test]
    fn the_first_mismatch_names_offset_path_type_and_text() {
        let mut decoder = JsonDecoder::new(&fields());
        decoder.push(Some(br#"{"i":"replaced","i":1}"#), 40);
        decoder.push(Some(br#"{"o":{"x":"12.5"},"i":1.5}"#), 41);
        decoder.push(Some(br#"{"i":"later"}"#), 42);
        assert_eq!(decoder.stats().type_mismatches, 3);
        assert_eq!(
            decoder.first_mismatch(),
            Some(&TypeMismatch {
                offset: 41,
                column: "o.x".to_string(),
                expected: "BIGINT",
                found: r#""12.5""#.to_string(),
            })
        );

        let mut decoder = JsonDecoder::new(&fields());
        let long = format!(r#"{{"l":[1,{{"k":"{}"}}]}}"#, "é".repeat(30));
        decoder.push(Some(long.as_bytes()), 7);
        let first = decoder.first_mismatch().unwrap();
        assert_eq!((first.offset, first.column.as_str()), (7, "l[]"));
        assert_eq!(first.found, format!(r#"{{"k":"{}…"#, "é".repeat(17)));
    }
}
