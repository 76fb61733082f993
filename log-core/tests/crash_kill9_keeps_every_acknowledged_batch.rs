//! Crash test: a child process (this test binary, re-executed) appends in a loop and prints
//! each acknowledged offset; the parent SIGKILLs it mid-stream, reopens the log, and checks
//! that every acknowledged batch is there, intact and in order.

mod log_support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use log_support::*;
use weir_log::{FsyncPolicy, LogConfig, PartitionLog};

const DIR_VAR: &str = "WEIR_CRASH_CHILD_DIR";
const FSYNC_VAR: &str = "WEIR_CRASH_CHILD_FSYNC";
const CHILD_TEST: &str = "child_appends_until_killed";

fn config(fsync: FsyncPolicy) -> LogConfig {
    let mut config = tiny_config();
    config.segment_bytes = 16 * 1024;
    config.index_bytes_max = 4096;
    config.fsync = fsync;
    config
}

fn batch_for(seq: u64) -> Vec<u8> {
    batch_of(seq, 1 + (seq % 4) as usize, 100, seq as i64)
}

/// Runs only as the child of `crash_*` tests (ignored otherwise).
#[test]
#[ignore = "child process of the crash tests"]
fn child_appends_until_killed() {
    let dir = std::env::var(DIR_VAR).expect("child needs its directory");
    let fsync = std::env::var(FSYNC_VAR).expect("child needs its fsync policy");
    let fsync: FsyncPolicy = fsync.parse().expect("fsync policy");
    let log = PartitionLog::open(Path::new(&dir), config(fsync)).expect("open");
    for seq in 0.. {
        let mut b = batch_for(seq);
        let info = log.append(&mut b, 5).expect("append");
        println!("ack {seq} {} {}", info.base_offset, info.last_offset);
    }
}

fn crash_and_check(fsync: FsyncPolicy) {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            CHILD_TEST,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DIR_VAR, dir.path())
        .env(FSYNC_VAR, fsync.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked: Vec<(u64, u64, u64)> = Vec::new();
    let parse = |line: &str| -> Option<(u64, u64, u64)> {
        // libtest may print its "test ... " prefix on the same line as the first ack.
        let at = line.find("ack ")?;
        let mut parts = line.get(at + 4..)?.split(' ');
        Some((
            parts.next()?.parse().ok()?,
            parts.next()?.parse().ok()?,
            parts.next()?.parse().ok()?,
        ))
    };
    for line in lines.by_ref() {
        if let Some(ack) = parse(&line.unwrap()) {
            acked.push(ack);
            if acked.len() == 300 {
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL
                           // Acks the child printed before it died still count.
    for line in lines {
        let Ok(line) = line else { break };
        if let Some(ack) = parse(&line) {
            acked.push(ack);
        }
    }
    child.wait().unwrap();
    assert!(
        acked.len() >= 300,
        "child acknowledged {} appends",
        acked.len()
    );

    let log = PartitionLog::open(dir.path(), config(fsync)).unwrap();
    let stored = read_all_batches(&log);
    assert!(
        stored.len() >= acked.len(),
        "{} stored < {} acked",
        stored.len(),
        acked.len()
    );
    assert!(log.segment_count() > 1, "the run rolled segments");
    for (i, &(seq, base, last)) in acked.iter().enumerate() {
        assert_eq!(seq, i as u64, "acks in order");
        let expected = stored_form(batch_for(seq), base, 5);
        assert_eq!(
            stored[i], expected,
            "acknowledged batch {seq} at offset {base}..={last}"
        );
    }
}

#[test]
fn crash_with_fsync_always_keeps_every_acknowledged_batch() {
    crash_and_check(FsyncPolicy::Always);
}

#[test]
fn crash_with_fsync_never_keeps_every_acknowledged_batch() {
    // A process crash does not lose the page cache: acknowledged writes survive too.
    crash_and_check(FsyncPolicy::Never);
}
