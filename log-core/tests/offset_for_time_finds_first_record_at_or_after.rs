//! `offset_for_time` returns the first offset whose record timestamp is at or after the
//! target, through the time index, across segments and after a reopen; None past the end.

mod log_support;

use log_support::*;
use weir_log::PartitionLog;

#[test]
fn finds_first_offset_at_or_after_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), tiny_config()).unwrap();
    // Batch i holds 3 records stamped 100 i, 100 i + 1, 100 i + 2 at offsets 3i..3i+2.
    for i in 0..50 {
        let mut b = batch_of(i, 3, 30, 100 * i as i64);
        log.append(&mut b, 0).unwrap();
    }
    assert!(log.segment_count() > 3);
    let check = |log: &PartitionLog| {
        assert_eq!(log.offset_for_time(i64::MIN).unwrap(), Some(0));
        assert_eq!(log.offset_for_time(0).unwrap(), Some(0));
        assert_eq!(log.offset_for_time(1).unwrap(), Some(1));
        assert_eq!(log.offset_for_time(3).unwrap(), Some(3));
        assert_eq!(log.offset_for_time(2_502).unwrap(), Some(77));
        assert_eq!(log.offset_for_time(4_902).unwrap(), Some(149));
        assert_eq!(log.offset_for_time(4_903).unwrap(), None);
        for t in (0..5_000).step_by(37) {
            let i = t / 100;
            let within = t % 100;
            let want = if within <= 2 {
                3 * i + within
            } else {
                3 * (i + 1)
            };
            let want = (want < 150).then_some(want as u64);
            assert_eq!(log.offset_for_time(t).unwrap(), want, "t = {t}");
        }
    };
    check(&log);
    log.close().unwrap();
    let log = PartitionLog::open(dir.path(), tiny_config()).unwrap();
    check(&log);
}
