//! Three `weir broker` processes as one cluster, for the tests that kill,
//! stop and restart them: start and restart a node, ask any live one for
//! the cluster status, wait for a condition, read a partition's `.log` bytes.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::cli_broker_common::{run_weir, stderr, stdout, BrokerChild, WEIR};

pub struct Node {
    pub id: u64,
    pub port: u16,
    pub data: PathBuf,
    pub child: Option<BrokerChild>,
    /// SIGSTOPped: asked nothing until resumed (a CLI call to it would hang
    /// until the call times out, stretching every wait of the harness).
    pub stopped: bool,
}

impl Node {
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

pub struct ProcessCluster {
    pub root: tempfile::TempDir,
    pub nodes: Vec<Node>,
    peers: String,
    /// Extra `weir broker` arguments every node starts with.
    args: Vec<String>,
    /// Whether the data outlives the test (see `keep`).
    kept: bool,
}

impl Drop for ProcessCluster {
    fn drop(&mut self) {
        // Brokers first (their handles kill them), then the directory.
        self.nodes.clear();
        if self.kept {
            let root = std::mem::replace(&mut self.root, tempfile::tempdir().unwrap());
            let _ = root.keep();
        }
    }
}

impl ProcessCluster {
    /// Three brokers on ports of their own, each with `args`; returns once
    /// every one has registered.
    pub fn start(args: &[&str]) -> ProcessCluster {
        let root = tempfile::tempdir().unwrap();
        let held: Vec<TcpListener> = (0..3)
            .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let nodes: Vec<Node> = held
            .iter()
            .enumerate()
            .map(|(i, l)| Node {
                id: i as u64 + 1,
                port: l.local_addr().unwrap().port(),
                data: root.path().join(format!("data-{}", i + 1)),
                child: None,
                stopped: false,
            })
            .collect();
        drop(held);
        let peers = nodes
            .iter()
            .map(|n| format!("{}=127.0.0.1:{}", n.id, n.port))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = ProcessCluster {
            root,
            nodes,
            peers,
            args: args.iter().map(|a| a.to_string()).collect(),
            // Kept whatever the outcome, a timed-out wait included.
            kept: std::env::var_os("WEIR_CHAOS_KEEP").is_some(),
        };
        if cluster.kept {
            eprintln!("data and broker logs in {}", cluster.root.path().display());
        }
        for id in 1..=3 {
            cluster.start_node(id);
        }
        wait_for("every broker registered", Duration::from_secs(60), || {
            cluster.status().is_some_and(|s| {
                s["brokers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|b| b["registered"] == true)
            })
        });
        cluster
    }

    /// Every broker's address, comma-separated: a client's bootstrap list.
    pub fn bootstrap(&self) -> String {
        self.nodes
            .iter()
            .map(Node::addr)
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn node(&self, id: u64) -> &Node {
        self.nodes.iter().find(|n| n.id == id).unwrap()
    }

    fn node_mut(&mut self, id: u64) -> &mut Node {
        self.nodes.iter_mut().find(|n| n.id == id).unwrap()
    }

    /// Starts (or restarts) broker `id` on its port and data directory.
    pub fn start_node(&mut self, id: u64) {
        let root = self.root.path().to_path_buf();
        let (peers, args) = (self.peers.clone(), self.args.clone());
        let node = self.node_mut(id);
        let address_file = root.join(format!("node-{id}.addr"));
        let mut command = Command::new(WEIR);
        command
            .args(["broker", "--listen"])
            .arg(node.addr())
            .args(["--kafka-listen", "", "--metrics-listen", "", "--node-id"])
            .arg(id.to_string())
            .args(["--peers", &peers, "--data-dir"])
            .arg(&node.data)
            .arg("--address-file")
            .arg(&address_file)
            .args(&args)
            .env("WEIR_REPLICA_LAG_TIME_MAX_MS", "2000");
        node.child = Some(BrokerChild::spawn(
            command,
            &address_file,
            &root.join(format!("node-{id}.log")),
        ));
        node.stopped = false;
    }

    /// SIGKILL: no clean shutdown.
    pub fn kill(&mut self, id: u64) {
        self.node_mut(id).child.take().unwrap().kill();
    }

    /// SIGKILLs every broker with one `kill` call, so none outlives the
    /// others by more than the signal's delivery.
    pub fn kill_all(&mut self) {
        let pids: Vec<String> = self
            .nodes
            .iter()
            .filter_map(|n| n.child.as_ref().map(|c| c.child.id().to_string()))
            .collect();
        assert!(Command::new("kill")
            .arg("-KILL")
            .args(&pids)
            .status()
            .unwrap()
            .success());
        for node in &mut self.nodes {
            if let Some(child) = node.child.take() {
                child.kill();
            }
        }
    }

    /// Stops every running broker with SIGTERM and checks each stopped
    /// cleanly.
    pub fn terminate_all(&mut self) {
        for node in &mut self.nodes {
            if let Some(child) = node.child.take() {
                let (status, log) = child.terminate();
                assert!(
                    status.success(),
                    "broker {} did not stop cleanly: {log}",
                    node.id
                );
            }
        }
    }

    /// Keeps the data directories and broker logs after the test (for a
    /// failure to be looked at); returns where they are.
    pub fn keep(&mut self) -> PathBuf {
        self.kept = true;
        self.root.path().to_path_buf()
    }

    /// SIGSTOP (`stop`) or SIGCONT.
    pub fn pause(&mut self, id: u64, stop: bool) {
        let node = self.node_mut(id);
        let pid = node.child.as_ref().unwrap().child.id().to_string();
        let sig = if stop { "-STOP" } else { "-CONT" };
        assert!(Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success());
        node.stopped = stop;
    }

    /// The cluster status as the first live, running broker answers it.
    pub fn status(&self) -> Option<serde_json::Value> {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some() && !n.stopped)
            .find_map(|n| {
                let output = run_weir(&n.addr(), &["cluster", "status", "--output", "json"], b"");
                output
                    .status
                    .success()
                    .then(|| serde_json::from_str(&stdout(&output)).unwrap())
            })
    }

    /// The status as the controller answers it: only it knows which other
    /// brokers are alive.
    pub fn controller_status(&self) -> Option<serde_json::Value> {
        let controller = self.status()?["controller_id"].as_u64()?;
        let node = self.node(controller);
        if node.child.is_none() || node.stopped {
            return None;
        }
        let output = run_weir(
            &node.addr(),
            &["cluster", "status", "--output", "json"],
            b"",
        );
        output
            .status
            .success()
            .then(|| serde_json::from_str(&stdout(&output)).unwrap())
    }

    /// `topic`'s partition `partition` as the status names it: leader and ISR.
    pub fn partition(&self, topic: &str, partition: u32) -> Option<(u64, Vec<u64>)> {
        let status = self.status()?;
        let p = status["partitions"]
            .as_array()?
            .iter()
            .find(|p| p["topic"] == topic && p["partition"] == partition)?;
        let isr = p["isr"]
            .as_array()?
            .iter()
            .filter_map(|v| v.as_u64())
            .collect();
        Some((p["leader"].as_u64()?, isr))
    }

    /// Creates `topic` with three replicas and `min.insync.replicas=2`, and
    /// waits until each partition has a leader and all three in sync.
    pub fn create_topic(&self, topic: &str, partitions: u32) {
        let created = run_weir(
            &self.bootstrap(),
            &[
                "topic",
                "create",
                topic,
                "--partitions",
                &partitions.to_string(),
                "--replication-factor",
                "3",
                "--config",
                "min.insync.replicas=2",
            ],
            b"",
        );
        assert!(created.status.success(), "{}", stderr(&created));
        self.wait_in_sync(topic, partitions, Duration::from_secs(60));
    }

    /// Waits until a controller sees all three brokers alive and every
    /// partition of `topic` has three in-sync replicas.
    pub fn wait_in_sync(&self, topic: &str, partitions: u32, limit: Duration) {
        wait_for("a controller that sees every broker", limit, || {
            self.controller_status().is_some_and(|s| {
                s["brokers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|b| b["alive"] == true)
            })
        });
        wait_for("every partition fully in sync", limit, || {
            (0..partitions).all(|p| {
                self.partition(topic, p)
                    .is_some_and(|(leader, isr)| leader != 0 && isr.len() == 3)
            })
        });
    }
}

pub fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A partition's `.log` files under `data`, concatenated in offset order.
pub fn log_bytes(data: &Path, topic: &str, partition: u32) -> Vec<u8> {
    let dir = weir_broker::partition_dir(data, topic, partition);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|f| std::fs::read(f).unwrap())
        .collect()
}

/// The first `below` offsets of a partition's log as stored: the bytes of
/// its whole batches whose base offset is below `below` (RecordBatch v2:
/// base offset in bytes 0..8, the length of the rest in 8..12).
pub fn log_bytes_below(data: &Path, topic: &str, partition: u32, below: u64) -> Vec<u8> {
    let bytes = log_bytes(data, topic, partition);
    let mut end = 0;
    while end + 12 <= bytes.len() {
        let base = u64::from_be_bytes(bytes[end..end + 8].try_into().unwrap());
        let length = u32::from_be_bytes(bytes[end + 8..end + 12].try_into().unwrap()) as usize;
        if base >= below || end + 12 + length > bytes.len() {
            break;
        }
        end += 12 + length;
    }
    bytes[..end].to_vec()
}

/// Where `replica` differs from `leader`, naming the first byte that differs
/// (whole byte arrays are too long for a message); `None` if they are equal.
pub fn byte_difference(leader: &[u8], replica: &[u8]) -> Option<String> {
    if leader == replica {
        return None;
    }
    let first = leader
        .iter()
        .zip(replica)
        .position(|(a, b)| a != b)
        .unwrap_or(leader.len().min(replica.len()));
    Some(format!(
        "{} bytes against the leader's {}, first difference at byte {first}: {:?} against {:?}",
        replica.len(),
        leader.len(),
        &replica[first..(first + 64).min(replica.len())],
        &leader[first..(first + 64).min(leader.len())],
    ))
}
