//! Property: any sequence of appends (any sizes, record counts, compression-free batches,
//! several batches per append) reads back identical, across segment rolls and after both a
//! clean and an unclean reopen.

mod log_support;

use log_support::*;
use proptest::prelude::*;
use weir_log::PartitionLog;

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]
    #[test]
    fn appends_read_back_identically(
        appends in proptest::collection::vec(
            proptest::collection::vec((any::<u64>(), 1usize..5, 0usize..300), 1..4),
            1..30,
        ),
        segment_bytes in 200u64..3000,
        clean in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut config = tiny_config();
        config.segment_bytes = segment_bytes;
        let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
        let mut expected = Vec::new();
        for batches in appends {
            let mut buffer = Vec::new();
            let mut sizes = Vec::new();
            for (seed, records, value_bytes) in batches {
                let b = batch_of(seed, records, value_bytes, seed as i64 % 10_000);
                sizes.push(b.len());
                buffer.extend_from_slice(&b);
            }
            log.append(&mut buffer, 2).unwrap();
            let mut at = 0;
            for size in sizes {
                expected.push(buffer[at..at + size].to_vec());
                at += size;
            }
        }
        prop_assert_eq!(&read_all_batches(&log), &expected);
        if clean {
            log.close().unwrap();
        } else {
            drop(log);
        }
        let log = PartitionLog::open(dir.path(), config).unwrap();
        prop_assert_eq!(&read_all_batches(&log), &expected);
    }
}
