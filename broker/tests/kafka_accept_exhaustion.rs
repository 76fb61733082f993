//! A Kafka listener out of file descriptors: accept(2) fails with EMFILE
//! for as long as none is free, and the connection waits in the backlog.
//! The listener warns that it cannot accept (rate-limited and paused after,
//! `accept_error.rs`, whose unit tests check the pauses and the rate), keeps
//! serving the connections it has, and serves new ones again once
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

const TEST_NAME: &str = "out_of_descriptors_the_listener_warns_keeps_serving_and_accepts_again";
/// Set in the child's environment: it runs the broker.
const CHILD: &str = "WEIR_TEST_DESCRIPTOR_STARVED_BROKER";
/// Descriptors the child may open past those it has once started.
const HEADROOM: u64 = 3;
/// Generous: each phase is expected to take milliseconds.
const PHASE_MAX: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_the_listener_warns_keeps_serving_and_accepts_again() {
    if std::env::var_os(CHILD).is_some() {
        return starved_broker().await;
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let kafka = child_kafka_address(child.stdout.take().unwrap());
    let log = lines_of(child.stderr.take().unwrap());

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
    let mut silent = Vec::new();
    for _ in 0..HEADROOM + 8 {
        silent.push(TcpStream::connect(kafka).await.unwrap());
    }
    let mut warnings = Vec::new();
    let warning = wait_for_line(&log, &mut warnings, "cannot accept a connection");
    assert!(
        warning.contains("listener=\"kafka\"") || warning.contains("listener=kafka"),
        "{warning}"
    );
    assert!(warning.contains("os error 24"), "not EMFILE: {warning}");
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

    // Closing its stdin stops the child; its exit says it shut down cleanly.
    drop(child.stdin.take());
    let (exited, status) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = exited.send(child.wait());
    });
    let status = status
        .recv_timeout(PHASE_MAX)
        .expect("the child broker did not stop within the phase bound")
        .unwrap();
    // Its stderr is closed now: the rest of its log is all there.
    let rest: Vec<String> = log.iter().collect();
    assert!(
        status.success(),
        "the child broker failed: {status}\n{}",
        rest.join("\n")
    );
    // The warnings of the whole run, for whoever reads the test's output.
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

/// The child: a broker with a Kafka listener whose process may open only
/// `HEADROOM` more descriptors, until its stdin closes.
async fn starved_broker() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
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
    println!("kafka={kafka}");
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

/// The address the child prints, amid libtest's own output (which does not
/// end its "test … ..." line before the test's output).
fn child_kafka_address(stdout: std::process::ChildStdout) -> SocketAddr {
    let lines = lines_of(stdout);
    loop {
        let line = lines
            .recv_timeout(PHASE_MAX)
            .expect("the child broker did not start within the phase bound");
        if let Some((_, addr)) = line.split_once("kafka=") {
            return addr.parse().unwrap();
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

/// The first line of `log` containing `needle` (kept in `seen` too).
fn wait_for_line(log: &mpsc::Receiver<String>, seen: &mut Vec<String>, needle: &str) -> String {
    loop {
        let line = log
            .recv_timeout(PHASE_MAX)
            .unwrap_or_else(|_| panic!("no {needle:?} in the child's log within the phase bound"));
        if line.contains(needle) {
            seen.push(line.clone());
            return line;
        }
    }
}
