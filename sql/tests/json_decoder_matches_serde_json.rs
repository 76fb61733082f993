//! The typed JSON decoder against serde_json, on generated documents: nested objects and
//! arrays, every escape, unicode (surrogate pairs included), numbers of every shape
//! (signs, fractions, exponents, past i64 and past f64), repeated keys, any whitespace,
//! under generated schemas. Every declared column holds what serde_json's `Value` has at
//! that path, converted as the decoder's rules say (a value of the wrong type is NULL and
//! counted); a document serde_json refuses, or that is not an object, is a malformed row.
//! Documents are also mutated (bytes cut, dropped, inserted) to reach invalid ones.
//!
//! One known difference is left out: `-0` is the integer 0 for the decoder (JSON's grammar
//! makes it an integer) while serde_json reads it as the float -0.0.

use proptest::prelude::*;
use serde_json::Value;
use weir_sql::datafusion::arrow::array::{Array, ArrayRef, AsArray, ListArray, StructArray};
use weir_sql::datafusion::arrow::datatypes::{Float64Type, Int64Type};
use weir_sql::json::{JsonDecoder, JsonField, JsonKind};

/// A JSON document to be written out: numbers and strings are already JSON text.
#[derive(Debug, Clone)]
enum Doc {
    Null,
    Bool(bool),
    Number(String),
    String(String),
    Array(Vec<Doc>),
    Object(Vec<(String, Doc)>),
}

/// Field names of the generated schemas.
const NAMES: [&str; 6] = ["a", "b", "é", "c", "a\"b", "😀"];
/// Keys as written in documents: the names above, some escaped, and one never declared.
const KEYS: [&str; 9] = [
    r#""a""#,
    r#""\u0061""#,
    r#""b""#,
    r#""é""#,
    r#""\u00E9""#,
    r#""c""#,
    r#""a\"b""#,
    r#""\ud83d\ude00""#,
    r#""x""#,
];

fn number() -> impl Strategy<Value = String> {
    let composed = (
        any::<bool>(),
        "0|[1-9][0-9]{0,24}",
        proptest::option::of("[0-9]{1,18}"),
        proptest::option::of(("[eE]", "[+-]?", "[0-9]{1,2}")),
    )
        .prop_map(|(negative, int, fraction, exponent)| {
            let plain_zero = int == "0" && fraction.is_none() && exponent.is_none();
            let mut text = String::new();
            if negative && !plain_zero {
                text.push('-');
            }
            text.push_str(&int);
            if let Some(fraction) = fraction {
                text.push('.');
                text.push_str(&fraction);
            }
            if let Some((e, sign, digits)) = exponent {
                text.push_str(&e);
                text.push_str(&sign);
                text.push_str(&digits);
            }
            text
        });
    prop_oneof![
        3 => composed,
        2 => any::<i64>().prop_map(|n| n.to_string()),
        1 => any::<u64>().prop_map(|n| n.to_string()),
        1 => any::<f64>()
            .prop_filter("finite", |f| f.is_finite() && *f != 0.0)
            .prop_map(|f| format!("{f:e}")),
        1 => prop::sample::select(vec![
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "-9223372036854775809",
            "18446744073709551616",
            "1e308",
            "1.7976931348623157e308",
            "1e400",
            "-1E+400",
            "1e-400",
            "0.0",
            "-0.0",
            "0e0",
        ])
        .prop_map(str::to_string),
    ]
}

/// One character of a string as JSON text, written literally or escaped (`mode`).
fn write_char(out: &mut String, c: char, mode: u8) {
    let short = match c {
        '"' => Some("\\\""),
        '\\' => Some("\\\\"),
        '/' => Some("\\/"),
        '\u{8}' => Some("\\b"),
        '\u{c}' => Some("\\f"),
        '\n' => Some("\\n"),
        '\r' => Some("\\r"),
        '\t' => Some("\\t"),
        _ => None,
    };
    let must_escape = c == '"' || c == '\\' || (c as u32) < 0x20;
    match (mode, short) {
        (0, _) if !must_escape => out.push(c),
        (0 | 1, Some(short)) => out.push_str(short),
        _ => {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                if mode == 3 {
                    out.push_str(&format!("\\u{unit:04X}"));
                } else {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
}

fn string() -> impl Strategy<Value = String> {
    let character = prop_oneof![
        4 => proptest::char::range('a', 'z'),
        1 => prop::sample::select(vec!['"', '\\', '/', '\n', '\t', '\u{1}', '\u{8}', '\u{7f}', 'é', '😀', '\u{2028}']),
        1 => any::<char>(),
    ];
    prop::collection::vec((character, 0..4u8), 0..8).prop_map(|chars| {
        let mut text = String::from("\"");
        for (c, mode) in chars {
            write_char(&mut text, c, mode);
        }
        text.push('"');
        text
    })
}

fn doc() -> impl Strategy<Value = Doc> {
    let leaf = prop_oneof![
        Just(Doc::Null),
        any::<bool>().prop_map(Doc::Bool),
        number().prop_map(Doc::Number),
        string().prop_map(Doc::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Doc::Array),
            prop::collection::vec((prop::sample::select(KEYS.to_vec()), inner), 0..6).prop_map(
                |fields| Doc::Object(
                    fields
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect()
                )
            ),
        ]
    })
}

/// A record value: mostly an object, sometimes anything else.
fn record() -> impl Strategy<Value = Doc> {
    prop_oneof![
        6 => prop::collection::vec((prop::sample::select(KEYS.to_vec()), doc()), 0..8).prop_map(
            |fields| Doc::Object(
                fields
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect()
            )
        ),
        1 => doc(),
    ]
}

const SPACES: [&str; 4] = ["", " ", "\n", "\t \r\n"];

/// Writes `doc` with the whitespace `spaces` picks between tokens, in turn.
fn write_doc(out: &mut String, doc: &Doc, spaces: &[u8], turn: &mut usize) {
    let space = |out: &mut String, turn: &mut usize| {
        if !spaces.is_empty() {
            out.push_str(SPACES[spaces[*turn % spaces.len()] as usize % SPACES.len()]);
            *turn += 1;
        }
    };
    match doc {
        Doc::Null => out.push_str("null"),
        Doc::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Doc::Number(text) | Doc::String(text) => out.push_str(text),
        Doc::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                space(out, turn);
                write_doc(out, item, spaces, turn);
                space(out, turn);
            }
            out.push(']');
        }
        Doc::Object(fields) => {
            out.push('{');
            for (i, (key, value)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                space(out, turn);
                out.push_str(key);
                space(out, turn);
                out.push(':');
                space(out, turn);
                write_doc(out, value, spaces, turn);
                space(out, turn);
            }
            out.push('}');
        }
    }
}

/// A change that usually makes a document invalid.
#[derive(Debug, Clone)]
enum Mutation {
    Cut(usize),
    Drop(usize),
    Insert(usize, u8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let byte = prop::sample::select(vec![
        b'{', b'}', b'[', b']', b'"', b'\\', b',', b':', 0xff, 0x01, b'e', b'-', b'0', b'.', 0xc3,
        b'u', b' ', b'n',
    ]);
    prop_oneof![
        any::<usize>().prop_map(Mutation::Cut),
        any::<usize>().prop_map(Mutation::Drop),
        (any::<usize>(), byte).prop_map(|(at, b)| Mutation::Insert(at, b)),
    ]
}

fn apply(bytes: &mut Vec<u8>, mutation: &Mutation) {
    let len = bytes.len();
    match *mutation {
        Mutation::Cut(at) => bytes.truncate(at % (len + 1)),
        Mutation::Drop(at) if len > 0 => {
            bytes.remove(at % len);
        }
        Mutation::Drop(_) => {}
        Mutation::Insert(at, byte) => bytes.insert(at % (len + 1), byte),
    }
}

fn kind() -> impl Strategy<Value = JsonKind> {
    let leaf = prop_oneof![
        Just(JsonKind::Boolean),
        Just(JsonKind::Int64),
        Just(JsonKind::Float64),
        Just(JsonKind::Utf8),
        Just(JsonKind::Text),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            inner.clone().prop_map(|k| JsonKind::List(Box::new(k))),
            fields(inner).prop_map(JsonKind::Struct),
        ]
    })
}

fn fields(kind: impl Strategy<Value = JsonKind>) -> impl Strategy<Value = Vec<JsonField>> {
    prop::collection::btree_map(prop::sample::select(NAMES.to_vec()), kind, 1..5).prop_map(
        |fields| {
            fields
                .into_iter()
                .map(|(name, kind)| JsonField::new(name, kind))
                .collect()
        },
    )
}

/// serde_json's default float parsing (this build has no `float_roundtrip`) may round
/// twice; std's, which the decoder uses, is exact. A few units in the last place apart.
fn same_float(a: f64, b: f64) -> bool {
    a == b || (a.signum() == b.signum() && a.to_bits().abs_diff(b.to_bits()) <= 4)
}

/// Checks row `row` of `array` (a column of `kind`) against serde_json's value there,
/// counting the values that should have been mismatches.
fn check(
    kind: &JsonKind,
    want: Option<&Value>,
    array: &dyn Array,
    row: usize,
    mismatches: &mut u64,
    at: &str,
) -> Result<(), String> {
    let want = want.filter(|v| !v.is_null());
    let fail = |what: String| -> Result<(), String> { Err(format!("at {at}: {what}")) };
    let Some(want) = want else {
        return if array.is_null(row) {
            Ok(())
        } else {
            fail(format!(
                "expected NULL (absent or null), got a value in {array:?}"
            ))
        };
    };
    let fits = match (kind, want) {
        (JsonKind::Boolean, Value::Bool(_))
        | (JsonKind::Float64, Value::Number(_))
        | (JsonKind::Utf8, Value::String(_))
        | (JsonKind::Text, _)
        | (JsonKind::Struct(_), Value::Object(_))
        | (JsonKind::List(_), Value::Array(_)) => true,
        (JsonKind::Int64, Value::Number(n)) => n.as_i64().is_some(),
        _ => false,
    };
    if !fits {
        *mismatches += 1;
        return if array.is_null(row) {
            Ok(())
        } else {
            fail(format!("{want} does not fit {kind:?}: expected NULL"))
        };
    }
    if array.is_null(row) {
        return fail(format!("expected {want}, got NULL"));
    }
    match (kind, want) {
        (JsonKind::Boolean, Value::Bool(b)) => {
            let got = array.as_boolean().value(row);
            if got != *b {
                return fail(format!("expected {b}, got {got}"));
            }
        }
        (JsonKind::Int64, Value::Number(n)) => {
            let got = array.as_primitive::<Int64Type>().value(row);
            if Some(got) != n.as_i64() {
                return fail(format!("expected {n}, got {got}"));
            }
        }
        (JsonKind::Float64, Value::Number(n)) => {
            let got = array.as_primitive::<Float64Type>().value(row);
            let expected = n.as_f64().unwrap_or(f64::NAN);
            if !same_float(got, expected) {
                return fail(format!("expected {expected:e}, got {got:e}"));
            }
        }
        (JsonKind::Utf8 | JsonKind::Text, Value::String(s)) => {
            let got = array.as_string::<i32>().value(row);
            if got != s {
                return fail(format!("expected {s:?}, got {got:?}"));
            }
        }
        (JsonKind::Text, other) => {
            // The value's own JSON text: it must read back as the same value.
            let got = array.as_string::<i32>().value(row);
            match serde_json::from_str::<Value>(got) {
                Ok(back) if back == *other => {}
                _ => return fail(format!("expected the text of {other}, got {got:?}")),
            }
        }
        (JsonKind::Struct(fields), Value::Object(map)) => {
            let array = array
                .as_any()
                .downcast_ref::<StructArray>()
                .ok_or("not a struct")?;
            for (i, field) in fields.iter().enumerate() {
                check(
                    &field.kind,
                    map.get(&field.name),
                    array.column(i).as_ref(),
                    row,
                    mismatches,
                    &format!("{at}.{}", field.name),
                )?;
            }
        }
        (JsonKind::List(item), Value::Array(items)) => {
            let array = array
                .as_any()
                .downcast_ref::<ListArray>()
                .ok_or("not a list")?;
            let values: ArrayRef = array.value(row);
            if values.len() != items.len() {
                return fail(format!("{} items, expected {}", values.len(), items.len()));
            }
            for (i, want) in items.iter().enumerate() {
                check(
                    item,
                    Some(want),
                    values.as_ref(),
                    i,
                    mismatches,
                    &format!("{at}[{i}]"),
                )?;
            }
        }
        _ => return fail("unreachable pairing".to_string()),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn every_column_holds_what_serde_json_reads(
        fields in fields(kind()),
        records in prop::collection::vec(
            (record(), prop::collection::vec(0..4u8, 0..6), proptest::option::weighted(0.3, mutation())),
            1..6,
        ),
    ) {
        let mut texts: Vec<Vec<u8>> = Vec::new();
        for (doc, spaces, mutation) in &records {
            let mut text = String::new();
            write_doc(&mut text, doc, spaces, &mut 0);
            let mut bytes = text.into_bytes();
            if let Some(mutation) = mutation {
                apply(&mut bytes, mutation);
            }
            texts.push(bytes);
        }
        let mut decoder = JsonDecoder::new(&fields);
        for (offset, bytes) in texts.iter().enumerate() {
            decoder.push(Some(bytes), offset as i64);
        }
        let stats = decoder.stats();
        let columns = decoder.finish().unwrap();

        let mut malformed = 0u64;
        let mut mismatches = 0u64;
        for (row, bytes) in texts.iter().enumerate() {
            let text = String::from_utf8_lossy(bytes);
            match serde_json::from_slice::<Value>(bytes) {
                Ok(Value::Object(map)) => {
                    for (field, column) in fields.iter().zip(&columns) {
                        let checked = check(
                            &field.kind,
                            map.get(&field.name),
                            column.as_ref(),
                            row,
                            &mut mismatches,
                            &field.name,
                        );
                        prop_assert!(checked.is_ok(), "{} in {text}", checked.unwrap_err());
                    }
                }
                other => {
                    malformed += 1;
                    for column in &columns {
                        prop_assert!(column.is_null(row), "{other:?}: {text} is a row");
                    }
                }
            }
        }
        prop_assert_eq!(stats.malformed, malformed, "malformed rows in {:?}", texts.iter().map(|t| String::from_utf8_lossy(t)).collect::<Vec<_>>());
        prop_assert_eq!(stats.type_mismatches, mismatches, "mismatches in {:?}", texts.iter().map(|t| String::from_utf8_lossy(t)).collect::<Vec<_>>());
    }
}

#[test]
fn minus_zero_is_the_integer_zero() {
    let mut decoder = JsonDecoder::new(&[JsonField::new("n", JsonKind::Int64)]);
    decoder.push(Some(br#"{"n":-0}"#), 0);
    let columns = decoder.finish().unwrap();
    assert_eq!(columns[0].as_primitive::<Int64Type>().value(0), 0);
    // Where serde_json says float.
    let value: Value = serde_json::from_str("-0").unwrap();
    assert!(value.is_f64());
}
