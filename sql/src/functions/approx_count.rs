//! `approx_count(expr, value)`: how many rows have `expr = value`, estimated by a
//! count-min sketch over `expr` (never below the true count).

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{exec_datafusion_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, Signature, Volatility};
use weir_processors::sketch::CountMinSketch;

use super::sketch_state::{coerce_key, for_each_key, literal_argument, merge_sketches, new_sketch};

const NAME: &str = "approx_count";

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ApproxCount {
    signature: Signature,
}

impl ApproxCount {
    pub fn new() -> ApproxCount {
        ApproxCount {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl Default for ApproxCount {
    fn default() -> Self {
        ApproxCount::new()
    }
}

impl AggregateUDFImpl for ApproxCount {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types {
            [key, value] => Ok(vec![coerce_key(key), coerce_key(value)]),
            _ => plan_err!(
                "{NAME}(expr, value) takes 2 arguments, got {}",
                arg_types.len()
            ),
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::UInt64)
    }

    fn is_nullable(&self) -> bool {
        false
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Field::new(
            format!("{}_sketch", args.name),
            DataType::Binary,
            true,
        )
        .into()])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let target = match literal_argument(NAME, 1, args.exprs)?.cast_to(&DataType::Utf8)? {
            ScalarValue::Utf8(Some(target)) => Some(target),
            _ => None,
        };
        Ok(Box::new(ApproxCountAccumulator {
            sketch: new_sketch()?,
            merged: None,
            target,
        }))
    }
}

#[derive(Debug)]
struct ApproxCountAccumulator {
    sketch: CountMinSketch,
    merged: Option<CountMinSketch>,
    /// The value counted; `None` (a NULL literal) counts nothing.
    target: Option<String>,
}

impl ApproxCountAccumulator {
    fn combined(&self) -> Result<CountMinSketch> {
        let mut sketch = self.sketch.clone();
        if let Some(merged) = &self.merged {
            sketch
                .merge(merged)
                .map_err(|e| exec_datafusion_err!("merging count-min sketches: {e}"))?;
        }
        Ok(sketch)
    }
}

impl Accumulator for ApproxCountAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let Some(keys) = values.first() else {
            return Ok(());
        };
        let sketch = &mut self.sketch;
        for_each_key(keys, |key| {
            sketch.add(key, 1);
        })
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        match states.first() {
            Some(sketches) => merge_sketches(&mut self.merged, sketches),
            None => Ok(()),
        }
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![ScalarValue::Binary(Some(self.combined()?.to_bytes()))])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let estimate = match &self.target {
            Some(target) => self.combined()?.estimate(target.as_bytes()),
            None => 0,
        };
        Ok(ScalarValue::UInt64(Some(estimate)))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
            + self.sketch.memory_bytes()
            + self.merged.as_ref().map_or(0, CountMinSketch::memory_bytes)
    }
}
