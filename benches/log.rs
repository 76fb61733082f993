//! Costs of one partition log: append throughput (100 B and 1 KiB records in 16 KiB and
//! 1 MiB batches, fsync never and every 50 ms), read throughput from the page cache, and
//! open after a clean close and after an unclean stop.
//!
//! `cargo bench --bench log`. Appends run against a real directory under the system temp
//! dir; the log is emptied (untimed) every `LOG_RESET_BYTES` so a run stays within disk.
//! The 1 GiB reopen and recovery figures come from `cargo run --release -p weir-log
//! --example log_1gib`.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use weir_log::batch::{BatchBuilder, Compression};
use weir_log::{CleanupPolicy, FsyncPolicy, LogConfig, PartitionLog};

const LOG_RESET_BYTES: u64 = 1 << 30;

fn config(fsync: FsyncPolicy, segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        segment_ms: u64::MAX / 2,
        index_interval_bytes: 4096,
        index_bytes_max: 10 * 1024 * 1024,
        max_message_bytes: 2 * 1024 * 1024,
        retention_ms: None,
        retention_bytes: None,
        cleanup_policy: CleanupPolicy::Delete,
        delete_retention_ms: 0,
        fsync,
        ..LogConfig::default()
    }
}

/// One uncompressed batch of `record_bytes`-byte values filling about `batch_bytes`.
fn batch(record_bytes: usize, batch_bytes: usize) -> (Vec<u8>, u64) {
    let mut builder = BatchBuilder::new(Compression::None);
    let value: Vec<u8> = (0..record_bytes).map(|i| (i * 31) as u8).collect();
    let mut count = 0u64;
    while builder.estimated_size_bytes() + record_bytes + 20 <= batch_bytes {
        let key = format!("key-{}", count % 1000);
        builder.push(
            1_700_000_000_000 + count as i64,
            Some(key.as_bytes()),
            Some(&value),
            &[],
        );
        count += 1;
    }
    (builder.build().expect("batch").to_vec(), count)
}

fn fill(log: &PartitionLog, total_bytes: u64, record_bytes: usize, batch_bytes: usize) {
    let (mut b, _) = batch(record_bytes, batch_bytes);
    let mut written = 0;
    while written < total_bytes {
        log.append(&mut b, 0).expect("append");
        written += b.len() as u64;
    }
}

fn bench_append(c: &mut Criterion) {
    let policies = [
        ("never", FsyncPolicy::Never),
        ("interval_50ms", FsyncPolicy::IntervalMs(50)),
    ];
    for (unit, by_bytes) in [("bytes", true), ("records", false)] {
        let mut group = c.benchmark_group(format!("append_{unit}"));
        group
            .sample_size(10)
            .measurement_time(Duration::from_secs(4));
        for record_bytes in [100usize, 1024] {
            for batch_bytes in [16 * 1024usize, 1024 * 1024] {
                for (policy_name, policy) in policies {
                    let (template, records) = batch(record_bytes, batch_bytes);
                    group.throughput(if by_bytes {
                        Throughput::Bytes(template.len() as u64)
                    } else {
                        Throughput::Elements(records)
                    });
                    let id = BenchmarkId::from_parameter(format!(
                        "rec{record_bytes}B/batch{}KiB/fsync_{policy_name}",
                        batch_bytes / 1024
                    ));
                    let dir = tempfile::tempdir().expect("temp dir");
                    let log =
                        PartitionLog::open(dir.path(), config(policy, 256 << 20)).expect("open");
                    let mut buf = template.clone();
                    group.bench_function(id, |b| {
                        b.iter_custom(|iters| {
                            let mut elapsed = Duration::ZERO;
                            for _ in 0..iters {
                                if log.size_bytes() > LOG_RESET_BYTES {
                                    log.truncate_to(log.log_start_offset()).expect("reset");
                                }
                                let start = Instant::now();
                                log.append(&mut buf, 0).expect("append");
                                elapsed += start.elapsed();
                            }
                            elapsed
                        })
                    });
                    log.delete().expect("delete");
                }
            }
        }
        group.finish();
    }
}

fn bench_read(c: &mut Criterion) {
    let mut group = c.benchmark_group("read_page_cache");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(4));
    let dir = tempfile::tempdir().expect("temp dir");
    let log = PartitionLog::open(dir.path(), config(FsyncPolicy::Never, 256 << 20)).expect("open");
    fill(&log, 512 << 20, 1024, 16 * 1024);
    let max_bytes = 1 << 20;
    let slice_len = log.read(0, max_bytes, u64::MAX).expect("read").len();
    group.throughput(Throughput::Bytes(slice_len as u64));
    let end = log.log_end_offset();
    let mut buf = vec![0u8; slice_len];
    let mut offset = 0;
    group.bench_function("1MiB_fetches_into_reused_buffer", |b| {
        b.iter(|| {
            let slice = log.read(offset, max_bytes, u64::MAX).expect("read");
            buf.resize(slice.len(), 0);
            slice.read_into(&mut buf).expect("pread");
            offset = if slice.next_offset() >= end {
                0
            } else {
                slice.next_offset()
            };
        })
    });
    offset = 0;
    group.bench_function("1MiB_fetches_to_bytes", |b| {
        b.iter(|| {
            let slice = log.read(offset, max_bytes, u64::MAX).expect("read");
            let bytes = slice.to_bytes().expect("pread");
            offset = if slice.next_offset() >= end {
                0
            } else {
                slice.next_offset()
            };
            bytes
        })
    });
    group.finish();
}

fn bench_reopen(c: &mut Criterion) {
    let mut group = c.benchmark_group("open");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    let total_bytes: u64 = 256 << 20;
    group.throughput(Throughput::Bytes(total_bytes));
    // Clean: 64 MiB segments, nothing scanned.
    let dir = tempfile::tempdir().expect("temp dir");
    let clean_config = config(FsyncPolicy::Never, 64 << 20);
    let log = PartitionLog::open(dir.path(), clean_config.clone()).expect("open");
    fill(&log, total_bytes, 1024, 16 * 1024);
    let mut held = Some(log);
    group.bench_function("after_clean_close_256MiB", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iters {
                if let Some(log) = held.take() {
                    log.close().expect("close");
                }
                let start = Instant::now();
                held = Some(PartitionLog::open(dir.path(), clean_config.clone()).expect("open"));
                elapsed += start.elapsed();
            }
            elapsed
        })
    });
    drop(held);
    // Unclean: one 256 MiB active segment, scanned and validated batch by batch.
    let dir = tempfile::tempdir().expect("temp dir");
    let unclean_config = config(FsyncPolicy::Never, 1 << 30);
    let log = PartitionLog::open(dir.path(), unclean_config.clone()).expect("open");
    fill(&log, total_bytes, 1024, 16 * 1024);
    let mut held = Some(log);
    group.bench_function("recovery_after_unclean_stop_256MiB", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iters {
                drop(held.take());
                let start = Instant::now();
                held = Some(PartitionLog::open(dir.path(), unclean_config.clone()).expect("open"));
                elapsed += start.elapsed();
            }
            elapsed
        })
    });
    group.finish();
}

criterion_group!(benches, bench_append, bench_read, bench_reopen);
criterion_main!(benches);
