//! A topic's value schema: the typed columns decoded from JSON record values, read from a
//! JSON Schema document (a subset: `type`, `properties`, `items`) and mapped to Arrow types.

use std::path::Path;
use std::sync::Arc;

use super::ordered::OrderedValue;
use crate::SqlError;
use datafusion::arrow::datatypes::{DataType, Field, Fields};

/// Deepest nesting a schema document may declare; bounds recursion on untrusted files.
pub const SCHEMA_DEPTH_MAX: usize = 32;

/// The type of one JSON field, as decoded into Arrow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonKind {
    /// JSON `true`/`false` as Boolean.
    Boolean,
    /// JSON integers as Int64; fractions, exponents and overflow are type mismatches.
    Int64,
    /// Any JSON number as Float64.
    Float64,
    /// JSON strings as Utf8; any other value is a type mismatch.
    Utf8,
    /// Any JSON value as Utf8: strings unescaped, everything else as its JSON text. What a
    /// field becomes when its type varies across records or is not declared.
    Text,
    /// A JSON object as a struct of its declared fields (other keys are ignored).
    Struct(Vec<JsonField>),
    /// A JSON array whose elements all have one kind.
    List(Box<JsonKind>),
}

/// One named field of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonField {
    pub name: String,
    pub kind: JsonKind,
}

/// The typed top-level fields of a topic's JSON values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValueSchema {
    pub fields: Vec<JsonField>,
}

impl JsonKind {
    pub fn data_type(&self) -> DataType {
        match self {
            JsonKind::Boolean => DataType::Boolean,
            JsonKind::Int64 => DataType::Int64,
            JsonKind::Float64 => DataType::Float64,
            JsonKind::Utf8 | JsonKind::Text => DataType::Utf8,
            JsonKind::Struct(fields) => DataType::Struct(struct_fields(fields)),
            JsonKind::List(item) => DataType::List(Arc::new(list_item_field(item))),
        }
    }
}

impl JsonField {
    pub fn new(name: impl Into<String>, kind: JsonKind) -> JsonField {
        JsonField {
            name: name.into(),
            kind,
        }
    }

    /// Every typed field is nullable: a record may omit it or hold a mismatching value.
    pub fn arrow_field(&self) -> Field {
        Field::new(&self.name, self.kind.data_type(), true)
    }
}

pub(crate) fn struct_fields(fields: &[JsonField]) -> Fields {
    fields.iter().map(JsonField::arrow_field).collect()
}

pub(crate) fn list_item_field(item: &JsonKind) -> Field {
    Field::new_list_field(item.data_type(), true)
}

impl ValueSchema {
    /// Parses a JSON Schema document whose root is an object with `properties`.
    ///
    /// `type` maps `string` to Utf8, `integer` to Int64, `number` to Float64, `boolean` to
    /// Boolean, `object` (with `properties`) to a struct and `array` (with `items`) to a
    /// list; `"null"` in a type list is ignored; several other types, or none, give a Text
    /// column holding the value's JSON text. `origin` names the document in errors.
    pub fn from_json_schema(text: &str, origin: &str) -> Result<ValueSchema, SqlError> {
        let bad = |reason: String| SqlError::ValueSchema {
            origin: origin.to_string(),
            reason,
        };
        let root = OrderedValue::parse(text.as_bytes())
            .map_err(|e| bad(format!("not valid JSON: {e}")))?;
        match parse_kind(&root, "#", 0).map_err(bad)? {
            JsonKind::Struct(fields) => Ok(ValueSchema { fields }),
            _ => Err(bad(
                "the root must be an object schema with \"properties\"".to_string()
            )),
        }
    }

    /// Reads and parses a JSON Schema file.
    pub fn from_file(path: &Path) -> Result<ValueSchema, SqlError> {
        let text = std::fs::read_to_string(path).map_err(|source| SqlError::Io {
            op: "read value schema",
            path: path.to_path_buf(),
            source,
        })?;
        ValueSchema::from_json_schema(&text, &path.display().to_string())
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

fn parse_kind(node: &OrderedValue, at: &str, depth: usize) -> Result<JsonKind, String> {
    if depth > SCHEMA_DEPTH_MAX {
        return Err(format!(
            "{at}: nesting deeper than {SCHEMA_DEPTH_MAX} levels"
        ));
    }
    if !matches!(node, OrderedValue::Object(_)) {
        return Err(format!("{at}: a schema must be a JSON object"));
    }
    let types: Vec<&str> = match node.get("type") {
        None if node.get("properties").is_some() => vec!["object"],
        None => Vec::new(),
        Some(OrderedValue::String(t)) => vec![t.as_str()],
        Some(OrderedValue::Array(list)) => list
            .iter()
            .map(|t| {
                t.as_str()
                    .ok_or_else(|| format!("{at}/type: every entry must be a string"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(format!("{at}/type: must be a string or a list of strings")),
    };
    let types: Vec<&str> = types.into_iter().filter(|t| *t != "null").collect();
    let [single] = types.as_slice() else {
        return Ok(JsonKind::Text);
    };
    match *single {
        "string" => Ok(JsonKind::Utf8),
        "integer" => Ok(JsonKind::Int64),
        "number" => Ok(JsonKind::Float64),
        "boolean" => Ok(JsonKind::Boolean),
        "object" => parse_object(node, at, depth),
        "array" => match node.get("items") {
            None => Ok(JsonKind::List(Box::new(JsonKind::Text))),
            Some(items) => Ok(JsonKind::List(Box::new(parse_kind(
                items,
                &format!("{at}/items"),
                depth + 1,
            )?))),
        },
        other => Err(format!(
            "{at}/type: unknown type {other:?}; expected string, integer, number, boolean, object, array or null"
        )),
    }
}

fn parse_object(node: &OrderedValue, at: &str, depth: usize) -> Result<JsonKind, String> {
    let properties = match node.get("properties") {
        None => return Ok(JsonKind::Text),
        Some(OrderedValue::Object(properties)) => properties,
        Some(_) => return Err(format!("{at}/properties: must be an object")),
    };
    if properties.is_empty() {
        return Ok(JsonKind::Text);
    }
    let mut fields = Vec::with_capacity(properties.len());
    for (name, node) in properties {
        let kind = parse_kind(node, &format!("{at}/properties/{name}"), depth + 1)?;
        fields.push(JsonField::new(name.clone(), kind));
    }
    Ok(JsonKind::Struct(fields))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_json_schema_types_to_kinds() {
        let text = r#"{"type":"object","properties":{
            "page":{"type":"string"},"ms":{"type":["integer","null"]},"price":{"type":"number"},
            "ok":{"type":"boolean"},"any":{},"mixed":{"type":["string","integer"]},
            "user":{"type":"object","properties":{"id":{"type":"integer"}}},
            "tags":{"type":"array","items":{"type":"string"}}}}"#;
        let schema = ValueSchema::from_json_schema(text, "test").unwrap();
        let kinds: Vec<(&str, &JsonKind)> = schema
            .fields
            .iter()
            .map(|f| (f.name.as_str(), &f.kind))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("page", &JsonKind::Utf8),
                ("ms", &JsonKind::Int64),
                ("price", &JsonKind::Float64),
                ("ok", &JsonKind::Boolean),
                ("any", &JsonKind::Text),
                ("mixed", &JsonKind::Text),
                (
                    "user",
                    &JsonKind::Struct(vec![JsonField::new("id", JsonKind::Int64)])
                ),
                ("tags", &JsonKind::List(Box::new(JsonKind::Utf8))),
            ]
        );
    }

    #[test]
    fn rejects_unknown_type_naming_where() {
        let text = r#"{"properties":{"a":{"type":"date"}}}"#;
        let err = ValueSchema::from_json_schema(text, "s.json").unwrap_err();
        assert!(err.to_string().contains("#/properties/a/type"), "{err}");
    }

    #[test]
    fn rejects_non_object_root() {
        let err = ValueSchema::from_json_schema(r#"{"type":"string"}"#, "s.json").unwrap_err();
        assert!(err.to_string().contains("root"), "{err}");
    }
}
