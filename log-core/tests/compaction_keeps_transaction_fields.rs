//! Compaction and transactions: a batch of a committed transaction that loses records is
//! rewritten as one batch with its transactional bit, producer id, epoch, base sequence
//! and last offset delta;
//! markers, and batches of aborted or undecided transactions, are kept whole; and a record
//! of an aborted transaction never makes compaction delete the value it did not replace.

mod log_support;

use log_support::*;
use weir_log::batch::{self, BatchBuilder, BatchHeader, Compression, ControlRecordType};
use weir_log::{CleanupPolicy, PartitionLog};

const COMMITTER: i64 = 77;
const ABORTER: i64 = 88;
const UNDECIDED: i64 = 99;

fn transactional(producer_id: i64, base_sequence: i32, records: &[(&str, &str)]) -> Vec<u8> {
    let mut builder = BatchBuilder::new(Compression::Lz4)
        .with_producer(producer_id, 3, base_sequence)
        .with_transactional(true);
    for (key, value) in records {
        builder.push(10, Some(key.as_bytes()), Some(value.as_bytes()), &[]);
    }
    builder.build().unwrap().to_vec()
}

fn marker(producer_id: i64, kind: ControlRecordType) -> Vec<u8> {
    let mut builder = BatchBuilder::new(Compression::None)
        .with_producer(producer_id, 3, -1)
        .with_transactional(true);
    builder.push_control(11, kind, 5);
    builder.build().unwrap().to_vec()
}

#[test]
fn committed_transaction_batches_keep_their_fields_when_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = tiny_config();
    config.cleanup_policy = CleanupPolicy::Compact;
    let log = PartitionLog::open(dir.path(), config).unwrap();
    // Producers may not write transactional batches or markers until transactions exist,
    // so they arrive as a follower receives a leader's: offsets and epoch already set.
    let append = |mut b: Vec<u8>| {
        let base_offset = i64::try_from(log.log_end_offset()).unwrap();
        batch::set_base_offset(&mut b, base_offset);
        batch::set_partition_leader_epoch(&mut b, 1);
        log.append_replicated(&b).unwrap().base_offset
    };

    append(keyed_batch(&[("plain", Some("kept"), 1)]));
    let committed_base = append(transactional(
        COMMITTER,
        10,
        &[("a", "a1"), ("b", "b1"), ("c", "c1")],
    ));
    append(keyed_batch(&[("b", Some("b2"), 2)]));
    append(marker(COMMITTER, ControlRecordType::Commit));
    let aborted_base = append(transactional(ABORTER, 0, &[("plain", "aborted")]));
    append(marker(ABORTER, ControlRecordType::Abort));
    let undecided_base = append(transactional(UNDECIDED, 0, &[("a", "maybe")]));
    // Roll everything above into sealed segments.
    for i in 0..12u64 {
        append(batch_of(1000 + i, 2, 100, 20));
    }
    assert!(log.segment_count() > 2);
    log.set_high_watermark(log.log_end_offset());

    let report = log.compact(100).unwrap();
    assert!(report.segments_rewritten > 0, "{report:?}");
    let batches = read_all_batches(&log);
    // The batches starting in base..base + span.
    let headers_in = |base: u64, span: u64| -> Vec<(BatchHeader, Vec<u8>)> {
        batches
            .iter()
            .map(|b| (BatchHeader::parse(b).unwrap(), b.clone()))
            .filter(|(h, _)| (base..base + span).contains(&(h.base_offset as u64)))
            .collect()
    };

    // The committed batch lost "b" (superseded at a later offset): it stays one batch with
    // a gap in its offset deltas.
    let kept = headers_in(committed_base, 3);
    assert_eq!(kept.len(), 1);
    let (header, bytes) = &kept[0];
    batch::validate(bytes, usize::MAX).unwrap();
    assert_eq!(header.base_offset as u64, committed_base);
    assert_eq!(header.last_offset_delta, 2);
    assert_eq!(header.record_count, 2);
    assert!(header.is_transactional(), "{header:?}");
    assert!(!header.is_control());
    assert_eq!(header.producer_id, COMMITTER);
    assert_eq!(header.producer_epoch, 3);
    assert_eq!(header.base_sequence, 10);
    assert_eq!(header.partition_leader_epoch, 1);
    assert_eq!(header.compression().unwrap(), Compression::Lz4);
    let offsets: Vec<i64> = batch::decode_records(bytes)
        .unwrap()
        .iter()
        .map(|r| r.offset)
        .collect();
    assert_eq!(offsets, [committed_base as i64, committed_base as i64 + 2]);

    // Markers and undecided or aborted data stay whole, bit for bit.
    let markers = batches
        .iter()
        .filter(|b| BatchHeader::parse(b).unwrap().is_control())
        .count();
    assert_eq!(markers, 2);
    for base in [aborted_base, undecided_base] {
        let kept = headers_in(base, 1);
        assert_eq!(kept.len(), 1);
        assert!(kept[0].0.is_transactional());
        assert_eq!(kept[0].0.record_count, 1);
    }

    // The aborted write of "plain" did not supersede the committed value.
    let records = read_all_records(&log);
    let values = |key: &str| -> Vec<String> {
        records
            .iter()
            .filter(|r| r.key.as_deref() == Some(key.as_bytes()))
            .map(|r| String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap())
            .collect()
    };
    assert_eq!(values("plain"), ["kept", "aborted"]);
    assert_eq!(values("b"), ["b2"]);
    // "a" of the undecided transaction supersedes nothing either.
    assert_eq!(values("a"), ["a1", "maybe"]);
}
