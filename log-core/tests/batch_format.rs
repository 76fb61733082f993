//! RecordBatch v2 header, validation, splitting and builder/decoder round trips.

use weir_log::batch::{
    batches, decode_records, set_base_offset, set_log_append_time, set_partition_leader_epoch,
    set_producer, validate, validate_produced, BatchBuilder, BatchError, BatchHeader, Compression,
    ControlRecordType, RecordDecoder, TimestampType, BATCH_HEADER_BYTES, LOG_OVERHEAD_BYTES,
    MAGIC_V2,
};

fn sample_batch(compression: Compression) -> bytes::Bytes {
    let mut builder = BatchBuilder::new(compression);
    builder.push(1_000, Some(b"k0"), Some(b"v0"), &[]);
    builder.push(1_005, None, Some(b"v1"), &[("h", Some(b"x")), ("n", None)]);
    builder.push(999, Some(b"k2"), None, &[]);
    builder.build().unwrap()
}

#[test]
fn header_fields_match_what_was_built() {
    let batch = sample_batch(Compression::None);
    let header = validate(&batch, usize::MAX).unwrap();
    assert_eq!(header.base_offset, 0);
    assert_eq!(header.magic, MAGIC_V2);
    assert_eq!(header.size_bytes(), batch.len());
    assert_eq!(
        header.batch_length as usize + LOG_OVERHEAD_BYTES,
        batch.len()
    );
    assert_eq!(header.record_count, 3);
    assert_eq!(header.last_offset_delta, 2);
    assert_eq!(header.last_offset(), 2);
    assert_eq!(header.base_timestamp, 1_000);
    assert_eq!(header.max_timestamp, 1_005);
    assert_eq!(header.producer_id, -1);
    assert_eq!(header.partition_leader_epoch, -1);
    assert_eq!(header.compression().unwrap(), Compression::None);
    assert_eq!(header.timestamp_type(), TimestampType::CreateTime);
    assert!(!header.is_transactional());
    assert!(!header.is_control());
    assert_eq!(BatchHeader::parse(&batch).unwrap(), header);
}

#[test]
fn every_codec_round_trips_records() {
    for compression in Compression::ALL {
        let batch = sample_batch(compression);
        let header = validate(&batch, usize::MAX).unwrap();
        assert_eq!(header.compression().unwrap(), compression);
        let records = decode_records(&batch).unwrap();
        assert_eq!(records.len(), 3, "{compression}");
        assert_eq!(records[0].offset, 0);
        assert_eq!(records[0].timestamp, 1_000);
        assert_eq!(records[0].key.as_deref(), Some(&b"k0"[..]));
        assert_eq!(records[1].key, None);
        assert_eq!(records[1].headers.len(), 2);
        assert_eq!(records[1].headers[0].key, "h");
        assert_eq!(records[1].headers[0].value.as_deref(), Some(&b"x"[..]));
        assert_eq!(records[1].headers[1].value, None);
        assert_eq!(records[2].offset, 2);
        assert_eq!(records[2].timestamp, 999);
        assert_eq!(records[2].value, None);
    }
}

#[test]
fn rewriting_base_offset_and_epoch_keeps_the_crc_valid() {
    let mut batch = sample_batch(Compression::Lz4).to_vec();
    set_base_offset(&mut batch, 42);
    set_partition_leader_epoch(&mut batch, 7);
    let header = validate(&batch, usize::MAX).unwrap();
    assert_eq!(header.base_offset, 42);
    assert_eq!(header.partition_leader_epoch, 7);
    assert_eq!(header.last_offset(), 44);
    let offsets: Vec<i64> = decode_records(&batch)
        .unwrap()
        .iter()
        .map(|r| r.offset)
        .collect();
    assert_eq!(offsets, [42, 43, 44]);
}

#[test]
fn a_flipped_bit_inside_the_crc_range_fails_validation() {
    let batch = sample_batch(Compression::None).to_vec();
    for position in 21..batch.len() {
        let mut corrupt = batch.clone();
        corrupt[position] ^= 0x01;
        let err = validate(&corrupt, usize::MAX).unwrap_err();
        assert!(
            matches!(err, BatchError::CrcMismatch { .. }),
            "byte {position}: {err}"
        );
    }
}

#[test]
fn size_and_magic_problems_are_named() {
    let batch = sample_batch(Compression::None).to_vec();
    assert!(matches!(
        validate(&batch[..batch.len() - 1], usize::MAX),
        Err(BatchError::SizeMismatch { .. })
    ));
    assert!(matches!(
        validate(&batch, batch.len() - 1),
        Err(BatchError::TooLarge { .. })
    ));
    assert!(matches!(
        BatchHeader::parse(&batch[..BATCH_HEADER_BYTES - 1]),
        Err(BatchError::Truncated { .. })
    ));
    let mut old_magic = batch.clone();
    old_magic[16] = 1;
    assert!(matches!(
        validate(&old_magic, usize::MAX),
        Err(BatchError::UnsupportedMagic { magic: 1, .. })
    ));
    let mut short_length = batch;
    short_length[8..12].copy_from_slice(&48i32.to_be_bytes());
    assert!(matches!(
        BatchHeader::parse(&short_length),
        Err(BatchError::InvalidLength {
            batch_length: 48,
            ..
        })
    ));
}

#[test]
fn splitter_walks_concatenated_batches_and_stops_at_a_torn_tail() {
    let mut buf = Vec::new();
    let mut ends = Vec::new();
    for compression in Compression::ALL {
        buf.extend_from_slice(&sample_batch(compression));
        ends.push(buf.len());
    }
    let whole: Vec<_> = batches(&buf).collect::<Result<_, _>>().unwrap();
    assert_eq!(whole.len(), 5);
    for (index, (header, bytes)) in whole.iter().enumerate() {
        assert_eq!(header.compression().unwrap(), Compression::ALL[index]);
        assert_eq!(validate(bytes, usize::MAX).unwrap(), *header);
    }

    let torn = &buf[..ends[2] + 30];
    let mut splitter = batches(torn);
    assert!(splitter.next().unwrap().is_ok());
    assert!(splitter.next().unwrap().is_ok());
    assert!(splitter.next().unwrap().is_ok());
    let err = splitter.next().unwrap().unwrap_err();
    assert!(err.is_truncation(), "{err}");
    assert!(matches!(err, BatchError::Truncated { position, .. } if position == ends[2]));
    assert_eq!(splitter.position(), ends[2]);
    assert!(splitter.next().is_none());
    assert_eq!(batches(&[]).count(), 0);
}

#[test]
fn produced_batches_need_one_offset_per_record() {
    let batch = sample_batch(Compression::None).to_vec();
    assert!(validate_produced(&batch, usize::MAX).is_ok());
    // A compacted batch: last offset delta 5 but 3 records. Legal on disk,
    // refused from a producer.
    let mut compacted = batch.clone();
    compacted[23..27].copy_from_slice(&5i32.to_be_bytes());
    let crc = crc32c::crc32c(&compacted[21..]);
    compacted[17..21].copy_from_slice(&crc.to_be_bytes());
    assert!(validate(&compacted, usize::MAX).is_ok());
    assert!(matches!(
        validate_produced(&compacted, usize::MAX),
        Err(BatchError::InvalidRecordCount { .. })
    ));
    // More records than offsets is never legal.
    let mut overfull = batch;
    overfull[23..27].copy_from_slice(&1i32.to_be_bytes());
    let crc = crc32c::crc32c(&overfull[21..]);
    overfull[17..21].copy_from_slice(&crc.to_be_bytes());
    assert!(matches!(
        validate(&overfull, usize::MAX),
        Err(BatchError::InvalidRecordCount { .. })
    ));
}

#[test]
fn restamping_the_producer_keeps_the_batch_valid_and_its_records() {
    let mut builder = BatchBuilder::new(Compression::Lz4).with_producer(7, 0, 40);
    builder.push(1_000, Some(b"k0"), Some(b"v0"), &[]);
    builder.push(1_001, None, Some(b"v1"), &[]);
    let original = builder.build().unwrap();
    let mut batch = original.to_vec();
    set_producer(&mut batch, 8, 1, 0);
    let header = validate(&batch, usize::MAX).unwrap();
    assert_eq!(
        (
            header.producer_id,
            header.producer_epoch,
            header.base_sequence
        ),
        (8, 1, 0)
    );
    assert_eq!(
        decode_records(&batch).unwrap(),
        decode_records(&original).unwrap()
    );
    // Without the CRC update the batch would be refused.
    batch[51] ^= 1;
    assert!(validate(&batch, usize::MAX).is_err());
}

#[test]
fn log_append_time_stamps_every_record() {
    let mut batch = sample_batch(Compression::Zstd).to_vec();
    set_log_append_time(&mut batch, 77_000);
    let header = validate(&batch, usize::MAX).unwrap();
    assert_eq!(header.timestamp_type(), TimestampType::LogAppendTime);
    assert_eq!(header.max_timestamp, 77_000);
    assert!(decode_records(&batch)
        .unwrap()
        .iter()
        .all(|r| r.timestamp == 77_000));

    let mut builder = BatchBuilder::new(Compression::None).with_log_append_time(5);
    builder.push(1, None, Some(b"a"), &[]);
    let built = builder.build().unwrap();
    assert_eq!(validate(&built, usize::MAX).unwrap().max_timestamp, 5);
    assert_eq!(decode_records(&built).unwrap()[0].timestamp, 5);
}

#[test]
fn transactional_and_control_bits_are_set_and_read() {
    let mut builder = BatchBuilder::new(Compression::None)
        .with_producer(9, 2, 0)
        .with_transactional(true);
    builder.push_control(10, ControlRecordType::Commit, 3);
    let marker = builder.build().unwrap();
    let header = validate(&marker, usize::MAX).unwrap();
    assert!(header.is_transactional());
    assert!(header.is_control());
    assert_eq!(
        (
            header.producer_id,
            header.producer_epoch,
            header.base_sequence
        ),
        (9, 2, 0)
    );
    let records = decode_records(&marker).unwrap();
    let key = records[0].key.as_deref().unwrap();
    assert_eq!(
        ControlRecordType::from_key(key),
        Some(ControlRecordType::Commit)
    );

    // The control flag does not leak into the next batch; transactional stays.
    builder.push(11, None, Some(b"data"), &[]);
    let data = validate(&builder.build().unwrap(), usize::MAX).unwrap();
    assert!(!data.is_control());
    assert!(data.is_transactional());
}

#[test]
fn builder_is_reusable_and_refuses_empty_batches() {
    let mut builder = BatchBuilder::new(Compression::Snappy);
    assert!(builder.is_empty());
    assert!(matches!(builder.build(), Err(BatchError::Empty)));
    for round in 0..3u8 {
        for index in 0..10u8 {
            builder.push(
                i64::from(index),
                Some(&[round, index]),
                Some(&[index; 100]),
                &[],
            );
        }
        assert_eq!(builder.len(), 10);
        assert!(builder.estimated_size_bytes() > 1_000);
        let batch = builder.build().unwrap();
        assert!(builder.is_empty());
        let records = decode_records(&batch).unwrap();
        assert_eq!(records.len(), 10);
        assert_eq!(records[9].key.as_deref(), Some(&[round, 9][..]));
    }
}

#[test]
fn decoder_visits_borrowed_records() {
    let batch = sample_batch(Compression::Gzip);
    let mut decoder = RecordDecoder::new();
    let mut seen = Vec::new();
    let header = decoder
        .for_each_record(&batch, |_, record| {
            seen.push((
                record.offset,
                record.header_count(),
                record.headers().count(),
            ));
        })
        .unwrap();
    assert_eq!(header.record_count, 3);
    assert_eq!(seen, [(0, 0, 0), (1, 2, 2), (2, 0, 0)]);
}

#[test]
fn decompression_is_bounded() {
    let mut builder = BatchBuilder::new(Compression::Zstd);
    builder.push(0, None, Some(&[0u8; 100_000]), &[]);
    let batch = builder.build().unwrap();
    let mut decoder = RecordDecoder::with_decompressed_bytes_max(10_000);
    assert!(matches!(
        decoder.records(&batch),
        Err(BatchError::DecompressedTooLarge {
            limit_bytes: 10_000,
            ..
        })
    ));
}

#[test]
fn compression_names_parse_and_print() {
    for compression in Compression::ALL {
        assert_eq!(
            compression.to_string().parse::<Compression>().unwrap(),
            compression
        );
    }
    assert_eq!("LZ4".parse::<Compression>().unwrap(), Compression::Lz4);
    assert!("brotli".parse::<Compression>().is_err());
}

#[test]
fn codec_framing_matches_the_java_client() {
    // lz4 frame magic, FLG 0x60 (version 1, independent blocks, no checksums,
    // no content size) and BD 0x40 (64 KiB blocks): Lz4BlockOutputStream's header.
    let lz4 = sample_batch(Compression::Lz4);
    assert_eq!(&lz4[61..67], &[0x04, 0x22, 0x4d, 0x18, 0x60, 0x40]);
    // snappy-java's xerial stream header.
    let snappy = sample_batch(Compression::Snappy);
    assert_eq!(
        &snappy[61..77],
        b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01"
    );
    assert_eq!(&sample_batch(Compression::Gzip)[61..63], &[0x1f, 0x8b]);
    assert_eq!(
        &sample_batch(Compression::Zstd)[61..65],
        &[0x28, 0xb5, 0x2f, 0xfd]
    );
}

#[test]
fn raw_snappy_without_xerial_framing_decodes() {
    // Some clients (librdkafka) write plain snappy blocks.
    let plain = sample_batch(Compression::None);
    let compressed = snap::raw::Encoder::new()
        .compress_vec(&plain[BATCH_HEADER_BYTES..])
        .unwrap();
    let mut batch = plain[..BATCH_HEADER_BYTES].to_vec();
    batch.extend_from_slice(&compressed);
    let batch_length = i32::try_from(batch.len() - LOG_OVERHEAD_BYTES).unwrap();
    batch[8..12].copy_from_slice(&batch_length.to_be_bytes());
    batch[21..23].copy_from_slice(&2i16.to_be_bytes());
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    assert_eq!(
        decode_records(&batch).unwrap(),
        decode_records(&plain).unwrap()
    );
}

#[test]
fn shared_decoding_matches_and_borrows_the_batch() {
    let mut decoder = RecordDecoder::new();
    for compression in Compression::ALL {
        let batch = sample_batch(compression);
        let shared = decoder.decode_shared(&batch).unwrap();
        assert_eq!(shared, decode_records(&batch).unwrap(), "{compression}");
        if compression == Compression::None {
            // Zero copy: the value points into the batch buffer.
            let value = shared[0].value.as_ref().unwrap();
            let inside = batch.as_ptr_range();
            assert!(inside.contains(&value.as_ptr()));
        }
    }
}
