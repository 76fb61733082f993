//! `weir sql` run as the real binary over a data directory written by `PartitionLog`:
//! output formats, the interactive shell fed from stdin, and errors on one line.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use weir_log::batch::{BatchBuilder, Compression};
use weir_log::{LogConfig, PartitionLog};

/// Topic `clicks` with 2 partitions of 3 JSON records each.
fn write_data_dir(dir: &Path) {
    for partition in 0..2u32 {
        let log = PartitionLog::open(
            &dir.join(format!("clicks-{partition}")),
            LogConfig::default(),
        )
        .unwrap();
        let mut builder = BatchBuilder::new(Compression::None);
        for n in 0..3 {
            let value = format!(r#"{{"page":"/p{}","ms":{}}}"#, n % 2, partition * 100 + n);
            builder.push(
                1_700_000_000_000 + n as i64,
                Some(b"k"),
                Some(value.as_bytes()),
                &[],
            );
        }
        let mut bytes = builder.build().unwrap().to_vec();
        log.append(&mut bytes, 0).unwrap();
        log.close().unwrap();
    }
}

fn weir_sql(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("sql")
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .output()
        .expect("the weir binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[test]
fn prints_a_table_by_default() {
    let dir = tempfile::tempdir().unwrap();
    write_data_dir(dir.path());
    let out = weir_sql(
        dir.path(),
        &["SELECT page, count(*) AS n FROM clicks GROUP BY page ORDER BY page"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("| page | n |"), "{stdout}");
    assert!(stdout.contains("| /p0  | 4 |"), "{stdout}");
    assert!(stdout.contains("| /p1  | 2 |"), "{stdout}");
}

#[test]
fn prints_csv_and_json() {
    let dir = tempfile::tempdir().unwrap();
    write_data_dir(dir.path());
    let sql = "SELECT partition, offset, ms FROM clicks WHERE partition = 1 ORDER BY offset";
    let out = weir_sql(dir.path(), &["--format", "csv", sql]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "partition,offset,ms\n1,0,100\n1,1,101\n1,2,102\n"
    );

    let out = weir_sql(dir.path(), &["--format", "json", sql]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(
        lines[2],
        serde_json::json!({"partition": 1, "offset": 2, "ms": 102})
    );
}

#[test]
fn errors_print_on_one_line_and_exit_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    write_data_dir(dir.path());
    for (sql, expected) in [
        ("SELECT * FROM nope", "table 'weir.topics.nope' not found"),
        ("SELECT nope FROM clicks", "No field named nope"),
        ("SELEC 1", "Line: 1, Column: 1"),
    ] {
        let out = weir_sql(dir.path(), &[sql]);
        assert!(!out.status.success(), "{sql}");
        let stderr = text(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("weir: "), "{stderr}");
        assert!(stderr.contains(expected), "{sql}: {stderr}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["sql", "--data-dir"])
        .arg(dir.path().join("missing"))
        .arg("SELECT 1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("missing"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn shell_runs_multi_line_statements_and_commands() {
    let dir = tempfile::tempdir().unwrap();
    write_data_dir(dir.path());
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("sql")
        .arg("--data-dir")
        .arg(dir.path())
        .env("HOME", dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"\\d\n\\d clicks\nSELECT count(*)\n  AS total\n  FROM clicks;\nSELECT nope FROM clicks;\n\\q\nSELECT 'after quit';\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("| weir          | topics             | clicks"),
        "{stdout}"
    );
    assert!(stdout.contains("| value_str   | Utf8View"), "{stdout}");
    assert!(stdout.contains("| total |"), "{stdout}");
    assert!(stdout.contains("| 6     |"), "{stdout}");
    assert!(stdout.contains("(1 rows,"), "{stdout}");
    assert!(!stdout.contains("after quit"), "{stdout}");
    assert!(
        text(&out.stderr).contains("No field named nope"),
        "{}",
        text(&out.stderr)
    );
}

/// Topic `events`: 40 JSON rows over 40 users, two not JSON and three whose `n` is text.
fn write_untidy_topic(dir: &Path) {
    let log = PartitionLog::open(&dir.join("events-0"), LogConfig::default()).unwrap();
    let mut builder = BatchBuilder::new(Compression::None);
    for i in 0..45 {
        let value = match i {
            40 | 41 => "not json".to_string(),
            42..=44 => format!(r#"{{"user":"u{i}","n":"many"}}"#),
            _ => format!(r#"{{"user":"u{i}","n":{i}}}"#),
        };
        builder.push(
            1_700_000_000_000 + i as i64,
            None,
            Some(value.as_bytes()),
            &[],
        );
    }
    let mut bytes = builder.build().unwrap().to_vec();
    log.append(&mut bytes, 0).unwrap();
    log.close().unwrap();
}

#[test]
fn json_problems_are_one_warning_line_on_stderr_and_a_memory_limit_fails_a_query_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    write_untidy_topic(dir.path());
    let schema = dir.path().join("events.schema.json");
    std::fs::write(
        &schema,
        r#"{"type":"object","properties":{"user":{"type":"string"},"n":{"type":"integer"}}}"#,
    )
    .unwrap();
    let declared = format!("events={}", schema.display());
    let out = weir_sql(
        dir.path(),
        &[
            "--schema",
            &declared,
            "--format",
            "csv",
            "SELECT sum(n) AS total FROM events",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert!(
        text(&out.stdout).contains(&(0..40).sum::<i64>().to_string()),
        "{out:?}"
    );
    let warnings: Vec<String> = text(&out.stderr)
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .map(str::to_string)
        .collect();
    assert_eq!(warnings.len(), 1, "{out:?}");
    assert!(
        warnings[0].starts_with(
            "warning: topic events: 2 rows did not parse as JSON (first: partition 0 offset 40), \
             3 values did not match their column type (first: partition 0 offset 42 column \"n\""
        ),
        "{}",
        warnings[0]
    );

    // Every user's own summary cannot fit in 1 MiB.
    let out = weir_sql(
        dir.path(),
        &[
            "--memory-limit",
            "1M",
            "SELECT user, approx_top_k(user, 10) FROM events GROUP BY user",
        ],
    );
    assert!(!out.status.success(), "{out:?}");
    let err = text(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("approx_top_k") && err.contains("memory"),
        "{err}"
    );
    let out = weir_sql(dir.path(), &["--memory-limit", "lots", "SELECT 1"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("--memory-limit"), "{out:?}");
}
