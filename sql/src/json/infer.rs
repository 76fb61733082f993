//! Inferring a value schema from a sample of record values, when a topic declares none.
//!
//! Only the sample is parsed into value trees; the scan itself uses the typed
//! decoder. Types merge field by field: integers and floats give Float64, objects merge
//! their keys (first-seen order), arrays merge their items, anything else that disagrees
//! (or is only ever null) gives a Text column holding the JSON text.

use super::ordered::OrderedValue;
use super::schema::{JsonField, JsonKind, ValueSchema};

/// How many sampled values must be JSON objects for the topic to count as JSON.
const OBJECT_SHARE_MIN_PERCENT: usize = 50;
/// Nesting deeper than this is not typed further (it becomes Text).
const INFER_DEPTH_MAX: usize = 16;

/// A kind while inferring: `Null` until a non-null value is seen.
#[derive(Debug, Clone, PartialEq)]
enum Inferred {
    Null,
    Boolean,
    Int64,
    Float64,
    Utf8,
    Text,
    Struct(Vec<(String, Inferred)>),
    List(Box<Inferred>),
}

/// Infers the typed fields of a topic from sampled values. Returns `None` when fewer
/// than half of the non-null values are JSON objects: the topic is not JSON.
pub fn infer_value_schema<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Option<ValueSchema> {
    let mut root = Inferred::Null;
    let mut values_seen = 0usize;
    let mut objects_seen = 0usize;
    for bytes in values {
        values_seen += 1;
        let Ok(value @ OrderedValue::Object(_)) = OrderedValue::parse(bytes) else {
            continue;
        };
        objects_seen += 1;
        root = merge(root, of_value(&value, 0));
    }
    if objects_seen == 0 || objects_seen * 100 < values_seen * OBJECT_SHARE_MIN_PERCENT {
        return None;
    }
    match finish(root) {
        JsonKind::Struct(fields) => Some(ValueSchema { fields }),
        _ => None,
    }
}

fn of_value(value: &OrderedValue, depth: usize) -> Inferred {
    if depth > INFER_DEPTH_MAX {
        return Inferred::Text;
    }
    match value {
        OrderedValue::Null => Inferred::Null,
        OrderedValue::Bool(_) => Inferred::Boolean,
        OrderedValue::Int(_) => Inferred::Int64,
        OrderedValue::Float(_) => Inferred::Float64,
        OrderedValue::String(_) => Inferred::Utf8,
        OrderedValue::Array(items) => Inferred::List(Box::new(
            items
                .iter()
                .map(|item| of_value(item, depth + 1))
                .fold(Inferred::Null, merge),
        )),
        OrderedValue::Object(map) => Inferred::Struct(
            map.iter()
                .map(|(k, v)| (k.clone(), of_value(v, depth + 1)))
                .collect(),
        ),
    }
}

fn merge(a: Inferred, b: Inferred) -> Inferred {
    use Inferred::*;
    match (a, b) {
        (Null, x) | (x, Null) => x,
        (Int64, Float64) | (Float64, Int64) => Float64,
        (Struct(mut fields), Struct(more)) => {
            for (name, kind) in more {
                match fields.iter_mut().find(|(n, _)| *n == name) {
                    Some((_, existing)) => {
                        let taken = std::mem::replace(existing, Null);
                        *existing = merge(taken, kind);
                    }
                    None => fields.push((name, kind)),
                }
            }
            Struct(fields)
        }
        (List(a), List(b)) => List(Box::new(merge(*a, *b))),
        (a, b) if a == b => a,
        _ => Text,
    }
}

fn finish(kind: Inferred) -> JsonKind {
    match kind {
        Inferred::Null | Inferred::Text => JsonKind::Text,
        Inferred::Boolean => JsonKind::Boolean,
        Inferred::Int64 => JsonKind::Int64,
        Inferred::Float64 => JsonKind::Float64,
        Inferred::Utf8 => JsonKind::Utf8,
        Inferred::Struct(fields) if fields.is_empty() => JsonKind::Text,
        Inferred::Struct(fields) => JsonKind::Struct(
            fields
                .into_iter()
                .map(|(name, kind)| JsonField::new(name, finish(kind)))
                .collect(),
        ),
        Inferred::List(item) => JsonKind::List(Box::new(finish(*item))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn infer(values: &[&str]) -> Option<ValueSchema> {
        infer_value_schema(values.iter().map(|v| v.as_bytes()))
    }

    #[test]
    fn merges_fields_across_records_in_first_seen_order() {
        let schema = infer(&[
            r#"{"page":"/a","n":1,"user":{"id":7}}"#,
            r#"{"page":"/b","n":2.5,"tags":["x"],"user":{"id":8,"name":"z"}}"#,
            r#"{"page":null,"v":1}"#,
            r#"{"v":"s"}"#,
        ])
        .unwrap();
        assert_eq!(
            schema.fields,
            vec![
                JsonField::new("page", JsonKind::Utf8),
                JsonField::new("n", JsonKind::Float64),
                JsonField::new(
                    "user",
                    JsonKind::Struct(vec![
                        JsonField::new("id", JsonKind::Int64),
                        JsonField::new("name", JsonKind::Utf8),
                    ])
                ),
                JsonField::new("tags", JsonKind::List(Box::new(JsonKind::Utf8))),
                JsonField::new("v", JsonKind::Text),
            ]
        );
    }

    #[test]
    fn non_json_topics_have_no_value_schema() {
        assert_eq!(infer(&["hello", "world", r#"{"a":1}"#]), None);
        assert_eq!(infer(&[]), None);
        assert_eq!(infer(&["[1,2]"]), None);
    }
}
