//! A JSON value tree whose objects keep their keys in document order, for the few places
//! that parse whole documents (schema files, the inference sample): column order follows
//! the order fields are written in.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A parsed JSON value.
#[derive(Debug, Clone, PartialEq)]
pub enum OrderedValue {
    Null,
    Bool(bool),
    /// An integer that fits i64.
    Int(i64),
    /// Any other number.
    Float(f64),
    String(String),
    Array(Vec<OrderedValue>),
    /// Keys in document order; a repeated key keeps its first position and its last value,
    /// as serde_json's maps (and browsers) do.
    Object(Vec<(String, OrderedValue)>),
}

impl OrderedValue {
    pub fn parse(bytes: &[u8]) -> Result<OrderedValue, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    pub fn get(&self, key: &str) -> Option<&OrderedValue> {
        match self {
            OrderedValue::Object(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            OrderedValue::String(s) => Some(s),
            _ => None,
        }
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = OrderedValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<OrderedValue, E> {
        Ok(OrderedValue::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<OrderedValue, E> {
        Ok(OrderedValue::Null)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<OrderedValue, E> {
        Ok(OrderedValue::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<OrderedValue, E> {
        Ok(OrderedValue::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<OrderedValue, E> {
        Ok(match i64::try_from(v) {
            Ok(v) => OrderedValue::Int(v),
            Err(_) => OrderedValue::Float(v as f64),
        })
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<OrderedValue, E> {
        Ok(OrderedValue::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<OrderedValue, E> {
        Ok(OrderedValue::String(v.to_string()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<OrderedValue, E> {
        Ok(OrderedValue::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<OrderedValue, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(OrderedValue::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OrderedValue, A::Error> {
        let mut entries: Vec<(String, OrderedValue)> = Vec::new();
        while let Some((key, value)) = map.next_entry::<String, OrderedValue>()? {
            match entries.iter_mut().find(|(k, _)| *k == key) {
                Some((_, earlier)) => *earlier = value,
                None => entries.push((key, value)),
            }
        }
        Ok(OrderedValue::Object(entries))
    }
}

impl<'de> Deserialize<'de> for OrderedValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<OrderedValue, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_keep_document_order() {
        let v = OrderedValue::parse(
            br#"{"z":1,"a":[true,null,1.5,"s"],"m":{"y":18446744073709551615}}"#,
        )
        .unwrap();
        let OrderedValue::Object(entries) = &v else {
            panic!("{v:?}")
        };
        let keys: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, vec!["z", "a", "m"]);
        assert_eq!(
            v.get("a"),
            Some(&OrderedValue::Array(vec![
                OrderedValue::Bool(true),
                OrderedValue::Null,
                OrderedValue::Float(1.5),
                OrderedValue::String("s".into())
            ]))
        );
        assert!(matches!(
            v.get("m").and_then(|m| m.get("y")),
            Some(OrderedValue::Float(_))
        ));
    }

    #[test]
    fn a_repeated_key_keeps_its_place_and_its_last_value() {
        let v = OrderedValue::parse(br#"{"a":1,"b":2,"a":3}"#).unwrap();
        assert_eq!(
            v,
            OrderedValue::Object(vec![
                ("a".to_string(), OrderedValue::Int(3)),
                ("b".to_string(), OrderedValue::Int(2)),
            ])
        );
    }
}
