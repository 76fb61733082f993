//! `message.timestamp.type = LogAppendTime`: `append` marks each batch LogAppendTime with
//! the wall clock as its max timestamp and a recomputed CRC, leaving records and the base
//! timestamp as the producer wrote them; records then read that timestamp, and time lookups
//! use it. `CreateTime` (the default) and the follower path leave the bytes alone.

mod log_support;

use std::time::{SystemTime, UNIX_EPOCH};

use log_support::*;
use weir_log::batch::{self, BatchHeader, TimestampType};
use weir_log::{LogConfig, LogError, PartitionLog};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn message_timestamp_type_is_a_config_key() {
    let mut config = LogConfig::default();
    assert_eq!(config.timestamp_type, TimestampType::CreateTime);
    config
        .apply("message.timestamp.type", "LogAppendTime")
        .unwrap();
    assert_eq!(config.timestamp_type, TimestampType::LogAppendTime);
    let error = config
        .apply("message.timestamp.type", "logappendtime")
        .unwrap_err();
    assert!(
        matches!(&error, LogError::Config { key, .. } if key == "message.timestamp.type"),
        "{error:?}"
    );
    assert!(error.to_string().contains("CreateTime or LogAppendTime"));
    assert_eq!(config.timestamp_type, TimestampType::LogAppendTime);
    config
        .apply("message.timestamp.type", "CreateTime")
        .unwrap();
    assert_eq!(config.timestamp_type, TimestampType::CreateTime);
}

#[test]
fn append_stamps_log_append_time_and_a_valid_crc() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = tiny_config();
    config
        .apply("message.timestamp.type", "LogAppendTime")
        .unwrap();
    let log = PartitionLog::open(dir.path(), config).unwrap();
    let produced = [batch_of(1, 3, 20, 1_000), batch_of(2, 2, 20, 2_000)];
    let mut buffer = produced.concat();
    let before_ms = now_ms();
    let info = log.append(&mut buffer, 6).unwrap();
    let after_ms = now_ms();
    assert!(
        (before_ms..=after_ms).contains(&info.max_timestamp),
        "{info:?}"
    );

    let stored = read_all_batches(&log);
    assert_eq!(stored.concat(), buffer);
    for (bytes, original) in stored.iter().zip(&produced) {
        let header = batch::validate(bytes, usize::MAX).unwrap();
        let original_header = BatchHeader::parse(original).unwrap();
        assert_eq!(header.timestamp_type(), TimestampType::LogAppendTime);
        assert_eq!(header.max_timestamp, info.max_timestamp);
        assert_eq!(header.base_timestamp, original_header.base_timestamp);
        assert_ne!(header.crc, original_header.crc);
        // Records are untouched: only attributes, max timestamp and CRC differ.
        assert_eq!(bytes[61..], original[61..]);
        for record in batch::decode_records(bytes).unwrap() {
            assert_eq!(record.timestamp, info.max_timestamp);
        }
    }
    // Time lookups see the append time, not the producer's timestamps.
    assert_eq!(log.offset_for_time(5_000).unwrap(), Some(0));
    assert_eq!(log.offset_for_time(info.max_timestamp).unwrap(), Some(0));
    assert_eq!(log.offset_for_time(info.max_timestamp + 1).unwrap(), None);

    // The stamp survives an unclean reopen (recovery checks the recomputed CRC).
    drop(log);
    let log = PartitionLog::open(dir.path(), tiny_config()).unwrap();
    assert_eq!(read_all_batches(&log), stored);
}

#[test]
fn create_time_and_replicated_batches_are_stored_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), tiny_config()).unwrap();
    let produced = batch_of(3, 2, 20, 1_000);
    let mut buffer = produced.clone();
    log.append(&mut buffer, 2).unwrap();
    assert_eq!(buffer, stored_form(produced.clone(), 0, 2));

    // A follower keeps the leader's bytes even when its own config says LogAppendTime.
    let follower_dir = tempfile::tempdir().unwrap();
    let mut config = tiny_config();
    config
        .apply("message.timestamp.type", "LogAppendTime")
        .unwrap();
    let follower = PartitionLog::open(follower_dir.path(), config).unwrap();
    follower.append_replicated(&buffer).unwrap();
    assert_eq!(read_all_batches(&follower), vec![buffer]);
}
