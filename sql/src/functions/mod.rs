//! SQL functions over the sketches of `weir-processors`, so trending queries are plain SQL:
//! `approx_top_k(expr, k)` (heavy hitters on a count-min sketch) and
//! `approx_count(expr, value)` (a count-min frequency estimate). Both merge across
//! partitions, so they run in parallel like any DataFusion aggregate.
//! `approx_count_distinct` is DataFusion's own HyperLogLog `approx_distinct` under the
//! name other engines give it.

mod approx_count;
mod sketch_state;
mod top_k;

use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::AggregateUDF;

pub use approx_count::ApproxCount;
pub use sketch_state::{SKETCH_DEPTH, SKETCH_SEED, SKETCH_WIDTH};
pub use top_k::{sketch_budget_bytes, ApproxTopK, TOP_K_MAX};

/// Registers the sketch functions in `ctx`; `approx_top_k` reserves its summaries in the
/// session's memory pool.
pub fn register(ctx: &SessionContext) {
    ctx.register_udaf(AggregateUDF::from(ApproxTopK::for_session(ctx)));
    ctx.register_udaf(AggregateUDF::from(ApproxCount::new()));
    let distinct = datafusion::functions_aggregate::approx_distinct::approx_distinct_udaf();
    ctx.register_udaf(
        distinct
            .as_ref()
            .clone()
            .with_aliases(["approx_count_distinct"]),
    );
}
