//! Property tests of the append validation: every batch the builder makes from records
//! with sane timestamps passes it, and random damage behind a recomputed CRC never makes
//! it panic; whatever it lets through, a reader decodes whole. One damaged byte of the
//! records (flipped, deleted, or the section cut there) gets the answer a consumer's
//! decoder implies: the walk of an append accepts exactly what readers read as a well
//! numbered batch within the timestamp bounds.

mod batch_inputs;

use std::io::Write;

use batch_inputs::{build, compression_strategy, input_strategy};
use proptest::prelude::*;
use weir_log::batch::{
    compute_crc, decode_records, validate, Compression, ProduceChecks, RecordValidator,
    TimestampBounds, TimestampType, BATCH_HEADER_BYTES, DECOMPRESSED_BYTES_MAX_DEFAULT,
};

const NOW_MS: i64 = 1_760_000_000_000;
const DAY_MS: i64 = 86_400_000;

fn checks() -> ProduceChecks {
    ProduceChecks {
        timestamp_bounds: Some(TimestampBounds {
            now_ms: NOW_MS,
            before_max_ms: i64::MAX as u64,
            after_max_ms: 3_600_000,
        }),
        ..ProduceChecks::new(usize::MAX)
    }
}

fn fix_crc(batch: &mut [u8]) {
    let crc = compute_crc(batch).unwrap();
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// Sets the batch length to the buffer's and recomputes the CRC: only the records can be
/// wrong.
fn reseal(batch: &mut [u8]) {
    let batch_length = i32::try_from(batch.len() - 12).unwrap();
    batch[8..12].copy_from_slice(&batch_length.to_be_bytes());
    fix_crc(batch);
}

/// The uncompressed `batch` with its records gzip-compressed as they are, damage included:
/// the records reach the walk through the decompression buffer.
fn gzip_records(mut batch: Vec<u8>) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(&batch[BATCH_HEADER_BYTES..]).unwrap();
    let compressed = encoder.finish().unwrap();
    batch.truncate(BATCH_HEADER_BYTES);
    batch.extend_from_slice(&compressed);
    batch[22] |= Compression::Gzip.id();
    reseal(&mut batch);
    batch
}

/// Bounds of two days either side of `NOW_MS`, so that no timestamp delta that overflows
/// the base timestamp (which readers wrap) lands inside them.
fn narrow_checks() -> ProduceChecks {
    ProduceChecks {
        timestamp_bounds: Some(TimestampBounds {
            now_ms: NOW_MS,
            before_max_ms: 2 * DAY_MS as u64,
            after_max_ms: 2 * DAY_MS as u64,
        }),
        ..ProduceChecks::new(usize::MAX)
    }
}

/// Whether a produced batch must be accepted, worked out from what a consumer's decoder
/// reads of it: it decodes, holds `record_count` records numbered 0, 1, ..., n-1, whose
/// timestamps are within `narrow_checks()` (or -1) and whose largest is the header's max
/// timestamp. Only the records section of a builder's batch (CreateTime, neither control
/// nor transactional) is damaged here, so the header's own checks are not repeated.
fn decoder_accepts(batch: &[u8]) -> bool {
    let (Ok(header), Ok(records)) = (validate(batch, usize::MAX), decode_records(batch)) else {
        return false;
    };
    assert_eq!(header.timestamp_type(), TimestampType::CreateTime);
    let bounds = narrow_checks().timestamp_bounds.unwrap();
    let earliest = bounds.now_ms - bounds.before_max_ms as i64;
    let latest = bounds.now_ms + bounds.after_max_ms as i64;
    records.len() == usize::try_from(header.record_count).unwrap()
        && (0..)
            .zip(&records)
            .all(|(delta, record)| record.offset == header.base_offset + delta)
        && records
            .iter()
            .all(|record| record.timestamp == -1 || (earliest..=latest).contains(&record.timestamp))
        && records.iter().map(|record| record.timestamp).max() == Some(header.max_timestamp)
}

/// One damaged byte of a records section.
#[derive(Debug, Clone, Copy)]
enum Damage {
    Flip { mask: u8 },
    Delete,
    CutAt,
}

fn damage_strategy() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (1u8..=255).prop_map(|mask| Damage::Flip { mask }),
        Just(Damage::Delete),
        Just(Damage::CutAt),
    ]
}

/// Whatever the validator accepts must decode whole, as a consumer decodes it.
fn check_accepted_batches_decode(batch: &[u8], validator: &mut RecordValidator) {
    if let Ok(header) = validator.validate_produced(batch, &checks()) {
        let records = decode_records(batch).expect("an accepted batch decodes");
        assert_eq!(records.len(), usize::try_from(header.record_count).unwrap());
    }
    if let Ok(header) = validator.validate_stored(batch, DECOMPRESSED_BYTES_MAX_DEFAULT) {
        let records = decode_records(batch).expect("an accepted batch decodes");
        assert!(records.len() <= usize::try_from(header.record_count).unwrap());
    }
}

proptest! {
    #[test]
    fn builder_batches_pass_validation(
        compression in compression_strategy(),
        inputs in prop::collection::vec(input_strategy(prop_oneof![Just(-1i64), (NOW_MS - DAY_MS)..(NOW_MS + 60_000)]), 1..20),
    ) {
        let batch = build(compression, &inputs);
        let mut validator = RecordValidator::new();
        let header = validator.validate_produced(&batch, &checks()).unwrap();
        prop_assert_eq!(header.record_count as usize, inputs.len());
        validator.validate_stored(&batch, DECOMPRESSED_BYTES_MAX_DEFAULT).unwrap();
    }

    #[test]
    fn damage_behind_a_valid_crc_never_panics_validation(
        compression in compression_strategy(),
        inputs in prop::collection::vec(input_strategy(prop_oneof![Just(-1i64), (NOW_MS - DAY_MS)..(NOW_MS + 60_000)]), 1..8),
        flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..6),
        in_header in any::<bool>(),
    ) {
        let mut batch = build(compression, &inputs);
        // Header fields inside the CRC (attributes on), or the records section.
        let start = if in_header { 21 } else { BATCH_HEADER_BYTES };
        let span = batch.len() - start;
        for (at, mask) in &flips {
            batch[start + at.index(span)] ^= mask;
        }
        fix_crc(&mut batch);
        check_accepted_batches_decode(&batch, &mut RecordValidator::new());
    }

    #[test]
    fn damaged_records_inside_a_valid_gzip_stream_never_panic_validation(
        inputs in prop::collection::vec(input_strategy(prop_oneof![Just(-1i64), (NOW_MS - DAY_MS)..(NOW_MS + 60_000)]), 1..8),
        flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..6),
    ) {
        let mut batch = build(Compression::None, &inputs);
        let span = batch.len() - BATCH_HEADER_BYTES;
        for (at, mask) in &flips {
            batch[BATCH_HEADER_BYTES + at.index(span)] ^= mask;
        }
        check_accepted_batches_decode(&gzip_records(batch), &mut RecordValidator::new());
    }

    #[test]
    fn one_damaged_record_byte_is_refused_unless_readers_read_a_valid_batch(
        inputs in prop::collection::vec(input_strategy(prop_oneof![Just(-1i64), (NOW_MS - DAY_MS)..(NOW_MS + 60_000)]), 1..8),
        at in any::<prop::sample::Index>(),
        damage in damage_strategy(),
        gzip in any::<bool>(),
    ) {
        let mut batch = build(Compression::None, &inputs);
        let at = BATCH_HEADER_BYTES + at.index(batch.len() - BATCH_HEADER_BYTES);
        match damage {
            Damage::Flip { mask } => batch[at] ^= mask,
            Damage::Delete => {
                batch.remove(at);
            }
            Damage::CutAt => batch.truncate(at),
        }
        reseal(&mut batch);
        let batch = if gzip { gzip_records(batch) } else { batch };
        let verdict = RecordValidator::new().validate_produced(&batch, &narrow_checks());
        prop_assert_eq!(verdict.is_ok(), decoder_accepts(&batch), "validation: {:?}", verdict);
    }
}
