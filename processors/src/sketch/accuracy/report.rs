//! Plain-text renderings of benchmark results: an aligned terminal table and CSV.

use std::fmt::Write;

use super::{BenchResults, Measurement};

const COLUMNS: [&str; 16] = [
    "workload",
    "algorithm",
    "budget_bytes",
    "memory_bytes",
    "epsilon",
    "within_eps",
    "bound_1-delta",
    "mean_err_all",
    "max_err_all",
    "mean_err_top100",
    "max_err_top100",
    "p@10",
    "r@10",
    "p@100",
    "r@100",
    "updates_per_sec",
];

fn cells(m: &Measurement) -> [String; 16] {
    let opt = |value: Option<f64>| value.map_or_else(|| "-".to_string(), |v| format!("{v:.3}"));
    [
        m.workload.clone(),
        m.algorithm.name().to_string(),
        m.budget_bytes.to_string(),
        m.memory_bytes.to_string(),
        format!("{:.2e}", m.epsilon),
        format!("{:.4}", m.within_epsilon_fraction),
        format!("{:.4}", m.within_epsilon_bound),
        format!("{:.1}", m.mean_abs_error_all),
        m.max_abs_error_all.to_string(),
        format!("{:.1}", m.mean_abs_error_top),
        m.max_abs_error_top.to_string(),
        opt(m.precision_at_10),
        opt(m.recall_at_10),
        opt(m.precision_at_100),
        opt(m.recall_at_100),
        format!("{:.0}", m.updates_per_sec),
    ]
}

/// An aligned table, one row per measurement, then one line per skipped job.
pub fn render_table(results: &BenchResults) -> String {
    let rows: Vec<[String; 16]> = results.measurements.iter().map(cells).collect();
    let mut widths = COLUMNS.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[String]| {
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            let sep = if i == 0 { "" } else { "  " };
            // Text columns align left, numbers right.
            let _ = if i < 2 {
                write!(out, "{sep}{cell:<width$}")
            } else {
                write!(out, "{sep}{cell:>width$}")
            };
        }
        out.push('\n');
    };
    line(&COLUMNS.map(String::from));
    let mut previous: Option<&str> = None;
    for (row, m) in rows.iter().zip(&results.measurements) {
        if previous.is_some_and(|p| p != m.workload) {
            line(&[String::new()]);
        }
        previous = Some(&m.workload);
        line(row);
    }
    for skipped in &results.skipped {
        let _ = writeln!(
            out,
            "skipped {} {} at {} bytes: {}",
            skipped.workload,
            skipped.algorithm.name(),
            skipped.budget_bytes,
            skipped.reason
        );
    }
    out
}

/// CSV with a header row; empty cells where a figure does not apply.
pub fn render_csv(results: &BenchResults) -> String {
    let mut out = COLUMNS.join(",");
    out.push('\n');
    for m in &results.measurements {
        let row = cells(m).map(|cell| if cell == "-" { String::new() } else { cell });
        let row = row.map(|cell| {
            if cell.contains([',', '"']) {
                format!("\"{}\"", cell.replace('"', "\"\""))
            } else {
                cell
            }
        });
        out.push_str(&row.join(","));
        out.push('\n');
    }
    out
}
