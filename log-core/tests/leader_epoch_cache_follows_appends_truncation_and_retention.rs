//! The leader-epoch cache records the first offset of every epoch an append brings, and
//! answers OffsetsForLeaderEpoch as Kafka's leader does; truncation and retention cut it
//! with the log; a leader append below the latest epoch is refused; replicated buffers
//! with several epochs, and with the gaps of a compacted leader, record each epoch's first
//! batch.

mod epoch_support;
mod log_support;

use epoch_support::*;
use log_support::*;
use weir_log::{LogError, PartitionLog};

/// Batches of two records at epochs 1, 1, 3, 3, 7: offsets 0, 2, 4, 6, 8; log end 10.
fn epochs_1_1_3_3_7(dir: &std::path::Path) -> PartitionLog {
    let log = PartitionLog::open(dir, tiny_config()).unwrap();
    let bases: Vec<u64> = [1, 1, 3, 3, 7]
        .iter()
        .enumerate()
        .map(|(i, &epoch)| append_at(&log, i as u64, 2, epoch))
        .collect();
    assert_eq!(bases, vec![0, 2, 4, 6, 8]);
    log
}

#[test]
fn appends_at_epochs_1_1_3_3_7_record_where_each_epoch_starts() {
    let dir = tempfile::tempdir().unwrap();
    let log = epochs_1_1_3_3_7(dir.path());
    assert_eq!(epochs(&log), vec![(1, 0), (3, 4), (7, 8)]);
    assert_eq!(log.latest_leader_epoch(), Some(7));
    let answers: Vec<Option<(i32, u64)>> =
        (0..10).map(|e| log.leader_epoch_end_offset(e)).collect();
    assert_eq!(
        answers,
        vec![
            Some((0, 0)), // below the earliest epoch: where the earliest starts
            Some((1, 4)), // epoch 1 ends where 3 starts
            Some((1, 4)), // 2 never wrote here: answered by 1
            Some((3, 8)), // epoch 3 ends where 7 starts
            Some((3, 8)), // 4..6: answered by 3
            Some((3, 8)),
            Some((3, 8)),
            Some((7, 10)), // the latest epoch ends at the log end
            None,          // above the latest: undefined
            None,
        ]
    );
    assert_eq!(log.leader_epoch_end_offset(-1), None);
    let by_offset: Vec<Option<i32>> = (0..11).map(|o| log.leader_epoch_for_offset(o)).collect();
    let mut expected = vec![Some(1); 4];
    expected.extend([Some(3); 4]);
    expected.extend([Some(7), Some(7), None]);
    assert_eq!(by_offset, expected);
    assert_eq!(epochs(&log), epochs_of_batches(&log));
}

#[test]
fn a_leader_append_below_the_latest_epoch_is_refused_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = epochs_1_1_3_3_7(dir.path());
    let mut b = batch_of(99, 1, 10, 0);
    let err = log.append(&mut b, 6).unwrap_err();
    assert!(
        matches!(
            err,
            LogError::StaleLeaderEpoch {
                epoch: 6,
                latest_epoch: 7,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("leader epoch 6"), "{err}");
    assert_eq!(log.log_end_offset(), 10);
    assert_eq!(read_all_batches(&log).len(), 5);
    assert_eq!(epochs(&log), vec![(1, 0), (3, 4), (7, 8)]);
    // The log still takes appends in its epoch and above.
    assert_eq!(append_at(&log, 100, 1, 7), 10);
    assert_eq!(append_at(&log, 101, 1, 9), 11);
    assert_eq!(epochs(&log), vec![(1, 0), (3, 4), (7, 8), (9, 11)]);
}

#[test]
fn truncation_inside_an_epoch_keeps_it_and_at_its_first_offset_drops_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = epochs_1_1_3_3_7(dir.path());
    // Inside epoch 3 (its second batch starts at 6): 3 stays, 7 goes.
    log.truncate_to(7).unwrap();
    assert_eq!(log.log_end_offset(), 6);
    assert_eq!(epochs(&log), vec![(1, 0), (3, 4)]);
    assert_eq!(log.latest_leader_epoch(), Some(3));
    assert_eq!(log.leader_epoch_end_offset(3), Some((3, 6)));
    assert_eq!(log.leader_epoch_end_offset(7), None);
    // A new leader's epoch takes over where the cut left the log.
    assert_eq!(append_at(&log, 20, 2, 8), 6);
    assert_eq!(epochs(&log), vec![(1, 0), (3, 4), (8, 6)]);
    // Exactly at epoch 8's first offset: 8 goes whole.
    log.truncate_to(6).unwrap();
    assert_eq!(epochs(&log), vec![(1, 0), (3, 4)]);
    // At epoch 3's first offset.
    log.truncate_to(4).unwrap();
    assert_eq!(epochs(&log), vec![(1, 0)]);
    assert_eq!(log.leader_epoch_end_offset(1), Some((1, 4)));
    // The file says the same after a restart.
    drop(log);
    let log = PartitionLog::open(dir.path(), tiny_config()).unwrap();
    assert_eq!(epochs(&log), vec![(1, 0)]);
    // To the log start: an empty log knows no epoch.
    log.truncate_to(0).unwrap();
    assert_eq!(epochs(&log), vec![]);
    assert_eq!(log.latest_leader_epoch(), None);
    assert_eq!(log.leader_epoch_end_offset(1), None);
}

#[test]
fn retention_moves_the_earliest_epoch_start_to_the_log_start() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), tiny_config()).unwrap();
    // Epoch 2 for offsets 0..10, 5 for 10..20, 6 for 20..30; two batches per segment.
    for i in 0..30u64 {
        let epoch = [2, 5, 6][(i / 10) as usize];
        let mut b = batch_of(i, 1, 300, i as i64);
        log.append(&mut b, epoch).unwrap();
    }
    assert_eq!(log.segment_count(), 15);
    assert_eq!(epochs(&log), vec![(2, 0), (5, 10), (6, 20)]);
    // Just small enough to delete the six oldest segments: the log then starts at 12,
    // inside epoch 5.
    let oldest_six: u64 = segment_logs(dir.path())[..6]
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    let mut config = tiny_config();
    config.retention_bytes = Some(log.size_bytes() - oldest_six);
    log.set_config(config);
    let report = log.enforce_retention(0).unwrap();
    assert_eq!(report.log_start_offset, 12);
    assert_eq!(epochs(&log), vec![(5, 12), (6, 20)]);
    assert_eq!(epochs(&log), epochs_of_batches(&log));
    // An epoch wholly gone answers where the log's known history starts, as Kafka's.
    assert_eq!(log.leader_epoch_end_offset(2), Some((2, 12)));
    assert_eq!(log.leader_epoch_end_offset(5), Some((5, 20)));
    assert_eq!(log.leader_epoch_for_offset(11), None, "below the log start");
    drop(log);
    let log = PartitionLog::open(dir.path(), tiny_config()).unwrap();
    assert_eq!(epochs(&log), vec![(5, 12), (6, 20)]);
}

#[test]
fn a_replicated_buffer_with_several_epochs_records_each() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), tiny_config()).unwrap();
    let buffer = [
        leader_batch(1, 3, 0, 2),
        leader_batch(2, 2, 3, 2),
        leader_batch(3, 2, 5, 4),
        leader_batch(4, 1, 7, 5),
    ]
    .concat();
    let info = log.append_replicated(&buffer).unwrap();
    assert_eq!((info.base_offset, info.last_offset), (0, 7));
    assert_eq!(epochs(&log), vec![(2, 0), (4, 5), (5, 7)]);
    // The next buffer in the latest epoch changes nothing; one that starts a new epoch
    // mid-buffer records it where its first batch is.
    let more = [leader_batch(5, 2, 8, 5), leader_batch(6, 2, 10, 9)].concat();
    log.append_replicated(&more).unwrap();
    assert_eq!(epochs(&log), vec![(2, 0), (4, 5), (5, 7), (9, 10)]);
    assert_eq!(log.leader_epoch_end_offset(4), Some((4, 7)));
    assert_eq!(epochs(&log), epochs_of_batches(&log));
}

#[test]
fn replicated_batches_with_a_compacted_leaders_gaps_record_each_epochs_first_batch() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), tiny_config()).unwrap();
    // The leader compacted offsets 2..10 and 12..20 away; the first batch starts past the
    // follower's (empty) log end too.
    let buffer = [
        leader_batch(1, 2, 5, 1),
        leader_batch(2, 2, 10, 3),
        leader_batch(3, 2, 20, 3),
        leader_batch(4, 1, 30, 6),
    ]
    .concat();
    let info = log.append_replicated(&buffer).unwrap();
    assert_eq!((info.base_offset, info.last_offset), (5, 30));
    assert_eq!(log.log_end_offset(), 31);
    assert_eq!(epochs(&log), vec![(1, 5), (3, 10), (6, 30)]);
    assert_eq!(log.leader_epoch_end_offset(3), Some((3, 30)));
    assert_eq!(log.leader_epoch_end_offset(5), Some((3, 30)));
    assert_eq!(log.leader_epoch_for_offset(15), Some(3));
    assert_eq!(
        log.leader_epoch_for_offset(2),
        None,
        "below the first epoch"
    );
    assert_eq!(read_all_batches(&log).len(), 4, "stored as they came");
    // A truncation into a gap ends the log at the batch before it.
    log.truncate_to(25).unwrap();
    assert_eq!(log.log_end_offset(), 22);
    assert_eq!(epochs(&log), vec![(1, 5), (3, 10)]);
    drop(log);
    let log = PartitionLog::open(dir.path(), tiny_config()).unwrap();
    assert_eq!(epochs(&log), vec![(1, 5), (3, 10)]);
}

#[test]
fn a_replicated_lower_epoch_replaces_the_later_entries_as_kafkas_follower_does() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), tiny_config()).unwrap();
    log.append_replicated(&[leader_batch(1, 2, 0, 2), leader_batch(2, 2, 2, 5)].concat())
        .unwrap();
    log.append_replicated(&leader_batch(3, 2, 4, 4)).unwrap();
    assert_eq!(epochs(&log), vec![(2, 0), (4, 4)]);
    assert_eq!(log.latest_leader_epoch(), Some(4));
    // What a rebuild from the same batches gives, so a reopen without the file agrees.
    assert_eq!(epochs(&log), epochs_of_batches(&log));
}

#[test]
fn a_new_leader_assigns_its_epoch_at_the_log_end_before_any_batch() {
    let dir = tempfile::tempdir().unwrap();
    let log = epochs_1_1_3_3_7(dir.path());
    log.assign_leader_epoch(9).unwrap();
    assert_eq!(epochs(&log), vec![(1, 0), (3, 4), (7, 8), (9, 10)]);
    // A follower that led epoch 8 (unknown here) learns where 7 ended before any append.
    assert_eq!(log.leader_epoch_end_offset(8), Some((7, 10)));
    assert_eq!(log.leader_epoch_end_offset(9), Some((9, 10)));
    log.assign_leader_epoch(9).unwrap();
    let err = log.assign_leader_epoch(8).unwrap_err();
    assert!(matches!(err, LogError::StaleLeaderEpoch { .. }), "{err}");
    // Its first batch lands where the entry says.
    assert_eq!(append_at(&log, 30, 1, 9), 10);
    assert_eq!(epochs(&log), vec![(1, 0), (3, 4), (7, 8), (9, 10)]);
    // An epoch with no batch does not outlive a restart (Kafka's loader drops it too).
    log.assign_leader_epoch(11).unwrap();
    drop(log);
    let log = PartitionLog::open(dir.path(), tiny_config()).unwrap();
    assert_eq!(epochs(&log), vec![(1, 0), (3, 4), (7, 8), (9, 10)]);
}
