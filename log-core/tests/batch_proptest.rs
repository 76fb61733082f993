//! Property tests: every codec round-trips arbitrary records, and no input —
//! random, bit-flipped, or garbage behind a valid CRC — makes validation,
//! splitting or decoding panic.

mod batch_inputs;

use batch_inputs::{build, compression_strategy, input_strategy, Header};
use proptest::prelude::*;
use weir_log::batch::{
    batches, decode_records, validate, BatchError, Compression, RecordDecoder, BATCH_HEADER_BYTES,
};

/// Gives `records` a header with the right length and CRC, so only the
/// record decoder stands between the bytes and the caller.
fn with_valid_header(compression: Compression, record_count: i32, records: &[u8]) -> Vec<u8> {
    let mut batch = vec![0u8; BATCH_HEADER_BYTES];
    batch.extend_from_slice(records);
    let batch_length = i32::try_from(batch.len() - 12).unwrap();
    batch[8..12].copy_from_slice(&batch_length.to_be_bytes());
    batch[16] = 2;
    batch[21..23].copy_from_slice(&i16::from(compression.id()).to_be_bytes());
    batch[23..27].copy_from_slice(&(record_count.max(1) - 1).to_be_bytes());
    batch[57..61].copy_from_slice(&record_count.to_be_bytes());
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    batch
}

proptest! {
    #[test]
    fn records_round_trip_through_every_codec(
        compression in compression_strategy(),
        inputs in prop::collection::vec(input_strategy(any::<i64>()), 1..20),
    ) {
        let batch = build(compression, &inputs);
        let header = validate(&batch, usize::MAX).unwrap();
        prop_assert_eq!(header.record_count as usize, inputs.len());
        prop_assert_eq!(header.max_timestamp, inputs.iter().map(|i| i.timestamp).max().unwrap());
        let records = decode_records(&batch).unwrap();
        prop_assert_eq!(records.len(), inputs.len());
        let shared = RecordDecoder::new().decode_shared(&bytes::Bytes::from(batch.clone())).unwrap();
        prop_assert_eq!(&shared, &records);
        for (index, (record, input)) in records.iter().zip(&inputs).enumerate() {
            prop_assert_eq!(record.offset, index as i64);
            prop_assert_eq!(record.timestamp, input.timestamp);
            prop_assert_eq!(record.key.as_deref(), input.key.as_deref());
            prop_assert_eq!(record.value.as_deref(), input.value.as_deref());
            let headers: Vec<Header> = record
                .headers
                .iter()
                .map(|h| (h.key.clone(), h.value.as_ref().map(|v| v.to_vec())))
                .collect();
            prop_assert_eq!(&headers, &input.headers);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = validate(&bytes, usize::MAX);
        let _ = decode_records(&bytes);
        let mut splitter = batches(&bytes);
        let mut whole_bytes = 0;
        for batch in &mut splitter {
            match batch {
                Ok((header, slice)) => {
                    prop_assert_eq!(header.size_bytes(), slice.len());
                    whole_bytes += slice.len();
                }
                Err(_) => break,
            }
        }
        prop_assert_eq!(splitter.position(), whole_bytes);
    }

    #[test]
    fn a_flipped_bit_in_the_crc_range_is_always_an_error(
        compression in compression_strategy(),
        inputs in prop::collection::vec(input_strategy(any::<i64>()), 1..8),
        flip in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let mut batch = build(compression, &inputs);
        let position = 21 + flip.index(batch.len() - 21);
        batch[position] ^= 1 << bit;
        prop_assert!(validate(&batch, usize::MAX).is_err(), "flip at byte {}", position);
        prop_assert!(decode_records(&batch).is_err());
    }

    #[test]
    fn a_flipped_bit_anywhere_never_panics(
        compression in compression_strategy(),
        inputs in prop::collection::vec(input_strategy(any::<i64>()), 1..8),
        flip in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let mut batch = build(compression, &inputs);
        let position = flip.index(batch.len());
        batch[position] ^= 1 << bit;
        let _ = validate(&batch, usize::MAX);
        let _ = decode_records(&batch);
        let _ = batches(&batch).count();
    }

    #[test]
    fn garbage_behind_a_valid_crc_is_an_error_not_a_panic(
        compression in compression_strategy(),
        record_count in 0i32..50,
        records in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let batch = with_valid_header(compression, record_count, &records);
        let mut decoder = RecordDecoder::with_decompressed_bytes_max(1 << 20);
        if let Ok(iter) = decoder.records(&batch) {
            for record in iter {
                if record.is_err() {
                    break;
                }
            }
        }
        let _ = decode_records(&batch);
        let _ = decoder.decode_shared(&bytes::Bytes::from(batch));
    }

    #[test]
    fn truncating_a_batch_is_reported_as_truncation(
        compression in compression_strategy(),
        inputs in prop::collection::vec(input_strategy(any::<i64>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let batch = build(compression, &inputs);
        let cut = cut.index(batch.len());
        let mut splitter = batches(&batch[..cut]);
        if cut == 0 {
            prop_assert!(splitter.next().is_none());
        } else {
            let err = splitter.next().unwrap().unwrap_err();
            prop_assert!(matches!(err, BatchError::Truncated { position: 0, .. }), "{}", err);
        }
    }
}
