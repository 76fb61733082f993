//! `approx_top_k(expr, k)`: the k most frequent values of `expr` with estimated counts,
//! the surest first (by the count each surely has), as a list of `struct{value, count}`, from `weir-processors`'
//! `FrequentItems`, whose memory budget includes the values themselves.
//!
//! Each partial aggregate keeps one `FrequentItems` and ships it serialized; the final
//! aggregate restores and merges them (a merge of summaries, so a value frequent
//! overall is found even if it was frequent in no single partition). A count is the
//! summary's upper bound: exact while every value fits, never below the truth, and at most
//! `maximum_error` above it.
//!
//! Memory: a summary allocates its whole budget when created, and a `GROUP BY` creates
//! one per group (per partition, then again in the final aggregate). Each is reserved in
//! the session's memory pool *before* it is allocated, so too many groups under a memory
//! limit fail with a ResourcesExhausted error naming `approx_top_k` and the bytes asked,
//! instead of allocating first and being counted after (as `Accumulator::size` would).
//! A partial summary restored in a merge, and the serialized bytes `state` builds, are
//! reserved for as long as they exist beside the accumulator's own summary.
//! DataFusion gives an accumulator no handle on the pool (`AccumulatorArgs` has none), so
//! the function holds a weak reference to its session's state and reads the pool from the
//! runtime when each accumulator is created: `SET datafusion.runtime.memory_limit`
//! replaces the runtime, and the pool with it.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, ListArray, StringArray, StructArray, UInt64Array,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields};
use datafusion::common::{exec_datafusion_err, plan_err, DataFusionError, Result, ScalarValue};
use datafusion::execution::context::SessionContext;
use datafusion::execution::memory_pool::{
    MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation, UnboundedMemoryPool,
};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, Signature, Volatility};
use weir_processors::sketch::FrequentItems;

use super::sketch_state::{coerce_key, for_each_key, literal_argument};

const NAME: &str = "approx_top_k";
/// Largest k accepted: results are a list in one row.
pub const TOP_K_MAX: usize = 10_000;

/// Memory of one accumulator's summary: 1 KiB per wanted value, at least 64 KiB (where
/// the top 100 of a million identifiers of real text were found whole) and at most 8 MiB.
pub fn sketch_budget_bytes(k: usize) -> usize {
    k.saturating_mul(1024).clamp(64 * 1024, 8 * 1024 * 1024)
}

/// A serialized partial summary larger than this is refused before it is restored.
const STATE_BYTES_MAX: usize = 16 * 1024 * 1024;

/// The memory pool summaries are reserved in, looked up when each one is created.
type PoolLookup = Arc<dyn Fn() -> Option<Arc<dyn MemoryPool>> + Send + Sync>;

pub struct ApproxTopK {
    signature: Signature,
    pool: PoolLookup,
}

impl ApproxTopK {
    /// Summaries reserved in no limited pool: for use outside a session.
    pub fn new() -> ApproxTopK {
        let unbounded: Arc<dyn MemoryPool> = Arc::new(UnboundedMemoryPool::default());
        ApproxTopK::with_pool_lookup(Arc::new(move || Some(Arc::clone(&unbounded))))
    }

    /// Summaries reserved in the memory pool of `ctx`'s runtime at the time each is
    /// created (so after `SET datafusion.runtime.memory_limit` too).
    pub fn for_session(ctx: &SessionContext) -> ApproxTopK {
        let state = ctx.state_weak_ref();
        ApproxTopK::with_pool_lookup(Arc::new(move || {
            let state = state.upgrade()?;
            let pool = Arc::clone(&state.read().runtime_env().memory_pool);
            Some(pool)
        }))
    }

    fn with_pool_lookup(pool: PoolLookup) -> ApproxTopK {
        ApproxTopK {
            signature: Signature::user_defined(Volatility::Immutable),
            pool,
        }
    }
}

impl fmt::Debug for ApproxTopK {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApproxTopK")
            .field("signature", &self.signature)
            .finish_non_exhaustive()
    }
}

/// Every instance is the same function; where its memory is reserved does not change
/// what it computes.
impl PartialEq for ApproxTopK {
    fn eq(&self, other: &Self) -> bool {
        self.signature == other.signature
    }
}

impl Eq for ApproxTopK {}

impl Hash for ApproxTopK {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.signature.hash(state);
    }
}

/// The error for a summary that does not fit: what was asked, what the pool has left,
/// and what to change.
fn sketch_does_not_fit(k: usize, budget_bytes: usize, pool: &dyn MemoryPool) -> DataFusionError {
    does_not_fit(
        &format!("a summary for k = {k} needs {budget_bytes} bytes"),
        pool,
    )
}

/// The error for memory a step of the aggregate (`needs`: what, and how many bytes) does
/// not get from the pool.
fn does_not_fit(needs: &str, pool: &dyn MemoryPool) -> DataFusionError {
    let reserved = pool.reserved();
    let limit = match pool.memory_limit() {
        MemoryLimit::Finite(limit) => format!(
            "the session memory limit of {limit} bytes has {} left",
            limit.saturating_sub(reserved)
        ),
        MemoryLimit::Infinite | MemoryLimit::Unknown => {
            format!("the session memory pool refused it ({reserved} bytes in use)")
        }
    };
    DataFusionError::ResourcesExhausted(format!(
        "{NAME}: {needs} and {limit}; \
         each GROUP BY group holds its own summary, so group by fewer values (or filter \
         first), or raise the limit (SET datafusion.runtime.memory_limit = '4G')"
    ))
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
        let budget_bytes = sketch_budget_bytes(k);
        let Some(pool) = (self.pool)() else {
            return Err(exec_datafusion_err!(
                "{NAME}: the session this function belongs to is gone"
            ));
        };
        let reservation = MemoryConsumer::new(NAME).register(&pool);
        reservation
            .try_grow(budget_bytes)
            .map_err(|_| sketch_does_not_fit(k, budget_bytes, pool.as_ref()))?;
        let items = FrequentItems::with_budget(budget_bytes)
            .map_err(|e| exec_datafusion_err!("{NAME}: {e}"))?;
        debug_assert!(items.memory_bytes() <= budget_bytes);
        reservation.shrink(budget_bytes - items.memory_bytes().min(budget_bytes));
        Ok(Box::new(TopKAccumulator {
            k,
            budget_bytes,
            items,
            _reservation: reservation,
            pool,
        }))
    }
}

#[derive(Debug)]
struct TopKAccumulator {
    k: usize,
    /// The budget of every summary of this k, partial ones included.
    budget_bytes: usize,
    /// Values seen by this accumulator and the partial summaries merged into it.
    items: FrequentItems,
    /// `items.memory_bytes()`, held in the session's pool until the accumulator is dropped
    /// (never read: dropping it gives the bytes back).
    _reservation: MemoryReservation,
    /// Where a partial summary restored for a merge, and the bytes of this one's state,
    /// are reserved while they exist beside it.
    pool: Arc<dyn MemoryPool>,
}

impl TopKAccumulator {
    /// `bytes` reserved for `what` until the reservation is dropped.
    fn transient(&self, bytes: usize, what: &str) -> Result<MemoryReservation> {
        let reservation = MemoryConsumer::new(NAME).register(&self.pool);
        reservation.try_grow(bytes).map_err(|_| {
            does_not_fit(
                &format!("{what} for k = {} needs {bytes} bytes", self.k),
                self.pool.as_ref(),
            )
        })?;
        Ok(reservation)
    }

    /// The k values ranked as `FrequentItems::top_k` ranks them (by lower bound, then count,
    /// then value), each with its upper bound: never below the truth, as the module says.
    fn ranked(&self) -> Vec<(Vec<u8>, u64)> {
        self.items
            .top_k(self.k)
            .into_iter()
            .map(|item| (item.key, item.upper_bound))
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
            // A partial summary has this one's k, so this one's budget; it is restored
            // whole before it is merged, and held beside this one until then.
            let restoring = self.transient(self.budget_bytes, "restoring a partial summary")?;
            let partial = FrequentItems::from_bytes(bytes, STATE_BYTES_MAX)
                .map_err(|e| exec_datafusion_err!("{NAME}: partial summary: {e}"))?;
            self.items.merge(&partial);
            drop((partial, restoring));
        }
        Ok(())
    }

    /// The serialized summary is built beside the summary; its bytes are reserved while
    /// both exist (the state column that carries them on is DataFusion's).
    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let serializing = self.transient(self.budget_bytes, "serializing the summary")?;
        let bytes = self.items.to_bytes();
        drop(serializing);
        Ok(vec![ScalarValue::Binary(Some(bytes))])
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

    /// Without the summary: it is in `reservation` already, and the aggregate adds
    /// `size` to a reservation of its own, which would count it twice.
    fn size(&self) -> usize {
        std::mem::size_of_val(self)
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::StringArray;
    use datafusion::execution::memory_pool::GreedyMemoryPool;

    use super::*;

    const K: usize = 10;

    /// An accumulator as `accumulator` makes one, its summary reserved in `pool`.
    fn accumulator(pool: &Arc<dyn MemoryPool>) -> TopKAccumulator {
        let budget_bytes = sketch_budget_bytes(K);
        let reservation = MemoryConsumer::new(NAME).register(pool);
        reservation.try_grow(budget_bytes).unwrap();
        TopKAccumulator {
            k: K,
            budget_bytes,
            items: FrequentItems::with_budget(budget_bytes).unwrap(),
            _reservation: reservation,
            pool: Arc::clone(pool),
        }
    }

    fn state_column(state: Vec<ScalarValue>) -> ArrayRef {
        ScalarValue::iter_to_array(state).unwrap()
    }

    #[test]
    fn a_merge_and_a_state_reserve_what_they_hold_beside_the_summary() {
        let budget_bytes = sketch_budget_bytes(K);
        let pool: Arc<dyn MemoryPool> = Arc::new(GreedyMemoryPool::new(2 * budget_bytes));
        let mut partial = accumulator(&pool);
        let values: ArrayRef = Arc::new(StringArray::from(vec!["a", "b", "a"]));
        partial.update_batch(&[values]).unwrap();
        // One summary and its serialized bytes: two budgets, the limit.
        let state = state_column(partial.state().unwrap());
        assert_eq!(
            pool.reserved(),
            budget_bytes,
            "the state's bytes are given back"
        );

        let mut merged = accumulator(&pool);
        // Two summaries held: neither a third (restored) nor serialized bytes fit.
        let refused = merged.merge_batch(&[Arc::clone(&state)]).unwrap_err();
        assert!(
            matches!(refused, DataFusionError::ResourcesExhausted(_))
                && refused.to_string().contains("restoring a partial summary"),
            "{refused}"
        );
        let refused = partial.state().unwrap_err();
        assert!(
            refused.to_string().contains("serializing the summary"),
            "{refused}"
        );

        // Once the partial aggregate is gone, the merge fits and loses nothing.
        drop(partial);
        merged.merge_batch(&[state]).unwrap();
        assert_eq!(
            merged.ranked(),
            vec![(b"a".to_vec(), 2), (b"b".to_vec(), 1)]
        );
        assert_eq!(pool.reserved(), budget_bytes);
    }
}
