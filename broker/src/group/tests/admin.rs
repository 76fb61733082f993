use super::super::{GroupState, OffsetCommit};
use super::*;

fn reset(offset: u64) -> Vec<OffsetCommit> {
    vec![OffsetCommit {
        partition: TopicPartition::new("t", 0),
        offset,
        metadata: String::new(),
    }]
}

#[test]
fn list_and_describe_show_members_assignments_epochs_and_state() {
    let mut c = coordinator(&[("t", 3)]);
    assert!(c.list_groups().is_empty());
    let mut consumers = vec![joined(&mut c, &["t"], 0), joined(&mut c, &["t"], 0)];
    settle(&mut c, &mut consumers, 0);
    let listing = c.list_groups();
    assert_eq!(listing.len(), 1);
    assert_eq!(
        (listing[0].state, listing[0].members),
        (GroupState::Stable, 2)
    );

    let description = c.describe_group(GROUP).expect("group");
    assert_eq!(description.group_epoch, description.assignment_epoch);
    for consumer in &consumers {
        let member = description
            .members
            .iter()
            .find(|m| m.member_id == consumer.member_id)
            .expect("member listed");
        assert_eq!(member.assignment, consumer.owned);
        assert_eq!(member.target_assignment, consumer.owned);
        assert_eq!(member.member_epoch, consumer.epoch);
    }
    let error = c.describe_group("missing").expect_err("unknown");
    assert!(
        matches!(error, GroupError::GroupIdNotFound { .. }),
        "{error}"
    );
    assert_eq!(c.group_state("missing"), GroupState::Dead);
}

#[test]
fn a_group_with_members_is_neither_deleted_nor_reset() {
    let mut c = coordinator(&[("t", 1)]);
    let m = joined(&mut c, &["t"], 0);
    let error = c.delete_group(GROUP).expect_err("members");
    assert_eq!(
        error.to_string(),
        "group \"g\" has 1 active member(s); deleting it needs an empty group"
    );
    let error = c.reset_offsets(GROUP, &reset(0), 0).expect_err("members");
    assert!(matches!(error, GroupError::NonEmptyGroup { .. }), "{error}");

    c.leave(GROUP, &m.member_id, m.epoch, 1).expect("leave");
    assert_eq!(c.group_state(GROUP), GroupState::Empty);
    c.reset_offsets(GROUP, &reset(17), 2)
        .expect("reset an empty group");
    assert_eq!(
        c.fetch_offsets(GROUP, None)[&TopicPartition::new("t", 0)].offset,
        17
    );
    c.delete_group(GROUP).expect("delete an empty group");
    assert_eq!(c.group_state(GROUP), GroupState::Dead);
    assert!(c.fetch_offsets(GROUP, None).is_empty());
    let error = c.delete_group(GROUP).expect_err("gone");
    assert!(
        matches!(error, GroupError::GroupIdNotFound { .. }),
        "{error}"
    );
}

#[test]
fn a_static_member_that_stepped_out_still_counts_as_a_member() {
    let mut c = coordinator(&[("t", 1)]);
    let mut m = Consumer::static_member(&["t"], "w");
    m.beat(&mut c, 0).expect("join");
    c.leave(GROUP, &m.member_id, m.epoch, 1).expect("leave");
    let error = c.delete_group(GROUP).expect_err("it may come back");
    assert!(matches!(error, GroupError::NonEmptyGroup { .. }), "{error}");
}
