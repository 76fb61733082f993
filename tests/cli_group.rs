//! `weir consume --group` and `weir group` against a broker child: a member
//! killed with SIGKILL loses its partitions to the others within the session
//! timeout, committed offsets outlive a broker restart, and the group commands
//! list, describe, reset and delete.

#[path = "cli_broker_common/mod.rs"]
mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{assert_clean_failure, data_dir, run_weir, stdout, BrokerChild, WEIR};

/// A hang guard only: every wait ends on a condition.
const HANG_GUARD: Duration = Duration::from_secs(90);

/// A broker with a short session timeout, so a killed member is noticed soon.
fn start_broker(data: &Path) -> BrokerChild {
    let address_file = data.with_extension("addr");
    let mut command = Command::new(WEIR);
    command
        .args([
            "broker",
            "--listen",
            "127.0.0.1:0",
            "--kafka-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data)
        .arg("--address-file")
        .arg(&address_file)
        .env("WEIR_OFFSETS_TOPIC_PARTITIONS", "3")
        .env("WEIR_GROUP_SESSION_TIMEOUT_MS", "3000")
        .env("WEIR_GROUP_HEARTBEAT_INTERVAL_MS", "200")
        .env("WEIR_GROUP_INITIAL_REBALANCE_DELAY_MS", "0");
    BrokerChild::spawn(command, &address_file, &data.with_extension("log"))
}

fn ok(output: std::process::Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout(&output)
}

fn produce(broker: &BrokerChild, topic: &str, lines: &str) {
    ok(broker.weir(&["produce", topic], lines.as_bytes()));
}

fn describe(broker: &BrokerChild, group: &str) -> serde_json::Value {
    let text = ok(broker.weir(&["group", "describe", group, "--output", "json"], b""));
    serde_json::from_str(&text).unwrap()
}

/// How many partitions each member owns, smallest first; `[]` also while the
/// group does not exist yet.
fn shares_now(broker: &BrokerChild, group: &str) -> Vec<usize> {
    let output = broker.weir(&["group", "describe", group, "--output", "json"], b"");
    if !output.status.success() {
        return Vec::new();
    }
    shares(&serde_json::from_str(&stdout(&output)).unwrap())
}

fn shares(group: &serde_json::Value) -> Vec<usize> {
    let mut shares: Vec<usize> = group["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["assignment"].as_array().unwrap().len())
        .collect();
    shares.sort_unstable();
    shares
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + HANG_GUARD;
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `weir consume TOPIC --group GROUP --follow` as a child, its output in a file.
fn member(broker: &BrokerChild, topic: &str, group: &str, out: &Path) -> Child {
    Command::new(WEIR)
        .args(["consume", topic, "--group", group, "--follow"])
        .env("WEIR_BROKER", &broker.addr)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(out).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn a_killed_member_loses_its_partitions_and_a_stopped_one_commits_what_it_printed() {
    let root = tempfile::tempdir().unwrap();
    let broker = start_broker(&data_dir(root.path()));
    ok(broker.weir(&["topic", "create", "t", "--partitions", "4"], b""));
    let lines: String = (0..40).map(|i| format!("r{i}\n")).collect();
    produce(&broker, "t", &lines);

    let mut first = member(&broker, "t", "g", &root.path().join("first.out"));
    wait_for("the first member owns all four partitions", || {
        shares_now(&broker, "g") == vec![4]
    });
    let mut second = member(&broker, "t", "g", &root.path().join("second.out"));
    wait_for("two members own two partitions each", || {
        shares_now(&broker, "g") == vec![2, 2]
    });

    first.kill().unwrap();
    first.wait().unwrap();
    wait_for(
        "the killed member's partitions go to the survivor after the session timeout",
        || shares_now(&broker, "g") == vec![4],
    );
    // Whatever the killed member printed after its last commit is printed again
    // by the survivor; nothing is missed.
    wait_for(
        "every record was printed by one member or the other",
        || {
            let text = std::fs::read_to_string(root.path().join("first.out")).unwrap()
                + &std::fs::read_to_string(root.path().join("second.out")).unwrap();
            (0..40).all(|i| text.lines().any(|l| l == format!("r{i}")))
        },
    );
    // The wait above can end on the killed member's output alone, before the
    // survivor has read the partitions it took over; SIGTERM then would commit
    // where the killed member last committed. So wait until nothing is left
    // uncommitted that the survivor has not printed.
    wait_for(
        "the survivor printed every record the group has not committed",
        || {
            let text = std::fs::read_to_string(root.path().join("second.out")).unwrap();
            let lag: u64 = describe(&broker, "g")["partitions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["lag"].as_u64().unwrap())
                .sum();
            lag == 0 || (0..40).all(|i| text.lines().any(|l| l == format!("r{i}")))
        },
    );

    // SIGTERM: the member commits what it printed and leaves at once.
    let status = Command::new("kill")
        .args(["-TERM", &second.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(second.wait().unwrap().success());
    let group = describe(&broker, "g");
    assert_eq!(group["members"].as_array().unwrap().len(), 0, "{group}");
    for partition in group["partitions"].as_array().unwrap() {
        assert_eq!(partition["lag"], 0, "{group}");
    }
}

#[test]
fn committed_offsets_survive_a_restart_and_the_group_commands_work() {
    let root = tempfile::tempdir().unwrap();
    let data = data_dir(root.path());
    let broker = start_broker(&data);
    ok(broker.weir(&["topic", "create", "t", "--partitions", "1"], b""));
    produce(&broker, "t", "a\nb\nc\nd\n");

    // --max-records stops mid-way and commits only what it printed.
    let read = ok(broker.weir(&["consume", "t", "--group", "g", "--max-records", "1"], b""));
    assert_eq!(read, "a\n");
    let read = ok(broker.weir(&["consume", "t", "--group", "g"], b""));
    assert_eq!(read, "b\nc\nd\n");
    let read = ok(broker.weir(&["consume", "t", "--group", "g"], b""));
    assert_eq!(read, "", "caught up: nothing to print");

    let (status, log) = broker.terminate();
    assert!(status.success(), "{log}");
    let broker = start_broker(&data);
    produce(&broker, "t", "e\nf\n");
    let read = ok(broker.weir(&["consume", "t", "--group", "g"], b""));
    assert_eq!(
        read, "e\nf\n",
        "the group resumes at its commit after a restart"
    );

    let list = ok(broker.weir(&["group", "list", "--output", "json"], b""));
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list[0]["group_id"], "g", "{list}");
    assert_eq!(list[0]["state"], "Empty", "{list}");
    let group = describe(&broker, "g");
    assert_eq!(group["partitions"][0]["committed_offset"], 6, "{group}");
    assert_eq!(group["partitions"][0]["end_offset"], 6, "{group}");
    assert_eq!(group["partitions"][0]["lag"], 0, "{group}");
    let table = ok(broker.weir(&["group", "describe", "g"], b""));
    assert!(table.contains("LAG"), "{table}");

    ok(broker.weir(
        &[
            "group",
            "reset-offsets",
            "g",
            "--topic",
            "t",
            "--to-offset",
            "4",
        ],
        b"",
    ));
    let read = ok(broker.weir(&["consume", "t", "--group", "g"], b""));
    assert_eq!(read, "e\nf\n");
    ok(broker.weir(
        &[
            "group",
            "reset-offsets",
            "g",
            "--topic",
            "t",
            "--to-earliest",
        ],
        b"",
    ));
    let read = ok(broker.weir(&["consume", "t", "--group", "g", "--max-records", "2"], b""));
    assert_eq!(read, "a\nb\n");

    // A group with a member cannot be reset or deleted.
    let mut active = member(&broker, "t", "g", &root.path().join("active.out"));
    wait_for("the member joined", || shares_now(&broker, "g") == vec![1]);
    assert_clean_failure(
        &broker.weir(
            &["group", "reset-offsets", "g", "--topic", "t", "--to-latest"],
            b"",
        ),
        "g",
    );
    assert_clean_failure(&broker.weir(&["group", "delete", "g"], b""), "g");
    active.kill().unwrap();
    active.wait().unwrap();
    wait_for("the killed member is removed", || {
        shares_now(&broker, "g").is_empty()
    });
    let deleted = ok(broker.weir(&["group", "delete", "g"], b""));
    assert!(deleted.contains("deleted group g"), "{deleted}");
    assert_clean_failure(&broker.weir(&["group", "describe", "g"], b""), "g");
}

#[test]
fn bad_group_requests_are_one_line_errors() {
    let root = tempfile::tempdir().unwrap();
    let broker = start_broker(&data_dir(root.path()));
    ok(broker.weir(&["topic", "create", "t", "--partitions", "1"], b""));
    assert_clean_failure(&broker.weir(&["group", "describe", "nope"], b""), "nope");
    assert_clean_failure(
        &run_weir(
            &broker.addr,
            &["consume", "t", "--group", "g", "--offset", "3"],
            b"",
        ),
        "--offset",
    );
    assert_clean_failure(
        &broker.weir(&["consume", "missing", "--group", "g"], b""),
        "missing",
    );
    assert_clean_failure(
        &broker.weir(&["group", "reset-offsets", "g", "--topic", "t"], b""),
        "--to-",
    );
}
