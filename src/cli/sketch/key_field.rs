//! `--key-field PATH`: the stream key taken from a field of each record's JSON value, named by a
//! dotted path (`user.id`). One pass of serde_json over the value skips every other field without
//! building the document, and borrows the key from the record whenever it is a string without
//! escapes; numbers and escaped strings go through one reused buffer.

use std::fmt;
use std::io::Write;

use anyhow::bail;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// A parsed `--key-field` path and the buffer its keys are written to when they cannot be
/// borrowed from the record.
#[derive(Debug, Clone)]
pub struct KeyField {
    path: String,
    segments: Vec<String>,
    scratch: Vec<u8>,
}

/// What a record's value gives as its key.
#[derive(Debug, PartialEq, Eq)]
pub enum Extracted<'a> {
    Key(&'a [u8]),
    /// The value is not one whole JSON document.
    NotJson,
    /// The path leads nowhere, or to a null, an object or an array: nothing to key by.
    Missing,
}

impl KeyField {
    /// Parses a dotted path: one or more non-empty field names separated by `.`.
    pub fn parse(path: &str) -> anyhow::Result<Self> {
        if path.is_empty() {
            bail!("--key-field needs a field name, e.g. `user.id`");
        }
        let segments: Vec<String> = path.split('.').map(str::to_string).collect();
        if segments.iter().any(String::is_empty) {
            bail!("--key-field {path:?} has an empty field name; write names separated by single dots, e.g. `user.id`");
        }
        Ok(Self {
            path: path.to_string(),
            segments,
            scratch: Vec::new(),
        })
    }

    /// The path as given.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The key of `value`: a string field as-is (unescaped), a number or bool by its JSON text as
    /// serde_json writes it (integers as written, `1.50` as `1.5`).
    pub fn extract<'a>(&'a mut self, value: &'a [u8]) -> Extracted<'a> {
        let mut deserializer = serde_json::Deserializer::from_slice(value);
        let step = Step {
            path: &self.segments,
            scratch: &mut self.scratch,
        };
        let leaf = step
            .deserialize(&mut deserializer)
            .and_then(|leaf| deserializer.end().map(|()| leaf));
        match leaf {
            Err(_) => Extracted::NotJson,
            Ok(Leaf::Borrowed(key)) => Extracted::Key(key),
            Ok(Leaf::Scratch) => Extracted::Key(&self.scratch),
            Ok(Leaf::Missing) => Extracted::Missing,
        }
    }
}

/// Where a found key is: in the record, or in the scratch buffer.
enum Leaf<'de> {
    Borrowed(&'de [u8]),
    Scratch,
    Missing,
}

/// One level of the walk: the path still to follow from this value.
struct Step<'p, 's> {
    path: &'p [String],
    scratch: &'s mut Vec<u8>,
}

impl Step<'_, '_> {
    fn write_scratch<'de, E: de::Error>(self, text: impl fmt::Display) -> Result<Leaf<'de>, E> {
        if !self.path.is_empty() {
            return Ok(Leaf::Missing);
        }
        self.scratch.clear();
        write!(self.scratch, "{text}").map_err(E::custom)?;
        Ok(Leaf::Scratch)
    }
}

impl<'de> DeserializeSeed<'de> for Step<'_, '_> {
    type Value = Leaf<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Leaf<'de>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Step<'_, '_> {
    type Value = Leaf<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Leaf<'de>, E> {
        Ok(match (self.path.is_empty(), v) {
            (false, _) => Leaf::Missing,
            (true, true) => Leaf::Borrowed(b"true"),
            (true, false) => Leaf::Borrowed(b"false"),
        })
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Leaf<'de>, E> {
        self.write_scratch(v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Leaf<'de>, E> {
        self.write_scratch(v)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Leaf<'de>, E> {
        if !self.path.is_empty() {
            return Ok(Leaf::Missing);
        }
        // serde_json's own number text, so that a float reads back as the same float.
        self.scratch.clear();
        serde_json::to_writer(&mut *self.scratch, &v).map_err(E::custom)?;
        Ok(Leaf::Scratch)
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Leaf<'de>, E> {
        Ok(if self.path.is_empty() {
            Leaf::Borrowed(v.as_bytes())
        } else {
            Leaf::Missing
        })
    }

    /// A string with escapes, unescaped by serde_json into its own buffer.
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Leaf<'de>, E> {
        if !self.path.is_empty() {
            return Ok(Leaf::Missing);
        }
        self.scratch.clear();
        self.scratch.extend_from_slice(v.as_bytes());
        Ok(Leaf::Scratch)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Leaf<'de>, E> {
        Ok(Leaf::Missing)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Leaf<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Leaf::Missing)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Leaf<'de>, A::Error> {
        let Step { path, scratch } = self;
        let Some((name, rest)) = path.split_first() else {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            return Ok(Leaf::Missing);
        };
        // The last of duplicate fields wins, as in serde_json's own maps.
        let mut found = Leaf::Missing;
        while let Some(matches) = map.next_key_seed(NameIs(name))? {
            if matches {
                found = map.next_value_seed(Step {
                    path: rest,
                    scratch: &mut *scratch,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// Compares an object's field name with the wanted one without copying it.
struct NameIs<'p>(&'p str);

impl<'de> DeserializeSeed<'de> for NameIs<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for NameIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        Ok(v == self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(path: &str, value: &str) -> Result<String, String> {
        let mut field = KeyField::parse(path).unwrap();
        match field.extract(value.as_bytes()) {
            Extracted::Key(key) => Ok(String::from_utf8(key.to_vec()).unwrap()),
            other => Err(format!("{other:?}")),
        }
    }

    #[test]
    fn finds_scalars_by_dotted_path() {
        let doc = r#"{"page":"/home","user":{"id":42,"name":"a\"b","vip":true,"score":1.50,"neg":-7},"tags":[1,{"x":2}]}"#;
        assert_eq!(key("page", doc).unwrap(), "/home");
        assert_eq!(key("user.id", doc).unwrap(), "42");
        assert_eq!(key("user.name", doc).unwrap(), "a\"b");
        assert_eq!(key("user.vip", doc).unwrap(), "true");
        assert_eq!(key("user.score", doc).unwrap(), "1.5");
        assert_eq!(key("user.neg", doc).unwrap(), "-7");
        assert_eq!(key("user.id", r#"{"user":{"id":1e2}}"#).unwrap(), "100.0");
        assert_eq!(key("a", r#"{"a":"x","a":"y"}"#).unwrap(), "y");
        assert_eq!(key("caf\u{e9}", r#"{"caf\u00e9":"ok"}"#).unwrap(), "ok");
    }

    #[test]
    fn missing_and_non_scalar_fields_and_bad_json_are_told_apart() {
        let doc = r#"{"user":{"id":null,"obj":{},"arr":[]},"page":"/p"}"#;
        for path in [
            "nope",
            "user.id",
            "user.obj",
            "user.arr",
            "page.x",
            "user.id.x",
        ] {
            assert_eq!(key(path, doc), Err("Missing".to_string()), "{path}");
        }
        assert_eq!(key("a", "42"), Err("Missing".to_string()));
        assert_eq!(key("a", "[1,2]"), Err("Missing".to_string()));
        for bad in [
            "",
            "not json",
            r#"{"a":"x""#,
            r#"{"a":"x"} trailing"#,
            r#"{"b":[1,2,}"#,
            "{\"a\":\"\u{1}\"}",
        ] {
            assert_eq!(key("a", bad), Err("NotJson".to_string()), "{bad:?}");
        }
        let mut field = KeyField::parse("a").unwrap();
        assert_eq!(field.extract(b"{\"a\":\"\xff\"}"), Extracted::NotJson);
    }

    #[test]
    fn the_scratch_buffer_is_reused_across_records() {
        let mut field = KeyField::parse("n").unwrap();
        assert_eq!(field.extract(br#"{"n":123456}"#), Extracted::Key(b"123456"));
        assert_eq!(field.extract(br#"{"n":7}"#), Extracted::Key(b"7"));
        assert_eq!(field.extract(br#"{"n":"t\tx"}"#), Extracted::Key(b"t\tx"));
    }

    #[test]
    fn bad_paths_are_refused() {
        for bad in ["", ".", "a.", ".a", "a..b"] {
            assert!(KeyField::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(KeyField::parse("user.id").unwrap().path(), "user.id");
    }
}
