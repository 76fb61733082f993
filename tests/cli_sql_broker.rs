//! `weir sql` against a running broker, all through the real binary: a topic created
//! with a declared JSON value schema, records from `weir produce`, then queries; and the
//! same data queried offline with `--data-dir` once the broker has stopped.

#[path = "cli_broker_common/mod.rs"]
mod common;

use common::{assert_clean_failure, data_dir, stderr, stdout, BrokerChild};

const SCHEMA: &str =
    r#"{"type":"object","properties":{"page":{"type":"string"},"ms":{"type":"integer"}}}"#;

/// 100 lines `user-i|{"page":...,"ms":i}`: page /a for i % 4 == 0 (25), /b for odd i
/// (50), /c for the rest (25).
fn records() -> String {
    (0..100)
        .map(|i| {
            let page = match i % 4 {
                0 => "/a",
                1 | 3 => "/b",
                _ => "/c",
            };
            format!("user-{}|{{\"page\":\"{page}\",\"ms\":{i}}}\n", i % 7)
        })
        .collect()
}

#[test]
fn sql_against_a_running_broker_and_then_its_stopped_data_directory() {
    let root = tempfile::tempdir().unwrap();
    let schema = root.path().join("clicks.schema.json");
    std::fs::write(&schema, SCHEMA).unwrap();
    let data = data_dir(root.path());
    let broker = BrokerChild::start(&data, &[]);

    let schema_arg = schema.to_str().unwrap();
    let out = broker.weir(
        &[
            "topic",
            "create",
            "clicks",
            "--partitions",
            "3",
            "--value-schema",
            schema_arg,
        ],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = broker.weir(
        &["produce", "clicks", "--key-separator", "|"],
        records().as_bytes(),
    );
    assert!(out.status.success(), "{}", stderr(&out));

    let query = "SELECT page, count(*) AS n, sum(ms) AS ms FROM clicks GROUP BY page ORDER BY page";
    let expected = "page,n,ms\n/a,25,1200\n/b,50,2500\n/c,25,1250\n";
    let out = broker.weir(&["sql", "--format", "csv", query], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), expected);

    let out = broker.weir(
        &[
            "sql",
            "--format",
            "csv",
            "SELECT approx_top_k(page, 1)[1]['value'] AS top FROM clicks",
        ],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "top\n/b\n");

    let out = broker.weir(&["sql", "SELECT * FROM nope"], b"");
    assert_clean_failure(&out, "nope");

    // A schema file that is not an object schema is refused before the topic exists.
    std::fs::write(&schema, "[1]").unwrap();
    let out = broker.weir(
        &[
            "topic",
            "create",
            "other",
            "--partitions",
            "1",
            "--value-schema",
            schema_arg,
        ],
        b"",
    );
    assert_clean_failure(&out, "clicks.schema.json");

    let (status, log) = broker.terminate();
    assert!(status.success(), "{log}");

    // Offline: the stopped broker's data directory, with the schema from its registry.
    let out = common::run_weir(
        "127.0.0.1:1",
        &[
            "sql",
            "--data-dir",
            data.to_str().unwrap(),
            "--format",
            "csv",
            query,
        ],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), expected);
}

#[test]
fn an_unreachable_broker_is_one_line_and_a_failure() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    let out = common::run_weir(&addr, &["sql", "SELECT 1"], b"");
    assert_clean_failure(&out, &addr);
}
