//! Running a text of one or more `;`-separated SQL statements, as the CLI and the shell do.

use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::{provider_as_source, MemTable};
use datafusion::error::DataFusionError;
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{CreateMemoryTable, DdlStatement, LogicalPlan, LogicalPlanBuilder};
use datafusion::physical_plan::collect;
use datafusion::sql::parser::DFParser;
use datafusion::sql::sqlparser::dialect::dialect_from_str;
use datafusion::sql::sqlparser::parser::ParserError;

use crate::report::{json_problems, JsonProblems};
use crate::SqlError;

/// Parses `text` (in the session's SQL dialect) into statements and runs them in order,
/// returning each one's batches. Stops at the first error.
pub async fn run_statements(
    ctx: &SessionContext,
    text: &str,
) -> Result<Vec<Vec<RecordBatch>>, SqlError> {
    Ok(run_statements_reporting(ctx, text)
        .await?
        .into_iter()
        .map(|output| output.batches)
        .collect())
}

/// What one statement returned.
#[derive(Debug, Clone)]
pub struct StatementOutput {
    pub batches: Vec<RecordBatch>,
    /// The JSON problems its topic scans met, per topic (empty when there were none); a
    /// caller prints [`JsonProblems::warning`] for each; `CREATE TABLE ... AS` reports
    /// those of its query.
    pub json_problems: Vec<JsonProblems>,
}

/// Like [`run_statements`], with the JSON problems each statement met.
pub async fn run_statements_reporting(
    ctx: &SessionContext,
    text: &str,
) -> Result<Vec<StatementOutput>, SqlError> {
    let dialect_name = ctx.state().config().options().sql_parser.dialect;
    let dialect = dialect_from_str(dialect_name)
        .ok_or_else(|| DataFusionError::Plan(format!("unsupported SQL dialect {dialect_name}")))?;
    let statements =
        DFParser::parse_sql_with_dialect(text, dialect.as_ref()).map_err(|e| match e {
            // The parser's Display wraps its message as `ParserError("...")`.
            DataFusionError::SQL(parser, _) => SqlError::Parse(match *parser {
                ParserError::ParserError(message) | ParserError::TokenizerError(message) => message,
                other => other.to_string(),
            }),
            other => SqlError::from(other),
        })?;
    let mut results = Vec::with_capacity(statements.len());
    for statement in statements {
        let state = ctx.state();
        let mut plan = state.statement_to_plan(statement).await?;
        let mut problems = Vec::new();
        if let LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(create)) = &plan {
            if !(create.if_not_exists && ctx.table_exist(create.name.clone())?) {
                let (rows, met) = run_query_of(ctx, create).await?;
                plan = rows;
                problems = met;
            }
        }
        let frame = ctx.execute_logical_plan(plan).await?;
        let task_ctx = Arc::new(frame.task_ctx());
        let physical = frame.create_physical_plan().await?;
        let batches = collect(Arc::clone(&physical), task_ctx).await?;
        problems.extend(json_problems(&physical));
        results.push(StatementOutput {
            batches,
            json_problems: problems,
        });
    }
    Ok(results)
}

/// `CREATE TABLE ... AS query`: DataFusion runs the query inside the statement, where
/// its scans' JSON problems cannot be read. So the query runs here, its problems are
/// kept, and the statement is given back with the rows it produced as its query
/// (DataFusion still decides whether the table may be created or replaced).
async fn run_query_of(
    ctx: &SessionContext,
    create: &CreateMemoryTable,
) -> Result<(LogicalPlan, Vec<JsonProblems>), SqlError> {
    let frame = ctx
        .execute_logical_plan(create.input.as_ref().clone())
        .await?;
    let task_ctx = Arc::new(frame.task_ctx());
    let physical = frame.create_physical_plan().await?;
    let batches = collect(Arc::clone(&physical), task_ctx).await?;
    let problems = json_problems(&physical);
    let rows = MemTable::try_new(create.input.schema().inner().clone(), vec![batches])?;
    let input = LogicalPlanBuilder::scan(
        create.name.clone(),
        provider_as_source(Arc::new(rows)),
        None,
    )?
    .build()?;
    let mut create = create.clone();
    create.input = Arc::new(input);
    Ok((
        LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(create)),
        problems,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_syntax_error_names_the_position_without_the_parser_wrapper() {
        let ctx = SessionContext::new();
        let error = run_statements(&ctx, "SELECT 1; SELEC 2").await.unwrap_err();
        assert_eq!(
            error.to_string(),
            "SQL syntax error: Expected: an SQL statement, found: SELEC at Line: 1, Column: 11"
        );
    }
}
