//! `weir log dump` and `weir log verify` run as the real binary on partition
//! directories written by `PartitionLog`, and on corrupted copies of them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use weir_log::batch::{batches, BatchBuilder, Compression};
use weir_log::{LogConfig, PartitionLog};

const BATCH_COUNT: usize = 30;
const RECORDS_PER_BATCH: usize = 5;

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

fn small_segments_config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 512,
        ..LogConfig::default()
    }
}

fn value_of(batch: usize, record: usize) -> String {
    format!("value {batch}-{record} {}", "x".repeat(100))
}

/// Appends `BATCH_COUNT` batches, cycling through the codecs, so the log rolls
/// into several segments with index entries. Closes the log when `close`.
fn write_partition(dir: &Path, close: bool) {
    let log = PartitionLog::open(dir, small_segments_config()).unwrap();
    for batch in 0..BATCH_COUNT {
        let compression = Compression::ALL[batch % Compression::ALL.len()];
        let mut builder = BatchBuilder::new(compression);
        for record in 0..RECORDS_PER_BATCH {
            let key = format!("key-{record}");
            let value = value_of(batch, record);
            let timestamp = 1_000_000 + (batch * 10 + record) as i64;
            builder.push(
                timestamp,
                Some(key.as_bytes()),
                Some(value.as_bytes()),
                &[("n", Some(b"1"))],
            );
        }
        let mut bytes = builder.build().unwrap().to_vec();
        log.append(&mut bytes, 3).unwrap();
    }
    if close {
        log.close().unwrap();
    } else {
        log.flush().unwrap();
        drop(log);
    }
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

/// Start positions of the batches in a `.log` file.
fn batch_positions(log: &Path) -> Vec<usize> {
    let bytes = std::fs::read(log).unwrap();
    let mut position = 0;
    let mut positions = Vec::new();
    for batch in batches(&bytes) {
        let (header, _) = batch.unwrap();
        positions.push(position);
        position += header.size_bytes();
    }
    positions
}

fn written_partition() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_partition(dir.path(), true);
    assert!(
        segment_logs(dir.path()).len() >= 3,
        "the test needs several segments"
    );
    dir
}

fn one_line(text: &str) -> &str {
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line, got {text:?}");
    lines[0]
}

#[test]
fn verify_accepts_a_closed_partition() {
    let dir = written_partition();
    let output = weir(&["log", "verify"], dir.path());
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let segments = segment_logs(dir.path()).len();
    let summary = format!(
        "ok: segments {segments}, batches {BATCH_COUNT}, records {}",
        BATCH_COUNT * RECORDS_PER_BATCH
    );
    assert_eq!(text.lines().last(), Some(summary.as_str()), "{text}");
    let index_entries: usize = text
        .lines()
        .flat_map(|line| line.split(", "))
        .filter_map(|part| part.strip_prefix("offset index entries "))
        .map(|count| count.parse::<usize>().unwrap())
        .sum();
    assert!(index_entries > 0, "the index entries were checked: {text}");
}

#[test]
fn verify_accepts_a_partition_left_open() {
    // Without close the active segment's indexes stay preallocated (zero tails).
    let dir = tempfile::tempdir().unwrap();
    write_partition(dir.path(), false);
    let output = weir(&["log", "verify"], dir.path());
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn dump_prints_every_batch_in_offset_order() {
    let dir = written_partition();
    let output = weir(&["log", "dump"], dir.path());
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let batch_lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("baseOffset:"))
        .collect();
    assert_eq!(batch_lines.len(), BATCH_COUNT);
    assert!(text.starts_with("Dumping "));
    assert!(text
        .lines()
        .next()
        .unwrap()
        .contains("00000000000000000000.log"));
    for (index, line) in batch_lines.iter().enumerate() {
        let base = index * RECORDS_PER_BATCH;
        let expected = format!(
            "baseOffset: {base} lastOffset: {} count: {RECORDS_PER_BATCH} ",
            base + 4
        );
        assert!(line.starts_with(&expected), "{line}");
        assert!(line.contains("crcOk: true"), "{line}");
        let codec = Compression::ALL[index % Compression::ALL.len()];
        assert!(line.contains(&format!("codec: {codec} ")), "{line}");
        assert!(line.contains("leaderEpoch: 3 "), "{line}");
    }
}

#[test]
fn dump_records_as_json_lines() {
    let dir = written_partition();
    let first = &segment_logs(dir.path())[0];
    let output = weir(&["log", "dump", "--records", "--output", "json"], first);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let batches: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!batches.is_empty());
    let positions = batch_positions(first);
    assert_eq!(batches.len(), positions.len());
    for (index, batch) in batches.iter().enumerate() {
        assert_eq!(batch["position"], positions[index]);
        assert_eq!(batch["base_offset"], index * RECORDS_PER_BATCH);
        assert_eq!(batch["crc_ok"], true);
        assert_eq!(batch["codec"], Compression::ALL[index % 5].to_string());
        let records = batch["records"].as_array().unwrap();
        assert_eq!(records.len(), RECORDS_PER_BATCH);
        for (r, record) in records.iter().enumerate() {
            assert_eq!(record["offset"], index * RECORDS_PER_BATCH + r);
            assert_eq!(record["timestamp"], 1_000_000 + index * 10 + r);
            assert_eq!(record["key"], format!("key-{r}"));
            assert_eq!(record["value"], value_of(index, r));
            assert_eq!(record["headers"][0]["key"], "n");
            assert_eq!(record["headers"][0]["value"], "1");
        }
    }
}

#[test]
fn dump_records_as_text() {
    let dir = written_partition();
    let first = &segment_logs(dir.path())[0];
    let output = weir(&["log", "dump", "--records"], first);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let expected = format!(
        "| offset: 1 timestamp: 1000001 key: key-1 value: {} headers: [n=1]",
        value_of(0, 1)
    );
    assert!(text.lines().any(|l| l == expected), "{text}");
}

/// Flips one byte of the given batch of the given segment in a copy.
fn corrupt_batch(dir: &Path, segment: usize, batch: usize) -> (PathBuf, usize) {
    let log = segment_logs(dir)[segment].clone();
    let position = batch_positions(&log)[batch];
    let mut bytes = std::fs::read(&log).unwrap();
    bytes[position + 40] ^= 0xff; // inside the CRC range (max timestamp)
    std::fs::write(&log, bytes).unwrap();
    (log, position)
}

#[test]
fn verify_names_the_file_and_byte_of_a_corrupt_batch() {
    let dir = written_partition();
    let (log, position) = corrupt_batch(dir.path(), 1, 1);
    let output = weir(&["log", "verify"], dir.path());
    assert!(!output.status.success());
    let err = stderr(&output);
    let line = one_line(&err);
    assert!(line.contains(&log.display().to_string()), "{line}");
    assert!(line.contains(&format!("byte {position}:")), "{line}");
    assert!(line.contains("CRC-32C"), "{line}");
}

#[test]
fn dump_marks_a_corrupt_batch_and_fails() {
    let dir = written_partition();
    let (log, position) = corrupt_batch(dir.path(), 0, 1);
    let output = weir(&["log", "dump"], &log);
    assert!(!output.status.success());
    let text = stdout(&output);
    let bad: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("crcOk: false"))
        .collect();
    assert_eq!(bad.len(), 1, "{text}");
    assert!(
        bad[0].contains(&format!("position: {position} ")),
        "{}",
        bad[0]
    );
    assert!(one_line(&stderr(&output)).contains(&format!("byte {position}:")));
}

#[test]
fn verify_reports_a_torn_tail_at_the_last_batch_start() {
    let dir = written_partition();
    let last = segment_logs(dir.path()).last().unwrap().clone();
    let positions = batch_positions(&last);
    let len = std::fs::metadata(&last).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&last).unwrap();
    file.set_len(len - 10).unwrap();
    let output = weir(&["log", "verify"], dir.path());
    assert!(!output.status.success());
    let err = stderr(&output);
    let line = one_line(&err);
    assert!(line.contains(&last.display().to_string()), "{line}");
    assert!(
        line.contains(&format!("byte {}:", positions.last().unwrap())),
        "{line}"
    );
    assert!(line.contains("truncated"), "{line}");
}

#[test]
fn verify_rejects_an_index_entry_off_a_batch_start() {
    let dir = written_partition();
    let index = segment_logs(dir.path())
        .iter()
        .map(|log| log.with_extension("index"))
        .find(|index| std::fs::metadata(index).is_ok_and(|m| m.len() >= 16))
        .expect("a segment with two offset index entries");
    let mut bytes = std::fs::read(&index).unwrap();
    // Second entry's position field, moved one byte into its batch.
    let position = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) + 1;
    bytes[12..16].copy_from_slice(&position.to_le_bytes());
    std::fs::write(&index, bytes).unwrap();
    let output = weir(&["log", "verify"], dir.path());
    assert!(!output.status.success());
    let err = stderr(&output);
    let line = one_line(&err);
    assert!(line.contains(&index.display().to_string()), "{line}");
    assert!(line.contains("byte 8:"), "{line}");
    assert!(line.contains("not the start of a batch"), "{line}");
}

#[test]
fn verify_rejects_a_time_index_entry_below_the_log_timestamps() {
    let dir = written_partition();
    let time_index = segment_logs(dir.path())[0].with_extension("timeindex");
    let mut bytes = std::fs::read(&time_index).unwrap();
    assert!(
        bytes.len() >= 12,
        "the first segment has a time index entry"
    );
    bytes[0..8].copy_from_slice(&5i64.to_le_bytes());
    std::fs::write(&time_index, bytes).unwrap();
    let output = weir(&["log", "verify"], dir.path());
    assert!(!output.status.success());
    let line = one_line(&stderr(&output)).to_owned();
    assert!(line.contains(&time_index.display().to_string()), "{line}");
    assert!(line.contains("byte 0:"), "{line}");
}

#[test]
fn verify_rejects_a_missing_middle_segment() {
    let dir = written_partition();
    let logs = segment_logs(dir.path());
    std::fs::remove_file(&logs[1]).unwrap();
    let output = weir(&["log", "verify"], dir.path());
    assert!(!output.status.success());
    let line = one_line(&stderr(&output)).to_owned();
    assert!(line.contains(&logs[2].display().to_string()), "{line}");
    assert!(
        line.contains("byte 0:") && line.contains("does not follow"),
        "{line}"
    );
    // The same directory passes when gaps are declared acceptable.
    let output = weir(&["log", "verify", "--allow-gaps"], dir.path());
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn a_path_that_is_not_a_partition_fails_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    for command in ["dump", "verify"] {
        let output = weir(&["log", command], dir.path());
        assert!(!output.status.success());
        let line = one_line(&stderr(&output)).to_owned();
        assert!(line.contains("holds no segment files"), "{line}");
        let missing = dir.path().join("missing");
        let output = weir(&["log", command], &missing);
        assert!(!output.status.success());
        assert!(one_line(&stderr(&output)).contains("missing"));
    }
}

#[test]
fn verify_accepts_a_compacted_partition_only_with_allow_gaps() {
    let dir = tempfile::tempdir().unwrap();
    write_partition(dir.path(), false);
    let config = LogConfig {
        cleanup_policy: weir_log::CleanupPolicy::Compact,
        ..small_segments_config()
    };
    let log = PartitionLog::open(dir.path(), config).unwrap();
    // Compaction works below the high watermark only.
    log.set_high_watermark(log.log_end_offset());
    let report = log.compact(2_000_000).unwrap();
    assert!(report.records_removed > 0, "{report:?}");
    log.close().unwrap();

    let output = weir(&["log", "verify", "--allow-gaps"], dir.path());
    assert!(output.status.success(), "{}", stderr(&output));
    let output = weir(&["log", "verify"], dir.path());
    assert!(!output.status.success());
    let line = one_line(&stderr(&output)).to_owned();
    assert!(
        line.contains("gap") || line.contains("does not follow"),
        "{line}"
    );
}

#[test]
fn text_dump_keeps_each_record_on_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
    let mut builder = BatchBuilder::new(Compression::None);
    builder.push(7, Some(b"k\x00"), Some(b"line 1\nline 2"), &[]);
    log.append(&mut builder.build().unwrap().to_vec(), 0)
        .unwrap();
    log.close().unwrap();
    let output = weir(&["log", "dump", "--records"], dir.path());
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let expected = r"| offset: 0 timestamp: 7 key: k\u{0} value: line 1\nline 2 headers: []";
    assert!(text.lines().any(|l| l == expected), "{text}");
}
