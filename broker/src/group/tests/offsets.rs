use super::super::{OffsetCommit, NO_MEMBER_EPOCH};
use super::*;

fn commit(topic: &str, partition: u32, offset: u64) -> OffsetCommit {
    OffsetCommit {
        partition: TopicPartition::new(topic, partition),
        offset,
        metadata: String::new(),
    }
}

#[test]
fn a_member_commits_offsets_of_partitions_it_holds_and_they_can_be_fetched() {
    let mut c = coordinator(&[("t", 2)]);
    let m = joined(&mut c, &["t"], 0);
    let mut with_metadata = commit("t", 1, 7);
    with_metadata.metadata = "checkpoint 3".to_owned();
    c.commit_offsets(
        GROUP,
        &m.member_id,
        m.epoch,
        &[commit("t", 0, 42), with_metadata],
        5,
    )
    .expect("commit");
    let offsets = c.fetch_offsets(GROUP, None);
    assert_eq!(offsets[&TopicPartition::new("t", 0)].offset, 42);
    let one = &offsets[&TopicPartition::new("t", 1)];
    assert_eq!(
        (one.offset, one.metadata.as_str(), one.commit_timestamp_ms),
        (7, "checkpoint 3", 5)
    );
    let only = c.fetch_offsets(GROUP, Some(&[TopicPartition::new("t", 1)]));
    assert_eq!(only.len(), 1);
    assert!(c.fetch_offsets("other", None).is_empty());
}

#[test]
fn a_commit_from_an_older_epoch_is_stale_and_from_a_newer_one_fenced() {
    let mut c = coordinator(&[("t", 2)]);
    let mut m = joined(&mut c, &["t"], 0);
    c.set_topic_partitions("t", 3, 1);
    let old_epoch = m.epoch;
    m.beat(&mut c, 2).expect("heartbeat");
    assert!(m.epoch > old_epoch);
    let error = c
        .commit_offsets(GROUP, &m.member_id, old_epoch, &[commit("t", 0, 1)], 3)
        .expect_err("stale");
    assert!(
        matches!(error, GroupError::StaleMemberEpoch { .. }),
        "{error}"
    );
    let error = c
        .commit_offsets(GROUP, &m.member_id, m.epoch + 1, &[commit("t", 0, 1)], 3)
        .expect_err("fenced");
    assert!(
        matches!(error, GroupError::FencedMemberEpoch { .. }),
        "{error}"
    );
    assert!(
        c.fetch_offsets(GROUP, None).is_empty(),
        "a refused commit stores nothing"
    );
}

#[test]
fn a_member_may_commit_a_partition_it_is_revoking_but_not_one_it_does_not_hold() {
    let mut c = coordinator(&[("t", 2)]);
    let a = joined(&mut c, &["t"], 0);
    let b = joined(&mut c, &["t"], 0);
    let told = c.heartbeat(&a.request(), 1).expect("heartbeat");
    let revoking: Vec<TopicPartition> = a.owned.difference(&told.assignment).cloned().collect();
    assert_eq!(revoking.len(), 1);
    let commits: Vec<OffsetCommit> = revoking
        .iter()
        .map(|tp| commit(&tp.topic, tp.partition, 9))
        .collect();
    c.commit_offsets(GROUP, &a.member_id, a.epoch, &commits, 2)
        .expect("a revoked partition's position is committed before it is released");
    let error = c
        .commit_offsets(GROUP, &b.member_id, b.epoch, &commits, 2)
        .expect_err("b does not hold it yet");
    assert_eq!(
        error,
        GroupError::PartitionNotAssigned {
            group: GROUP.to_owned(),
            member: b.member_id.clone(),
            topic: "t".to_owned(),
            partition: revoking[0].partition,
        }
    );
}

#[test]
fn commits_from_unknown_members_groups_and_oversized_metadata_are_refused() {
    let mut c = coordinator(&[("t", 1)]);
    let error = c
        .commit_offsets("nope", "m", 1, &[commit("t", 0, 1)], 0)
        .expect_err("no group");
    assert!(
        matches!(error, GroupError::GroupIdNotFound { .. }),
        "{error}"
    );
    let m = joined(&mut c, &["t"], 0);
    let error = c
        .commit_offsets(GROUP, "ghost", 1, &[commit("t", 0, 1)], 0)
        .expect_err("no member");
    assert!(
        matches!(error, GroupError::UnknownMemberId { .. }),
        "{error}"
    );
    let mut big = commit("t", 0, 1);
    big.metadata = "x".repeat(c.config().offset_metadata_bytes_max + 1);
    let error = c
        .commit_offsets(GROUP, &m.member_id, m.epoch, &[big], 0)
        .expect_err("too large");
    assert!(
        matches!(error, GroupError::OffsetMetadataTooLarge { .. }),
        "{error}"
    );
}

#[test]
fn a_commit_from_outside_the_group_is_taken_only_while_the_group_is_empty() {
    let mut c = coordinator(&[("t", 1)]);
    c.commit_offsets("manual", "", NO_MEMBER_EPOCH, &[commit("t", 0, 3)], 0)
        .expect("a group without members takes outside commits");
    assert_eq!(c.fetch_offsets("manual", None).len(), 1);
    let _m = joined(&mut c, &["t"], 0);
    let error = c
        .commit_offsets(GROUP, "", NO_MEMBER_EPOCH, &[commit("t", 0, 3)], 0)
        .expect_err("members are active");
    assert!(matches!(error, GroupError::NonEmptyGroup { .. }), "{error}");
}
