//! `weir log repair` run as the real binary on a partition directory written by
//! `PartitionLog` and then damaged below its recovery point: `--dry-run` says what the cut
//! drops and changes nothing; the repair cuts to the last whole batch and the partition
//! opens again. While a process holds the partition, repair and dump refuse with one line
//! naming it.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use weir_log::batch::{BatchBuilder, Compression};
use weir_log::{LogConfig, LogError, PartitionLog};

fn weir(args: &[&str], path: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .arg(path)
        .output()
        .expect("the weir binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

fn segment_logs(dir: &Path) -> Vec<PathBuf> {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
        .collect();
    logs.sort();
    logs
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 512,
        ..LogConfig::default()
    }
}

/// 40 one-record batches over several segments, closed; returns each batch's size.
fn write_partition(dir: &Path) -> Vec<u64> {
    let log = PartitionLog::open(dir, config()).unwrap();
    let mut sizes = Vec::new();
    for i in 0..40 {
        let mut builder = BatchBuilder::new(Compression::None);
        let value = format!("value {i} {}", "x".repeat(300));
        builder.push(1_000 + i, None, Some(value.as_bytes()), &[]);
        let mut bytes = builder.build().unwrap().to_vec();
        log.append(&mut bytes, 0).unwrap();
        sizes.push(bytes.len() as u64);
    }
    log.close().unwrap();
    sizes
}

fn one_line_failure(output: &Output, expect: &str) {
    let err = stderr(output);
    assert!(!output.status.success(), "{output:?}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains(expect), "expected {expect:?} in {err}");
}

#[test]
fn repair_says_what_it_drops_then_cuts_to_the_last_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let sizes = write_partition(dir.path());
    let logs = segment_logs(dir.path());
    assert!(logs.len() >= 3, "{logs:?}");
    // The first segment's last batch loses 9 bytes: below the recovery point.
    let first_len = std::fs::metadata(&logs[0]).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&logs[0])
        .unwrap()
        .set_len(first_len - 9)
        .unwrap();
    let mut end = 0;
    let in_first = sizes
        .iter()
        .take_while(|size| {
            end += *size;
            end <= first_len
        })
        .count() as u64;
    let first_lost = in_first - 1;
    let before: Vec<u64> = logs
        .iter()
        .map(|l| std::fs::metadata(l).unwrap().len())
        .collect();
    let total: u64 = before.iter().sum();
    let dropped = total - (first_len - sizes[first_lost as usize]);
    assert!(matches!(
        PartitionLog::open(dir.path(), config()),
        Err(LogError::DamagedBelowRecoveryPoint { .. })
    ));

    let out = weir(&["log", "repair", "--dry-run"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "would drop offsets {first_lost}..=39 ({dropped} bytes): cuts {}",
            logs[0].display()
        )),
        "{text}"
    );
    assert!(text.contains(&logs[1].display().to_string()), "{text}");
    let after_dry_run: Vec<u64> = segment_logs(dir.path())
        .iter()
        .map(|l| std::fs::metadata(l).unwrap().len())
        .collect();
    assert_eq!(after_dry_run, before, "--dry-run changes nothing");

    let out = weir(&["log", "repair"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("the log now ends at offset {first_lost}")),
        "{}",
        stdout(&out)
    );
    assert_eq!(segment_logs(dir.path()), logs[..1].to_vec());
    let log = PartitionLog::open(dir.path(), config()).unwrap();
    assert_eq!(log.log_end_offset(), first_lost);
    drop(log);

    let out = weir(&["log", "repair"], dir.path());
    assert!(out.status.success());
    assert!(
        stdout(&out).contains("nothing to repair"),
        "{}",
        stdout(&out)
    );
    // verify agrees with the repaired partition.
    let out = weir(&["log", "verify"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn repair_and_dump_refuse_while_the_partition_is_open_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    write_partition(dir.path());
    let log = PartitionLog::open(dir.path(), config()).unwrap();
    let holder = format!("pid {}", std::process::id());
    for args in [
        &["log", "repair"][..],
        &["log", "dump"][..],
        &["log", "verify"][..],
    ] {
        let out = weir(args, dir.path());
        one_line_failure(&out, "is in use: locked by");
        assert!(stderr(&out).contains(&holder), "{}", stderr(&out));
    }
    drop(log);
    let out = weir(&["log", "dump"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
}
