//! A replica's log cut by a leader change, and its idempotent-producer
//! state: what the cut removed is forgotten, in memory and in the snapshot.

use bytes::BytesMut;
use weir_log::batch::{BatchBuilder, Compression};
use weir_log::LogConfig;

use crate::partition::Partition;

const PRODUCER: i64 = 7;

/// One record of producer `producer_id` at epoch 0, sequence `sequence`.
fn sequenced(producer_id: i64, sequence: i32, value: &str) -> BytesMut {
    let mut builder = BatchBuilder::new(Compression::None).with_producer(producer_id, 0, sequence);
    builder.push(0, None, Some(value.as_bytes()), &[]);
    BytesMut::from(&builder.build().unwrap()[..])
}

/// A cluster replica's partition in `dir` (it follows until told to lead).
fn open(dir: &std::path::Path) -> Partition {
    Partition::open_replica(
        dir,
        "t",
        0,
        LogConfig::default(),
        0,
        crate::clock::system_clock(),
    )
    .unwrap()
}

/// Copies everything `leader` has beyond `follower`'s end.
fn catch_up(leader: &Partition, follower_id: u64, follower: &Partition) {
    loop {
        let read = leader
            .read_for_follower(follower_id, follower.log_end_offset(), 1 << 20)
            .unwrap();
        if read.batches.is_empty() {
            return;
        }
        follower
            .append_from_leader(
                follower.log_end_offset(),
                &read.batches,
                read.high_watermark,
            )
            .unwrap();
    }
}

/// The chaos test's stall: broker A leads, appends a producer's batch no
/// follower copies, loses leadership to B (which writes nothing), cuts the
/// batch, and leads again. The producer's retry of that batch must be
/// appended: answered as a duplicate at the cut offsets, an `acks=all`
/// produce waited for a high watermark that never passed them, every retry.
#[test]
fn a_retry_of_a_batch_cut_by_a_leader_change_is_appended_again_not_answered_as_a_duplicate() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (open(dir_a.path()), open(dir_b.path()));
    a.become_leader(1, 1, &[1, 2], &[1, 2], 0).unwrap();
    b.become_follower(Some(1), 1).unwrap();
    assert!(b.truncate_by_leader_epoch(None).unwrap());
    a.append(&mut sequenced(PRODUCER, 0, "a0")).unwrap();
    catch_up(&a, 2, &b);
    let alone = a.append(&mut sequenced(PRODUCER, 1, "a1")).unwrap();
    assert_eq!((alone.base_offset, alone.duplicate), (1, false));

    // B leads at epoch 2; A follows and cuts what only it has.
    b.become_leader(2, 2, &[1, 2], &[2], 0).unwrap();
    a.become_follower(Some(2), 2).unwrap();
    let answer = b
        .epoch_end_for_follower(2, a.latest_log_epoch().unwrap())
        .unwrap();
    assert!(a.truncate_by_leader_epoch(answer).unwrap());
    assert_eq!(a.log_end_offset(), 1);

    // A leads again at epoch 3; the producer retries its batch there.
    a.become_leader(1, 3, &[1, 2], &[1, 2], 0).unwrap();
    let retried = a.append(&mut sequenced(PRODUCER, 1, "a1")).unwrap();
    assert_eq!(
        (retried.base_offset, retried.duplicate),
        (1, false),
        "stored again, at the log end"
    );
    assert_eq!(a.log_end_offset(), 2);
    // The batch before the cut is still recognised as stored.
    let earlier = a.append(&mut sequenced(PRODUCER, 0, "a0")).unwrap();
    assert_eq!((earlier.base_offset, earlier.duplicate), (0, true));
}

/// A snapshot taken above the cut (here by a clean close) must not come back
/// at the next open once the log has grown past its offset again: it would
/// answer the retry of a cut batch with the offset of another producer's.
#[test]
fn a_producer_state_snapshot_taken_above_a_cut_is_not_loaded_after_the_log_grows_back_past_it() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path());
    a.become_leader(1, 1, &[1, 2], &[1, 2], 0).unwrap();
    a.append(&mut sequenced(PRODUCER, 0, "a0")).unwrap();
    a.append(&mut sequenced(PRODUCER, 1, "a1")).unwrap();
    // The snapshot now says: sequence 1 at offset 1, as of offset 2.
    a.close().unwrap();

    let a = open(dir.path());
    a.become_follower(Some(2), 2).unwrap();
    // The new leader's epoch 1 ended at offset 1: the second batch goes.
    assert!(a.truncate_by_leader_epoch(Some((1, 1))).unwrap());
    assert_eq!(a.log_end_offset(), 1);
    a.become_leader(1, 3, &[1, 2], &[1, 2], 0).unwrap();
    let other = a.append(&mut sequenced(8, 0, "other0")).unwrap();
    assert_eq!(other.base_offset, 1);
    a.append(&mut sequenced(8, 1, "other1")).unwrap();
    assert_eq!(a.log_end_offset(), 3, "past the old snapshot's offset");
    // A crash: no close, no new snapshot.
    drop(a);

    let a = open(dir.path());
    a.become_leader(1, 4, &[1, 2], &[1, 2], 0).unwrap();
    let retried = a.append(&mut sequenced(PRODUCER, 1, "a1")).unwrap();
    assert_eq!(
        (retried.base_offset, retried.duplicate),
        (3, false),
        "not a duplicate of offset 1, which holds producer 8's record"
    );
}
