//! `approx_top_k(expr, k)`: the k most frequent values of `expr` with estimated counts,
//! largest first, as a list of `struct{value, count}`, from the top-k heavy-hitter tracker
//! of `weir-processors` over a count-min sketch.
//!
//! Partial aggregates ship their sketch and their k candidates; the final aggregate merges
//! the sketches exactly and re-ranks the union of candidates by the merged estimates (a
//! value that was a candidate nowhere cannot come back, so the result is approximate).

use std::collections::BTreeSet;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, ListArray, StringArray, StructArray, UInt64Array,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields};
use datafusion::common::{exec_datafusion_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, Signature, Volatility};
use weir_processors::sketch::{CountMinSketch, HeavyHitters, TopK};

use super::sketch_state::{coerce_key, for_each_key, literal_argument, merge_sketches, new_sketch};

const NAME: &str = "approx_top_k";
/// Largest k accepted: results are a list in one row.
pub const TOP_K_MAX: usize = 10_000;

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ApproxTopK {
    signature: Signature,
}

impl ApproxTopK {
    pub fn new() -> ApproxTopK {
        ApproxTopK {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl Default for ApproxTopK {
    fn default() -> Self {
        ApproxTopK::new()
    }
}

fn item_fields() -> Fields {
    Fields::from(vec![
        Field::new("value", DataType::Utf8, false),
        Field::new("count", DataType::UInt64, false),
    ])
}

fn item_field() -> FieldRef {
    Arc::new(Field::new_list_field(DataType::Struct(item_fields()), true))
}

impl AggregateUDFImpl for ApproxTopK {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types {
            [key, _k] => Ok(vec![coerce_key(key), DataType::Int64]),
            _ => plan_err!("{NAME}(expr, k) takes 2 arguments, got {}", arg_types.len()),
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::List(item_field()))
    }

    fn is_nullable(&self) -> bool {
        false
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![
            Field::new(format!("{}_sketch", args.name), DataType::Binary, true).into(),
            Field::new(
                format!("{}_candidates", args.name),
                DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
                true,
            )
            .into(),
        ])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let k = match literal_argument(NAME, 1, args.exprs)? {
            ScalarValue::Int64(Some(k)) => usize::try_from(k)
                .ok()
                .filter(|k| (1..=TOP_K_MAX).contains(k)),
            _ => None,
        };
        let Some(k) = k else {
            return plan_err!("{NAME}: k must be an integer between 1 and {TOP_K_MAX}");
        };
        let tracker =
            TopK::new(k, new_sketch()?).map_err(|e| exec_datafusion_err!("{NAME}: {e}"))?;
        Ok(Box::new(TopKAccumulator {
            k,
            tracker,
            merged_sketch: None,
            merged_candidates: BTreeSet::new(),
        }))
    }
}

#[derive(Debug)]
struct TopKAccumulator {
    k: usize,
    /// Values seen by this accumulator.
    tracker: TopK,
    /// Sketches and candidates of partial aggregates merged into this one.
    merged_sketch: Option<CountMinSketch>,
    merged_candidates: BTreeSet<Vec<u8>>,
}

/// Values (as key bytes) with their estimated counts, largest first.
type RankedValues = Vec<(Vec<u8>, u64)>;

impl TopKAccumulator {
    /// The k best candidates by the estimate of the merged sketch, largest first, and
    /// that sketch.
    fn ranked(&self) -> Result<(RankedValues, CountMinSketch)> {
        let mut sketch = self.tracker.sketch().clone();
        if let Some(merged) = &self.merged_sketch {
            sketch
                .merge(merged)
                .map_err(|e| exec_datafusion_err!("{NAME}: merging sketches: {e}"))?;
        }
        let mut candidates: BTreeSet<Vec<u8>> = self.merged_candidates.clone();
        candidates.extend(self.tracker.top(self.k).into_iter().map(|h| h.key));
        let mut ranked: Vec<(Vec<u8>, u64)> = candidates
            .into_iter()
            .map(|key| {
                let estimate = sketch.estimate(&key);
                (key, estimate)
            })
            .collect();
        ranked.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        ranked.truncate(self.k);
        Ok((ranked, sketch))
    }
}

fn text(key: &[u8]) -> String {
    // Keys came from Utf8 arrays, so this never replaces anything.
    String::from_utf8_lossy(key).into_owned()
}

impl Accumulator for TopKAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let Some(keys) = values.first() else {
            return Ok(());
        };
        let tracker = &mut self.tracker;
        for_each_key(keys, |key| tracker.add(key, 1))
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let [sketches, candidates] = states else {
            return Err(exec_datafusion_err!(
                "{NAME}: expected 2 state columns, got {}",
                states.len()
            ));
        };
        merge_sketches(&mut self.merged_sketch, sketches)?;
        let lists: &ListArray = candidates
            .as_list_opt::<i32>()
            .ok_or_else(|| exec_datafusion_err!("{NAME}: candidates state is not a list"))?;
        for list in lists.iter().flatten() {
            let strings = list
                .as_string_opt::<i32>()
                .ok_or_else(|| exec_datafusion_err!("{NAME}: candidates are not Utf8"))?;
            self.merged_candidates
                .extend(strings.iter().flatten().map(|s| s.as_bytes().to_vec()));
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let (ranked, sketch) = self.ranked()?;
        let keys: StringArray = ranked.iter().map(|(key, _)| Some(text(key))).collect();
        let list = ListArray::new(
            Arc::new(Field::new_list_field(DataType::Utf8, true)),
            OffsetBuffer::from_lengths([keys.len()]),
            Arc::new(keys),
            None,
        );
        Ok(vec![
            ScalarValue::Binary(Some(sketch.to_bytes())),
            ScalarValue::List(Arc::new(list)),
        ])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let (ranked, _) = self.ranked()?;
        let values: StringArray = ranked.iter().map(|(key, _)| Some(text(key))).collect();
        let counts: UInt64Array = ranked.iter().map(|(_, count)| Some(*count)).collect();
        let items = StructArray::try_new(
            item_fields(),
            vec![Arc::new(values), Arc::new(counts)],
            None,
        )?;
        let list = ListArray::new(
            item_field(),
            OffsetBuffer::from_lengths([items.len()]),
            Arc::new(items),
            None,
        );
        Ok(ScalarValue::List(Arc::new(list)))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
            + self.tracker.memory_bytes()
            + self
                .merged_sketch
                .as_ref()
                .map_or(0, CountMinSketch::memory_bytes)
            + self
                .merged_candidates
                .iter()
                .map(|k| k.len() + 24)
                .sum::<usize>()
    }
}
