//! Cost of validating a produced batch: the header check alone (sizes, magic, CRC-32C,
//! record count; what an append did before records were walked) against the whole
//! validation of an append (that, plus decompression and every record), for 1 MiB of
//! 100 B and 1 KiB records, uncompressed and lz4 and zstd; for compressed batches also
//! the CRC and decompression alone, to separate the walk from the codec.
//!
//! `cargo bench -p weir-log --bench validate -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use weir_log::batch::{
    validate_produced, BatchBuilder, Compression, ProduceChecks, RecordDecoder, RecordValidator,
    TimestampBounds,
};

const BATCH_RECORD_BYTES: usize = 1024 * 1024;
const NOW_MS: i64 = 1_760_000_000_000;

/// Text-like values (words from a small vocabulary), so the codecs have something to
/// compress, as with real records, but not one repeated byte.
fn value(seed: &mut u64, bytes: usize) -> Vec<u8> {
    const WORDS: [&str; 16] = [
        "page", "view", "click", "user", "session", "id", "2026", "GET", "/api/v1", "ok", "error",
        "latency", "ms", "region", "eu-west", "mobile",
    ];
    let mut out = Vec::with_capacity(bytes + 16);
    while out.len() < bytes {
        *seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        out.extend_from_slice(WORDS[(*seed >> 60) as usize].as_bytes());
        out.push(b' ');
        out.extend_from_slice(format!("{}", (*seed >> 40) % 10_000).as_bytes());
        out.push(b',');
    }
    out.truncate(bytes);
    out
}

/// About 1 MiB of records of `record_bytes` values each; returns the batch and its count.
fn batch(compression: Compression, record_bytes: usize) -> (Vec<u8>, u64) {
    let mut builder = BatchBuilder::new(compression);
    let mut seed = 42;
    let mut count = 0u64;
    let mut total = 0usize;
    while total < BATCH_RECORD_BYTES {
        let key = format!("key-{}", count % 1000);
        let value = value(&mut seed, record_bytes);
        builder.push(
            NOW_MS - 1_000 + count as i64,
            Some(key.as_bytes()),
            Some(&value),
            &[],
        );
        total += record_bytes;
        count += 1;
    }
    (builder.build().unwrap().to_vec(), count)
}

fn validation(c: &mut Criterion) {
    let checks = ProduceChecks {
        timestamp_bounds: Some(TimestampBounds {
            now_ms: NOW_MS,
            before_max_ms: i64::MAX as u64,
            after_max_ms: 3_600_000,
        }),
        ..ProduceChecks::new(2 * BATCH_RECORD_BYTES)
    };
    for record_bytes in [100, 1024] {
        for compression in [Compression::None, Compression::Lz4, Compression::Zstd] {
            let (batch, count) = batch(compression, record_bytes);
            let mut group = c.benchmark_group(format!("validate/{record_bytes}B/{compression}"));
            group.throughput(Throughput::Elements(count));
            group.bench_function("header_and_crc", |b| {
                b.iter(|| validate_produced(black_box(&batch), usize::MAX).unwrap())
            });
            if compression != Compression::None {
                // What the records walk adds to decompression: the CRC and decompression
                // alone, as a consumer's decoder does them.
                let mut decoder = RecordDecoder::new();
                group.bench_function("header_crc_and_decompression", |b| {
                    b.iter(|| {
                        decoder.records(black_box(&batch)).unwrap();
                    })
                });
            }
            let mut validator = RecordValidator::new();
            group.bench_function("every_record", |b| {
                b.iter(|| {
                    validator
                        .validate_produced(black_box(&batch), &checks)
                        .unwrap()
                })
            });
            group.finish();
            eprintln!(
                "validate/{record_bytes}B/{compression}: {count} records, {} batch bytes",
                batch.len()
            );
        }
    }
}

criterion_group!(benches, validation);
criterion_main!(benches);
