//! Damage in segments below the recovery point. As in Kafka, an unclean open scans only
//! from the recovery point; it checks the tail of each segment below it (what a cut file
//! loses), not every batch, so damage in the middle does not stop the open. It must still
//! never be served as a good batch: a header the log steers by (bad magic, impossible length, a base
//! offset outside the segment) makes the read a `Corrupt` error naming the segment and
//! byte; a copied slice whose batches do not chain is `Corrupt`; damage inside the
//! CRC-covered bytes reaches the reader only as bytes whose CRC check fails.

mod log_support;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use log_support::*;
use weir_log::batch::{self, BatchHeader};
use weir_log::{LogError, PartitionLog};

struct Fixture {
    dir: tempfile::TempDir,
    /// Stored batches with their base offsets.
    batches: Vec<(u64, Vec<u8>)>,
    /// The first (sealed, fsynced) segment and the batches in it.
    first_log: PathBuf,
    first_count: usize,
}

/// A log of several segments, dropped without close: the recovery point is the active
/// segment, so the first segment is trusted and not scanned by the next open.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), tiny_config()).unwrap();
    let mut batches = Vec::new();
    for i in 0..24u64 {
        let mut b = batch_of(i, 2, 60, 1000 + i as i64);
        let info = log.append(&mut b, 3).unwrap();
        batches.push((info.base_offset, b));
    }
    assert!(log.segment_count() >= 3);
    assert!(log.recovery_point() > 0);
    drop(log);
    let first_log = segment_logs(dir.path()).remove(0);
    let first_len = std::fs::metadata(&first_log).unwrap().len() as usize;
    let mut end = 0;
    let first_count = batches
        .iter()
        .take_while(|(_, b)| {
            end += b.len();
            end <= first_len
        })
        .count();
    assert!(first_count >= 3, "the first segment holds a few batches");
    Fixture {
        dir,
        batches,
        first_log,
        first_count,
    }
}

fn position_of(fixture: &Fixture, index: usize) -> u64 {
    fixture.batches[..index]
        .iter()
        .map(|(_, b)| b.len() as u64)
        .sum()
}

fn write_at(path: &Path, position: u64, bytes: &[u8]) {
    let file = OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(bytes, position).unwrap();
}

fn assert_corrupt_at(error: LogError, segment: &Path, position: u64) {
    match error {
        LogError::Corrupt {
            segment: named,
            position: at,
            ..
        } => {
            assert_eq!(named, segment);
            assert_eq!(at, position);
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn a_bad_header_below_the_recovery_point_opens_but_is_never_served() {
    // Byte 16 is the magic; bytes 8..12 the length; 0..8 the base offset (outside the CRC).
    let damages: [(usize, &[u8]); 4] = [
        (16, &[7]),
        (8, &[0, 0, 0, 3]),
        (0, &[0x7f, 0, 0, 0, 0, 0, 0, 0]),
        (0, &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xf0]),
    ];
    for (field_at, bytes) in damages {
        let fixture = fixture();
        let index = 1;
        let position = position_of(&fixture, index);
        write_at(&fixture.first_log, position + field_at as u64, bytes);

        let log = PartitionLog::open(fixture.dir.path(), tiny_config()).unwrap();
        let (offset, _) = fixture.batches[index];
        let error = log.read(offset, 1, u64::MAX).unwrap_err();
        assert_corrupt_at(error, &fixture.first_log, position);

        // A slice that reaches the damaged batch from an earlier one is refused when
        // copied, whether the read stepped onto its header or jumped over it by the index.
        match log.read(0, 1 << 20, u64::MAX) {
            Err(error) => assert_corrupt_at(error, &fixture.first_log, position),
            Ok(slice) => {
                assert_corrupt_at(slice.to_bytes().unwrap_err(), &fixture.first_log, position)
            }
        }
        // Batches before and after the damage still read.
        let first = log.read(0, 1, u64::MAX).unwrap().to_bytes().unwrap();
        assert_eq!(first.as_ref(), fixture.batches[0].1.as_slice());
        let (later, later_bytes) = &fixture.batches[fixture.first_count];
        let slice = log.read(*later, 1, u64::MAX).unwrap().to_bytes().unwrap();
        assert_eq!(slice.as_ref(), later_bytes.as_slice());
    }
}

#[test]
fn crc_damage_below_the_recovery_point_reaches_readers_only_as_a_failing_crc() {
    let fixture = fixture();
    let index = 1;
    let position = position_of(&fixture, index);
    // A byte inside the records: covered by the CRC, invisible to header checks.
    let record_byte = position + batch::BATCH_HEADER_BYTES as u64 + 5;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fixture.first_log)
        .unwrap();
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, record_byte).unwrap();
    file.write_all_at(&[byte[0] ^ 0x20], record_byte).unwrap();

    let log = PartitionLog::open(fixture.dir.path(), tiny_config()).unwrap();
    let (offset, original) = &fixture.batches[index];
    match log.read(*offset, 1, u64::MAX).and_then(|s| s.to_bytes()) {
        Err(error) => assert_corrupt_at(error, &fixture.first_log, position),
        Ok(bytes) => {
            assert_ne!(bytes.as_ref(), original.as_slice());
            let header = BatchHeader::parse(&bytes).unwrap();
            assert_eq!(header.base_offset as u64, *offset);
            let checked = batch::validate(&bytes, usize::MAX);
            assert!(
                matches!(checked, Err(batch::BatchError::CrcMismatch { .. })),
                "{checked:?}"
            );
        }
    }
}

#[test]
fn the_same_damage_above_the_recovery_point_is_cut_by_the_open() {
    let fixture = fixture();
    // The active segment is scanned: as in Kafka, the log ends at its first bad batch,
    // even with valid batches after it (those bytes were never promised durable).
    let active = segment_logs(fixture.dir.path()).pop().unwrap();
    let active_base =
        weir_log::inspect::parse_segment_file_name(active.file_name().unwrap().to_str().unwrap())
            .unwrap()
            .0;
    let active_len = std::fs::metadata(&active).unwrap().len() as usize;
    assert!(
        active_len > fixture.batches.last().unwrap().1.len(),
        "the active segment holds more than one batch"
    );
    write_at(&active, 16, &[7]);
    let log = PartitionLog::open(fixture.dir.path(), tiny_config()).unwrap();
    assert_eq!(log.log_end_offset(), active_base);
    assert_eq!(std::fs::metadata(&active).unwrap().len(), 0);
    let (last_kept, bytes) = fixture
        .batches
        .iter()
        .rev()
        .find(|(offset, _)| *offset < active_base)
        .unwrap();
    let read = log
        .read(*last_kept, 1, u64::MAX)
        .unwrap()
        .to_bytes()
        .unwrap();
    assert_eq!(read.as_ref(), bytes.as_slice());
}
