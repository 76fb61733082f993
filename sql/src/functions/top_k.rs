//! `approx_top_k(expr, k)`: the k most frequent values of `expr` with estimated counts,
//! largest first, as a list of `struct{value, count}`, from `weir-processors`'
//! `FrequentItems`, whose memory budget includes the values themselves.
//!
//! Each partial aggregate keeps one `FrequentItems` and ships it serialized; the final
//! aggregate restores and merges them (a merge of summaries, so a value frequent
//! overall is found even if it was frequent in no single partition). A count is the
//! summary's estimate: exact while every value fits, never below the truth, and at most
//! `maximum_error` above it.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, ListArray, StringArray, StructArray, UInt64Array,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields};
use datafusion::common::{exec_datafusion_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, Signature, Volatility};
use weir_processors::sketch::FrequentItems;

use super::sketch_state::{coerce_key, for_each_key, literal_argument};

const NAME: &str = "approx_top_k";
/// Largest k accepted: results are a list in one row.
pub const TOP_K_MAX: usize = 10_000;

/// Memory of one accumulator: 1 KiB per wanted value, at least 64 KiB (where the top
/// 100 of a million identifiers of real text were found whole) and at most 8 MiB.
/// DataFusion counts it against the query's memory pool through `size`.
fn budget_bytes(k: usize) -> usize {
    k.saturating_mul(1024).clamp(64 * 1024, 8 * 1024 * 1024)
}

/// A serialized partial summary larger than this is refused before it is restored.
const STATE_BYTES_MAX: usize = 16 * 1024 * 1024;

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
        Ok(vec![Field::new(
            format!("{}_frequent_items", args.name),
            DataType::Binary,
            true,
        )
        .into()])
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
        let items = FrequentItems::with_budget(budget_bytes(k))
            .map_err(|e| exec_datafusion_err!("{NAME}: {e}"))?;
        Ok(Box::new(TopKAccumulator { k, items }))
    }
}

#[derive(Debug)]
struct TopKAccumulator {
    k: usize,
    /// Values seen by this accumulator and the partial summaries merged into it.
    items: FrequentItems,
}

impl TopKAccumulator {
    /// The k values with the largest estimates, largest first (ties by value).
    fn ranked(&self) -> Vec<(Vec<u8>, u64)> {
        self.items
            .top_k(self.k)
            .into_iter()
            .map(|item| (item.key, item.estimate))
            .collect()
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
        let items = &mut self.items;
        for_each_key(keys, |key| items.update(key, 1))
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let [summaries] = states else {
            return Err(exec_datafusion_err!(
                "{NAME}: expected 1 state column, got {}",
                states.len()
            ));
        };
        let summaries: &BinaryArray = summaries.as_binary_opt::<i32>().ok_or_else(|| {
            exec_datafusion_err!("{NAME}: state is {}, not Binary", summaries.data_type())
        })?;
        for bytes in summaries.iter().flatten() {
            let partial = FrequentItems::from_bytes(bytes, STATE_BYTES_MAX)
                .map_err(|e| exec_datafusion_err!("{NAME}: partial summary: {e}"))?;
            self.items.merge(&partial);
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![ScalarValue::Binary(Some(self.items.to_bytes()))])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let ranked = self.ranked();
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
        std::mem::size_of_val(self) + self.items.memory_bytes()
    }
}
