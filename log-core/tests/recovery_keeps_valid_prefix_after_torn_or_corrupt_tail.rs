//! Recovery after an unclean stop: a last batch cut at any byte, or with any byte flipped
//! (in the length, magic, CRC or CRC-covered bytes), is removed and exactly the valid prefix
//! stays; as in Kafka, a bad batch above the recovery point ends the log even when valid
//! batches follow it; below the recovery point it is an error, never served or cut.
//! (The base offset and leader epoch are outside Kafka's CRC; flips there are not
//! detectable by a CRC and are not covered here.)

mod log_support;

use std::fs::{self, OpenOptions};
use std::path::Path;

use log_support::*;
use weir_log::{LogError, PartitionLog};

struct Fixture {
    dir: tempfile::TempDir,
    batches: Vec<Vec<u8>>,
    active_log: std::path::PathBuf,
    /// Position of the last batch in the active segment.
    last_position: u64,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut config = tiny_config();
    config.segment_bytes = 4096;
    let log = PartitionLog::open(dir.path(), config).unwrap();
    let mut batches = Vec::new();
    for i in 0..12 {
        let mut b = batch_of(i, 3, 50, 100 * i as i64);
        log.append(&mut b, 1).unwrap();
        batches.push(b);
    }
    drop(log); // unclean: no checkpoint
    let active_log = segment_logs(dir.path()).pop().unwrap();
    let len = fs::metadata(&active_log).unwrap().len();
    let last_position = len - batches.last().unwrap().len() as u64;
    Fixture {
        dir,
        batches,
        active_log,
        last_position,
    }
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

fn reopen_expect_prefix(fixture: &Fixture, damage: impl Fn(&Path)) {
    let copy = tempfile::tempdir().unwrap();
    copy_dir(fixture.dir.path(), copy.path());
    let active = copy.path().join(fixture.active_log.file_name().unwrap());
    damage(&active);
    let log = PartitionLog::open(copy.path(), tiny_config()).unwrap();
    let expected = &fixture.batches[..fixture.batches.len() - 1];
    assert_eq!(read_all_batches(&log), expected);
    let end: u64 = 12 * 3 - 3;
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(
        fs::metadata(&active).unwrap().len(),
        fixture.last_position,
        "tail cut"
    );
    // The log takes appends right after the prefix.
    let mut b = batch_of(77, 1, 5, 0);
    assert_eq!(log.append(&mut b, 1).unwrap().base_offset, end);
}

#[test]
fn truncation_at_every_byte_of_the_last_batch_keeps_the_prefix() {
    let f = fixture();
    let size = f.batches.last().unwrap().len() as u64;
    for cut in 0..size {
        reopen_expect_prefix(&f, |active| {
            let file = OpenOptions::new().write(true).open(active).unwrap();
            file.set_len(f.last_position + cut).unwrap();
        });
    }
}

#[test]
fn a_flipped_byte_in_the_last_batch_removes_only_that_batch() {
    let f = fixture();
    let size = f.batches.last().unwrap().len();
    // 8..12 length, 16 magic, 17..21 CRC, 21.. CRC-covered; 0..8 and 12..16 are not checked.
    let checked = (8..12).chain(16..size);
    for at in checked {
        reopen_expect_prefix(&f, |active| {
            let mut bytes = fs::read(active).unwrap();
            bytes[f.last_position as usize + at] ^= 0x5a;
            fs::write(active, bytes).unwrap();
        });
    }
}

#[test]
fn a_corrupt_batch_above_the_recovery_point_ends_the_log_even_with_valid_batches_after_it() {
    let f = fixture();
    let copy = tempfile::tempdir().unwrap();
    copy_dir(f.dir.path(), copy.path());
    let active = copy.path().join(f.active_log.file_name().unwrap());
    let mut bytes = fs::read(&active).unwrap();
    // Corrupt the first batch of the active segment inside its CRC-covered records. None
    // of it was fsynced (no flush, no roll): as in Kafka, the log ends at the bad batch.
    let at = 70;
    bytes[at] ^= 0xff;
    fs::write(&active, &bytes).unwrap();
    let active_base =
        weir_log::inspect::parse_segment_file_name(active.file_name().unwrap().to_str().unwrap())
            .unwrap()
            .0;
    let log = PartitionLog::open(copy.path(), tiny_config()).unwrap();
    assert_eq!(log.log_end_offset(), active_base);
    assert_eq!(fs::metadata(&active).unwrap().len(), 0);
    let mut b = batch_of(77, 1, 5, 0);
    assert_eq!(log.append(&mut b, 1).unwrap().base_offset, active_base);
}

#[test]
fn clean_shutdown_checkpoint_skips_the_scan_and_its_absence_triggers_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), tiny_config()).unwrap();
    for i in 0..5 {
        let mut b = batch_of(i, 2, 20, 0);
        log.append(&mut b, 0).unwrap();
    }
    log.close().unwrap();
    assert!(dir.path().join("clean-shutdown").exists());
    // Damage a batch in the middle: a clean open does not scan, so it opens.
    let active = segment_logs(dir.path()).pop().unwrap();
    let mut bytes = fs::read(&active).unwrap();
    bytes[70] ^= 0xff;
    fs::write(&active, &bytes).unwrap();
    let log = PartitionLog::open(dir.path(), tiny_config()).unwrap();
    assert!(
        !dir.path().join("clean-shutdown").exists(),
        "open consumes the checkpoint"
    );
    drop(log);
    // Without the checkpoint the scan finds it. The close recorded the whole log as
    // durable, so the damage is below the recovery point: refused, not cut.
    let err = PartitionLog::open(dir.path(), tiny_config())
        .err()
        .expect("scan finds damage");
    match &err {
        LogError::DamagedBelowRecoveryPoint {
            segment,
            position,
            offset,
            recovery_point,
            ..
        } => {
            assert_eq!(segment, &active);
            assert_eq!((*position, *offset, *recovery_point), (0, 0, 10));
        }
        other => panic!("expected DamagedBelowRecoveryPoint, got {other}"),
    }
}
