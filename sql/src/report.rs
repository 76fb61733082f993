//! What a query met in the topics it read that it did not raise as an error: record values
//! that did not parse as JSON, and values that did not fit their column's type. Each
//! becomes NULL in the result; the counts (and the first of each) are kept per topic so
//! that a caller can print one warning line instead of hiding them in EXPLAIN ANALYZE.

use std::any::Any;
use std::fmt;
use std::sync::{Arc, Mutex};

use datafusion::physical_plan::ExecutionPlan;

use crate::json::TypeMismatch;
use crate::scan::TopicScanExec;

/// A record by partition and offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RecordAt {
    pub partition: u32,
    pub offset: i64,
}

/// A type mismatch and the partition of its record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MismatchAt {
    pub partition: u32,
    pub mismatch: TypeMismatch,
}

impl MismatchAt {
    fn at(&self) -> RecordAt {
        RecordAt {
            partition: self.partition,
            offset: self.mismatch.offset,
        }
    }
}

/// The JSON problems one query met in one topic. A topic scanned twice (a self-join)
/// counts its rows twice, as it decodes them twice.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JsonProblems {
    pub topic: String,
    /// Record values that were not one JSON object; their typed columns are NULL.
    pub malformed_rows: u64,
    /// The malformed record of the lowest partition, then offset.
    pub first_malformed: Option<RecordAt>,
    /// Values whose JSON type did not fit their column; each is NULL.
    pub type_mismatches: u64,
    /// The mismatch of the lowest partition, then offset (the first in that record).
    pub first_mismatch: Option<MismatchAt>,
}

impl JsonProblems {
    pub fn new(topic: impl Into<String>) -> JsonProblems {
        JsonProblems {
            topic: topic.into(),
            ..JsonProblems::default()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.malformed_rows == 0 && self.type_mismatches == 0
    }

    /// Adds what one partition scan decoded since it last reported.
    pub(crate) fn add(
        &mut self,
        partition: u32,
        malformed_rows: u64,
        first_malformed_offset: Option<i64>,
        type_mismatches: u64,
        first_mismatch: Option<&TypeMismatch>,
    ) {
        self.malformed_rows += malformed_rows;
        self.type_mismatches += type_mismatches;
        if let Some(offset) = first_malformed_offset {
            let at = RecordAt { partition, offset };
            if self.first_malformed.is_none_or(|first| at < first) {
                self.first_malformed = Some(at);
            }
        }
        if let Some(mismatch) = first_mismatch {
            let found = MismatchAt {
                partition,
                mismatch: mismatch.clone(),
            };
            if self
                .first_mismatch
                .as_ref()
                .is_none_or(|first| found.at() < first.at())
            {
                self.first_mismatch = Some(found);
            }
        }
    }

    /// Folds in the problems of another scan of the same topic.
    pub fn merge(&mut self, other: &JsonProblems) {
        self.malformed_rows += other.malformed_rows;
        self.type_mismatches += other.type_mismatches;
        if let Some(at) = other.first_malformed {
            if self.first_malformed.is_none_or(|first| at < first) {
                self.first_malformed = Some(at);
            }
        }
        if let Some(found) = &other.first_mismatch {
            if self
                .first_mismatch
                .as_ref()
                .is_none_or(|first| found.at() < first.at())
            {
                self.first_mismatch = Some(found.clone());
            }
        }
    }

    /// The one line a caller prints, e.g. `warning: topic clicks: 1 row did not parse as
    /// JSON (first: partition 1 offset 2), 2 values did not match their column type
    /// (first: partition 2 offset 3 column "page": expected VARCHAR, found 5)`.
    pub fn warning(&self) -> String {
        format!("warning: {self}")
    }
}

/// The warning without its `warning: ` prefix.
impl fmt::Display for JsonProblems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "topic {}: ", self.topic)?;
        let mut parts = Vec::new();
        if self.malformed_rows > 0 {
            let mut part = format!(
                "{} did not parse as JSON",
                plural(self.malformed_rows, "row", "rows")
            );
            if let Some(at) = self.first_malformed {
                part.push_str(&format!(
                    " (first: partition {} offset {})",
                    at.partition, at.offset
                ));
            }
            parts.push(part);
        }
        if self.type_mismatches > 0 {
            let verb = if self.type_mismatches == 1 {
                "did not match its column type"
            } else {
                "did not match their column type"
            };
            let mut part = format!("{} {verb}", plural(self.type_mismatches, "value", "values"));
            if let Some(first) = &self.first_mismatch {
                let m = &first.mismatch;
                part.push_str(&format!(
                    " (first: partition {} offset {} column {:?}: expected {}, found {})",
                    first.partition, m.offset, m.column, m.expected, m.found
                ));
            }
            parts.push(part);
        }
        if parts.is_empty() {
            parts.push("no JSON problems".to_string());
        }
        f.write_str(&parts.join(", "))
    }
}

fn plural(count: u64, one: &str, many: &str) -> String {
    format!("{count} {}", if count == 1 { one } else { many })
}

/// Problems of one topic scan, filled in by its partitions as they decode.
#[derive(Debug)]
pub(crate) struct SharedProblems(Mutex<JsonProblems>);

impl SharedProblems {
    pub(crate) fn new(topic: &str) -> Arc<SharedProblems> {
        Arc::new(SharedProblems(Mutex::new(JsonProblems::new(topic))))
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, JsonProblems> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The JSON problems met by the topic scans of an executed plan, one entry per topic with
/// any, sorted by topic. Call it after the plan's streams are drained; a plan cut short (a
/// LIMIT) reports what it decoded.
pub fn json_problems(plan: &Arc<dyn ExecutionPlan>) -> Vec<JsonProblems> {
    let mut by_topic: Vec<JsonProblems> = Vec::new();
    let mut stack: Vec<&Arc<dyn ExecutionPlan>> = vec![plan];
    while let Some(node) = stack.pop() {
        if let Some(scan) = (node.as_ref() as &dyn Any).downcast_ref::<TopicScanExec>() {
            let problems = scan.json_problems();
            if !problems.is_empty() {
                match by_topic.iter_mut().find(|p| p.topic == problems.topic) {
                    Some(existing) => existing.merge(&problems),
                    None => by_topic.push(problems),
                }
            }
        }
        stack.extend(node.children());
    }
    by_topic.sort_by(|a, b| a.topic.cmp(&b.topic));
    by_topic
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_warning_counts_and_names_the_first_of_each() {
        let mut problems = JsonProblems::new("clicks");
        let mismatch = |offset: i64, column: &str| TypeMismatch {
            offset,
            column: column.to_string(),
            expected: "BIGINT",
            found: "\"12.5\"".to_string(),
        };
        problems.add(2, 1, Some(9), 5, Some(&mismatch(50, "qty")));
        problems.add(0, 2, Some(7), 7, Some(&mismatch(41, "price")));
        assert_eq!(
            problems.warning(),
            "warning: topic clicks: 3 rows did not parse as JSON (first: partition 0 offset 7), \
             12 values did not match their column type (first: partition 0 offset 41 column \
             \"price\": expected BIGINT, found \"12.5\")"
        );
        let mut one = JsonProblems::new("t");
        one.add(0, 0, None, 1, Some(&mismatch(3, "a.b")));
        assert_eq!(
            one.warning(),
            "warning: topic t: 1 value did not match its column type (first: partition 0 \
             offset 3 column \"a.b\": expected BIGINT, found \"12.5\")"
        );
    }
}
