//! A pass streams a cleaned segment to its `.cleaned` file as it rewrites it, through a
//! bounded buffer, instead of building the whole segment in memory first: the file grows
//! by writes of at most 256 KiB (plus one batch), and a segment of a few MiB takes several.
//! Seen through the power-loss simulator, which records every write the engine makes.

mod compaction_support;
mod log_support;

use compaction_support::*;
use weir_log::batch::Compression;
use weir_log::fault::power_loss;
use weir_log::{LogConfig, PartitionLog};

const WRITE_BUFFER_BYTES: u64 = 256 * 1024;

#[test]
fn a_cleaned_segment_reaches_its_file_in_bounded_writes() {
    let dir = tempfile::tempdir().unwrap();
    let guard = power_loss::arm(dir.path()).unwrap();
    let config = LogConfig {
        segment_bytes: 2 << 20,
        index_bytes_max: 1 << 20,
        index_interval_bytes: 4096,
        ..compact_config()
    };
    let log = PartitionLog::open(dir.path(), config).unwrap();
    let mut model = Model::new();
    let mut batch_bytes_max = 0;
    let mut i = 0u64;
    // Every other record has a key of its own; the others all overwrite one key, so about
    // half of each segment stays and half goes.
    while log.segment_count() < 3 {
        let key = if i.is_multiple_of(2) {
            format!("k{i}")
        } else {
            "dup".to_string()
        };
        let record = (key, Some(format!("v{i}-{}", "x".repeat(200))));
        let mut b = keyed(
            Compression::None,
            None,
            std::slice::from_ref(&record),
            i as i64,
        );
        batch_bytes_max = batch_bytes_max.max(b.len() as u64);
        let info = log.append(&mut b, 0).unwrap();
        model.insert(info.base_offset, record);
        i += 1;
    }
    log.set_high_watermark(log.log_end_offset());
    let bound = cleaned_bound(dir.path(), log.log_end_offset());
    let events_before = guard.events();
    let report = log.compact(1_000).unwrap();
    assert!(report.segments_rewritten >= 1, "{report:?}");
    assert_eq!(records(&log), expected(&model, bound));

    let history = guard.history(usize::MAX);
    let writes: Vec<u64> = history
        .lines()
        .filter_map(|line| {
            let (number, event) = line.trim().strip_prefix('#')?.split_once(' ')?;
            let number: u64 = number.parse().ok()?;
            let rest = event.strip_prefix("write 00000000000000000000.log.cleaned @")?;
            (number > events_before).then(|| rest.split_once(" +")?.1.parse().ok())?
        })
        .collect();
    let written: u64 = writes.iter().sum();
    assert!(written > 2 * WRITE_BUFFER_BYTES, "{written} bytes cleaned");
    assert!(writes.len() >= 3, "{} writes: {writes:?}", writes.len());
    assert!(
        writes
            .iter()
            .all(|&w| w <= WRITE_BUFFER_BYTES + batch_bytes_max),
        "a write bigger than the buffer: {writes:?}"
    );
}
