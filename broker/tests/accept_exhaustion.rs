//! A listener out of file descriptors: accept(2) fails with EMFILE for as
//! long as none is free, and the connection waits in the backlog. The Kafka
//! listener, and the gRPC one (which tonic used to retry at once, spinning),
//! warn that they cannot accept (rate-limited and paused after,
//! `accept_error.rs`, whose unit tests check the pauses and the rate), keep
//! serving the connections they have, and serve new ones again once
//! descriptors are free, without a restart.
//!
//! The broker runs in a child process (this test binary again) whose
//! `RLIMIT_NOFILE` is lowered to a few above what it has open once started,
//! so only its accepts run out; the test drives it from this process.

mod common;
mod kafka_support;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use kafka_protocol::messages::ApiVersionsRequest;
use tokio::net::TcpStream;

use common::config;
use kafka_support::{start_broker_with, KafkaWire};
use weir_client::Admin;

/// Set in the child's environment: it runs the broker.
const CHILD: &str = "WEIR_TEST_DESCRIPTOR_STARVED_BROKER";
/// Descriptors the child may open past those it has once started.
const HEADROOM: u64 = 3;
/// Generous: each phase is expected to take milliseconds.
const PHASE_MAX: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_the_kafka_listener_warns_keeps_serving_and_accepts_again() {
    if std::env::var_os(CHILD).is_some() {
        return starved_broker().await;
    }
    let mut child = StarvedBroker::start(
        "out_of_descriptors_the_kafka_listener_warns_keeps_serving_and_accepts_again",
    );
    let kafka = child.kafka;

    // A client served before the descriptors run out.
    let mut working = KafkaWire::connect(kafka).await;
    assert_eq!(
        working
            .call(3, &ApiVersionsRequest::default())
            .await
            .error_code,
        0
    );
    // Silent sockets past the headroom: the child accepts a few, then
    // accept(2) fails and the rest wait in the backlog.
    let silent = silent_sockets(kafka).await;
    child.wait_for_emfile_warning("kafka");
    // The connection it has is served while it cannot accept.
    assert_eq!(
        working
            .call(3, &ApiVersionsRequest::default())
            .await
            .error_code,
        0
    );

    // Closing the silent sockets frees the child's descriptors: a new client
    // is accepted and served (`call` fails the test past its bound).
    drop(silent);
    let mut later = KafkaWire::connect(kafka).await;
    assert_eq!(
        later
            .call(3, &ApiVersionsRequest::default())
            .await
            .error_code,
        0
    );
    drop((working, later));
    child.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_the_grpc_listener_warns_keeps_serving_and_accepts_again() {
    if std::env::var_os(CHILD).is_some() {
        return starved_broker().await;
    }
    let mut child = StarvedBroker::start(
        "out_of_descriptors_the_grpc_listener_warns_keeps_serving_and_accepts_again",
    );
    let grpc = child.grpc.to_string();
    let working = Admin::connect(&grpc).await.unwrap();
    listed(&working).await;
    let silent = silent_sockets(child.grpc).await;
    child.wait_for_emfile_warning("grpc");
    listed(&working).await;

    drop(silent);
    let later = tokio::time::timeout(PHASE_MAX, Admin::connect(&grpc))
        .await
        .expect("no gRPC connection within the phase bound")
        .unwrap();
    listed(&later).await;
    drop((working, later));
    child.stop();
}

/// Lists topics through `admin` within the phase bound.
async fn listed(admin: &Admin) {
    tokio::time::timeout(PHASE_MAX, admin.list_topics())
        .await
        .expect("no answer within the phase bound")
        .unwrap();
}

/// More sockets to `addr` than the child has descriptors left for; they
/// send nothing.
async fn silent_sockets(addr: SocketAddr) -> Vec<TcpStream> {
    let mut silent = Vec::new();
    for _ in 0..HEADROOM + 8 {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }
    silent
}

/// The child process and what it says.
struct StarvedBroker {
    child: std::process::Child,
    kafka: SocketAddr,
    grpc: SocketAddr,
    log: mpsc::Receiver<String>,
    warnings: Vec<String>,
}

impl StarvedBroker {
    /// Runs this test binary's test `name` as the child.
    fn start(name: &str) -> StarvedBroker {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([name, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (kafka, grpc) = child_addresses(child.stdout.take().unwrap());
        let log = lines_of(child.stderr.take().unwrap());
        StarvedBroker {
            child,
            kafka,
            grpc,
            log,
            warnings: Vec::new(),
        }
    }

    /// Waits for the warning that `listener` cannot accept, and checks it
    /// names the cause.
    fn wait_for_emfile_warning(&mut self, listener: &str) {
        let warning = loop {
            let line = self.log.recv_timeout(PHASE_MAX).unwrap_or_else(|_| {
                panic!("no accept warning in the child's log within the phase bound")
            });
            if line.contains("cannot accept a connection") {
                self.warnings.push(line.clone());
                break line;
            }
        };
        assert!(
            warning.contains(&format!("listener=\"{listener}\"")),
            "{warning}"
        );
        assert!(warning.contains("os error 24"), "not EMFILE: {warning}");
    }

    /// Closes the child's stdin, which stops it; its exit says it shut down
    /// cleanly.
    fn stop(mut self) {
        drop(self.child.stdin.take());
        let mut child = self.child;
        let (exited, status) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = exited.send(child.wait());
        });
        let status = status
            .recv_timeout(PHASE_MAX)
            .expect("the child broker did not stop within the phase bound")
            .unwrap();
        // Its stderr is closed now: the rest of its log is all there.
        let rest: Vec<String> = self.log.iter().collect();
        assert!(
            status.success(),
            "the child broker failed: {status}\n{}",
            rest.join("\n")
        );
        // The warnings of the whole run, for whoever reads the test's output.
        let mut warnings = self.warnings;
        warnings.extend(
            rest.into_iter()
                .filter(|line| line.contains("cannot accept")),
        );
        eprintln!(
            "{} accept warnings:\n{}",
            warnings.len(),
            warnings.join("\n")
        );
    }
}

/// The child: a broker with gRPC and Kafka listeners whose process may open
/// only `HEADROOM` more descriptors, until its stdin closes.
async fn starved_broker() {
    // Plain text whatever features the workspace build turns on: the parent
    // matches `listener="kafka"` in these lines.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .init();
    let data = tempfile::tempdir().unwrap();
    let mut config = config(data.path().to_path_buf());
    config.kafka_listen = Some("127.0.0.1:0".parse().unwrap());
    // Sockets stay until the parent closes them.
    config.connection_first_request_timeout_ms = 3_600_000;
    let (broker, kafka) = start_broker_with(config, data).await;
    let limit = nofile_limit();
    let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    set_nofile_limit(libc::rlimit {
        rlim_cur: open + HEADROOM,
        ..limit
    });
    println!("kafka={kafka} grpc={}", broker.addr);
    tokio::task::spawn_blocking(|| std::io::stdin().read_to_end(&mut Vec::new()))
        .await
        .unwrap()
        .unwrap();
    // Shutting down writes checkpoints: give the descriptors back first.
    set_nofile_limit(limit);
    broker.shutdown().await;
}

fn nofile_limit() -> libc::rlimit {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit for getrlimit to fill.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
        0
    );
    limit
}

fn set_nofile_limit(limit: libc::rlimit) {
    // SAFETY: `limit` is a valid rlimit; lowering the soft limit needs no privilege.
    assert_eq!(
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) },
        0,
        "{}",
        std::io::Error::last_os_error()
    );
}

/// The addresses the child prints, amid libtest's own output (which does
/// not end its "test … ..." line before the test's output).
fn child_addresses(stdout: std::process::ChildStdout) -> (SocketAddr, SocketAddr) {
    let lines = lines_of(stdout);
    loop {
        let line = lines
            .recv_timeout(PHASE_MAX)
            .expect("the child broker did not start within the phase bound");
        if let Some((_, addresses)) = line.split_once("kafka=") {
            let (kafka, grpc) = addresses.split_once(" grpc=").unwrap();
            return (kafka.parse().unwrap(), grpc.parse().unwrap());
        }
    }
}

/// The lines of `output` as they come, read on a thread of their own to
/// the end, wanted or not (a closed pipe would fail the child's writes).
fn lines_of(output: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (send, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(output).lines() {
            let Ok(line) = line else { return };
            let _ = send.send(line);
        }
    });
    lines
}
