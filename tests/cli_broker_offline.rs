//! The real broker after a `kill -9` and a damaged sealed segment below the recovery
//! point of one partition: it starts, serves the healthy partition, shows the damaged one
//! offline with its cause (text and JSON), answers produce to it with one clear error;
//! `weir log repair` refuses while the broker runs and, once it stopped, brings the
//! partition back at the next start. A second broker, `weir log dump` and
//! `weir sql --data-dir` refuse the running broker's data directory, naming it.

#[path = "cli_broker_common/mod.rs"]
mod common;

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{assert_clean_failure, data_dir, stderr, stdout, BrokerChild, WEIR};
use serde_json::Value;

fn segment_logs(dir: &Path) -> Vec<PathBuf> {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
        .collect();
    logs.sort();
    logs
}

fn weir_local(args: &[&str]) -> std::process::Output {
    Command::new(WEIR).args(args).output().unwrap()
}

#[test]
fn a_damaged_partition_goes_offline_and_weir_log_repair_brings_it_back() {
    let root = tempfile::tempdir().unwrap();
    let data = data_dir(root.path());
    let broker = BrokerChild::start(&data, &[]);
    let out = broker.weir(
        &[
            "topic",
            "create",
            "t",
            "--partitions",
            "2",
            "--config",
            "segment.bytes=1024",
        ],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // One produce call is one batch: eight of about 500 bytes roll 1 KiB segments.
    for _ in 0..8 {
        let lines: String = (0..5)
            .map(|i| format!("{i} {}\n", "v".repeat(100)))
            .collect();
        for partition in ["0", "1"] {
            let out = broker.weir(
                &["produce", "t", "--partition", partition],
                lines.as_bytes(),
            );
            assert!(out.status.success(), "{}", stderr(&out));
        }
    }
    broker.kill();

    let damaged = data.join("t-1");
    let logs = segment_logs(&damaged);
    assert!(logs.len() >= 3, "{logs:?}");
    let len = std::fs::metadata(&logs[0]).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&logs[0])
        .unwrap()
        .set_len(len - 5)
        .unwrap();

    let broker = BrokerChild::start(&data, &[]);
    let out = broker.weir(&["topic", "describe", "t"], b"");
    let text = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    let row_of = |p: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(p))
            .unwrap_or_default()
            .to_string()
    };
    assert!(row_of("0").ends_with("online"), "{text}");
    assert!(row_of("1").contains("offline: segment"), "{text}");
    let out = broker.weir(&["topic", "describe", "t", "--output", "json"], b"");
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["partitions"][0]["online"], true);
    assert_eq!(json["partitions"][1]["online"], false);
    let cause = json["partitions"][1]["offline_cause"].as_str().unwrap();
    assert!(cause.contains("below the recovery point"), "{cause}");

    let out = broker.weir(&["produce", "t", "--partition", "0"], b"after\n");
    assert!(out.status.success(), "{}", stderr(&out));
    let out = broker.weir(&["consume", "t", "--partition", "0", "--offset", "40"], b"");
    assert_eq!(stdout(&out), "after\n");
    assert_clean_failure(
        &broker.weir(&["produce", "t", "--partition", "1"], b"lost\n"),
        "partition 1 is offline",
    );

    // The running broker owns the data directory and its partitions.
    let pid = format!("pid {}", broker.child.id());
    let second = weir_local(&[
        "broker",
        "--listen",
        "127.0.0.1:0",
        "--kafka-listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert_clean_failure(&second, "is in use: locked by");
    assert!(stderr(&second).contains(&pid), "{}", stderr(&second));
    for args in [
        vec!["log", "dump", data.join("t-0").to_str().unwrap()],
        vec!["log", "repair", damaged.to_str().unwrap()],
        vec!["sql", "--data-dir", data.to_str().unwrap(), "SELECT 1"],
    ] {
        let out = weir_local(&args);
        assert_clean_failure(&out, "is in use: locked by");
        assert!(stderr(&out).contains(&pid), "{args:?}: {}", stderr(&out));
    }
    let (status, _) = broker.terminate();
    assert!(status.success());

    let out = weir_local(&["log", "repair", damaged.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("repaired"), "{}", stdout(&out));

    let broker = BrokerChild::start(&data, &[]);
    let out = broker.weir(&["topic", "describe", "t", "--output", "json"], b"");
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["partitions"][1]["online"], true, "{json}");
    let out = broker.weir(&["produce", "t", "--partition", "1"], b"back\n");
    assert!(out.status.success(), "{}", stderr(&out));
    broker.terminate();
}
