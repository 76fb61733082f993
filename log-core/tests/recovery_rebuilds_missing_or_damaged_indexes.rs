//! Missing, garbled or wrongly sized index files are detected on open and rebuilt from the
//! log, byte-identical to the ones written during appends; lookups keep working.

mod log_support;

use std::fs;

use log_support::*;
use weir_log::PartitionLog;

fn build(dir: &std::path::Path) -> Vec<Vec<u8>> {
    let log = PartitionLog::open(dir, tiny_config()).unwrap();
    let mut batches = Vec::new();
    for i in 0..40 {
        let mut b = batch_of(i, 2, 40, 1000 + 10 * i as i64);
        log.append(&mut b, 0).unwrap();
        batches.push(b);
    }
    log.close().unwrap();
    batches
}

fn index_paths(dir: &std::path::Path, extension: &str) -> Vec<std::path::PathBuf> {
    let mut paths: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == extension))
        .collect();
    paths.sort();
    paths
}

fn check_rebuilt(clean: bool) {
    let dir = tempfile::tempdir().unwrap();
    let batches = build(dir.path());
    let offset_indexes = index_paths(dir.path(), "index");
    let time_indexes = index_paths(dir.path(), "timeindex");
    assert!(offset_indexes.len() >= 4);
    let original_offset = fs::read(&offset_indexes[1]).unwrap();
    let original_time = fs::read(&time_indexes[2]).unwrap();
    assert!(!original_offset.is_empty(), "tiny interval writes entries");
    fs::remove_file(&offset_indexes[1]).unwrap();
    fs::write(&time_indexes[2], vec![0xff; original_time.len()]).unwrap();
    fs::write(&offset_indexes[0], [1u8, 2, 3]).unwrap();
    if !clean {
        fs::remove_file(dir.path().join("clean-shutdown")).unwrap();
    }
    let log = PartitionLog::open(dir.path(), tiny_config()).unwrap();
    assert_eq!(fs::read(&offset_indexes[1]).unwrap(), original_offset);
    assert_eq!(fs::read(&time_indexes[2]).unwrap(), original_time);
    assert_eq!(fs::metadata(&offset_indexes[0]).unwrap().len() % 8, 0);
    assert_eq!(read_all_batches(&log), batches);
    for i in 0..80u64 {
        let slice = log.read(i, 1, u64::MAX).unwrap();
        assert!(slice.next_offset() > i);
    }
    // Batch i has timestamps 1000 + 10 i and 1001 + 10 i.
    assert_eq!(log.offset_for_time(1000 + 10 * 17 + 1).unwrap(), Some(35));
    assert_eq!(log.offset_for_time(1000 + 10 * 17 + 2).unwrap(), Some(36));
}

#[test]
fn damaged_indexes_are_rebuilt_on_clean_open() {
    check_rebuilt(true);
}

#[test]
fn damaged_indexes_are_rebuilt_on_unclean_open() {
    check_rebuilt(false);
}
