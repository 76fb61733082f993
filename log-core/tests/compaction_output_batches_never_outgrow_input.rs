//! One output batch per input batch: a kept batch keeps its base offset, last offset
//! delta, producer fields, leader epoch and codec, its records keep their offsets (gaps
//! allowed), its CRC is valid; a batch that loses every record disappears unless it is
//! the last batch of its producer (then it stays, empty, for the producer's sequence).
//! No batch and no segment ever grows.

mod compaction_support;
mod log_support;

use std::collections::BTreeMap;

use compaction_support::*;
use weir_log::batch::{self, BatchHeader, Compression};
use weir_log::{LogConfig, PartitionLog};

const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];
const PRODUCER: i64 = 4242;

fn segment_sizes(dir: &std::path::Path) -> BTreeMap<u64, u64> {
    log_support::segment_logs(dir)
        .iter()
        .map(|p| {
            let base = p.file_stem().unwrap().to_str().unwrap().parse().unwrap();
            (base, std::fs::metadata(p).unwrap().len())
        })
        .collect()
}

#[test]
fn kept_batches_keep_their_fields_and_nothing_grows() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 4 * 1024,
        ..compact_config()
    };
    let log = PartitionLog::open(dir.path(), config).unwrap();
    let mut model = Model::new();
    let mut sequence = 0;
    // The producer's batches: its last one holds only keys that plain batches supersede.
    for round in 0..30u64 {
        let codec = CODECS[round as usize % CODECS.len()];
        let records: Vec<(String, Option<String>)> = (0..8)
            .map(|i| {
                let key = if round == 29 {
                    format!("p{i}")
                } else {
                    format!("k{}", (round * 8 + i) % 13)
                };
                (
                    key,
                    Some(format!("v{round}.{i}-{}", "y".repeat(20 + i as usize))),
                )
            })
            .collect();
        let producer = (round % 2 == 1).then_some((PRODUCER, sequence));
        if producer.is_some() {
            sequence += 8;
        }
        let mut b = keyed(codec, producer, &records, round as i64);
        let info = log.append(&mut b, 7).unwrap();
        for (i, r) in records.into_iter().enumerate() {
            model.insert(info.base_offset + i as u64, r);
        }
    }
    let last_producer_base = log.log_end_offset() - 8;
    for i in 0..8 {
        let record = (format!("p{i}"), Some("newer".to_string()));
        let mut b = keyed(Compression::None, None, std::slice::from_ref(&record), 100);
        model.insert(log.append(&mut b, 7).unwrap().base_offset, record);
    }
    // Roll the superseding records into sealed segments too.
    fill(&log, &mut model, 1_000, 40, 1_000);
    log.set_high_watermark(log.log_end_offset());
    let bound = cleaned_bound(dir.path(), log.log_end_offset());
    assert!(
        bound > last_producer_base + 16,
        "the producer's batch is below the bound"
    );

    let before = batches_by_base(&log);
    let sizes_before = segment_sizes(dir.path());
    let report = log.compact(1_000).unwrap();
    assert!(
        report.records_removed > 0 && report.segments_rewritten > 0,
        "{report:?}"
    );
    assert!(report.batches_after < report.batches_before, "{report:?}");
    assert!(report.bytes_after < report.bytes_before, "{report:?}");
    let after = batches_by_base(&log);
    let sizes_after = segment_sizes(dir.path());

    assert_eq!(
        sizes_after.keys().collect::<Vec<_>>(),
        sizes_before.keys().collect::<Vec<_>>()
    );
    for (base, size) in &sizes_after {
        assert!(*size <= sizes_before[base], "segment {base} grew");
    }
    assert!(after.len() < before.len(), "emptied batches disappeared");
    for (base, bytes) in &after {
        let old = &before[base];
        let (h, o) = (
            BatchHeader::parse(bytes).unwrap(),
            BatchHeader::parse(old).unwrap(),
        );
        batch::validate(bytes, usize::MAX).unwrap();
        assert!(bytes.len() <= old.len(), "batch {base} grew");
        assert!(h.record_count <= o.record_count);
        assert_eq!(h.last_offset_delta, o.last_offset_delta, "batch {base}");
        assert_eq!(
            (
                h.producer_id,
                h.producer_epoch,
                h.base_sequence,
                h.partition_leader_epoch
            ),
            (
                o.producer_id,
                o.producer_epoch,
                o.base_sequence,
                o.partition_leader_epoch
            ),
        );
        assert_eq!(h.base_timestamp, o.base_timestamp);
        if h.record_count > 0 {
            assert_eq!(
                h.compression().unwrap(),
                o.compression().unwrap(),
                "batch {base}"
            );
        }
        let old_records = batch::decode_records(old).unwrap();
        for r in batch::decode_records(bytes).unwrap() {
            assert!(
                old_records.contains(&r),
                "record {} came from its batch",
                r.offset
            );
        }
    }
    // The producer's last batch lost every record and stays as an empty batch.
    let last = BatchHeader::parse(&after[&last_producer_base]).unwrap();
    assert_eq!(
        (last.producer_id, last.record_count, last.last_offset_delta),
        (PRODUCER, 0, 7)
    );
    assert_eq!(records(&log), expected(&model, bound));
}
