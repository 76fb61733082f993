//! Filters a topic scan can use: comparisons of `partition`, `offset` and `timestamp` with
//! literals become partition pruning, offset seeks and time seeks (through the log's time
//! index). The bounds they give are conservative, never narrower than the filter, so
//! filters are pushed as `Inexact` and DataFusion still evaluates them on every row.
//!
//! `timestamp` gives only a lower bound: record timestamps are set by producers and need
//! not grow with offsets, so no offset is known after which every record is too new.

use std::collections::BTreeSet;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{Between, BinaryExpr, Cast, Expr, Operator, TryCast};

use super::columns::{OFFSET_COLUMN, PARTITION_COLUMN, TIMESTAMP_COLUMN};

/// What the filters pushed into one scan allow it to skip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanBounds {
    /// Inclusive range of partition numbers.
    partition_min: i128,
    partition_max: i128,
    /// When set, only these partitions.
    partition_in: Option<BTreeSet<i128>>,
    /// Offsets `offset_min..offset_end`.
    offset_min: i128,
    offset_end: i128,
    /// Records older than this cannot match.
    timestamp_min_ms: Option<i64>,
    /// The filters used, for EXPLAIN.
    pushed: Vec<String>,
}

impl Default for ScanBounds {
    fn default() -> Self {
        ScanBounds {
            partition_min: 0,
            partition_max: i128::from(u32::MAX),
            partition_in: None,
            offset_min: 0,
            offset_end: i128::from(u64::MAX),
            timestamp_min_ms: None,
            pushed: Vec::new(),
        }
    }
}

/// One bound a filter implies.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Bound {
    PartitionMin(i128),
    PartitionMax(i128),
    PartitionIn(BTreeSet<i128>),
    OffsetMin(i128),
    OffsetEnd(i128),
    TimestampMinMs(i64),
}

/// Whether a scan can use `expr` to skip data.
pub fn can_push(expr: &Expr) -> bool {
    !bounds_of(expr).is_empty()
}

impl ScanBounds {
    /// Bounds from the filters DataFusion pushed (those `can_push` accepted; others are
    /// ignored, which is allowed since DataFusion re-applies every filter).
    pub fn from_filters(filters: &[Expr]) -> ScanBounds {
        let mut bounds = ScanBounds::default();
        for filter in filters {
            let implied = bounds_of(filter);
            if implied.is_empty() {
                continue;
            }
            bounds.pushed.push(filter.human_display().to_string());
            for bound in implied {
                bounds.apply(bound);
            }
        }
        bounds
    }

    fn apply(&mut self, bound: Bound) {
        match bound {
            Bound::PartitionMin(v) => self.partition_min = self.partition_min.max(v),
            Bound::PartitionMax(v) => self.partition_max = self.partition_max.min(v),
            Bound::PartitionIn(set) => {
                self.partition_in = Some(match self.partition_in.take() {
                    None => set,
                    Some(existing) => existing.intersection(&set).copied().collect(),
                })
            }
            Bound::OffsetMin(v) => self.offset_min = self.offset_min.max(v),
            Bound::OffsetEnd(v) => self.offset_end = self.offset_end.min(v),
            Bound::TimestampMinMs(v) => {
                self.timestamp_min_ms = Some(self.timestamp_min_ms.map_or(v, |t| t.max(v)))
            }
        }
    }

    pub fn allows_partition(&self, partition: u32) -> bool {
        let p = i128::from(partition);
        p >= self.partition_min
            && p <= self.partition_max
            && self
                .partition_in
                .as_ref()
                .is_none_or(|set| set.contains(&p))
    }

    /// `start..end` narrowed to the offset bounds (empty ranges stay empty).
    pub fn clamp_offsets(&self, start: u64, end: u64) -> (u64, u64) {
        let clamp = |v: i128| u64::try_from(v.max(0)).unwrap_or(u64::MAX);
        let start = start.max(clamp(self.offset_min));
        let end = end.min(clamp(self.offset_end));
        (start, end.max(start))
    }

    pub fn timestamp_min_ms(&self) -> Option<i64> {
        self.timestamp_min_ms
    }

    pub fn pushed(&self) -> &[String] {
        &self.pushed
    }
}

/// The bounds `expr` implies; empty when it implies none this scan can use.
fn bounds_of(expr: &Expr) -> Vec<Bound> {
    match expr {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::And,
            right,
        }) => {
            // Either side alone is implied by the conjunction.
            let mut bounds = bounds_of(left);
            bounds.extend(bounds_of(right));
            bounds
        }
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            match (
                column_name(left),
                literal(right),
                column_name(right),
                literal(left),
            ) {
                (Some(column), Some(value), _, _) => compare(column, *op, &value),
                (_, _, Some(column), Some(value)) => match op.swap() {
                    Some(swapped) => compare(column, swapped, &value),
                    None => Vec::new(),
                },
                _ => Vec::new(),
            }
        }
        Expr::Between(Between {
            expr,
            negated: false,
            low,
            high,
        }) => match (column_name(expr), literal(low), literal(high)) {
            (Some(column), Some(low), Some(high)) => {
                let mut bounds = compare(column, Operator::GtEq, &low);
                bounds.extend(compare(column, Operator::LtEq, &high));
                bounds
            }
            _ => Vec::new(),
        },
        Expr::InList(list) if !list.negated => {
            let Some(column) = column_name(&list.expr) else {
                return Vec::new();
            };
            let values: Option<Vec<i128>> = list
                .list
                .iter()
                .map(|e| literal(e).and_then(|v| v.as_integer()))
                .collect();
            let Some(values) = values.filter(|v| !v.is_empty()) else {
                return Vec::new();
            };
            match column {
                PARTITION_COLUMN => vec![Bound::PartitionIn(values.into_iter().collect())],
                OFFSET_COLUMN => {
                    let min = values.iter().copied().min().unwrap_or(0);
                    let max = values.iter().copied().max().unwrap_or(0);
                    vec![Bound::OffsetMin(min), Bound::OffsetEnd(max + 1)]
                }
                _ => Vec::new(),
            }
        }
        _ => Vec::new(),
    }
}

/// The pushable column `expr` names, looking through casts that keep the order of values
/// (integer widening, timestamp unit or time zone changes), which type coercion inserts.
fn column_name(expr: &Expr) -> Option<&'static str> {
    let column = match expr {
        Expr::Column(column) => column,
        Expr::Cast(Cast { expr, field }) | Expr::TryCast(TryCast { expr, field }) => {
            let data_type = field.data_type();
            let Expr::Column(column) = expr.as_ref() else {
                return None;
            };
            let keeps_order = match column.name.as_str() {
                TIMESTAMP_COLUMN => matches!(data_type, DataType::Timestamp(_, _)),
                PARTITION_COLUMN => matches!(data_type, DataType::Int32 | DataType::Int64),
                OFFSET_COLUMN => matches!(data_type, DataType::Int64),
                _ => false,
            };
            if !keeps_order {
                return None;
            }
            column
        }
        _ => return None,
    };
    [PARTITION_COLUMN, OFFSET_COLUMN, TIMESTAMP_COLUMN]
        .into_iter()
        .find(|name| column.name == *name)
}

/// A literal as an exact integer or a timestamp in (fractional) milliseconds.
#[derive(Debug, Clone, Copy)]
enum Literal {
    Integer(i128),
    /// `value / per_ms` milliseconds.
    Timestamp {
        value: i128,
        per_ms: i128,
        ms: i128,
    },
}

impl Literal {
    fn as_integer(self) -> Option<i128> {
        match self {
            Literal::Integer(v) => Some(v),
            Literal::Timestamp { .. } => None,
        }
    }

    /// The smallest whole millisecond at or after the literal.
    fn ms_ceil(self) -> Option<i128> {
        match self {
            Literal::Timestamp { value, per_ms, ms } => {
                let scaled = value * ms;
                Some(scaled.div_euclid(per_ms) + i128::from(scaled.rem_euclid(per_ms) != 0))
            }
            Literal::Integer(_) => None,
        }
    }

    /// The largest whole millisecond at or before the literal.
    fn ms_floor(self) -> Option<i128> {
        match self {
            Literal::Timestamp { value, per_ms, ms } => Some((value * ms).div_euclid(per_ms)),
            Literal::Integer(_) => None,
        }
    }
}

fn literal(expr: &Expr) -> Option<Literal> {
    let Expr::Literal(value, _) = expr else {
        return None;
    };
    let int = |v: Option<i128>| v.map(Literal::Integer);
    let ts = |v: Option<i64>, ms: i128, per_ms: i128| {
        v.map(|value| Literal::Timestamp {
            value: i128::from(value),
            per_ms,
            ms,
        })
    };
    match value {
        ScalarValue::Int8(v) => int(v.map(i128::from)),
        ScalarValue::Int16(v) => int(v.map(i128::from)),
        ScalarValue::Int32(v) => int(v.map(i128::from)),
        ScalarValue::Int64(v) => int(v.map(i128::from)),
        ScalarValue::UInt8(v) => int(v.map(i128::from)),
        ScalarValue::UInt16(v) => int(v.map(i128::from)),
        ScalarValue::UInt32(v) => int(v.map(i128::from)),
        ScalarValue::UInt64(v) => int(v.map(i128::from)),
        ScalarValue::TimestampSecond(v, _) => ts(*v, 1000, 1),
        ScalarValue::TimestampMillisecond(v, _) => ts(*v, 1, 1),
        ScalarValue::TimestampMicrosecond(v, _) => ts(*v, 1, 1000),
        ScalarValue::TimestampNanosecond(v, _) => ts(*v, 1, 1_000_000),
        _ => None,
    }
}

fn compare(column: &str, op: Operator, value: &Literal) -> Vec<Bound> {
    match column {
        TIMESTAMP_COLUMN => {
            let min = match op {
                Operator::Eq | Operator::GtEq => value.ms_ceil(),
                Operator::Gt => value.ms_floor().map(|v| v + 1),
                _ => None,
            };
            min.and_then(|v| i64::try_from(v).ok())
                .map(Bound::TimestampMinMs)
                .into_iter()
                .collect()
        }
        PARTITION_COLUMN | OFFSET_COLUMN => {
            let Some(v) = value.as_integer() else {
                return Vec::new();
            };
            let (min, max) = match op {
                Operator::Eq => (Some(v), Some(v)),
                Operator::Gt => (Some(v + 1), None),
                Operator::GtEq => (Some(v), None),
                Operator::Lt => (None, Some(v - 1)),
                Operator::LtEq => (None, Some(v)),
                _ => (None, None),
            };
            let partition = column == PARTITION_COLUMN;
            let mut bounds = Vec::new();
            if let Some(min) = min {
                bounds.push(if partition {
                    Bound::PartitionMin(min)
                } else {
                    Bound::OffsetMin(min)
                });
            }
            if let Some(max) = max {
                bounds.push(if partition {
                    Bound::PartitionMax(max)
                } else {
                    Bound::OffsetEnd(max + 1)
                });
            }
            bounds
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::{col, lit};

    use super::*;

    #[test]
    fn offset_comparisons_narrow_the_range_from_both_sides() {
        let filters = [
            col("offset").gt_eq(lit(10i64)),
            lit(20i64).gt(col("offset")),
        ];
        let bounds = ScanBounds::from_filters(&filters);
        assert_eq!(bounds.clamp_offsets(0, 100), (10, 20));
        assert_eq!(bounds.clamp_offsets(15, 100), (15, 20));
        assert_eq!(bounds.clamp_offsets(30, 100), (30, 30));
        assert_eq!(bounds.pushed().len(), 2);
    }

    #[test]
    fn partition_equality_and_in_lists_intersect() {
        let filters = [
            col("partition").in_list(vec![lit(1i32), lit(2i32), lit(5i32)], false),
            col("partition").lt(lit(5i32)),
        ];
        let bounds = ScanBounds::from_filters(&filters);
        let allowed: Vec<u32> = (0..8).filter(|p| bounds.allows_partition(*p)).collect();
        assert_eq!(allowed, vec![1, 2]);
    }

    #[test]
    fn timestamp_gives_only_a_lower_bound_in_whole_milliseconds() {
        let micros = ScalarValue::TimestampMicrosecond(Some(1_500), None);
        let filters = [col("timestamp").gt_eq(lit(micros))];
        assert_eq!(
            ScanBounds::from_filters(&filters).timestamp_min_ms(),
            Some(2)
        );
        let millis = ScalarValue::TimestampMillisecond(Some(7), Some("UTC".into()));
        let filters = [col("timestamp").gt(lit(millis.clone()))];
        assert_eq!(
            ScanBounds::from_filters(&filters).timestamp_min_ms(),
            Some(8)
        );
        assert!(!can_push(&col("timestamp").lt(lit(millis))));
    }

    #[test]
    fn unrelated_or_disjunctive_filters_are_not_pushed() {
        assert!(!can_push(&col("key_str").eq(lit("a"))));
        assert!(!can_push(
            &col("offset").eq(lit(1i64)).or(col("offset").eq(lit(5i64)))
        ));
        assert!(!can_push(&col("offset").not_eq(lit(1i64))));
        assert!(can_push(
            &col("offset").eq(lit(1i64)).and(col("key_str").eq(lit("a")))
        ));
    }
}
