//! Runs every `tests/slt/*.slt` sqllogictest file against the fixture topics (see
//! `support`) in a fresh data directory. `WEIR_SLT_COMPLETE=1` rewrites the files with the
//! actual results instead (review the diff before committing it).

mod support;

use std::path::PathBuf;

use async_trait::async_trait;
use sqllogictest::{DBOutput, DefaultColumnType};
use weir_sql::datafusion::arrow::datatypes::DataType;
use weir_sql::datafusion::error::DataFusionError;
use weir_sql::datafusion::prelude::SessionContext;

struct WeirDb {
    ctx: SessionContext,
}

#[async_trait]
impl sqllogictest::AsyncDB for WeirDb {
    type Error = DataFusionError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, DataFusionError> {
        let frame = self.ctx.sql(sql).await?;
        let types: Vec<DefaultColumnType> = frame
            .schema()
            .fields()
            .iter()
            .map(|f| column_type(f.data_type()))
            .collect();
        let batches = frame.collect().await?;
        if types.is_empty() {
            return Ok(DBOutput::StatementComplete(0));
        }
        let mut rows: Vec<Vec<String>> = Vec::new();
        for row in support::rows_of(&batches) {
            // A multi-line cell (an EXPLAIN plan) becomes one row per line, as it is
            // written in the file; the trailing newline of a plan would end the block.
            let mut continuation: Vec<Vec<String>> = Vec::new();
            let mut first: Vec<String> = Vec::new();
            for cell in row {
                let mut lines = cell.trim_end().lines();
                let head = lines.next().unwrap_or("");
                first.push(if head.is_empty() {
                    "(empty)".to_string()
                } else {
                    head.to_string()
                });
                continuation.extend(lines.map(|line| vec![line.to_string()]));
            }
            rows.push(first);
            rows.extend(continuation);
        }
        Ok(DBOutput::Rows { types, rows })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "weir"
    }
}

fn column_type(data_type: &DataType) -> DefaultColumnType {
    match data_type {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => DefaultColumnType::Integer,
        DataType::Float16 | DataType::Float32 | DataType::Float64 | DataType::Decimal128(_, _) => {
            DefaultColumnType::FloatingPoint
        }
        _ => DefaultColumnType::Text,
    }
}

fn slt_files() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/slt");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqllogictest_files_pass() {
    let data_dir = tempfile::tempdir().unwrap();
    support::write_fixtures(data_dir.path());
    let (ctx, _source) = support::session(data_dir.path()).await;
    // Plans (EXPLAIN) must not depend on the machine's core count.
    support::query_rows(&ctx, "SET datafusion.execution.target_partitions = 2").await;
    let complete = std::env::var_os("WEIR_SLT_COMPLETE").is_some();
    let files = slt_files();
    assert!(!files.is_empty(), "no .slt files found");
    let mut failures = Vec::new();
    for file in &files {
        let make_ctx = ctx.clone();
        let mut runner = sqllogictest::Runner::new(move || {
            let ctx = make_ctx.clone();
            async move { Ok::<_, DataFusionError>(WeirDb { ctx }) }
        });
        if complete {
            runner
                .update_test_file(
                    file,
                    " ",
                    sqllogictest::default_validator,
                    sqllogictest::default_normalizer,
                    sqllogictest::default_column_validator,
                )
                .await
                .unwrap();
        } else if let Err(e) = runner.run_file_async(file).await {
            failures.push(format!("{}: {e}", file.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} slt file(s) failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
