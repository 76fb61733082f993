//! `weir topk` end to end against a broker child on 127.0.0.1:0: the exact top 10 of real text
//! read to the end, bounds that hold the truth on a small budget, a window that counts only its
//! records, two processes of one group that share the partitions and show one answer, and bad
//! arguments that fail in one line.

#[path = "cli_broker_common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{assert_clean_failure, data_dir, stderr, BrokerChild, WEIR};
use serde_json::Value;

/// Words of this repository's README and of the sketch and window sources: real text, with
/// the heavy head and long tail of natural language.
fn real_words() -> Vec<String> {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut text = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    for dir in ["processors/src/sketch", "processors/src/window"] {
        let mut files: Vec<_> = std::fs::read_dir(format!("{root}/{dir}"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "rs"))
            .collect();
        files.sort();
        for file in files {
            text.push_str(&std::fs::read_to_string(file).unwrap());
        }
    }
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.to_ascii_lowercase())
        .collect()
}

/// The true top `k`, heaviest first, ties by key bytes (as `weir topk` ranks).
fn true_top(words: &[String], k: usize) -> Vec<(String, u64)> {
    let mut counts: HashMap<&str, u64> = HashMap::new();
    for word in words {
        *counts.entry(word).or_default() += 1;
    }
    let mut ranked: Vec<(String, u64)> = counts
        .into_iter()
        .map(|(w, n)| (w.to_string(), n))
        .collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    ranked.truncate(k);
    ranked
}

/// `WORD\t{"word": WORD}` lines: keyed by the word, and the word in a field too.
fn produce_words(broker: &BrokerChild, topic: &str, words: &[String]) {
    let out = broker.weir(&["topic", "create", topic, "--partitions", "3"], b"");
    assert!(out.status.success(), "{out:?}");
    let mut lines = String::new();
    for word in words {
        lines.push_str(&format!("{word}\t{{\"word\":\"{word}\",\"n\":1}}\n"));
    }
    let out = broker.weir(
        &["produce", topic, "--key-separator", "\t"],
        lines.as_bytes(),
    );
    assert!(out.status.success(), "{out:?}");
}

fn topk_json(broker: &BrokerChild, args: &[&str]) -> Value {
    let out = broker.weir(
        &[&["topk"][..], args, &["--until-end", "--output", "json"]].concat(),
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {:?}", out))
}

/// (key, count, error) of each row.
fn rows(view: &Value) -> Vec<(String, u64, u64)> {
    view["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row["key"].as_str().unwrap().to_string(),
                row["count"].as_u64().unwrap(),
                row["error"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn topk_until_end_gives_the_exact_top_10_of_real_text_and_true_bounds_on_a_small_budget() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerChild::start(&data_dir(dir.path()), &[]);
    let words = real_words();
    assert!(words.len() > 20_000, "{} words", words.len());
    produce_words(&broker, "text", &words);
    let expected: Vec<(String, u64, u64)> = true_top(&words, 10)
        .into_iter()
        .map(|(w, n)| (w, n, 0))
        .collect();

    let by_key = topk_json(&broker, &["text", "--memory", "1MiB"]);
    assert_eq!(rows(&by_key), expected);
    assert_eq!(by_key["records_read"], words.len() as u64);
    assert_eq!(by_key["partitions_reported"], 3);
    assert_eq!(by_key["window"], Value::Null, "all time");
    assert!(
        by_key["rows"][0].get("change").is_none(),
        "no change in a view printed once"
    );

    let by_field = topk_json(
        &broker,
        &["text", "--key-field", "word", "--memory", "1MiB"],
    );
    assert_eq!(
        rows(&by_field),
        expected,
        "the same words, from the JSON value"
    );

    // 4 KiB holds a few hundred of the thousands of distinct words: counts are estimates,
    // and each must bound the truth.
    let truth: HashMap<String, u64> = true_top(&words, usize::MAX).into_iter().collect();
    let small = topk_json(&broker, &["text", "--memory", "4KiB"]);
    let small_rows = rows(&small);
    assert_eq!(small_rows.len(), 10);
    assert!(
        small_rows.iter().any(|(_, _, error)| *error > 0),
        "4 KiB should not be exact on {} distinct words",
        truth.len()
    );
    for (key, count, error) in &small_rows {
        let true_count = truth[key];
        assert!(
            count - error <= true_count && true_count <= *count,
            "{key}: {true_count} outside {}..={count}",
            count - error
        );
    }
    broker.terminate();
}

#[test]
fn a_window_counts_only_the_records_of_its_time() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerChild::start(&data_dir(dir.path()), &[]);
    let out = broker.weir(&["topic", "create", "clicks", "--partitions", "2"], b"");
    assert!(out.status.success(), "{out:?}");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let producer = weir_client::Producer::connect(&broker.addr, Default::default())
            .await
            .unwrap();
        let mut deliveries = Vec::new();
        // 20 minutes ago: "early" is the heaviest key of all time...
        for (key, n, at) in [
            ("early", 50, now_ms - 20 * 60_000),
            ("late", 30, now_ms),
            ("other", 10, now_ms - 60_000),
        ] {
            for _ in 0..n {
                let record = weir_client::ProducerRecord::new("clicks", b"v")
                    .with_key(key.as_bytes())
                    .with_timestamp(at);
                deliveries.push(producer.send(record).await.unwrap());
            }
        }
        for delivery in deliveries {
            delivery.await.unwrap();
        }
    });
    let all_time = topk_json(&broker, &["clicks", "--k", "3"]);
    assert_eq!(
        rows(&all_time),
        vec![
            ("early".to_string(), 50, 0),
            ("late".to_string(), 30, 0),
            ("other".to_string(), 10, 0)
        ]
    );
    // ...but not of the last five minutes.
    let window = topk_json(
        &broker,
        &["clicks", "--k", "3", "--window", "5m", "--slide", "1m"],
    );
    assert_eq!(
        rows(&window),
        vec![("late".to_string(), 30, 0), ("other".to_string(), 10, 0)]
    );
    let start = window["window"]["start_ms"].as_i64().unwrap();
    let end = window["window"]["end_ms"].as_i64().unwrap();
    assert_eq!(end - start, 5 * 60_000);
    assert!(
        start <= now_ms - 60_000 && now_ms < end,
        "{start}..{end} holds the late records"
    );
    broker.terminate();
}

/// A live `weir topk` child whose JSON views arrive on a channel.
struct LiveTopk {
    child: Child,
    views: mpsc::Receiver<Value>,
}

impl LiveTopk {
    fn start(addr: &str, args: &[&str]) -> LiveTopk {
        let mut child = Command::new(WEIR)
            .args(["topk"])
            .args(args)
            .args(["--output", "json"])
            .env("WEIR_BROKER", addr)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn weir topk");
        let stdout = child.stdout.take().unwrap();
        let (sender, views) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let view: Value = serde_json::from_str(&line).expect("one JSON view per line");
                if sender.send(view).is_err() {
                    break;
                }
            }
        });
        LiveTopk { child, views }
    }

    /// The first view that `done` accepts, failing at `deadline`.
    fn wait_for(&self, deadline: Instant, done: impl Fn(&Value) -> bool) -> Value {
        let mut last = Value::Null;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.views.recv_timeout(left) {
                Ok(view) if done(&view) => return view,
                Ok(view) => last = view,
                Err(_) => panic!("no view as wanted before the deadline; the last: {last}"),
            }
        }
    }
}

impl Drop for LiveTopk {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn two_processes_of_one_group_share_the_partitions_and_show_one_answer() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerChild::start(&data_dir(dir.path()), &[]);
    let words = real_words();
    produce_words(&broker, "shared", &words);
    let expected: Vec<(String, u64, u64)> = true_top(&words, 5)
        .into_iter()
        .map(|(w, n)| (w, n, 0))
        .collect();
    let args = [
        "shared",
        "--group",
        "trending",
        "--from-beginning",
        "--slide",
        "1s",
        "--k",
        "5",
        "--memory",
        "1MiB",
    ];
    let first = LiveTopk::start(&broker.addr, &args);
    let second = LiveTopk::start(&broker.addr, &args);
    let deadline = Instant::now() + Duration::from_secs(120);
    let complete = |view: &Value| {
        view["partitions_reported"] == 3
            && rows(view) == expected
            && view["records_read"].as_u64() > Some(0)
    };
    let a = first.wait_for(deadline, complete);
    let b = second.wait_for(deadline, complete);
    // Each read only its own partitions, yet shows all three merged.
    let read = |v: &Value| v["records_read"].as_u64().unwrap();
    assert!(
        read(&a) < words.len() as u64 || read(&b) < words.len() as u64,
        "{a} {b}"
    );
    let topics = broker.weir(&["topic", "list"], b"");
    let listed = String::from_utf8_lossy(&topics.stdout);
    assert!(listed.contains("trending.topk"), "{topics:?}");
    // The group's window sketches are kept in a changelog a restarted process
    // restores them from.
    assert!(listed.contains("trending-topk-changelog"), "{topics:?}");
    drop((first, second));
    broker.terminate();
}

#[test]
fn bad_arguments_fail_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerChild::start(&data_dir(dir.path()), &[]);
    let out = broker.weir(&["topk", "missing", "--until-end"], b"");
    assert_clean_failure(&out, "topic \"missing\" does not exist");
    let out = broker.weir(&["topk", "missing", "--window", "5m", "--slide", "7s"], b"");
    assert_clean_failure(&out, "must divide --window");
    let out = broker.weir(&["topk", "missing", "--k", "0"], b"");
    assert_clean_failure(&out, "--k must be at least 1");
    let out = broker.weir(&["topk", "missing", "--memory", "10"], b"");
    assert_clean_failure(&out, "cannot hold a sketch");
    let out = broker.weir(&["topk", "missing", "--until-end", "--group", "g"], b"");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot be used with"),
        "{}",
        stderr(&out)
    );
    broker.terminate();
}
