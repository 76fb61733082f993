//! Records for property tests of batches: a strategy for one record (its timestamp range
//! chosen by the test) and the builder call that turns a list of them into one batch.

use proptest::prelude::*;
use weir_log::batch::{BatchBuilder, Compression};

pub type Header = (String, Option<Vec<u8>>);

#[derive(Debug, Clone)]
pub struct Input {
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<Header>,
}

fn bytes_strategy() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop::option::of(prop::collection::vec(any::<u8>(), 0..64))
}

/// One record with a timestamp from `timestamps`, up to 64-byte key and value (or null),
/// and up to three headers.
pub fn input_strategy(timestamps: impl Strategy<Value = i64>) -> impl Strategy<Value = Input> {
    (
        timestamps,
        bytes_strategy(),
        bytes_strategy(),
        prop::collection::vec((".{0,8}", bytes_strategy()), 0..4),
    )
        .prop_map(|(timestamp, key, value, headers)| Input {
            timestamp,
            key,
            value,
            headers,
        })
}

pub fn compression_strategy() -> impl Strategy<Value = Compression> {
    prop::sample::select(Compression::ALL.to_vec())
}

pub fn build(compression: Compression, inputs: &[Input]) -> Vec<u8> {
    let mut builder = BatchBuilder::new(compression);
    for input in inputs {
        let headers: Vec<(&str, Option<&[u8]>)> = input
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_deref()))
            .collect();
        builder.push(
            input.timestamp,
            input.key.as_deref(),
            input.value.as_deref(),
            &headers,
        );
    }
    builder.build().unwrap().to_vec()
}
