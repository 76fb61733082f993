//! The typed JSON decoder: parses each record value straight into the column builders of
//! the projected typed fields, with no intermediate value tree.
//!
//! A value that is not one JSON object (bad syntax, invalid UTF-8, trailing bytes, nesting
//! deeper than [`JSON_DEPTH_MAX`]) is *malformed*: its row is rolled back and becomes all
//! nulls. A field whose JSON type does not fit its column is a *type mismatch*: that field
//! is null, the rest of the row is kept. Both are counted, never raised.

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::error::ArrowError;

use super::column::{Column, ListColumn, StringColumn, StructColumn};
use super::schema::JsonField;

/// Deepest object/array nesting accepted in a value.
pub const JSON_DEPTH_MAX: u32 = 64;

/// Marks a value that is not well-formed JSON; the record is rolled back.
#[derive(Debug)]
struct Malformed;

type Parse<T> = Result<T, Malformed>;

/// What decoding counted so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JsonDecodeStats {
    pub malformed: u64,
    pub type_mismatches: u64,
}

/// Decodes record values into the typed columns of `fields` (the projected top-level
/// fields of a topic's value schema).
#[derive(Debug)]
pub struct JsonDecoder {
    root: StructColumn,
    /// Keys with escapes are unescaped here; reused across records.
    key_scratch: Vec<u8>,
    stats: JsonDecodeStats,
}

impl JsonDecoder {
    pub fn new(fields: &[JsonField]) -> JsonDecoder {
        JsonDecoder {
            root: StructColumn::new(fields),
            key_scratch: Vec::new(),
            stats: JsonDecodeStats::default(),
        }
    }

    pub fn stats(&self) -> JsonDecodeStats {
        self.stats
    }

    /// Rows pushed since the last `finish`.
    pub fn len(&self) -> usize {
        self.root.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends one row: a null value (a tombstone) gives nulls and counts nothing.
    pub fn push(&mut self, value: Option<&[u8]>) {
        let Some(value) = value else {
            self.root.push_null();
            return;
        };
        let row_start = self.root.len();
        let mut parser = Parser {
            buf: value,
            pos: 0,
            depth: 0,
            key_scratch: &mut self.key_scratch,
            mismatches: 0,
        };
        match parser.whole_object(&mut self.root) {
            Ok(()) => self.stats.type_mismatches += parser.mismatches,
            Err(Malformed) => {
                self.root.truncate(row_start);
                self.root.push_null();
                self.stats.malformed += 1;
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

struct Parser<'a, 's> {
    buf: &'a [u8],
    pos: usize,
    depth: u32,
    key_scratch: &'s mut Vec<u8>,
    mismatches: u64,
}

impl<'a> Parser<'a, '_> {
    fn whole_object(&mut self, root: &mut StructColumn) -> Parse<()> {
        self.skip_ws();
        if self.peek() != Some(b'{') {
            return Err(Malformed);
        }
        self.object_into(root)?;
        self.skip_ws();
        if self.pos != self.buf.len() {
            return Err(Malformed);
        }
        Ok(())
    }

    fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.pos += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Parse<()> {
        self.skip_ws();
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(Malformed)
        }
    }

    fn enter(&mut self) -> Parse<()> {
        self.depth += 1;
        if self.depth > JSON_DEPTH_MAX {
            return Err(Malformed);
        }
        Ok(())
    }

    /// Parses the object at `pos` (which is `{`) into one row of `target`.
    fn object_into(&mut self, target: &mut StructColumn) -> Parse<()> {
        self.enter()?;
        self.pos += 1;
        let row = target.begin_row();
        let mut hint = 0usize;
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
        } else {
            loop {
                self.skip_ws();
                let found = {
                    let key = self.key()?;
                    target.find(key, hint)
                };
                self.expect(b':')?;
                self.skip_ws();
                match found {
                    Some(index) if target.set_in_row[index] != row => {
                        target.set_in_row[index] = row;
                        hint = index + 1;
                        let child = target.children.get_mut(index).ok_or(Malformed)?;
                        self.value_into(child)?;
                    }
                    // Undeclared key, or a duplicate (the first occurrence wins).
                    _ => self.skip_value()?,
                }
                self.skip_ws();
                match self.peek() {
                    Some(b',') => self.pos += 1,
                    Some(b'}') => {
                        self.pos += 1;
                        break;
                    }
                    _ => return Err(Malformed),
                }
            }
        }
        target.end_row(row);
        self.depth -= 1;
        Ok(())
    }

    /// Parses one value at `pos` into one row of `column`.
    fn value_into(&mut self, column: &mut Column) -> Parse<()> {
        if self.peek() == Some(b'n') {
            self.literal(b"null")?;
            column.push_null();
            return Ok(());
        }
        match column {
            Column::Boolean(values, validity) => match self.peek() {
                Some(b't') => {
                    self.literal(b"true")?;
                    Column::push_bool(values, validity, true);
                }
                Some(b'f') => {
                    self.literal(b"false")?;
                    Column::push_bool(values, validity, false);
                }
                _ => self.mismatch(column)?,
            },
            Column::Int64(values, validity) => match self.peek() {
                Some(b'-' | b'0'..=b'9') => {
                    let number = self.number()?;
                    match number.as_i64() {
                        Some(value) => {
                            values.push(value);
                            validity.push(true);
                        }
                        None => {
                            self.mismatches += 1;
                            column.push_null();
                        }
                    }
                }
                _ => self.mismatch(column)?,
            },
            Column::Float64(values, validity) => match self.peek() {
                Some(b'-' | b'0'..=b'9') => {
                    let number = self.number()?;
                    values.push(number.as_f64().ok_or(Malformed)?);
                    validity.push(true);
                }
                _ => self.mismatch(column)?,
            },
            Column::Utf8 {
                column: strings,
                text,
            } => match self.peek() {
                Some(b'"') => {
                    self.string_into(strings)?;
                }
                Some(_) if *text => {
                    let start = self.pos;
                    self.skip_value()?;
                    let raw = self.buf.get(start..self.pos).ok_or(Malformed)?;
                    // Skipped values are not checked for UTF-8; this one is kept.
                    std::str::from_utf8(raw).map_err(|_| Malformed)?;
                    strings.data.extend_from_slice(raw);
                    strings.commit().map_err(|()| Malformed)?;
                }
                _ => self.mismatch(column)?,
            },
            Column::Struct(child) => match self.peek() {
                Some(b'{') => self.object_into(child)?,
                _ => self.mismatch(column)?,
            },
            Column::List(list) => match self.peek() {
                Some(b'[') => self.array_into(list)?,
                _ => self.mismatch(column)?,
            },
        }
        Ok(())
    }

    /// A well-formed value of the wrong type: skipped, the field is null, counted.
    fn mismatch(&mut self, column: &mut Column) -> Parse<()> {
        self.skip_value()?;
        self.mismatches += 1;
        column.push_null();
        Ok(())
    }

    fn array_into(&mut self, list: &mut ListColumn) -> Parse<()> {
        self.enter()?;
        self.pos += 1;
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
        } else {
            loop {
                self.skip_ws();
                if let Err(e) = self.value_into(&mut list.child) {
                    list.abandon();
                    return Err(e);
                }
                self.skip_ws();
                match self.peek() {
                    Some(b',') => self.pos += 1,
                    Some(b']') => {
                        self.pos += 1;
                        break;
                    }
                    _ => {
                        list.abandon();
                        return Err(Malformed);
                    }
                }
            }
        }
        list.commit().map_err(|()| Malformed)?;
        self.depth -= 1;
        Ok(())
    }

    fn literal(&mut self, word: &[u8]) -> Parse<()> {
        let end = self.pos + word.len();
        if self.buf.get(self.pos..end) == Some(word) {
            self.pos = end;
            Ok(())
        } else {
            Err(Malformed)
        }
    }

    /// A key at `pos` (which must be `"`): borrowed from the value when it has no escapes,
    /// else unescaped into the scratch buffer.
    fn key(&mut self) -> Parse<&[u8]> {
        if self.peek() != Some(b'"') {
            return Err(Malformed);
        }
        self.pos += 1;
        let start = self.pos;
        loop {
            match self.peek() {
                Some(b'"') => {
                    let key = self.buf.get(start..self.pos).ok_or(Malformed)?;
                    self.pos += 1;
                    return Ok(key);
                }
                Some(b'\\') => break,
                Some(0..=0x1f) | None => return Err(Malformed),
                Some(_) => self.pos += 1,
            }
        }
        let mut scratch = std::mem::take(self.key_scratch);
        scratch.clear();
        scratch.extend_from_slice(self.buf.get(start..self.pos).ok_or(Malformed)?);
        let result = self.unescape_rest(&mut scratch);
        *self.key_scratch = scratch;
        result?;
        Ok(self.key_scratch.as_slice())
    }

    /// A string at `pos` (which is `"`), unescaped into one row of `strings`.
    fn string_into(&mut self, strings: &mut StringColumn) -> Parse<()> {
        self.pos += 1;
        let value_start = strings.data.len();
        let run_start = self.pos;
        let result = loop {
            match self.peek() {
                Some(b'"') => {
                    let run = self.buf.get(run_start..self.pos).ok_or(Malformed)?;
                    strings.data.extend_from_slice(run);
                    self.pos += 1;
                    break Ok(());
                }
                Some(b'\\') => {
                    let run = self.buf.get(run_start..self.pos).ok_or(Malformed)?;
                    strings.data.extend_from_slice(run);
                    break self.unescape_rest(&mut strings.data);
                }
                Some(0..=0x1f) | None => break Err(Malformed),
                Some(_) => self.pos += 1,
            }
        };
        let checked = result.and_then(|()| {
            let bytes = strings.data.get(value_start..).ok_or(Malformed)?;
            std::str::from_utf8(bytes)
                .map(|_| ())
                .map_err(|_| Malformed)
        });
        match checked.and_then(|()| strings.commit().map_err(|()| Malformed)) {
            Ok(()) => Ok(()),
            Err(e) => {
                strings.abandon();
                Err(e)
            }
        }
    }

    /// Continues a string from an escape at `pos` to its closing quote, appending the
    /// unescaped bytes to `out`.
    fn unescape_rest(&mut self, out: &mut Vec<u8>) -> Parse<()> {
        loop {
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let escaped = self.peek().ok_or(Malformed)?;
                    self.pos += 1;
                    match escaped {
                        b'"' => out.push(b'"'),
                        b'\\' => out.push(b'\\'),
                        b'/' => out.push(b'/'),
                        b'b' => out.push(0x08),
                        b'f' => out.push(0x0c),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => self.unicode_escape(out)?,
                        _ => return Err(Malformed),
                    }
                }
                Some(0..=0x1f) | None => return Err(Malformed),
                Some(byte) => {
                    out.push(byte);
                    self.pos += 1;
                }
            }
        }
    }

    /// `\uXXXX` (after the `u`), with a following `\uXXXX` when it is a surrogate pair.
    fn unicode_escape(&mut self, out: &mut Vec<u8>) -> Parse<()> {
        let first = self.hex4()?;
        let code = if (0xD800..0xDC00).contains(&first) {
            self.literal(b"\\u")?;
            let second = self.hex4()?;
            if !(0xDC00..0xE000).contains(&second) {
                return Err(Malformed);
            }
            0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
        } else {
            first
        };
        let ch = char::from_u32(code).ok_or(Malformed)?;
        let mut encoded = [0u8; 4];
        out.extend_from_slice(ch.encode_utf8(&mut encoded).as_bytes());
        Ok(())
    }

    fn hex4(&mut self) -> Parse<u32> {
        let digits = self.buf.get(self.pos..self.pos + 4).ok_or(Malformed)?;
        let mut code = 0u32;
        for &d in digits {
            let nibble = (d as char).to_digit(16).ok_or(Malformed)?;
            code = code * 16 + nibble;
        }
        self.pos += 4;
        Ok(code)
    }

    /// A number at `pos`, checked against JSON's grammar.
    fn number(&mut self) -> Parse<Number<'a>> {
        let start = self.pos;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
        }
        let int_start = self.pos;
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(Malformed),
        }
        let int_end = self.pos;
        let mut integral = true;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            self.require_digits()?;
            integral = false;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            self.require_digits()?;
            integral = false;
        }
        Ok(Number {
            text: self.buf.get(start..self.pos).ok_or(Malformed)?,
            digits: self.buf.get(int_start..int_end).ok_or(Malformed)?,
            negative,
            integral,
        })
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
    }

    fn require_digits(&mut self) -> Parse<()> {
        let start = self.pos;
        self.digits();
        if self.pos == start {
            return Err(Malformed);
        }
        Ok(())
    }

    /// Skips one value of any type, checking its syntax.
    fn skip_value(&mut self) -> Parse<()> {
        match self.peek().ok_or(Malformed)? {
            b'"' => self.skip_string(),
            b'{' => {
                self.enter()?;
                self.pos += 1;
                self.skip_ws();
                if self.peek() == Some(b'}') {
                    self.pos += 1;
                } else {
                    loop {
                        self.skip_ws();
                        if self.peek() != Some(b'"') {
                            return Err(Malformed);
                        }
                        self.skip_string()?;
                        self.expect(b':')?;
                        self.skip_ws();
                        self.skip_value()?;
                        self.skip_ws();
                        match self.peek() {
                            Some(b',') => self.pos += 1,
                            Some(b'}') => {
                                self.pos += 1;
                                break;
                            }
                            _ => return Err(Malformed),
                        }
                    }
                }
                self.depth -= 1;
                Ok(())
            }
            b'[' => {
                self.enter()?;
                self.pos += 1;
                self.skip_ws();
                if self.peek() == Some(b']') {
                    self.pos += 1;
                } else {
                    loop {
                        self.skip_ws();
                        self.skip_value()?;
                        self.skip_ws();
                        match self.peek() {
                            Some(b',') => self.pos += 1,
                            Some(b']') => {
                                self.pos += 1;
                                break;
                            }
                            _ => return Err(Malformed),
                        }
                    }
                }
                self.depth -= 1;
                Ok(())
            }
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number().map(|_| ()),
            _ => Err(Malformed),
        }
    }

    fn skip_string(&mut self) -> Parse<()> {
        self.pos += 1;
        loop {
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(b'u') => {
                            self.pos += 1;
                            self.hex4()?;
                        }
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                            self.pos += 1;
                        }
                        _ => return Err(Malformed),
                    }
                }
                Some(0..=0x1f) | None => return Err(Malformed),
                Some(_) => self.pos += 1,
            }
        }
    }
}

/// A number's text, already checked against JSON's grammar.
struct Number<'a> {
    text: &'a [u8],
    /// The integer part's digits, without sign.
    digits: &'a [u8],
    negative: bool,
    integral: bool,
}

impl Number<'_> {
    /// The value as i64 when it is an integer in range.
    fn as_i64(&self) -> Option<i64> {
        if !self.integral {
            return None;
        }
        let mut magnitude: i64 = 0;
        for &d in self.digits {
            let digit = i64::from(d - b'0');
            magnitude = magnitude.checked_mul(10)?;
            magnitude = if self.negative {
                magnitude.checked_sub(digit)?
            } else {
                magnitude.checked_add(digit)?
            };
        }
        Some(magnitude)
    }

    fn as_f64(&self) -> Option<f64> {
        std::str::from_utf8(self.text).ok()?.parse::<f64>().ok()
    }
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
        for value in values {
            decoder.push(value.map(str::as_bytes));
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
    fn invalid_utf8_in_a_kept_string_is_malformed() {
        let mut decoder = JsonDecoder::new(&fields());
        decoder.push(Some(b"{\"s\":\"\xff\"}"));
        decoder.push(Some(b"{\"skipped\":\"\xff\",\"i\":1}"));
        assert_eq!(decoder.stats().malformed, 1);
        let columns = decoder.finish().unwrap();
        assert_eq!(ints(&columns[1]), vec![None, Some(1)]);
    }

    #[test]
    fn nesting_deeper_than_the_limit_is_malformed_not_a_crash() {
        let deep = format!("{{\"t\":{}{}}}", "[".repeat(10_000), "]".repeat(10_000));
        let mut decoder = JsonDecoder::new(&fields());
        decoder.push(Some(deep.as_bytes()));
        assert_eq!(decoder.stats().malformed, 1);
    }

    #[test]
    fn duplicate_keys_keep_the_first_value() {
        let (columns, stats) = decode(&[Some(r#"{"i":1,"i":2}"#)]);
        assert_eq!(stats, JsonDecodeStats::default());
        assert_eq!(ints(&columns[1]), vec![Some(1)]);
    }
}
