//! One-off measurement of a 1 GiB partition: append throughput, flush, open after a clean
//! close, recovery after an unclean stop, and a full read from the page cache.
//!
//! `cargo run --release -p weir-log --example log_1gib [dir]` (default: a temp dir).

use std::time::Instant;

use anyhow::Result;
use weir_log::batch::{BatchBuilder, Compression};
use weir_log::{FsyncPolicy, LogConfig, PartitionLog};

const TOTAL_BYTES: u64 = 1 << 30;

fn main() -> Result<()> {
    let temp = tempfile::tempdir()?;
    let dir = std::env::args()
        .nth(1)
        .map_or_else(|| temp.path().to_path_buf(), Into::into);
    let config = LogConfig {
        fsync: FsyncPolicy::Never,
        retention_ms: None,
        segment_bytes: 1 << 30,
        ..LogConfig::default()
    };

    let mut builder = BatchBuilder::new(Compression::None);
    let value = vec![7u8; 1024];
    while builder.estimated_size_bytes() + 1100 <= 1 << 20 {
        builder.push(1_700_000_000_000, Some(b"key"), Some(&value), &[]);
    }
    let records_per_batch = builder.len() as u64;
    let mut batch = builder.build()?.to_vec();

    let log = PartitionLog::open(&dir, config.clone())?;
    let start = Instant::now();
    let mut written = 0u64;
    let mut batches = 0u64;
    while written + batch.len() as u64 <= TOTAL_BYTES {
        log.append(&mut batch, 0)?;
        written += batch.len() as u64;
        batches += 1;
    }
    let append_s = start.elapsed().as_secs_f64();
    let start = Instant::now();
    log.flush()?;
    let flush_s = start.elapsed().as_secs_f64();
    println!(
        "append_1gib: {written} bytes, {} records in {append_s:.3} s = {:.0} MB/s, {:.0} records/s; flush {flush_s:.3} s; with flush {:.0} MB/s",
        batches * records_per_batch,
        written as f64 / append_s / 1e6,
        (batches * records_per_batch) as f64 / append_s,
        written as f64 / (append_s + flush_s) / 1e6,
    );
    log.close()?;

    let start = Instant::now();
    let log = PartitionLog::open(&dir, config.clone())?;
    println!(
        "open_after_clean_close_1gib_ms: {:.2}",
        start.elapsed().as_secs_f64() * 1e3
    );

    let start = Instant::now();
    let mut offset = log.log_start_offset();
    let mut read_bytes = 0u64;
    let mut buf = Vec::new();
    while offset < log.log_end_offset() {
        let slice = log.read(offset, 1 << 20, u64::MAX)?;
        buf.resize(slice.len(), 0);
        slice.read_into(&mut buf)?;
        read_bytes += slice.len() as u64;
        offset = slice.next_offset();
    }
    let read_s = start.elapsed().as_secs_f64();
    println!(
        "read_1gib_page_cache: {read_bytes} bytes in {read_s:.3} s = {:.0} MB/s",
        read_bytes as f64 / read_s / 1e6
    );

    drop(log); // unclean: no checkpoint
    let start = Instant::now();
    let log = PartitionLog::open(&dir, config)?;
    println!(
        "recovery_after_unclean_stop_1gib_ms: {:.1} (log end offset {})",
        start.elapsed().as_secs_f64() * 1e3,
        log.log_end_offset()
    );
    log.delete()?;
    Ok(())
}
