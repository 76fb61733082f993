//! Two replicas that share epochs 1..3 and then diverged (each led an epoch the other never
//! saw) become byte-identical by KIP-279's loop: the follower asks the leader where its
//! latest epoch ends, truncates there, asks again while the leader answered with an epoch
//! it lacks, then copies the leader's batches from its new end with `append_replicated`.
//! Truncating to the high watermark instead would keep the follower's divergent epoch-3
//! tail; truncating to the leader's log end would keep its epoch-5 batches.

mod epoch_support;
mod log_support;

use std::path::Path;

use epoch_support::*;
use log_support::*;
use weir_log::batch;
use weir_log::{FollowerTruncation, PartitionLog};

/// Appends `count` leader batches at `epoch`, seeds from `seed`.
fn lead(log: &PartitionLog, seed: u64, count: u64, epoch: i32) {
    for i in 0..count {
        append_at(log, seed + i, 1 + (seed + i) as usize % 3, epoch);
    }
}

/// Copies `leader`'s batches from `follower`'s log end up to `until` (exclusive), one
/// batch per append as the leader wrote them, so both roll at the same batches.
fn replicate(leader: &PartitionLog, follower: &PartitionLog, until: u64) {
    while follower.log_end_offset() < until {
        let slice = leader
            .read(follower.log_end_offset(), 1, u64::MAX)
            .expect("the leader holds the follower's end");
        let bytes = slice.to_bytes().unwrap();
        let (_, first) = batch::batches(&bytes)
            .next()
            .expect("a batch")
            .expect("whole");
        follower.append_replicated(first).unwrap();
    }
}

fn log_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    segment_logs(dir)
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect()
}

#[test]
fn truncating_by_leader_epoch_then_copying_makes_the_logs_byte_identical() {
    let a_dir = tempfile::tempdir().unwrap();
    let b_dir = tempfile::tempdir().unwrap();
    let a = PartitionLog::open(a_dir.path(), tiny_config()).unwrap();
    let b = PartitionLog::open(b_dir.path(), tiny_config()).unwrap();

    // Epochs 1 and 2: A leads, B follows all of it.
    lead(&a, 0, 6, 1);
    lead(&a, 10, 5, 2);
    replicate(&a, &b, a.log_end_offset());
    // Epoch 3: B leads; A copies only the first four batches before B is cut off.
    lead(&b, 20, 7, 3);
    let a_has_of_3 = b
        .leader_epoch_end_offset(2)
        .map(|(_, end)| end)
        .expect("epoch 2 ended");
    let mut a_until = a_has_of_3;
    for _ in 0..4 {
        a_until = b.read(a_until, 1, u64::MAX).unwrap().next_offset();
    }
    replicate(&b, &a, a_until);
    // Epoch 4: A leads without B; epoch 5: B leads without A; epoch 6: A leads again.
    lead(&a, 30, 5, 4);
    lead(&b, 40, 4, 5);
    lead(&a, 50, 6, 6);

    let shared_end = a.leader_epoch_end_offset(3).expect("A has epoch 3").1;
    assert_eq!(shared_end, a_until, "A's epoch 3 ends where its copy did");
    assert!(
        b.log_end_offset() > shared_end,
        "B holds more of epoch 3 and epoch 5"
    );
    assert_ne!(epochs(&a), epochs(&b));

    let b_epoch_5_start = epochs(&b).iter().find(|e| e.0 == 5).unwrap().1;
    // The loop, as a follower's fetcher runs it.
    let mut rounds = Vec::new();
    loop {
        let asked = b.latest_leader_epoch().expect("B has epochs");
        let answer = a.leader_epoch_end_offset(asked);
        let step = b.follower_truncation(answer);
        b.truncate_to(step.offset).unwrap();
        rounds.push((asked, answer, step));
        if step.complete {
            break;
        }
        assert!(rounds.len() < 10, "the loop ends: {rounds:?}");
    }
    let a_epoch_6_start = epochs(&a).iter().find(|e| e.0 == 6).unwrap().1;
    assert_eq!(rounds.len(), 2, "{rounds:?}");
    // B asked for 5; A has no 5 and answered with 4, ending where A's 6 starts. B has no
    // 4: it cuts where its own 3 ended (its 5 starts) and asks again for 3.
    assert_eq!(rounds[0].0, 5);
    assert_eq!(rounds[0].1, Some((4, a_epoch_6_start)));
    assert_eq!(
        rounds[0].2,
        FollowerTruncation {
            offset: b_epoch_5_start,
            complete: false
        }
    );
    // A's epoch 3 ends where its 4 starts: B keeps epoch 3 up to there.
    assert_eq!(rounds[1].0, 3);
    assert_eq!(rounds[1].1, Some((3, shared_end)));
    assert_eq!(
        rounds[1].2,
        FollowerTruncation {
            offset: shared_end,
            complete: true
        }
    );
    assert_eq!(b.log_end_offset(), shared_end);
    assert_eq!(b.latest_leader_epoch(), Some(3));

    replicate(&a, &b, a.log_end_offset());
    assert_eq!(epochs(&b), epochs(&a));
    assert_eq!(epochs(&a), epochs_of_batches(&a));
    let (a_files, b_files) = (log_files(a_dir.path()), log_files(b_dir.path()));
    assert!(a_files.len() > 3, "{} segments", a_files.len());
    assert_eq!(
        a_files.iter().map(|f| &f.0).collect::<Vec<_>>(),
        b_files.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    for ((name, a_bytes), (_, b_bytes)) in a_files.iter().zip(&b_files) {
        assert!(a_bytes == b_bytes, "{name} differs");
    }
}

#[test]
fn a_follower_without_epochs_or_an_unknown_answer_truncates_to_its_high_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), tiny_config()).unwrap();
    lead(&log, 0, 4, 2);
    log.set_high_watermark(3);
    assert_eq!(
        log.follower_truncation(None),
        FollowerTruncation {
            offset: 3,
            complete: true
        }
    );
    // The leader's answer is for an epoch below this log's earliest: keep nothing past
    // where the leader's epoch ends, nor past this log's first epoch start.
    assert_eq!(
        log.follower_truncation(Some((1, 2))),
        FollowerTruncation {
            offset: 0,
            complete: true
        }
    );
    // Never past the log end.
    let end = log.log_end_offset();
    assert_eq!(
        log.follower_truncation(Some((2, end + 100))),
        FollowerTruncation {
            offset: end,
            complete: true
        }
    );
}
