//! Malformed appends and out-of-range reads give typed errors with clear messages and
//! change nothing: wrong magic, bad CRC, wrong length, too large, empty, non-contiguous
//! replicated batches, offsets before the start or past the end, bad config.

mod log_support;

use log_support::*;
use weir_log::batch::BatchError;
use weir_log::{LogConfig, LogError, PartitionLog};

fn open() -> (tempfile::TempDir, PartitionLog) {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), tiny_config()).unwrap();
    let mut b = batch_of(0, 2, 10, 0);
    log.append(&mut b, 0).unwrap();
    (dir, log)
}

fn assert_unchanged(log: &PartitionLog) {
    assert_eq!(log.log_end_offset(), 2);
    assert_eq!(read_all_batches(log).len(), 1);
}

#[test]
fn wrong_magic_is_rejected() {
    let (_dir, log) = open();
    let mut b = batch_of(1, 1, 10, 0);
    b[16] = 1;
    let err = log.append(&mut b, 0).unwrap_err();
    assert!(
        matches!(
            err,
            LogError::BatchAt {
                position: 0,
                source: BatchError::UnsupportedMagic { magic: 1, .. }
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("magic"), "{err}");
    assert_unchanged(&log);
}

#[test]
fn bad_crc_is_rejected() {
    let (_dir, log) = open();
    let good = batch_of(1, 1, 10, 0);
    let mut bad = batch_of(2, 1, 10, 0);
    let last = bad.len() - 1;
    bad[last] ^= 1;
    // The bad batch is second in the buffer: nothing of the buffer is written.
    let mut buffer = [good, bad.clone()].concat();
    let err = log.append(&mut buffer, 0).unwrap_err();
    match err {
        LogError::BatchAt {
            position,
            source: BatchError::CrcMismatch { .. },
        } => {
            assert_eq!(position, buffer.len() - bad.len())
        }
        other => panic!("expected CRC mismatch, got {other}"),
    }
    assert_unchanged(&log);
}

#[test]
fn wrong_length_is_rejected() {
    let (_dir, log) = open();
    let b = batch_of(1, 1, 10, 0);
    let mut cut = b[..b.len() - 3].to_vec();
    let err = log.append(&mut cut, 0).unwrap_err();
    assert!(
        matches!(
            err,
            LogError::BatchAt {
                source: BatchError::Truncated { .. },
                ..
            }
        ),
        "{err}"
    );
    let mut short_length = b.clone();
    short_length[8..12].copy_from_slice(&10i32.to_be_bytes());
    let err = log.append(&mut short_length, 0).unwrap_err();
    assert!(
        matches!(
            err,
            LogError::BatchAt {
                source: BatchError::InvalidLength { .. },
                ..
            }
        ),
        "{err}"
    );
    assert_unchanged(&log);
}

#[test]
fn too_large_is_rejected() {
    let (_dir, log) = open();
    let mut b = batch_of(1, 2, 40_000, 0);
    let err = log.append(&mut b, 0).unwrap_err();
    assert!(
        matches!(
            err,
            LogError::MessageTooLarge {
                position: 0,
                max_bytes: 65536,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("max.message.bytes"), "{err}");
    assert_unchanged(&log);
}

#[test]
fn empty_append_is_rejected() {
    let (_dir, log) = open();
    assert!(matches!(log.append(&mut [], 0), Err(LogError::EmptyAppend)));
    assert_unchanged(&log);
}

#[test]
fn replicated_batches_must_not_go_back_but_may_skip_offsets() {
    let (_dir, log) = open();
    let b = stored_form(batch_of(1, 1, 10, 0), 1, 0);
    let err = log.append_replicated(&b).unwrap_err();
    assert!(
        matches!(
            err,
            LogError::NonContiguous {
                expected: 2,
                got: 1,
                ..
            }
        ),
        "{err}"
    );
    assert_unchanged(&log);
    // Within one buffer too: the second batch starts inside the first.
    let first = stored_form(batch_of(1, 3, 10, 0), 2, 9);
    let overlapping = stored_form(batch_of(2, 1, 10, 0), 4, 9);
    let err = log
        .append_replicated(&[first.clone(), overlapping].concat())
        .unwrap_err();
    assert!(
        matches!(
            err,
            LogError::NonContiguous {
                position,
                expected: 5,
                got: 4,
            } if position == first.len()
        ),
        "{err}"
    );
    assert_unchanged(&log);
    let info = log.append_replicated(&first).unwrap();
    assert_eq!((info.base_offset, info.last_offset), (2, 4));
    // A compacted leader's batches leave gaps, kept as they came (Kafka's follower too).
    let after_gap = stored_form(batch_of(3, 2, 10, 0), 9, 9);
    let info = log.append_replicated(&after_gap).unwrap();
    assert_eq!((info.base_offset, info.last_offset), (9, 10));
    assert_eq!(log.log_end_offset(), 11);
    let batches = read_all_batches(&log);
    assert_eq!(batches[1], first, "leader's offsets and epoch kept");
    assert_eq!(batches[2], after_gap);
}

#[test]
fn offsets_before_start_or_past_end_are_out_of_range() {
    let (_dir, log) = open();
    let err = log.read(3, 100, u64::MAX).unwrap_err();
    assert!(
        matches!(
            err,
            LogError::OffsetOutOfRange {
                offset: 3,
                log_start: 0,
                log_end: 2
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("0..2"), "{err}");
    // Retention moves the log start; offsets before it are out of range too.
    let mut config = tiny_config();
    config.retention_ms = Some(0);
    log.set_config(config);
    for i in 0..20 {
        log.append(&mut batch_of(i, 1, 200, 0), 0).unwrap();
    }
    log.enforce_retention(1_000).unwrap();
    let start = log.log_start_offset();
    assert!(start > 0);
    let err = log.read(start - 1, 100, u64::MAX).unwrap_err();
    assert!(
        matches!(err, LogError::OffsetOutOfRange { log_start, log_end: 22, .. } if log_start == start),
        "{err}"
    );
    assert!(log.read(start, 100, u64::MAX).is_ok());
}

#[test]
fn config_rejects_unknown_keys_and_bad_values() {
    let mut config = LogConfig::default();
    for (key, value) in [
        ("segment.bytes", "lots"),
        ("segment.bytes", "0"),
        ("segment.bytes", "1023"),
        ("retention.ms", "-2"),
        ("cleanup.policy", "shred"),
        ("flush.policy", "sometimes"),
        ("segment.index.bytes", "4"),
        ("no.such.key", "1"),
    ] {
        let err = config.apply(key, value).unwrap_err();
        match &err {
            LogError::Config {
                key: k, value: v, ..
            } => assert_eq!((k.as_str(), v.as_str()), (key, value)),
            other => panic!("expected Config error, got {other}"),
        }
        assert!(err.to_string().contains(key), "{err}");
    }
    assert_eq!(
        config,
        LogConfig::default(),
        "failed applies change nothing"
    );
    config.apply("retention.ms", "-1").unwrap();
    assert_eq!(config.retention_ms, None);
    config.apply("cleanup.policy", "compact,delete").unwrap();
    assert_eq!(
        config.cleanup_policy,
        weir_log::CleanupPolicy::CompactDelete
    );
    config.apply("flush.ms", "250").unwrap();
    assert_eq!(config.fsync, weir_log::FsyncPolicy::IntervalMs(250));
    config.apply("fsync", "always").unwrap();
    assert_eq!(config.fsync, weir_log::FsyncPolicy::Always);
    config.apply("segment.bytes", "1048576").unwrap();
    assert_eq!(config.segment_bytes, 1 << 20);
}
