//! Readers running alongside an appender (with rolls) only ever see whole, valid batches
//! with contiguous offsets, up to the published log end.

mod log_support;

use std::sync::Arc;
use std::thread;

use log_support::*;
use weir_log::batch;
use weir_log::PartitionLog;

const BATCHES: u64 = 1500;

#[test]
fn readers_never_see_partial_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = tiny_config();
    config.segment_bytes = 8 * 1024;
    config.index_bytes_max = 1024;
    let log = Arc::new(PartitionLog::open(dir.path(), config).unwrap());
    let writer = {
        let log = Arc::clone(&log);
        thread::spawn(move || {
            for i in 0..BATCHES {
                let mut b = batch_of(i, 1, 64 + (i % 50) as usize, i as i64);
                log.append(&mut b, 0).unwrap();
            }
        })
    };
    let readers: Vec<_> = (0..3)
        .map(|r| {
            let log = Arc::clone(&log);
            thread::spawn(move || {
                let mut offset = 0u64;
                let mut seen = 0u64;
                while offset < BATCHES {
                    let slice = log.read(offset, 700 * (r + 1), u64::MAX).unwrap();
                    if slice.is_empty() {
                        thread::yield_now();
                        continue;
                    }
                    let bytes = slice.to_bytes().unwrap();
                    let mut expected = offset;
                    for item in batch::batches(&bytes) {
                        let (header, b) = item.unwrap();
                        batch::validate(b, usize::MAX).unwrap();
                        assert_eq!(header.base_offset as u64, expected);
                        expected = header.next_offset() as u64;
                        seen += 1;
                    }
                    assert_eq!(expected, slice.next_offset());
                    offset = slice.next_offset();
                }
                seen
            })
        })
        .collect();
    writer.join().unwrap();
    for reader in readers {
        assert_eq!(reader.join().unwrap(), BATCHES);
    }
    assert!(log.segment_count() > 5);
}
