//! No input makes the batch module panic: raw bytes go through splitting,
//! validation and decoding; the same bytes behind a header with a matching
//! CRC (and a codec picked by the first byte) reach the record decoder and
//! the decompressors. Run: `cargo +nightly fuzz run batch_decode` in log-core.

#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_log::batch::{batches, decode_records, validate, RecordDecoder, BATCH_HEADER_BYTES};

fuzz_target!(|data: &[u8]| {
    for batch in batches(data) {
        match batch {
            Ok((_, bytes)) => {
                let _ = validate(bytes, usize::MAX);
                let _ = decode_records(bytes);
            }
            Err(_) => break,
        }
    }

    let Some((&selector, records)) = data.split_first() else {
        return;
    };
    let codec = i16::from(selector % 5);
    let record_count = i32::from(selector / 5);
    let mut batch = vec![0u8; BATCH_HEADER_BYTES];
    batch.extend_from_slice(records);
    let Ok(batch_length) = i32::try_from(batch.len() - 12) else {
        return;
    };
    batch[8..12].copy_from_slice(&batch_length.to_be_bytes());
    batch[16] = 2;
    batch[21..23].copy_from_slice(&codec.to_be_bytes());
    batch[23..27].copy_from_slice(&(record_count.max(1) - 1).to_be_bytes());
    batch[57..61].copy_from_slice(&record_count.to_be_bytes());
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    let mut decoder = RecordDecoder::with_decompressed_bytes_max(1 << 24);
    if let Ok(records) = decoder.records(&batch) {
        for record in records {
            match record {
                Ok(record) => {
                    let _ = record.headers().count();
                }
                Err(_) => break,
            }
        }
    }
});
