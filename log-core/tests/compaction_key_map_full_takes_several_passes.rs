//! A key map too small for the dirty part makes a pass clean only up to where the map
//! reaches; the next passes go on from the cleaner checkpoint, and together they leave
//! exactly the newest record per key. A batch with more records than the whole map is a
//! clear error, not a pass that never ends.

mod compaction_support;
mod log_support;

use compaction_support::*;
use weir_log::batch::Compression;
use weir_log::{LogConfig, LogError, PartitionLog};

/// 24 bytes a key: room for 36 keys (90 % of 40 slots).
const KEY_MAP_BYTES: u64 = 24 * 40;

fn config() -> LogConfig {
    LogConfig {
        compaction_key_map_bytes: KEY_MAP_BYTES,
        min_cleanable_dirty_ratio_ppm: 0,
        ..compact_config()
    }
}

#[test]
fn a_full_key_map_cleans_in_several_passes_that_end_right() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), config()).unwrap();
    let mut model = Model::new();
    // 100 keys, three versions each: 300 keys' worth of records for a 36-key map.
    fill(&log, &mut model, 0, 300, 100);
    log.set_high_watermark(log.log_end_offset());
    let bound = cleaned_bound(dir.path(), log.log_end_offset());

    let mut passes = 0;
    let mut clean_offsets = Vec::new();
    loop {
        let report = log.compact(1_000).unwrap();
        assert!(report.ran, "{report:?}");
        passes += 1;
        clean_offsets.push(report.clean_offset);
        if report.clean_offset == bound {
            break;
        }
        assert!(passes < 50, "passes made no progress: {clean_offsets:?}");
    }
    assert!(passes >= 300 / 36, "{passes} passes: {clean_offsets:?}");
    assert!(
        clean_offsets.windows(2).all(|w| w[0] < w[1]),
        "{clean_offsets:?}"
    );
    assert_eq!(records(&log), expected(&model, bound));

    // The checkpoint survives a restart: nothing is dirty any more.
    log.close().unwrap();
    let log = PartitionLog::open(dir.path(), config()).unwrap();
    let report = log.compact(2_000).unwrap();
    assert!(!report.ran, "{report:?}");
    assert_eq!(report.clean_offset, bound);
    assert_eq!(records(&log), expected(&model, bound));
}

#[test]
fn a_batch_bigger_than_the_key_map_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 16 * 1024,
        ..config()
    };
    let log = PartitionLog::open(dir.path(), config).unwrap();
    let records: Vec<(String, Option<String>)> = (0..50)
        .map(|i| (format!("key{i}"), Some("v".to_string())))
        .collect();
    log.append(&mut keyed(Compression::None, None, &records, 0), 0)
        .unwrap();
    // Roll it into a sealed segment.
    log.append(&mut keyed(Compression::None, None, &records, 0), 0)
        .unwrap();
    let filler = vec![("f".to_string(), Some("y".repeat(8 * 1024)))];
    for _ in 0..3 {
        log.append(&mut keyed(Compression::None, None, &filler, 0), 0)
            .unwrap();
    }
    log.set_high_watermark(log.log_end_offset());
    match log.compact(1_000) {
        Err(
            error @ LogError::CompactionKeyMapTooSmall {
                offset: 0,
                record_count: 50,
                ..
            },
        ) => {
            assert!(
                error.to_string().contains("compaction_key_map_bytes"),
                "{error}"
            );
        }
        other => panic!("expected a key map error, got {other:?}"),
    }
    // Nothing changed, and the log still takes writes.
    log.append(&mut keyed(Compression::None, None, &filler, 0), 0)
        .unwrap();
}
