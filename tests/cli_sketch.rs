//! `weir sketch` end to end: the real binary, small streams, every output format, the plot file,
//! the stream generator and bad input.

use std::path::Path;
use std::process::{Command, Output};

fn weir(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .output()
        .expect("the weir binary runs")
}

const SMALL: [&str; 8] = [
    "--events",
    "20000",
    "--keys",
    "2000",
    "--skew",
    "1.0,1.5",
    "--budgets",
    "4KiB..32KiB",
];

fn stdout_of(output: &Output) -> String {
    assert!(
        output.status.success(),
        "weir failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).expect("utf-8 output")
}

#[test]
fn csv_has_a_header_and_one_row_per_job() {
    let output = weir(&[&["sketch", "bench"][..], &SMALL, &["--output", "csv"]].concat());
    let csv = stdout_of(&output);
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
    assert_eq!(header[..3], ["workload", "algorithm", "budget_bytes"]);
    assert!(header.contains(&"r@100") && header.contains(&"updates_per_sec"));
    let rows: Vec<Vec<&str>> = lines.map(|line| line.split(',').collect()).collect();
    // 2 workloads × 4 budgets × 6 algorithms, less top-k at 4 KiB (too small for 100 keys).
    assert_eq!(rows.len(), 2 * 4 * 6 - 2);
    for row in &rows {
        assert_eq!(row.len(), header.len());
        let recall = row[header.iter().position(|h| *h == "r@100").unwrap()];
        match row[1] {
            "cms-plain" | "cms-conservative" => assert_eq!(recall, ""),
            "topk-cms" | "space-saving" | "heavykeeper" | "frequent-items" => {
                assert!((0.0..=1.0).contains(&recall.parse::<f64>().unwrap()))
            }
            other => panic!("unexpected algorithm {other}"),
        }
    }
}

#[test]
fn json_reports_measurements_machine_and_skips() {
    let output = weir(
        &[
            &["sketch", "bench"][..],
            &SMALL,
            &["--output", "json", "--threads", "1"],
        ]
        .concat(),
    );
    let report: serde_json::Value = serde_json::from_str(&stdout_of(&output)).expect("valid JSON");
    let measurements = report["measurements"]
        .as_array()
        .expect("measurements array");
    assert_eq!(measurements.len(), 46);
    let first = &measurements[0];
    for field in [
        "workload",
        "algorithm",
        "budget_bytes",
        "memory_bytes",
        "mean_abs_error_all",
        "within_epsilon_fraction",
        "updates_per_sec",
    ] {
        assert!(!first[field].is_null(), "missing {field}");
    }
    assert!(measurements
        .iter()
        .all(|m| m["memory_bytes"].as_u64().unwrap() <= m["budget_bytes"].as_u64().unwrap()));
    assert_eq!(report["skipped"].as_array().unwrap().len(), 2);
    assert!(report["machine"]["cores"].as_u64().unwrap() >= 1);
    assert_eq!(report["workloads"][0]["events"], 20000);
}

#[test]
fn plot_writes_a_png_and_table_is_default() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("accuracy.png");
    let output = weir(
        &[
            &["sketch", "bench"][..],
            &SMALL,
            &["--plot", png.to_str().unwrap()],
        ]
        .concat(),
    );
    let table = stdout_of(&output);
    assert!(table.starts_with("workload"), "{table}");
    assert!(table.contains("heavykeeper") && table.contains("zipf s=1.5"));
    let bytes = std::fs::read(&png).expect("the plot was written");
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert!(bytes.len() > 10_000, "a real image, not an empty canvas");
}

#[test]
fn gen_writes_the_stream_bench_reads() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("stream.txt");
    let path = file.to_str().unwrap();
    stdout_of(&weir(&[
        "sketch", "gen", "--events", "5000", "--keys", "300", "--skew", "1.2", "--out", path,
    ]));
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text.lines().count(), 5000);
    assert!(text.lines().all(|line| line.starts_with('k')));
    let again = dir.path().join("again.txt");
    stdout_of(&weir(&[
        "sketch",
        "gen",
        "--events",
        "5000",
        "--keys",
        "300",
        "--skew",
        "1.2",
        "--out",
        again.to_str().unwrap(),
    ]));
    assert_eq!(
        std::fs::read(&again).unwrap(),
        text.as_bytes(),
        "the same seed gives the same stream"
    );

    let csv = stdout_of(&weir(&[
        "sketch",
        "bench",
        "--input",
        path,
        "--budgets",
        "64KiB",
        "--output",
        "csv",
    ]));
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(rows.len(), 6, "one row per algorithm");
    assert!(rows.iter().all(|row| row.starts_with("stream.txt,")));
}

#[test]
fn the_default_algorithm_is_frequent_items() {
    let csv = stdout_of(&weir(
        &[
            &["sketch", "bench"][..],
            &SMALL,
            &["--algorithms", "default", "--output", "csv"],
        ]
        .concat(),
    ));
    let algorithms: Vec<&str> = csv
        .lines()
        .skip(1)
        .map(|row| row.split(',').nth(1).unwrap())
        .collect();
    assert!(!algorithms.is_empty());
    assert!(
        algorithms.iter().all(|a| *a == "frequent-items"),
        "{algorithms:?}"
    );
}

#[test]
fn bad_input_is_one_line_and_a_failure() {
    let missing = Path::new("/nonexistent/keys.txt");
    let conflicting = weir(&["sketch", "bench", "--input", "keys.txt", "--events", "10"]);
    assert!(
        !conflicting.status.success(),
        "--input with --events is refused by the parser"
    );
    let cases: [&[&str]; 5] = [
        &["sketch", "bench", "--input", missing.to_str().unwrap()],
        &["sketch", "bench", "--budgets", "8KiB..4KiB"],
        &["sketch", "bench", "--algorithms", "bloom"],
        &["sketch", "bench", "--skew=-1", "--events", "10"],
        &["sketch", "bench", "--plot", "/nonexistent/dir/x.png"],
    ];
    for args in cases {
        let output = weir(args);
        assert!(!output.status.success(), "{args:?} should fail");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.starts_with("weir: ") && stderr.trim_end().lines().count() == 1,
            "{args:?}: {stderr}"
        );
    }
}
