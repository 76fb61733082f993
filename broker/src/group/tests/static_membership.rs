use super::*;

fn group_epoch(c: &GroupCoordinator) -> i32 {
    c.describe_group(GROUP).expect("group").group_epoch
}

fn two_static_members(c: &mut GroupCoordinator) -> Vec<Consumer> {
    let mut consumers = vec![
        Consumer::static_member(&["t"], "worker-1"),
        Consumer::static_member(&["t"], "worker-2"),
    ];
    for consumer in &mut consumers {
        consumer.beat(c, 0).expect("join");
    }
    settle(c, &mut consumers, 0);
    consumers
}

#[test]
fn a_static_member_back_within_the_session_timeout_gets_its_partitions_without_a_rebalance() {
    let mut c = coordinator(&[("t", 4)]);
    let mut consumers = two_static_members(&mut c);
    let epoch = group_epoch(&c);
    let gone = consumers.remove(0);
    c.leave(GROUP, &gone.member_id, gone.epoch, 1)
        .expect("leave");
    assert_eq!(
        group_epoch(&c),
        epoch,
        "a static member stepping out is no rebalance"
    );
    consumers[0].beat(&mut c, 2).expect("heartbeat");
    assert_eq!(
        consumers[0].owned.len(),
        2,
        "the other member takes nothing"
    );

    // The restarted process has a new member id and owns nothing yet.
    let mut back = Consumer::static_member(&["t"], "worker-1");
    let session_ms = c.config().session_timeout_ms;
    back.beat(&mut c, session_ms).expect("rejoin");
    assert_ne!(back.member_id, gone.member_id);
    assert_eq!(back.owned, gone.owned);
    assert_eq!(back.epoch, gone.epoch);
    assert_eq!(group_epoch(&c), epoch);
    settle(&mut c, &mut [back, consumers.remove(0)], 3);
    assert_eq!(group_epoch(&c), epoch);
}

#[test]
fn a_static_member_away_past_the_session_timeout_is_removed() {
    let mut c = coordinator(&[("t", 4)]);
    let mut consumers = two_static_members(&mut c);
    let gone = consumers.remove(0);
    c.leave(GROUP, &gone.member_id, gone.epoch, 1)
        .expect("leave");
    let session_ms = c.config().session_timeout_ms;
    consumers[0].beat(&mut c, session_ms).expect("heartbeat");
    assert_eq!(
        c.tick(1 + session_ms),
        vec![(GROUP.to_owned(), gone.member_id.clone())]
    );
    consumers[0]
        .beat(&mut c, 1 + session_ms)
        .expect("heartbeat");
    assert_eq!(consumers[0].owned, tps("t", 0..4));
}

#[test]
fn a_second_process_with_an_instance_id_in_use_is_refused() {
    let mut c = coordinator(&[("t", 4)]);
    let consumers = two_static_members(&mut c);
    let mut twin = Consumer::static_member(&["t"], "worker-2");
    let error = twin.beat(&mut c, 1).expect_err("instance id in use");
    assert_eq!(
        error,
        GroupError::UnreleasedInstanceId {
            group: GROUP.to_owned(),
            instance_id: "worker-2".to_owned(),
            member: consumers[1].member_id.clone(),
        }
    );
}

#[test]
fn a_replaced_static_member_is_fenced() {
    let mut c = coordinator(&[("t", 4)]);
    let mut consumers = two_static_members(&mut c);
    let mut old = consumers.remove(0);
    c.leave(GROUP, &old.member_id, old.epoch, 1).expect("leave");
    let mut new = Consumer::static_member(&["t"], "worker-1");
    new.beat(&mut c, 2).expect("rejoin");
    let error = old.beat(&mut c, 3).expect_err("replaced");
    assert!(
        matches!(&error, GroupError::FencedInstanceId { member, .. } if *member == new.member_id),
        "{error}"
    );
}
