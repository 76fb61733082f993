use super::super::{GroupState, MemberState};
use super::*;

fn describe_member(c: &GroupCoordinator, member_id: &str) -> super::super::MemberDescription {
    c.describe_group(GROUP)
        .expect("group")
        .members
        .into_iter()
        .find(|m| m.member_id == member_id)
        .expect("member")
}

#[test]
fn a_partition_moves_only_after_its_old_owner_reports_it_revoked() {
    let mut c = coordinator(&[("t", 4)]);
    let mut a = joined(&mut c, &["t"], 0);
    assert_eq!(a.owned, tps("t", 0..4));
    let a_epoch = a.epoch;

    let mut b = joined(&mut c, &["t"], 1);
    assert!(b.owned.is_empty(), "b got {:?} while a holds all", b.owned);
    assert_eq!(
        describe_member(&c, &b.member_id).state,
        MemberState::UnreleasedPartitions
    );

    // a is told to give up two partitions and stays at its epoch until it has.
    let kept = a.owned.clone();
    let response = c.heartbeat(&a.request(), 2).expect("heartbeat");
    assert_eq!(response.member_epoch, a_epoch);
    assert_eq!(response.assignment.len(), 2);
    assert!(response.assignment.is_subset(&kept));

    // b still waits: a's heartbeat has not shown the two partitions gone.
    b.beat(&mut c, 3).expect("heartbeat");
    assert!(b.owned.is_empty());
    assert_eq!(c.group_state(GROUP), GroupState::Reconciling);

    a.owned = response.assignment;
    a.beat(&mut c, 4).expect("heartbeat");
    assert!(a.epoch > a_epoch);
    b.beat(&mut c, 5).expect("heartbeat");
    assert_eq!(
        b.owned,
        tps("t", 0..4).difference(&a.owned).cloned().collect()
    );
    assert_eq!(c.group_state(GROUP), GroupState::Stable);
}

#[test]
fn a_rebalance_is_timed_from_the_epoch_bump_until_every_member_holds_its_target() {
    let mut c = coordinator(&[("t", 4)]);
    let mut a = joined(&mut c, &["t"], 10);
    // Alone, a holds its target in the answer to its join.
    let timed = |c: &GroupCoordinator| {
        let d = c.rebalance_durations(GROUP).expect("group");
        (d.count(), d.sum_ms(), d.in_progress())
    };
    assert_eq!(timed(&c), (1, 0, false));

    let mut b = joined(&mut c, &["t"], 100);
    a.beat(&mut c, 120).expect("heartbeat");
    a.beat(&mut c, 130).expect("heartbeat");
    assert_eq!(c.group_state(GROUP), GroupState::Reconciling);
    assert_eq!(timed(&c), (1, 0, true), "b still waits for its partitions");
    b.beat(&mut c, 150).expect("heartbeat");
    assert_eq!(c.group_state(GROUP), GroupState::Stable);
    assert_eq!(timed(&c), (2, 50, false));
    // Heartbeats of a stable group time nothing.
    a.beat(&mut c, 400).expect("heartbeat");
    assert_eq!(timed(&c), (2, 50, false));
}

#[test]
fn partitions_that_stay_with_their_owner_are_never_revoked() {
    let mut c = coordinator(&[("t", 12)]);
    let mut consumers = vec![joined(&mut c, &["t"], 0)];
    settle(&mut c, &mut consumers, 0);
    for now_ms in 1..4 {
        let before: Vec<Assignment> = consumers.iter().map(|c| c.owned.clone()).collect();
        consumers.push(joined(&mut c, &["t"], now_ms));
        let mut history: Vec<Vec<Assignment>> = vec![Vec::new(); consumers.len()];
        for _ in 0..10 {
            for (consumer, seen) in consumers.iter_mut().zip(&mut history) {
                consumer.beat(&mut c, now_ms).expect("heartbeat");
                seen.push(consumer.owned.clone());
            }
            assert_one_owner(&consumers);
        }
        // What a member held before and holds at the end, it held at every step between.
        for ((consumer, before), seen) in consumers.iter().zip(&before).zip(&history) {
            let kept: Assignment = before.intersection(&consumer.owned).cloned().collect();
            assert!(!kept.is_empty());
            for owned in seen {
                assert!(
                    kept.is_subset(owned),
                    "a kept partition was revoked: {owned:?}"
                );
            }
        }
    }
    assert_eq!(owned_counts(&consumers), vec![3, 3, 3, 3]);
}

#[test]
fn ten_partitions_settle_as_the_design_table_says() {
    for (members, expected) in [
        (10, vec![1; 10]),
        (5, vec![2; 5]),
        (15, [vec![0; 5], vec![1; 10]].concat()),
    ] {
        let mut c = coordinator(&[("clicks", 10)]);
        let mut consumers: Vec<Consumer> = (0..members)
            .map(|_| joined(&mut c, &["clicks"], 0))
            .collect();
        settle(&mut c, &mut consumers, 0);
        assert_eq!(owned_counts(&consumers), expected, "{members} members");
    }
}

#[test]
fn a_heartbeat_from_a_wrong_epoch_is_fenced() {
    let mut c = coordinator(&[("t", 2)]);
    let mut a = joined(&mut c, &["t"], 0);
    for (now_ms, partitions) in [(1, 3), (2, 4)] {
        c.set_topic_partitions("t", partitions, now_ms);
        a.beat(&mut c, now_ms).expect("heartbeat");
    }
    // The previous epoch is a lost answer's retry; the one before it is a zombie's.
    for epoch in [a.epoch + 1, a.epoch - 2] {
        let mut zombie = a.clone();
        zombie.epoch = epoch;
        let error = zombie.beat(&mut c, 1).expect_err("fenced");
        assert!(
            matches!(error, GroupError::FencedMemberEpoch { .. }),
            "{error}"
        );
    }
}

#[test]
fn a_heartbeat_whose_answer_was_lost_is_retried_with_the_previous_epoch() {
    let mut c = coordinator(&[("t", 2)]);
    let mut a = joined(&mut c, &["t"], 0);
    let mut b = joined(&mut c, &["t"], 1);
    let mut both = [a.clone(), b.clone()];
    settle(&mut c, &mut both, 2);
    [a, b] = both;
    // A topic grows: a's next answer moves it to a new epoch, and that answer is lost.
    c.set_topic_partitions("t", 4, 3);
    let lost = c.heartbeat(&a.request(), 4).expect("heartbeat");
    assert!(lost.member_epoch > a.epoch);
    a.beat(&mut c, 5).expect("the previous epoch is accepted");
    assert_eq!(a.epoch, lost.member_epoch);

    // Owning more than assigned at the previous epoch is not a lost answer but a zombie.
    let mut zombie = a.clone();
    zombie.epoch = describe_member(&c, &a.member_id).member_epoch - 1;
    zombie.owned.extend(b.owned.iter().cloned());
    c.set_topic_partitions("t", 6, 6);
    let moved_on = c.heartbeat(&a.request(), 7).expect("heartbeat");
    zombie.epoch = a.epoch;
    assert!(moved_on.member_epoch > a.epoch);
    let error = zombie.beat(&mut c, 8).expect_err("fenced");
    assert!(
        matches!(error, GroupError::FencedMemberEpoch { .. }),
        "{error}"
    );
}

#[test]
fn unknown_members_and_groups_are_refused() {
    let mut c = coordinator(&[("t", 1)]);
    let mut stranger = Consumer::new(&["t"]);
    stranger.member_id = "nobody".to_owned();
    stranger.epoch = 3;
    let error = stranger.beat(&mut c, 0).expect_err("no group");
    assert_eq!(
        error,
        GroupError::GroupIdNotFound {
            group: GROUP.to_owned()
        }
    );
    let _a = joined(&mut c, &["t"], 0);
    let error = stranger.beat(&mut c, 0).expect_err("no member");
    assert!(
        matches!(error, GroupError::UnknownMemberId { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("nobody"));
}

#[test]
fn a_silent_member_is_removed_at_the_session_timeout_and_its_partitions_move() {
    let mut c = coordinator(&[("t", 4)]);
    let mut consumers = vec![joined(&mut c, &["t"], 0), joined(&mut c, &["t"], 0)];
    settle(&mut c, &mut consumers, 0);
    let session_ms = c.config().session_timeout_ms;
    let mut survivor = consumers.remove(0);
    let silent = consumers.remove(0);

    survivor.beat(&mut c, session_ms - 1).expect("heartbeat");
    assert!(c.tick(session_ms - 1).is_empty());
    let removed = c.tick(session_ms);
    assert_eq!(removed, vec![(GROUP.to_owned(), silent.member_id.clone())]);
    survivor.beat(&mut c, session_ms).expect("heartbeat");
    assert_eq!(survivor.owned, tps("t", 0..4));
}

#[test]
fn a_member_holding_revoked_partitions_past_its_rebalance_timeout_is_removed() {
    let mut c = coordinator(&[("t", 2)]);
    let mut a = joined(&mut c, &["t"], 0);
    let mut b = joined(&mut c, &["t"], 0);
    // a is told to revoke one partition but keeps reporting both.
    c.heartbeat(&a.request(), 1).expect("heartbeat");
    assert_eq!(
        describe_member(&c, &a.member_id).state,
        MemberState::UnrevokedPartitions
    );
    let deadline_ms = 1 + REBALANCE_TIMEOUT_MS;
    let mut now_ms = 1;
    while now_ms + 10_000 < deadline_ms {
        now_ms += 10_000;
        c.heartbeat(&a.request(), now_ms).expect("heartbeat");
        b.beat(&mut c, now_ms).expect("heartbeat");
        assert_eq!(b.owned.len(), 0, "b got a partition a still holds");
        c.tick(now_ms);
    }
    assert!(c.tick(deadline_ms - 1).is_empty());
    assert_eq!(
        c.tick(deadline_ms),
        vec![(GROUP.to_owned(), a.member_id.clone())]
    );
    b.beat(&mut c, deadline_ms).expect("heartbeat");
    assert_eq!(b.owned, tps("t", 0..2));
    let error = a.beat(&mut c, deadline_ms).expect_err("removed");
    assert!(
        matches!(error, GroupError::UnknownMemberId { .. }),
        "{error}"
    );
}

#[test]
fn a_member_that_leaves_hands_its_partitions_over_at_once() {
    let mut c = coordinator(&[("t", 4)]);
    let mut consumers = vec![joined(&mut c, &["t"], 0), joined(&mut c, &["t"], 0)];
    settle(&mut c, &mut consumers, 0);
    let leaver = consumers.remove(1);
    c.leave(GROUP, &leaver.member_id, leaver.epoch, 1)
        .expect("leave");
    consumers[0].beat(&mut c, 2).expect("heartbeat");
    assert_eq!(consumers[0].owned, tps("t", 0..4));
    assert_eq!(c.describe_group(GROUP).expect("group").members.len(), 1);
}

#[test]
fn a_growing_topic_is_assigned_without_revoking_anything() {
    let mut c = coordinator(&[("t", 4)]);
    let mut consumers = vec![joined(&mut c, &["t"], 0), joined(&mut c, &["t"], 0)];
    settle(&mut c, &mut consumers, 0);
    let before: Vec<Assignment> = consumers.iter().map(|c| c.owned.clone()).collect();
    let epoch = c.describe_group(GROUP).expect("group").group_epoch;
    c.set_topic_partitions("t", 8, 1);
    assert_eq!(
        c.describe_group(GROUP).expect("group").group_epoch,
        epoch + 1
    );
    for consumer in &mut consumers {
        consumer.beat(&mut c, 2).expect("heartbeat");
    }
    for (consumer, before) in consumers.iter().zip(&before) {
        assert!(before.is_subset(&consumer.owned));
    }
    assert_eq!(owned_counts(&consumers), vec![4, 4]);
}

#[test]
fn a_subscription_change_moves_the_group_epoch() {
    let mut c = coordinator(&[("a", 2), ("b", 2)]);
    let mut m = joined(&mut c, &["a"], 0);
    let epoch = c.describe_group(GROUP).expect("group").group_epoch;
    m.topics.insert("b".to_owned());
    m.beat(&mut c, 1).expect("heartbeat");
    assert_eq!(
        c.describe_group(GROUP).expect("group").group_epoch,
        epoch + 1
    );
    assert_eq!(m.owned.len(), 4);
}

#[test]
fn members_that_start_within_the_initial_delay_are_assigned_once() {
    let delay_ms = 3_000;
    let mut c = coordinator_with(
        GroupConfig {
            initial_rebalance_delay_ms: delay_ms,
            ..config()
        },
        &[("t", 6)],
    );
    let mut consumers: Vec<Consumer> = (0..3).map(|i| joined(&mut c, &["t"], i * 100)).collect();
    for consumer in &mut consumers {
        consumer.beat(&mut c, 1_000).expect("heartbeat");
        assert!(consumer.owned.is_empty(), "assigned before the delay ended");
    }
    assert_eq!(c.group_state(GROUP), GroupState::Assigning);
    c.tick(delay_ms);
    let target_epoch = c.describe_group(GROUP).expect("group").assignment_epoch;
    for consumer in &mut consumers {
        consumer.beat(&mut c, delay_ms).expect("heartbeat");
        assert_eq!(
            consumer.owned.len(),
            2,
            "each gets its share at the first go"
        );
    }
    assert_eq!(c.group_state(GROUP), GroupState::Stable);
    // One assignment after the delay, not one per join.
    assert_eq!(
        c.describe_group(GROUP).expect("group").assignment_epoch,
        target_epoch
    );
    // A later member of the now non-empty group does not wait.
    let late = joined(&mut c, &["t"], delay_ms + 1);
    assert!(c.describe_group(GROUP).expect("group").assignment_epoch > target_epoch);
    assert_eq!(
        late.epoch,
        c.describe_group(GROUP).expect("group").group_epoch
    );
}

#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "while Some(\"a\") holds it")]
fn giving_a_held_partition_to_a_second_member_trips_the_one_owner_assertion() {
    use super::super::consumer_group::Group;
    use super::super::member::Member;
    let mut group = Group::new(GROUP.to_owned());
    for id in ["a", "b"] {
        group
            .members
            .insert(id.to_owned(), Member::new(id.to_owned(), None));
    }
    group.set_holdings("a", tps("t", [0]), Assignment::new());
    group.set_holdings("b", Assignment::new(), tps("t", [0]));
}

#[test]
fn a_fenced_member_rejoins_under_its_id_and_gets_back_what_it_let_go() {
    let mut c = coordinator(&[("t", 2)]);
    let mut a = joined(&mut c, &["t"], 0);
    let mut zombie = a.clone();
    zombie.epoch += 1;
    zombie.beat(&mut c, 1).expect_err("fenced");
    // As a client does on FENCED_MEMBER_EPOCH: drop everything, rejoin with epoch 0.
    a.owned.clear();
    a.epoch = 0;
    a.beat(&mut c, 2).expect("rejoin");
    assert_eq!(a.owned, tps("t", 0..2));
    assert_eq!(c.describe_group(GROUP).expect("group").members.len(), 1);
}
