//! `weir sketch bench --topic` end to end: a broker child on 127.0.0.1:0, a skewed stream
//! produced with `weir produce`, and the benchmark reading it back by record key and by a field
//! of the JSON value; records without a key are counted, and bad topics fail in one line.

#[path = "cli_broker_common/mod.rs"]
mod common;

use std::process::{Command, Output};

use common::{assert_clean_failure, data_dir, stderr, stdout, BrokerChild, WEIR};
use serde_json::Value;

/// Ranks 1..=10 get 190, 180, ..., 100 records (a clear top ten); ranks 11..=300 get 1 to 5.
fn skewed_counts() -> Vec<(u32, usize)> {
    (1..=300u32)
        .map(|rank| {
            let count = if rank <= 10 {
                200 - 10 * rank as usize
            } else {
                rank as usize % 5 + 1
            };
            (rank, count)
        })
        .collect()
}

/// `KEY\tJSON` lines, keys interleaved round by round so every partition sees the heavy keys
/// throughout; returns the lines and their number.
fn keyed_json_lines(counts: &[(u32, usize)]) -> (Vec<u8>, usize) {
    let mut lines = Vec::new();
    let mut total = 0;
    let rounds = counts.iter().map(|(_, c)| *c).max().unwrap_or(0);
    for round in 0..rounds {
        for &(rank, count) in counts {
            if round < count {
                lines.extend_from_slice(
                    format!("k{rank}\t{{\"user\":{{\"id\":{rank}}},\"page\":\"/p{rank}\"}}\n")
                        .as_bytes(),
                );
                total += 1;
            }
        }
    }
    (lines, total)
}

fn create_topic(broker: &BrokerChild, topic: &str, partitions: &str) {
    let out = broker.weir(&["topic", "create", topic, "--partitions", partitions], b"");
    assert!(out.status.success(), "{out:?}");
}

fn produce(broker: &BrokerChild, topic: &str, keyed: bool, lines: &[u8]) {
    let args: &[&str] = if keyed {
        &["produce", topic, "--key-separator", "\t"]
    } else {
        &["produce", topic]
    };
    let out = broker.weir(args, lines);
    assert!(out.status.success(), "{out:?}");
}

fn bench(broker: &BrokerChild, extra: &[&str]) -> Output {
    let args = [
        &[
            "sketch",
            "bench",
            "--budgets",
            "16KiB,64KiB",
            "--threads",
            "1",
        ][..],
        extra,
    ]
    .concat();
    broker.weir(&args, b"")
}

fn bench_json(broker: &BrokerChild, extra: &[&str]) -> Value {
    let out = bench(broker, &[extra, &["--output", "json"]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("valid JSON")
}

/// Top-10 recall of every top-k algorithm at `budget_bytes`.
fn recalls_at_10(report: &Value, budget_bytes: u64) -> Vec<(String, f64)> {
    report["measurements"]
        .as_array()
        .expect("measurements")
        .iter()
        .filter(|m| m["budget_bytes"] == budget_bytes && !m["recall_at_10"].is_null())
        .map(|m| {
            (
                m["algorithm"].as_str().unwrap().to_string(),
                m["recall_at_10"].as_f64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_topic_is_measured_by_record_key_and_by_json_field() {
    let root = tempfile::tempdir().unwrap();
    let broker = BrokerChild::start(&data_dir(root.path()), &[]);
    create_topic(&broker, "clicks", "3");
    let counts = skewed_counts();
    let (lines, produced) = keyed_json_lines(&counts);
    produce(&broker, "clicks", true, &lines);

    let out = broker.weir(&["topic", "describe", "clicks", "--output", "json"], b"");
    let described: Value = serde_json::from_slice(&out.stdout).unwrap();
    let filled = described["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["high_watermark"].as_u64().unwrap() > 0)
        .count();
    assert!(filled >= 2, "the keys spread over partitions: {described}");

    for (extra, name, key_field) in [
        (&[][..], "topic clicks by key", Value::Null),
        (
            &["--key-field", "user.id"][..],
            "topic clicks by user.id",
            Value::from("user.id"),
        ),
        (
            &["--key-field", "page"][..],
            "topic clicks by page",
            Value::from("page"),
        ),
    ] {
        let report = bench_json(&broker, &[&["--topic", "clicks"][..], extra].concat());
        let workload = &report["workloads"][0];
        assert_eq!(workload["name"], name);
        assert_eq!(workload["events"], produced as u64, "{name}");
        assert_eq!(workload["key_space"], counts.len() as u64, "{name}");
        let read = &workload["topic"];
        assert_eq!(read["topic"], "clicks");
        assert_eq!(read["key_field"], key_field);
        assert_eq!(read["records"], produced as u64);
        assert_eq!(read["end_offsets"].as_object().unwrap().len(), 3);
        let ends: u64 = read["end_offsets"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum();
        assert_eq!(ends, produced as u64);
        for reason in ["null_key", "not_json", "missing_field"] {
            assert_eq!(read["skipped"][reason], 0, "{name} {reason}");
        }
        let recalls = recalls_at_10(&report, 64 * 1024);
        assert_eq!(recalls.len(), 4, "{name}: {recalls:?}");
        for (algorithm, recall) in recalls {
            assert_eq!(recall, 1.0, "{name}: {algorithm} misses a top-10 key");
        }
    }
    broker.kill();
}

#[test]
fn records_without_a_key_or_field_are_counted_and_skipped() {
    let root = tempfile::tempdir().unwrap();
    let broker = BrokerChild::start(&data_dir(root.path()), &[]);
    create_topic(&broker, "mixed", "3");
    let counts: Vec<(u32, usize)> = (1..=5).map(|rank| (rank, 50 / rank as usize)).collect();
    let (lines, with_field) = keyed_json_lines(&counts);
    produce(&broker, "mixed", true, &lines);
    let unkeyed = b"plain text 1\nplain text 2\n{\"user\":{\"id\":1}}\n";
    produce(&broker, "mixed", false, unkeyed);
    let no_field =
        b"k9\t{\"other\":1}\nk9\t{\"user\":{}}\nk9\t{\"user\":{\"id\":null}}\nk9\t[1,2]\n";
    produce(&broker, "mixed", true, no_field);
    let not_json = b"k9\t{\"user\":{\"id\":1}\nk9\tplain\nk9\t{\"user\":{\"id\":1}} x\n";
    produce(&broker, "mixed", true, not_json);
    let records = with_field + 3 + 4 + 3;

    let report = bench_json(&broker, &["--topic", "mixed"]);
    let workload = &report["workloads"][0];
    assert_eq!(workload["events"], (records - 3) as u64);
    assert_eq!(workload["topic"]["records"], records as u64);
    assert_eq!(workload["topic"]["skipped"]["null_key"], 3);

    let report = bench_json(&broker, &["--topic", "mixed", "--key-field", "user.id"]);
    let workload = &report["workloads"][0];
    // The unkeyed `{"user":{"id":1}}` counts: the field, not the record key, is the key.
    assert_eq!(workload["events"], (with_field + 1) as u64);
    assert_eq!(workload["topic"]["records"], records as u64);
    let skipped = &workload["topic"]["skipped"];
    assert_eq!(skipped["null_key"], 0);
    assert_eq!(skipped["not_json"], 2 + 3);
    assert_eq!(skipped["missing_field"], 4);

    let out = bench(&broker, &["--topic", "mixed"]);
    let table = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(table.starts_with("workload"), "{table}");
    let line = format!(
        "topic mixed: {records} records read, {} counted, 3 skipped (3 with a null key)",
        records - 3
    );
    assert!(table.contains(&line), "{table}");

    let out = bench(
        &broker,
        &[
            "--topic",
            "mixed",
            "--key-field",
            "user.id",
            "--output",
            "csv",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("workload,algorithm,"));
    assert!(
        stderr(&out).contains("9 skipped (5 not JSON, 4 without the field)"),
        "{}",
        stderr(&out)
    );
    broker.kill();
}

#[test]
fn an_unknown_topic_or_no_broker_fails_in_one_line() {
    let root = tempfile::tempdir().unwrap();
    let broker = BrokerChild::start(&data_dir(root.path()), &[]);
    assert_clean_failure(
        &bench(&broker, &["--topic", "nope"]),
        "topic \"nope\" does not exist",
    );
    create_topic(&broker, "empty", "2");
    assert_clean_failure(&bench(&broker, &["--topic", "empty"]), "is empty");
    create_topic(&broker, "unkeyed", "1");
    produce(&broker, "unkeyed", false, b"a\nb\n");
    assert_clean_failure(
        &bench(&broker, &["--topic", "unkeyed"]),
        "none of the 2 records of topic \"unkeyed\" has a key to count (2 with a null key)",
    );
    assert_clean_failure(
        &bench(&broker, &["--topic", "unkeyed", "--key-field", "user..id"]),
        "empty field name",
    );
    for conflicting in [
        &["--topic", "t", "--input", "keys.txt"][..],
        &["--topic", "t", "--events", "10"],
        &["--topic", "t", "--skew", "1.0"],
        &["--key-field", "user.id"],
    ] {
        let out = bench(&broker, conflicting);
        assert!(!out.status.success(), "{conflicting:?} is refused");
    }

    // An explicit --broker wins over WEIR_BROKER.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = free.local_addr().unwrap().to_string();
    drop(free);
    let out = Command::new(WEIR)
        .args([
            "sketch", "bench", "--topic", "unkeyed", "--broker", &nowhere,
        ])
        .env("WEIR_BROKER", &broker.addr)
        .output()
        .unwrap();
    assert_clean_failure(&out, &format!("cannot connect to broker at {nowhere}"));
    broker.kill();
}
