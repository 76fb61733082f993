//! `weir broker --node-id --peers` as three real processes, and `weir
//! cluster status`: they elect a controller and register; SIGKILL of the
//! controller gets a new one elected from the two left, which reports the
//! killed broker as not alive, and the killed broker rejoins on restart.

mod cli_broker_common;

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use cli_broker_common::{run_weir, stdout, BrokerChild, WEIR};

fn start(root: &Path, id: u64, port: u16, peers: &str) -> BrokerChild {
    let data = root.join(format!("node-{id}"));
    let address_file = root.join(format!("node-{id}.addr"));
    let mut command = Command::new(WEIR);
    command
        .args(["broker", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["--kafka-listen", "", "--metrics-listen", "", "--node-id"])
        .arg(id.to_string())
        .args(["--peers", peers, "--data-dir"])
        .arg(&data)
        .arg("--address-file")
        .arg(&address_file);
    BrokerChild::spawn(command, &address_file, &root.join(format!("node-{id}.log")))
}

fn status(addr: &str) -> Option<serde_json::Value> {
    let output = run_weir(addr, &["cluster", "status", "--output", "json"], b"");
    output
        .status
        .success()
        .then(|| serde_json::from_str(&stdout(&output)).unwrap())
}

/// Polls `addr`'s status until `check` holds.
fn wait_for(
    addr: &str,
    what: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = status(addr) {
            if check(&status) {
                return status;
            }
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what} at {addr}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn broker(status: &serde_json::Value, id: u64) -> &serde_json::Value {
    status["brokers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["node_id"] == id)
        .unwrap()
}

#[test]
fn three_broker_processes_elect_fail_over_on_sigkill_and_rejoin() {
    let root = tempfile::tempdir().unwrap();
    let held: Vec<TcpListener> = (0..3)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let ports: Vec<u16> = held
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect();
    drop(held);
    let peers = (1..=3)
        .map(|id| format!("{id}=127.0.0.1:{}", ports[id - 1]))
        .collect::<Vec<_>>()
        .join(",");
    let mut children: Vec<Option<BrokerChild>> = (1..=3)
        .map(|id| Some(start(root.path(), id, ports[id as usize - 1], &peers)))
        .collect();
    let addr = |id: u64| format!("127.0.0.1:{}", ports[id as usize - 1]);

    let first = wait_for(
        &addr(1),
        "a controller with every broker registered and alive",
        |s| {
            s["controller_id"].is_u64()
                && s["brokers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|b| b["registered"] == true)
        },
    );
    let controller = first["controller_id"].as_u64().unwrap();
    wait_for(
        &addr(controller),
        "the controller to see all three alive",
        |s| {
            s["brokers"]
                .as_array()
                .unwrap()
                .iter()
                .all(|b| b["alive"] == true)
        },
    );

    // A topic placed on all three, so that the kill leaves partitions to
    // lead elsewhere and under-replicated.
    let created = run_weir(
        &addr(controller),
        &[
            "topic",
            "create",
            "placed",
            "--partitions",
            "3",
            "--replication-factor",
            "3",
        ],
        b"",
    );
    assert!(created.status.success(), "{created:?}");
    wait_for(&addr(controller), "the topic's partitions led", |s| {
        let partitions = s["partitions"].as_array().unwrap();
        partitions.len() == 3 && partitions.iter().all(|p| p["leader"].is_u64())
    });

    // The table form names the controller.
    let table = stdout(&run_weir(&addr(controller), &["cluster", "status"], b""));
    assert!(
        table.contains(&format!("controller: {controller}")),
        "{table}"
    );

    children[controller as usize - 1].take().unwrap().kill();
    let survivor = (1..=3).find(|id| *id != controller).unwrap();
    let after = wait_for(&addr(survivor), "a new controller", |s| {
        s["controller_id"].as_u64().is_some_and(|c| c != controller)
    });
    let second = after["controller_id"].as_u64().unwrap();
    let seen = wait_for(&addr(second), "the killed broker reported dead", |s| {
        broker(s, controller)["alive"] == false
    });
    assert_eq!(broker(&seen, controller)["registered"], true);
    // Its partitions get new leaders from the ISR; all stand out as under-replicated.
    wait_for(&addr(second), "new leaders, under-replicated", |s| {
        s["partitions"].as_array().unwrap().iter().all(|p| {
            p["leader"].as_u64().is_some_and(|l| l != controller) && p["under_replicated"] == true
        })
    });

    children[controller as usize - 1] = Some(start(
        root.path(),
        controller,
        ports[controller as usize - 1],
        &peers,
    ));
    wait_for(
        &addr(second),
        "the restarted broker alive and back in every ISR",
        |s| {
            broker(s, controller)["alive"] == true
                && s["partitions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|p| p["under_replicated"] == false)
        },
    );

    // `topic describe`, asked of any broker, reports the cluster's placement
    // (leader, epoch, replicas, ISR), not the answering broker's own replica.
    // Once preferred leaders are back nothing moves, and each broker's view
    // of the metadata catches up with the controller's.
    let settled = wait_for(&addr(second), "preferred leaders back", |s| {
        s["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["leader"] == p["replicas"][0])
    });
    let placed = settled["partitions"].as_array().unwrap();
    let topic = "placed";
    let mismatch = |id: u64| -> Option<String> {
        let output = run_weir(
            &addr(id),
            &["topic", "describe", topic, "--output", "json"],
            b"",
        );
        assert!(output.status.success(), "{output:?}");
        let described: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
        for p in placed.iter().filter(|p| p["topic"] == topic) {
            let d = described["partitions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|d| d["partition"] == p["partition"])?;
            for field in ["leader", "leader_epoch", "replicas", "isr"] {
                if d[field] != p[field] {
                    return Some(format!("{field} of {p}: {described}"));
                }
            }
        }
        None
    };
    for id in 1..=3 {
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Some(differs) = mismatch(id) {
            assert!(Instant::now() < deadline, "broker {id} describes {differs}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    // `weir bench consume` asked of any broker reads every record the leaders hold:
    // its offsets are the leaders', not the answering broker's replica (a
    // follower's high watermark trails the leader's).
    let produced = run_weir(
        &addr(second),
        &[
            "bench",
            "produce",
            "--topic",
            topic,
            "--records",
            "3000",
            "--acks",
            "all",
        ],
        b"",
    );
    assert!(produced.status.success(), "{produced:?}");
    for id in 1..=3 {
        let output = run_weir(
            &addr(id),
            &[
                "bench",
                "consume",
                "--topic",
                topic,
                "--records",
                "3000",
                "--output",
                "json",
            ],
            b"",
        );
        assert!(output.status.success(), "{output:?}");
        let report: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
        assert_eq!(report["records"], 3000, "asked of broker {id}: {report}");
    }

    // A broker in no cluster says so, with a failing exit code.
    let data = root.path().join("alone");
    let alone = BrokerChild::start(&data, &[]);
    let output = alone.weir(&["cluster", "status"], b"");
    assert!(!output.status.success());
    assert!(
        cli_broker_common::stderr(&output).contains("not in a cluster"),
        "{}",
        cli_broker_common::stderr(&output)
    );
}

#[test]
fn a_node_id_missing_from_peers_is_refused_before_the_broker_starts() {
    let root = tempfile::tempdir().unwrap();
    let output = Command::new(WEIR)
        .args([
            "broker",
            "--node-id",
            "4",
            "--peers",
            "1=127.0.0.1:1,2=127.0.0.1:2",
            "--data-dir",
        ])
        .arg(root.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("node id 4 is not among them"), "{stderr}");
}
