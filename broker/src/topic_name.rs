//! Topic names: Kafka's rules, checked once at the boundary so the rest of the
//! broker can use a name in a directory path without further thought.

use std::fmt;
use std::str::FromStr;

/// Longest accepted topic name (Kafka's limit: a partition directory
/// `<topic>-<partition>` must fit a 255-byte file name).
pub const TOPIC_NAME_BYTES_MAX: usize = 249;

/// A validated topic name: 1 to 249 characters from `[a-zA-Z0-9._-]`, and not
/// `.` or `..`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName(String);

/// Why a string is not a valid topic name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicNameError {
    #[error("topic name is empty")]
    Empty,
    #[error(
        "topic name of {length} characters is longer than the limit of {TOPIC_NAME_BYTES_MAX}"
    )]
    TooLong { length: usize },
    #[error("topic name {name:?} is reserved for the current or parent directory")]
    Reserved { name: String },
    #[error("topic name {name:?} has the character {character:?} at position {position}; only ASCII letters, digits, '.', '_' and '-' are allowed")]
    BadCharacter {
        name: String,
        character: char,
        position: usize,
    },
}

impl TopicName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for TopicName {
    type Err = TopicNameError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        if name.is_empty() {
            return Err(TopicNameError::Empty);
        }
        if let Some((position, character)) = name
            .chars()
            .enumerate()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(TopicNameError::BadCharacter {
                name: name.to_string(),
                character,
                position,
            });
        }
        // All characters are ASCII from here, so bytes and characters agree.
        if name.len() > TOPIC_NAME_BYTES_MAX {
            return Err(TopicNameError::TooLong { length: name.len() });
        }
        if name == "." || name == ".." {
            return Err(TopicNameError::Reserved {
                name: name.to_string(),
            });
        }
        Ok(TopicName(name.to_string()))
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for TopicName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_kafka_legal_names() {
        for name in ["clicks", "a", "A.b_c-9", &"x".repeat(TOPIC_NAME_BYTES_MAX)] {
            assert_eq!(name.parse::<TopicName>().map(|t| t.0), Ok(name.to_string()));
        }
    }

    #[test]
    fn rejects_illegal_names_with_the_reason() {
        assert_eq!("".parse::<TopicName>(), Err(TopicNameError::Empty));
        assert_eq!(
            "x".repeat(250).parse::<TopicName>(),
            Err(TopicNameError::TooLong { length: 250 })
        );
        assert!(matches!(
            "..".parse::<TopicName>(),
            Err(TopicNameError::Reserved { .. })
        ));
        assert_eq!(
            "a/b".parse::<TopicName>(),
            Err(TopicNameError::BadCharacter {
                name: "a/b".to_string(),
                character: '/',
                position: 1
            })
        );
        assert!(matches!(
            "caf\u{e9}".parse::<TopicName>(),
            Err(TopicNameError::BadCharacter { position: 3, .. })
        ));
    }
}
