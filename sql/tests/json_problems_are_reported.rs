//! Record values that do not parse as JSON and values that do not fit their column are
//! counted per topic and reported with each statement's result, the first of each named
//! by partition and offset; a repeated key takes its last value.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use support::{record, rows_of, write_topic, FixtureRecord, T0_MS};
use weir_sql::json::TypeMismatch;
use weir_sql::{
    run_statements_reporting, JsonProblems, LocalOptions, LocalSource, MismatchAt, RecordAt,
    SqlOptions, ValueSchema,
};

const ORDERS_SCHEMA: &str = r#"{"properties":{
    "item":{"type":"string"},"price":{"type":"integer"},"qty":{"type":"integer"}}}"#;

/// `orders`: 20 records on 2 partitions (record i is partition i % 2, offset i / 2).
/// Records 3, 8 and 15 are not JSON; records 4, 9 (twice), 10 and 16 hold 5 values of the
/// wrong type; records 0 and 1 repeat a key.
fn orders() -> Vec<FixtureRecord> {
    (0..20i64)
        .map(|i| {
            let value = match i {
                0 => r#"{"item":"a","price":1,"price":2,"qty":1}"#.to_string(),
                1 => r#"{"item":"b","price":"x","price":7,"qty":1}"#.to_string(),
                3 => r#"{"item":"c","price":3"#.to_string(),
                8 => "price=12".to_string(),
                15 => r#"{"item":"d"} {"item":"e"}"#.to_string(),
                4 | 16 => r#"{"item":"e","price":"12.5","qty":2}"#.to_string(),
                9 => r#"{"item":"f","price":"12.5","qty":"two"}"#.to_string(),
                10 => r#"{"item":"g","price":12.5,"qty":3}"#.to_string(),
                _ => format!(r#"{{"item":"i{i}","price":{},"qty":1}}"#, i * 10),
            };
            record((i % 2) as u32, T0_MS + i, None, Some(&value))
        })
        .collect()
}

async fn session(dir: &std::path::Path) -> weir_sql::datafusion::prelude::SessionContext {
    write_topic(dir, "orders", 2, 3, &orders());
    let source = Arc::new(LocalSource::open(dir, LocalOptions::default()).unwrap());
    let schema = ValueSchema::from_json_schema(ORDERS_SCHEMA, "orders").unwrap();
    let options = SqlOptions {
        value_schemas: BTreeMap::from([("orders".to_string(), schema)]),
        ..SqlOptions::default()
    };
    weir_sql::new_session(source as _, options).await.unwrap()
}

#[tokio::test]
async fn counts_malformed_rows_and_mismatched_values_exactly_per_topic() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = session(dir.path()).await;
    let outputs = run_statements_reporting(
        &ctx,
        "SELECT item, price, qty FROM orders; SELECT count(*) FROM orders; SELECT item FROM orders",
    )
    .await
    .unwrap();
    assert_eq!(outputs.len(), 3);
    assert_eq!(
        outputs[0].json_problems,
        vec![JsonProblems {
            topic: "orders".to_string(),
            malformed_rows: 3,
            first_malformed: Some(RecordAt {
                partition: 0,
                offset: 4
            }),
            type_mismatches: 5,
            first_mismatch: Some(MismatchAt {
                partition: 0,
                mismatch: TypeMismatch {
                    offset: 2,
                    column: "price".to_string(),
                    expected: "BIGINT",
                    found: r#""12.5""#.to_string(),
                },
            }),
        }]
    );
    assert_eq!(
        outputs[0].json_problems[0].warning(),
        "warning: topic orders: 3 rows did not parse as JSON (first: partition 0 offset 4), \
         5 values did not match their column type (first: partition 0 offset 2 column \
         \"price\": expected BIGINT, found \"12.5\")"
    );
    // count(*) decodes no value, so it meets no problem.
    assert_eq!(outputs[1].json_problems, vec![]);
    // Only the columns a query reads are decoded: every value is parsed, no price read.
    assert_eq!(outputs[2].json_problems[0].malformed_rows, 3);
    assert_eq!(outputs[2].json_problems[0].type_mismatches, 0);
}

#[tokio::test]
async fn a_repeated_key_takes_its_last_value() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = session(dir.path()).await;
    let outputs = run_statements_reporting(
        &ctx,
        "SELECT item, price FROM orders WHERE partition = 0 AND \"offset\" = 0 \
         UNION ALL SELECT item, price FROM orders WHERE partition = 1 AND \"offset\" = 0",
    )
    .await
    .unwrap();
    let mut rows = rows_of(&outputs[0].batches);
    rows.sort();
    assert_eq!(rows, vec![vec!["a", "2"], vec!["b", "7"]]);
    // The "x" that 7 replaced is no mismatch.
    assert_eq!(outputs[0].json_problems, vec![]);
}

#[tokio::test]
async fn create_table_as_reports_the_problems_of_its_query_and_keeps_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = session(dir.path()).await;
    let outputs = run_statements_reporting(
        &ctx,
        "SELECT item, price, qty FROM orders; \
         CREATE TABLE priced AS SELECT item, price, qty FROM orders; \
         SELECT count(*), count(price) FROM priced; \
         CREATE TABLE IF NOT EXISTS priced AS SELECT item FROM orders",
    )
    .await
    .unwrap();
    assert_eq!(outputs.len(), 4);
    // The table's query met what the same SELECT met.
    assert_eq!(outputs[1].json_problems, outputs[0].json_problems);
    assert_eq!(outputs[1].json_problems[0].malformed_rows, 3);
    // The table holds the query's rows: reading it decodes no JSON.
    assert_eq!(outputs[2].json_problems, vec![]);
    let selected: usize = outputs[0].batches.iter().map(|b| b.num_rows()).sum();
    let prices = rows_of(&outputs[0].batches)
        .iter()
        .filter(|row| row[1] != "NULL")
        .count();
    assert_eq!(
        rows_of(&outputs[2].batches),
        vec![vec![selected.to_string(), prices.to_string()]]
    );
    // A table that exists already is not created again, and its query does not run.
    assert_eq!(outputs[3].json_problems, vec![]);
}
