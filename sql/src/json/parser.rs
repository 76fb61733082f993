//! The JSON parser behind [`super::JsonDecoder`]: one pass over a value's bytes that writes
//! each field into its column builder as it is read (unknown fields are skipped without
//! being materialised), checking JSON's grammar as strictly as `serde_json` (UTF-8 and
//! surrogate pairs in every string, numbers that overflow f64), which a property test
//! holds it to.

use super::column::{Column, ListColumn, StringColumn, StructColumn, ValueSpan};

/// Digits below which a number without exponent cannot exceed f64's range (1.8e308).
const F64_DIGITS_SAFE: usize = 300;

/// Deepest object/array nesting accepted in a value.
pub const JSON_DEPTH_MAX: u32 = 64;

/// Longest JSON text of a mismatching value kept for the report.
const FOUND_BYTES_MAX: usize = 40;

/// Marks a value that is not well-formed JSON; the record is rolled back.
#[derive(Debug)]
pub(super) struct Malformed;

type Parse<T> = Result<T, Malformed>;

/// One step of the path to a value: a field of an object or an item of an array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PathStep {
    Field(String),
    Item,
}

/// The first value of a row whose JSON type did not fit its column.
#[derive(Debug, Clone)]
pub(super) struct MismatchFound {
    /// Where the value starts in the record's bytes.
    pub(super) pos: usize,
    /// From the row down to the value; filled in on the way out of the nesting.
    pub(super) path: Vec<PathStep>,
    pub(super) expected: &'static str,
    /// The value's JSON text, cut to [`FOUND_BYTES_MAX`] bytes.
    pub(super) found: String,
}

pub(super) struct Parser<'a, 's> {
    buf: &'a [u8],
    pos: usize,
    depth: u32,
    key_scratch: &'s mut Vec<u8>,
    mismatches: u64,
    /// Whether the first mismatch is still wanted (the decoder has none yet).
    want_mismatch: bool,
    mismatch: Option<MismatchFound>,
    /// The depth whose field name is next prepended to `mismatch.path`, while it is built.
    path_depth: Option<u32>,
}

impl<'a, 's> Parser<'a, 's> {
    pub(super) fn new(
        buf: &'a [u8],
        key_scratch: &'s mut Vec<u8>,
        want_mismatch: bool,
    ) -> Parser<'a, 's> {
        Parser {
            buf,
            pos: 0,
            depth: 0,
            key_scratch,
            mismatches: 0,
            want_mismatch,
            mismatch: None,
            path_depth: None,
        }
    }

    /// Fields whose JSON type did not fit their column so far.
    pub(super) fn mismatches(&self) -> u64 {
        self.mismatches
    }

    /// The row's first mismatch, path from the row down, if one was wanted and found.
    pub(super) fn take_mismatch(&mut self) -> Option<MismatchFound> {
        let mut found = self.mismatch.take()?;
        found.path.reverse();
        Some(found)
    }

    /// Notes a mismatch of the value at `start..pos` in a column of type `expected`.
    fn note_mismatch(&mut self, start: usize, expected: &'static str) {
        self.mismatches += 1;
        if !self.want_mismatch || self.mismatch.is_some() {
            return;
        }
        // A skipped value is UTF-8 (its strings were checked, the rest is ASCII).
        let raw = String::from_utf8_lossy(self.buf.get(start..self.pos).unwrap_or_default());
        let mut cut = raw.len().min(FOUND_BYTES_MAX);
        while !raw.is_char_boundary(cut) {
            cut -= 1;
        }
        let mut found = raw.get(..cut).unwrap_or_default().to_string();
        if cut < raw.len() {
            found.push('…');
        }
        self.mismatch = Some(MismatchFound {
            pos: start,
            path: Vec::new(),
            expected,
            found,
        });
        self.path_depth = Some(self.depth);
    }

    /// After a value at the current depth was parsed: prepends `step` to the path of a
    /// mismatch found inside it.
    fn name_mismatch(&mut self, step: impl FnOnce() -> PathStep) {
        if self.path_depth != Some(self.depth) {
            return;
        }
        if let Some(found) = &mut self.mismatch {
            found.path.push(step());
        }
        self.path_depth = self.depth.checked_sub(1);
    }

    /// A value at `start..end` was replaced (a duplicate key): its mismatches no longer count.
    fn forget_value(&mut self, start: usize, end: usize, mismatches: u64) {
        self.mismatches -= mismatches;
        if self
            .mismatch
            .as_ref()
            .is_some_and(|m| (start..end).contains(&m.pos))
        {
            self.mismatch = None;
            self.path_depth = None;
        }
    }

    /// Parses the whole buffer as one object into `root` (one row).
    pub(super) fn whole_object(&mut self, root: &mut StructColumn) -> Parse<()> {
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

    /// Walks the object (`close` = `}`) or array (`]`) at `pos`: calls
    /// `item` at each member or element (after its leading whitespace), and
    /// checks the separators, the nesting depth and the closing byte.
    fn each_item(&mut self, close: u8, mut item: impl FnMut(&mut Self) -> Parse<()>) -> Parse<()> {
        self.enter()?;
        self.pos += 1;
        self.skip_ws();
        if self.peek() == Some(close) {
            self.pos += 1;
        } else {
            loop {
                self.skip_ws();
                item(self)?;
                self.skip_ws();
                match self.peek() {
                    Some(b',') => self.pos += 1,
                    Some(byte) if byte == close => {
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

    /// Parses the object at `pos` (which is `{`) into one row of `target`.
    fn object_into(&mut self, target: &mut StructColumn) -> Parse<()> {
        let row = target.begin_row();
        let mut hint = 0usize;
        self.each_item(b'}', |parser| {
            let found = {
                let key = parser.key()?;
                target.find(key, hint)
            };
            parser.expect(b':')?;
            parser.skip_ws();
            let Some(index) = found else {
                return parser.skip_value();
            };
            let child = target.children.get_mut(index).ok_or(Malformed)?;
            let span = target.spans.get_mut(index).ok_or(Malformed)?;
            if target.set_in_row[index] == row {
                // A duplicate key: the last value wins, as in serde_json and browsers
                // (and `--key-field`), so the earlier one is taken back out.
                child.truncate(child.len() - 1);
                parser.forget_value(span.start, span.end, span.mismatches);
            }
            target.set_in_row[index] = row;
            hint = index + 1;
            let (start, mismatches_before) = (parser.pos, parser.mismatches);
            parser.value_into(child)?;
            *span = ValueSpan {
                start,
                end: parser.pos,
                mismatches: parser.mismatches - mismatches_before,
            };
            let names = &target.names;
            parser.name_mismatch(|| {
                PathStep::Field(String::from_utf8_lossy(&names[index]).into_owned())
            });
            Ok(())
        })?;
        target.end_row(row);
        Ok(())
    }

    /// Parses one value at `pos` into one row of `column`.
    fn value_into(&mut self, column: &mut Column) -> Parse<()> {
        let start = self.pos;
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
                            self.note_mismatch(start, column.sql_type());
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
                    // skip_value checked its strings; the rest of JSON's grammar is ASCII.
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
        let start = self.pos;
        self.skip_value()?;
        self.note_mismatch(start, column.sql_type());
        column.push_null();
        Ok(())
    }

    fn array_into(&mut self, list: &mut ListColumn) -> Parse<()> {
        let items = self.each_item(b']', |parser| {
            parser.value_into(&mut list.child)?;
            parser.name_mismatch(|| PathStep::Item);
            Ok(())
        });
        if let Err(error) = items {
            list.abandon();
            return Err(error);
        }
        list.commit().map_err(|()| Malformed)
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
                    std::str::from_utf8(key).map_err(|_| Malformed)?;
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
        let result = self.unescape_rest(&mut scratch).and_then(|()| {
            std::str::from_utf8(&scratch)
                .map(|_| ())
                .map_err(|_| Malformed)
        });
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
        let ch = self.unicode_char()?;
        let mut encoded = [0u8; 4];
        out.extend_from_slice(ch.encode_utf8(&mut encoded).as_bytes());
        Ok(())
    }

    /// The character of `\uXXXX` (after the `u`), with the second half of a surrogate pair.
    fn unicode_char(&mut self) -> Parse<char> {
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
        char::from_u32(code).ok_or(Malformed)
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
        let mut exponent = false;
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            self.require_digits()?;
            integral = false;
            exponent = true;
        }
        let number = Number {
            text: self.buf.get(start..self.pos).ok_or(Malformed)?,
            digits: self.buf.get(int_start..int_end).ok_or(Malformed)?,
            negative,
            integral,
        };
        // serde_json refuses a number beyond f64's range (`1e400`, 400 digits); only an
        // exponent or a long text can be one, so others are not parsed here.
        if (exponent || number.text.len() > F64_DIGITS_SAFE)
            && !number.as_f64().is_some_and(f64::is_finite)
        {
            return Err(Malformed);
        }
        Ok(number)
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
            b'{' => self.each_item(b'}', |parser| {
                if parser.peek() != Some(b'"') {
                    return Err(Malformed);
                }
                parser.skip_string()?;
                parser.expect(b':')?;
                parser.skip_ws();
                parser.skip_value()
            }),
            b'[' => self.each_item(b']', Self::skip_value),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number().map(|_| ()),
            _ => Err(Malformed),
        }
    }

    fn skip_string(&mut self) -> Parse<()> {
        self.pos += 1;
        let mut run_start = self.pos;
        loop {
            match self.peek() {
                Some(b'"') => {
                    // A skipped string is not copied, but its bytes must be UTF-8 as
                    // serde_json requires of every string.
                    let run = self.buf.get(run_start..self.pos).ok_or(Malformed)?;
                    std::str::from_utf8(run).map_err(|_| Malformed)?;
                    self.pos += 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    let run = self.buf.get(run_start..self.pos).ok_or(Malformed)?;
                    std::str::from_utf8(run).map_err(|_| Malformed)?;
                    self.pos += 1;
                    match self.peek() {
                        Some(b'u') => {
                            self.pos += 1;
                            self.unicode_char()?;
                            run_start = self.pos;
                        }
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                            self.pos += 1;
                            run_start = self.pos;
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
