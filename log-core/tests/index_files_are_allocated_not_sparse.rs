//! The writable index files of an active segment are allocated on disk, not sparse: a full
//! disk fails the roll or open that creates them (ENOSPC), never a later store into the
//! mapped file (SIGBUS).

mod log_support;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use log_support::*;
use weir_log::PartitionLog;

fn assert_allocated(path: &Path) {
    let metadata = std::fs::metadata(path).unwrap();
    assert!(metadata.len() > 0, "{} is empty", path.display());
    // st_blocks counts 512-byte units, whatever the file system's block size.
    assert!(
        metadata.blocks() * 512 >= metadata.len(),
        "{}: {} bytes long, {} bytes allocated",
        path.display(),
        metadata.len(),
        metadata.blocks() * 512
    );
}

#[test]
fn the_active_segments_index_files_are_allocated_at_open_and_at_roll() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = tiny_config();
    config.index_bytes_max = 64 * 1024;
    let log = PartitionLog::open(dir.path(), config).unwrap();
    let first = segment_logs(dir.path()).pop().unwrap();
    assert_allocated(&first.with_extension("index"));
    assert_allocated(&first.with_extension("timeindex"));

    while log.segment_count() < 2 {
        log.append(&mut batch_of(1, 2, 100, 0), 0).unwrap();
    }
    let active = segment_logs(dir.path()).pop().unwrap();
    assert_ne!(active, first);
    assert_allocated(&active.with_extension("index"));
    assert_allocated(&active.with_extension("timeindex"));
}
