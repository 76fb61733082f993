//! Property tests of the append validation: every batch the builder makes from records
//! with sane timestamps passes it, and random damage behind a recomputed CRC never makes
//! it panic; whatever it lets through, a reader decodes whole.

mod batch_inputs;

use std::io::Write;

use batch_inputs::{build, compression_strategy, input_strategy};
use proptest::prelude::*;
use weir_log::batch::{
    compute_crc, decode_records, Compression, ProduceChecks, RecordValidator, TimestampBounds,
    BATCH_HEADER_BYTES, DECOMPRESSED_BYTES_MAX_DEFAULT,
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
        let mut encoder =
            flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(&batch[BATCH_HEADER_BYTES..]).unwrap();
        let compressed = encoder.finish().unwrap();
        batch.truncate(BATCH_HEADER_BYTES);
        batch.extend_from_slice(&compressed);
        let batch_length = i32::try_from(batch.len() - 12).unwrap();
        batch[8..12].copy_from_slice(&batch_length.to_be_bytes());
        batch[22] |= Compression::Gzip.id();
        fix_crc(&mut batch);
        check_accepted_batches_decode(&batch, &mut RecordValidator::new());
    }
}
