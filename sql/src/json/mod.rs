//! JSON record values as typed columns: the value schema (declared or inferred) and the
//! decoder that fills Arrow columns from value bytes.

mod column;
mod decode;
mod infer;
mod ordered;
mod parser;
mod schema;

pub use decode::{JsonDecodeStats, JsonDecoder, TypeMismatch};
pub use infer::infer_value_schema;
pub use parser::JSON_DEPTH_MAX;
pub use schema::{JsonField, JsonKind, ValueSchema, SCHEMA_DEPTH_MAX};
