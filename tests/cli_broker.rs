//! The `weir` binary end to end: broker child, topic admin, produce from
//! stdin, consume in every format, and clear one-line errors.

#[path = "cli_broker_common/mod.rs"]
mod common;

use common::{assert_clean_failure, data_dir, run_weir, stdout, BrokerChild};

#[test]
fn topic_produce_consume_round_trip() {
    let root = tempfile::tempdir().unwrap();
    let broker = BrokerChild::start(&data_dir(root.path()), &[]);

    let out = broker.weir(
        &[
            "topic",
            "create",
            "clicks",
            "--partitions",
            "3",
            "--config",
            "retention.ms=3600000",
        ],
        b"",
    );
    assert!(out.status.success(), "{out:?}");
    let out = broker.weir(&["topic", "list", "--output", "json"], b"");
    let topics: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(topics[0]["topic"], "clicks");
    assert_eq!(topics[0]["partition_count"], 3);

    let input = b"alice:page1\nbob:page2\nalice:page3\ncarol:page4\n";
    let out = broker.weir(
        &["produce", "clicks", "--key-separator", ":", "--acks", "1"],
        input,
    );
    assert!(out.status.success(), "{out:?}");

    let out = broker.weir(
        &["consume", "clicks", "--from-beginning", "--format", "json"],
        b"",
    );
    assert!(out.status.success(), "{out:?}");
    let records: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 4);
    let alice: Vec<_> = records
        .iter()
        .filter(|r| r["key"] == "alice")
        .map(|r| r["value"].clone())
        .collect();
    assert_eq!(alice, ["page1", "page3"]);

    let out = broker.weir(
        &[
            "consume",
            "clicks",
            "--format",
            "value",
            "--max-records",
            "2",
        ],
        b"",
    );
    assert_eq!(stdout(&out).lines().count(), 2);

    let out = broker.weir(&["topic", "describe", "clicks", "--output", "json"], b"");
    let described: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let total: u64 = described["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["high_watermark"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 4);
    assert_eq!(described["configs"]["retention.ms"], "3600000");

    let out = broker.weir(
        &["topic", "alter", "clicks", "--config", "retention.ms=1000"],
        b"",
    );
    assert!(out.status.success(), "{out:?}");
    let out = broker.weir(
        &[
            "topic",
            "alter",
            "clicks",
            "--config",
            "message.timestamp.after.max.ms=60000",
        ],
        b"",
    );
    assert!(out.status.success(), "{out:?}");
    assert_clean_failure(
        &broker.weir(
            &[
                "topic",
                "alter",
                "clicks",
                "--config",
                "message.timestamp.before.max.ms=-1",
            ],
            b"",
        ),
        "message.timestamp.before.max.ms",
    );
    let out = broker.weir(&["topic", "alter", "clicks", "--partitions", "5"], b"");
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).contains("now has 5 partitions"), "{out:?}");
    let out = broker.weir(&["topic", "describe", "clicks", "--output", "json"], b"");
    let described: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(described["partition_count"], 5);
    assert_clean_failure(
        &broker.weir(&["topic", "alter", "clicks", "--partitions", "2"], b""),
        "cannot be removed",
    );
    // Replicas placed by hand, as kafka-topics' --replica-assignment: this broker is 0.
    let out = broker.weir(
        &["topic", "create", "placed", "--replica-assignment", "0,0"],
        b"",
    );
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).contains("with 2 partitions"), "{out:?}");
    assert_clean_failure(
        &broker.weir(
            &[
                "topic",
                "create",
                "elsewhere",
                "--replica-assignment",
                "0,1",
            ],
            b"",
        ),
        "broker 1",
    );
    assert_clean_failure(
        &broker.weir(
            &["topic", "create", "typo", "--replica-assignment", "0:x"],
            b"",
        ),
        "not a broker id",
    );
    let out = broker.weir(&["topic", "delete", "clicks"], b"");
    assert!(out.status.success(), "{out:?}");
    assert_clean_failure(
        &broker.weir(&["topic", "describe", "clicks"], b""),
        "does not exist",
    );

    let (status, log) = broker.terminate();
    assert!(status.success(), "clean exit on SIGTERM: {status:?} {log}");
    assert!(log.contains("broker stopped"), "{log}");
}

#[test]
fn consume_from_offset_and_partition() {
    let root = tempfile::tempdir().unwrap();
    let broker = BrokerChild::start(&data_dir(root.path()), &[]);
    assert!(broker
        .weir(&["topic", "create", "t", "--partitions", "2"], b"")
        .status
        .success());
    let out = broker.weir(&["produce", "t", "--partition", "1"], b"a\nb\nc\n");
    assert!(out.status.success(), "{out:?}");
    let out = broker.weir(&["consume", "t", "--partition", "1", "--offset", "1"], b"");
    assert_eq!(stdout(&out), "b\nc\n");
    let out = broker.weir(&["consume", "t", "--partition", "0"], b"");
    assert_eq!(stdout(&out), "");
    let out = broker.weir(
        &[
            "consume",
            "t",
            "--from-time",
            "2000-01-01T00:00:00Z",
            "--format",
            "kv",
        ],
        b"",
    );
    assert_eq!(stdout(&out), "\ta\n\tb\n\tc\n");
    broker.terminate();
}

#[test]
fn bad_input_fails_with_one_clear_line() {
    let root = tempfile::tempdir().unwrap();
    let broker = BrokerChild::start(&data_dir(root.path()), &[]);
    assert!(broker
        .weir(&["topic", "create", "t", "--partitions", "1"], b"")
        .status
        .success());

    assert_clean_failure(
        &broker.weir(&["produce", "missing"], b"x\n"),
        "\"missing\" does not exist",
    );
    assert_clean_failure(
        &broker.weir(&["produce", "t", "--acks", "7"], b"x\n"),
        "acks",
    );
    assert_clean_failure(
        &broker.weir(&["produce", "t", "--compression", "brotli"], b"x\n"),
        "brotli",
    );
    assert_clean_failure(
        &broker.weir(&["produce", "t", "--max-in-flight", "0"], b"x\n"),
        "--max-in-flight",
    );
    assert_clean_failure(
        &broker.weir(&["produce", "t", "--key-separator", ":"], b"novalue\n"),
        "line 1 has no key separator",
    );
    assert_clean_failure(
        &broker.weir(&["topic", "create", "t", "--partitions", "1"], b""),
        "already exists",
    );
    assert_clean_failure(
        &broker.weir(&["topic", "create", "bad name", "--partitions", "1"], b""),
        "' '",
    );
    assert_clean_failure(
        &broker.weir(
            &[
                "topic",
                "create",
                "u",
                "--partitions",
                "1",
                "--config",
                "segment.bytes=x",
            ],
            b"",
        ),
        "segment.bytes",
    );
    assert_clean_failure(
        &broker.weir(&["consume", "t", "--offset", "99"], b""),
        "out of range",
    );
    assert_clean_failure(
        &broker.weir(&["consume", "t", "--partition", "5"], b""),
        "partition 5",
    );
    assert_clean_failure(
        &broker.weir(&["consume", "t", "--from-time", "yesterday"], b""),
        "RFC 3339",
    );
    broker.terminate();

    // Nothing listens there any more.
    let addr = "127.0.0.1:1";
    assert_clean_failure(
        &run_weir(addr, &["topic", "list"], b""),
        "cannot connect to broker at 127.0.0.1:1",
    );
    assert_clean_failure(&run_weir(addr, &["produce", "t"], b"x\n"), "cannot connect");
}

#[test]
fn broker_refuses_a_bad_config_file() {
    let root = tempfile::tempdir().unwrap();
    let config = root.path().join("weir.toml");
    std::fs::write(&config, "listen = 5\n").unwrap();
    let out = std::process::Command::new(common::WEIR)
        .args(["broker", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_clean_failure(&out, "weir.toml");
}

#[test]
fn bench_produce_reports_json() {
    let root = tempfile::tempdir().unwrap();
    let broker = BrokerChild::start(&data_dir(root.path()), &[]);
    let out = broker.weir(
        &[
            "bench",
            "produce",
            "--records",
            "2000",
            "--record-size",
            "50",
            "--partitions",
            "2",
            "--max-in-flight",
            "2",
            "--output",
            "json",
        ],
        b"",
    );
    assert!(out.status.success(), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["records"], 2000);
    assert_eq!(report["record_size"], 50);
    for field in ["records_per_sec", "mb_per_sec"] {
        assert!(report[field].as_f64().unwrap() > 0.0, "{field}");
    }
    for field in ["p50", "p99", "p999", "max"] {
        assert!(report["latency_ms"][field].is_number(), "{field}");
    }
    let out = broker.weir(
        &["bench", "consume", "--records", "2000", "--output", "json"],
        b"",
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["records"], 2000);
    broker.terminate();
}

/// `--broker` is global: before the subcommand, after it, and after the
/// nested subcommand; `WEIR_BROKER` is the fallback, the flag wins over it.
#[test]
fn broker_flag_is_accepted_before_or_after_the_subcommand() {
    let root = tempfile::tempdir().unwrap();
    let broker = BrokerChild::start(&data_dir(root.path()), &[]);
    let addr = broker.addr.as_str();
    // A closed port: a command that used WEIR_BROKER instead of the flag fails.
    let wrong = "127.0.0.1:1";

    let out = run_weir(
        wrong,
        &[
            "--broker",
            addr,
            "topic",
            "create",
            "g",
            "--partitions",
            "1",
        ],
        b"",
    );
    assert!(out.status.success(), "{out:?}");
    let out = run_weir(wrong, &["topic", "--broker", addr, "list"], b"");
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).contains('g'), "{out:?}");
    let out = run_weir(wrong, &["topic", "list", "--broker", addr], b"");
    assert!(out.status.success(), "{out:?}");
    let out = run_weir(
        wrong,
        &["--broker", addr, "produce", "g", "--acks", "0"],
        b"x\ny\n",
    );
    assert!(out.status.success(), "{out:?}");
    let out = run_weir(
        wrong,
        &["--broker", addr, "consume", "g", "--format", "kv"],
        b"",
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out).lines().count(), 2, "{out:?}");

    let out = run_weir(addr, &["topic", "list"], b"");
    assert!(out.status.success(), "WEIR_BROKER alone: {out:?}");
    let out = run_weir(addr, &["--broker", wrong, "topic", "list"], b"");
    assert!(!out.status.success(), "the flag must win over WEIR_BROKER");
}

/// The Kafka listener's address, from the broker's log line.
fn kafka_addr(broker: &BrokerChild) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let log = std::fs::read_to_string(&broker.log).unwrap_or_default();
        let found = log
            .lines()
            .filter(|line| line.contains("Kafka listener listening"))
            .find_map(|line| line.split("local_addr=").nth(1))
            .map(|rest| {
                rest.split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string()
            });
        if let Some(addr) = found {
            return addr;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no Kafka listener in {log}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// `--protocol kafka` produces and consumes over the Kafka listener; what it sent is
/// read back over gRPC too.
#[test]
fn bench_drives_the_kafka_listener_too() {
    let root = tempfile::tempdir().unwrap();
    let broker = BrokerChild::start(&data_dir(root.path()), &[]);
    let kafka = kafka_addr(&broker);
    let json = |args: &[&str]| -> serde_json::Value {
        let out = broker.weir(args, b"");
        assert!(out.status.success(), "{out:?}");
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let sent = json(&[
        "bench",
        "produce",
        "--protocol",
        "kafka",
        "--kafka",
        &kafka,
        "--records",
        "3000",
        "--record-size",
        "50",
        "--partitions",
        "3",
        "--batch-size",
        "4096",
        "--output",
        "json",
    ]);
    assert_eq!(sent["records"], 3000);
    assert_eq!(sent["errors"], 0);
    assert!(sent["latency_ms"]["p50"].as_f64().unwrap() > 0.0);
    let read = json(&[
        "bench",
        "consume",
        "--protocol",
        "kafka",
        "--kafka",
        &kafka,
        "--records",
        "3000",
        "--output",
        "json",
    ]);
    assert_eq!(read["records"], 3000);
    assert!(read["mb_per_sec"].as_f64().unwrap() > 0.0);
    let over_grpc = json(&["bench", "consume", "--records", "3000", "--output", "json"]);
    assert_eq!(over_grpc["records"], 3000);
    // Fewer than stored: exactly that many are counted, though the fetch or
    // poll that reached them held more.
    let part = json(&[
        "bench",
        "consume",
        "--protocol",
        "kafka",
        "--kafka",
        &kafka,
        "--records",
        "1001",
        "--output",
        "json",
    ]);
    assert_eq!(part["records"], 1001);
    assert!(part["mb_per_sec"].as_f64().unwrap() > 0.0);
    let part = json(&["bench", "consume", "--records", "1001", "--output", "json"]);
    assert_eq!(part["records"], 1001);
    // e2e over Kafka: every record produced after the consumer started is
    // received once, its latency from its stamp.
    let both = json(&[
        "bench",
        "e2e",
        "--protocol",
        "kafka",
        "--kafka",
        &kafka,
        "--records",
        "500",
        "--record-size",
        "50",
        "--throughput",
        "5000",
        "--output",
        "json",
    ]);
    assert_eq!(both["mode"], "e2e");
    assert_eq!(both["records"], 500);
    assert!(both["latency_ms"]["p50"].as_f64().unwrap() > 0.0);
    let out = broker.weir(
        &[
            "bench",
            "e2e",
            "--protocol",
            "kafka",
            "--kafka",
            &kafka,
            "--records",
            "10",
            "--record-size",
            "4",
        ],
        b"",
    );
    assert_clean_failure(&out, "at least 8");
    broker.terminate();
}
