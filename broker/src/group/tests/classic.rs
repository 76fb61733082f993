//! Classic members (JoinGroup, SyncGroup, Heartbeat) in the coordinator's groups: they
//! rejoin when they have a step to take, move partitions in two steps like KIP-848
//! members, and share a group with them.

use super::{coordinator, joined, tps, Consumer, GROUP, REBALANCE_TIMEOUT_MS};
use crate::group::{
    Assignment, ClassicHeartbeat, ClassicJoin, GroupCoordinator, GroupError,
    CLASSIC_PENDING_MEMBERS_MAX, CLASSIC_SESSION_TIMEOUT_MAX_MS, DELETED_TOPIC_NOTICE_MS,
};

const SESSION_TIMEOUT_MS: i64 = 10_000;

/// A classic consumer: what it holds after its last SyncGroup, at which generation.
#[derive(Debug, Clone)]
struct Classic {
    member_id: String,
    generation: i32,
    owned: Assignment,
    /// Cooperative clients report what they own when they rejoin; eager ones revoke
    /// everything first and report nothing.
    cooperative: bool,
    subscribed: Vec<&'static str>,
}

impl Classic {
    fn new(cooperative: bool) -> Self {
        Classic {
            member_id: String::new(),
            generation: -1,
            owned: Assignment::new(),
            cooperative,
            subscribed: vec!["t"],
        }
    }

    fn subscribed_to(topics: &[&'static str]) -> Self {
        Classic {
            subscribed: topics.to_vec(),
            ..Classic::new(true)
        }
    }

    /// JoinGroup then SyncGroup, as a client does.
    fn join(&mut self, c: &mut GroupCoordinator, now_ms: i64) -> Result<(), GroupError> {
        if !self.cooperative {
            self.owned.clear();
        }
        let join = ClassicJoin {
            group_id: GROUP.to_owned(),
            member_id: self.member_id.clone(),
            group_instance_id: None,
            subscribed_topics: self.subscribed.iter().map(|t| t.to_string()).collect(),
            owned: self.owned.clone(),
            session_timeout_ms: SESSION_TIMEOUT_MS,
            rebalance_timeout_ms: REBALANCE_TIMEOUT_MS,
        };
        let joined = c.classic_join(&join, now_ms)?;
        self.member_id = joined.member_id;
        self.generation = joined.member_epoch;
        self.owned = c.classic_sync(GROUP, &self.member_id, None, self.generation, now_ms)?;
        Ok(())
    }

    fn heartbeat(&self, c: &mut GroupCoordinator, now_ms: i64) -> ClassicHeartbeat {
        c.classic_heartbeat(GROUP, &self.member_id, None, self.generation, now_ms)
            .expect("heartbeat")
    }
}

fn assert_disjoint(a: &Assignment, b: &Assignment) {
    assert!(a.is_disjoint(b), "{a:?} and {b:?} share a partition");
}

#[test]
fn cooperative_classic_members_hand_over_partitions_in_two_steps() {
    let mut c = coordinator(&[("t", 4)]);
    let mut a = Classic::new(true);
    a.join(&mut c, 0).unwrap();
    assert_eq!(a.owned, tps("t", 0..4));
    assert_eq!(a.heartbeat(&mut c, 1), ClassicHeartbeat::Stable);

    let mut b = Classic::new(true);
    b.join(&mut c, 2).unwrap();
    // B waits for what A still holds; A is told to rejoin.
    assert!(b.owned.is_empty());
    assert_eq!(b.heartbeat(&mut c, 3), ClassicHeartbeat::Stable);
    assert_eq!(a.heartbeat(&mut c, 3), ClassicHeartbeat::Rejoin);

    // A's rejoin reports all four: it keeps two, at its old generation.
    let generation_before = a.generation;
    a.join(&mut c, 4).unwrap();
    assert_eq!(a.generation, generation_before);
    assert_eq!(a.owned.len(), 2);
    // Nobody has the two A gave up yet: A has not confirmed.
    assert_eq!(b.heartbeat(&mut c, 5), ClassicHeartbeat::Stable);
    assert_eq!(a.heartbeat(&mut c, 5), ClassicHeartbeat::Rejoin);

    // A's second rejoin no longer lists them: it moves on, and B may take them.
    a.join(&mut c, 6).unwrap();
    assert!(a.generation > generation_before);
    assert_eq!(a.owned.len(), 2);
    assert_eq!(a.heartbeat(&mut c, 7), ClassicHeartbeat::Stable);
    assert_eq!(b.heartbeat(&mut c, 7), ClassicHeartbeat::Rejoin);
    b.join(&mut c, 8).unwrap();
    assert_eq!(b.owned.len(), 2);
    assert_disjoint(&a.owned, &b.owned);
    assert_eq!(b.heartbeat(&mut c, 9), ClassicHeartbeat::Stable);
    assert_eq!(a.heartbeat(&mut c, 9), ClassicHeartbeat::Stable);
    // Both rebalances are timed from the join that started them to the group being
    // stable: A's at once, B's when B's rejoin took what A gave up (2 ms to 8 ms).
    let timed = c.rebalance_durations(GROUP).expect("group");
    assert_eq!((timed.count(), timed.sum_ms()), (2, 6));
}

#[test]
fn an_eager_member_that_revoked_everything_moves_on_at_its_rejoin() {
    let mut c = coordinator(&[("t", 4)]);
    let mut a = Classic::new(false);
    a.join(&mut c, 0).unwrap();
    let mut b = Classic::new(false);
    b.join(&mut c, 1).unwrap();
    assert_eq!(a.heartbeat(&mut c, 2), ClassicHeartbeat::Rejoin);
    a.join(&mut c, 3).unwrap();
    assert_eq!(a.owned.len(), 2);
    assert_eq!(b.heartbeat(&mut c, 4), ClassicHeartbeat::Rejoin);
    b.join(&mut c, 5).unwrap();
    assert_eq!(b.owned.len(), 2);
    assert_disjoint(&a.owned, &b.owned);
}

#[test]
fn classic_and_kip_848_members_share_one_group() {
    let mut c = coordinator(&[("t", 4)]);
    let mut modern: Consumer = joined(&mut c, &["t"], 0);
    assert_eq!(modern.owned, tps("t", 0..4));
    let mut classic = Classic::new(true);
    classic.join(&mut c, 1).unwrap();
    assert!(classic.owned.is_empty());
    // The KIP-848 member revokes two, then the classic one is told to rejoin for them.
    modern.beat(&mut c, 2).unwrap();
    assert_eq!(modern.owned.len(), 2);
    modern.beat(&mut c, 3).unwrap();
    assert_eq!(classic.heartbeat(&mut c, 4), ClassicHeartbeat::Rejoin);
    classic.join(&mut c, 5).unwrap();
    assert_eq!(classic.owned.len(), 2);
    assert_disjoint(&modern.owned, &classic.owned);
}

#[test]
fn another_generation_is_an_illegal_generation() {
    let mut c = coordinator(&[("t", 2)]);
    let mut a = Classic::new(true);
    a.join(&mut c, 0).unwrap();
    let stale = c.classic_heartbeat(GROUP, &a.member_id, None, a.generation - 1, 1);
    assert!(
        matches!(stale, Err(GroupError::IllegalGeneration { generation, expected, .. })
            if generation == a.generation - 1 && expected == a.generation),
        "{stale:?}"
    );
    let sync = c.classic_sync(GROUP, &a.member_id, None, a.generation + 1, 1);
    assert!(
        matches!(sync, Err(GroupError::IllegalGeneration { .. })),
        "{sync:?}"
    );
    let unknown = c.classic_heartbeat(GROUP, "nobody", None, a.generation, 1);
    assert!(
        matches!(unknown, Err(GroupError::UnknownMemberId { .. })),
        "{unknown:?}"
    );
}

#[test]
fn a_classic_member_is_removed_after_its_own_session_timeout() {
    let mut c = coordinator(&[("t", 2)]);
    let mut a = Classic::new(true);
    a.join(&mut c, 0).unwrap();
    assert!(SESSION_TIMEOUT_MS < c.config().session_timeout_ms);
    assert!(c.tick(SESSION_TIMEOUT_MS - 1).is_empty());
    // A heartbeat renews the session from its own time.
    assert_eq!(a.heartbeat(&mut c, 5_000), ClassicHeartbeat::Stable);
    assert!(c.tick(SESSION_TIMEOUT_MS + 1).is_empty());
    let removed = c.tick(5_000 + SESSION_TIMEOUT_MS);
    assert_eq!(removed, vec![(GROUP.to_owned(), a.member_id.clone())]);
}

#[test]
fn joins_outside_kafkas_session_timeout_bounds_or_with_an_unknown_member_id_are_refused() {
    let mut c = coordinator(&[("t", 2)]);
    let mut join = ClassicJoin {
        group_id: GROUP.to_owned(),
        member_id: String::new(),
        group_instance_id: None,
        subscribed_topics: ["t".to_owned()].into(),
        owned: Assignment::new(),
        session_timeout_ms: CLASSIC_SESSION_TIMEOUT_MAX_MS + 1,
        rebalance_timeout_ms: REBALANCE_TIMEOUT_MS,
    };
    let refused = c.classic_join(&join, 0);
    assert!(
        matches!(refused, Err(GroupError::InvalidSessionTimeout { .. })),
        "{refused:?}"
    );
    assert!(c.list_groups().is_empty(), "a refused join leaves no group");
    join.session_timeout_ms = SESSION_TIMEOUT_MS;
    join.member_id = "made-up".to_owned();
    let refused = c.classic_join(&join, 0);
    assert!(
        matches!(refused, Err(GroupError::UnknownMemberId { .. })),
        "{refused:?}"
    );
}

#[test]
fn a_classic_leave_hands_partitions_to_the_others_at_once() {
    let mut c = coordinator(&[("t", 2)]);
    let mut a = Classic::new(true);
    a.join(&mut c, 0).unwrap();
    let mut b = Classic::new(true);
    b.join(&mut c, 1).unwrap();
    c.classic_leave(GROUP, &a.member_id, None, 2).unwrap();
    assert_eq!(b.heartbeat(&mut c, 3), ClassicHeartbeat::Rejoin);
    b.join(&mut c, 4).unwrap();
    assert_eq!(b.owned, tps("t", 0..2));
    let again = c.classic_leave(GROUP, &a.member_id, None, 5);
    assert!(
        matches!(again, Err(GroupError::UnknownMemberId { .. })),
        "{again:?}"
    );
}

#[test]
fn a_member_told_to_rejoin_that_does_not_is_removed_after_its_rebalance_timeout() {
    let mut c = coordinator(&[("t", 2)]);
    let mut a = Classic::new(true);
    a.join(&mut c, 0).unwrap();
    let mut b = Classic::new(true);
    b.join(&mut c, 1).unwrap();
    // A keeps heartbeating but never rejoins: B waits, until A's rebalance timeout.
    assert_eq!(a.heartbeat(&mut c, 2), ClassicHeartbeat::Rejoin);
    let mut now_ms = 2;
    while now_ms < 2 + REBALANCE_TIMEOUT_MS - SESSION_TIMEOUT_MS / 2 {
        now_ms += SESSION_TIMEOUT_MS / 2;
        assert_eq!(a.heartbeat(&mut c, now_ms), ClassicHeartbeat::Rejoin);
        assert_eq!(b.heartbeat(&mut c, now_ms), ClassicHeartbeat::Stable);
        assert!(c.tick(now_ms).is_empty());
    }
    let removed = c.tick(2 + REBALANCE_TIMEOUT_MS);
    assert_eq!(removed, vec![(GROUP.to_owned(), a.member_id.clone())]);
    assert_eq!(b.heartbeat(&mut c, now_ms), ClassicHeartbeat::Rejoin);
    b.join(&mut c, now_ms).unwrap();
    assert_eq!(b.owned, tps("t", 0..2));
    // Members that rejoin when told are never removed.
    let mut d = Classic::new(true);
    d.join(&mut c, now_ms).unwrap();
    let until_ms = now_ms + 2 * REBALANCE_TIMEOUT_MS;
    while now_ms < until_ms {
        now_ms += SESSION_TIMEOUT_MS / 2;
        for member in [&mut b, &mut d] {
            if member.heartbeat(&mut c, now_ms) == ClassicHeartbeat::Rejoin {
                member.join(&mut c, now_ms).unwrap();
            }
        }
        assert!(c.tick(now_ms).is_empty());
    }
    assert_eq!((b.owned.len(), d.owned.len()), (1, 1));
}

fn first_join(member_id: &str) -> ClassicJoin {
    ClassicJoin {
        group_id: GROUP.to_owned(),
        member_id: member_id.to_owned(),
        group_instance_id: None,
        subscribed_topics: ["t".to_owned()].into(),
        owned: Assignment::new(),
        session_timeout_ms: SESSION_TIMEOUT_MS,
        rebalance_timeout_ms: REBALANCE_TIMEOUT_MS,
    }
}

#[test]
fn an_issued_member_id_joins_within_its_session_timeout_and_not_after() {
    let mut c = coordinator(&[("t", 2)]);
    let issued = c.classic_member_id_required(&first_join(""), 0).unwrap();
    assert!(c.list_groups().is_empty(), "naming a member joins nothing");
    let joined = c.classic_join(&first_join(&issued), 1).unwrap();
    assert_eq!(joined.member_id, issued);

    let late = c.classic_member_id_required(&first_join(""), 2).unwrap();
    c.tick(2 + SESSION_TIMEOUT_MS);
    let refused = c.classic_join(&first_join(&late), 2 + SESSION_TIMEOUT_MS);
    assert!(
        matches!(refused, Err(GroupError::UnknownMemberId { .. })),
        "{refused:?}"
    );
}

#[test]
fn issued_member_ids_past_the_bound_displace_the_oldest() {
    let mut c = coordinator(&[("t", 2)]);
    let oldest = c.classic_member_id_required(&first_join(""), 0).unwrap();
    for now_ms in 1..=CLASSIC_PENDING_MEMBERS_MAX as i64 {
        c.classic_member_id_required(&first_join(""), now_ms)
            .unwrap();
    }
    let refused = c.classic_join(&first_join(&oldest), 2_000);
    assert!(
        matches!(refused, Err(GroupError::UnknownMemberId { .. })),
        "{refused:?}"
    );
}

#[test]
fn a_restarted_static_classic_member_takes_its_old_place_and_fences_the_old_process() {
    let mut c = coordinator(&[("t", 4)]);
    let static_join = |member_id: &str, instance: &str| ClassicJoin {
        group_id: GROUP.to_owned(),
        member_id: member_id.to_owned(),
        group_instance_id: Some(instance.to_owned()),
        subscribed_topics: ["t".to_owned()].into(),
        owned: Assignment::new(),
        session_timeout_ms: SESSION_TIMEOUT_MS,
        rebalance_timeout_ms: REBALANCE_TIMEOUT_MS,
    };
    let settle = |c: &mut GroupCoordinator, member: &str, instance: &str, now_ms: i64| {
        let joined = c
            .classic_join(&static_join(member, instance), now_ms)
            .unwrap();
        let owned = c
            .classic_sync(
                GROUP,
                &joined.member_id,
                Some(instance),
                joined.member_epoch,
                now_ms,
            )
            .unwrap();
        (joined.member_id, joined.member_epoch, owned)
    };
    let (a, _, _) = settle(&mut c, "", "a", 0);
    let (b, _, _) = settle(&mut c, "", "b", 1);
    // A gives up what B is to have; both settle.
    let (a, a_generation, a_owned) = settle(&mut c, &a, "a", 2);
    let (b, b_generation, b_owned) = settle(&mut c, &b, "b", 3);
    assert_eq!((a_owned.len(), b_owned.len()), (2, 2));
    assert_eq!(
        c.classic_heartbeat(GROUP, &b, Some("b"), b_generation, 4)
            .unwrap(),
        ClassicHeartbeat::Stable
    );

    // B's process restarts without leaving (a static member does not) and joins anew.
    let (b2, b2_generation, b2_owned) = settle(&mut c, "", "b", 5);
    assert_ne!(b2, b);
    assert_eq!(
        (b2_generation, &b2_owned),
        (b_generation, &b_owned),
        "its place, no rebalance"
    );
    assert_eq!(
        c.classic_heartbeat(GROUP, &a, Some("a"), a_generation, 6)
            .unwrap(),
        ClassicHeartbeat::Stable,
        "the other member is not disturbed"
    );
    // The old process is fenced wherever it turns up.
    for fenced in [
        c.classic_heartbeat(GROUP, &b, Some("b"), b_generation, 7)
            .map(|_| ()),
        c.classic_sync(GROUP, &b, Some("b"), b_generation, 7)
            .map(|_| ()),
    ] {
        assert!(
            matches!(&fenced, Err(GroupError::FencedInstanceId { instance_id, member, .. })
                if instance_id == "b" && member == &b2),
            "{fenced:?}"
        );
    }
    assert_eq!(
        c.classic_heartbeat(GROUP, &b2, Some("b"), b2_generation, 8)
            .unwrap(),
        ClassicHeartbeat::Stable
    );
}

#[test]
fn a_classic_static_members_leave_removes_it_and_joins_wait_for_the_rebalance() {
    let mut c = coordinator(&[("t", 2)]);
    let static_join = |member_id: &str, instance: &str| ClassicJoin {
        group_id: GROUP.to_owned(),
        member_id: member_id.to_owned(),
        group_instance_id: Some(instance.to_owned()),
        subscribed_topics: ["t".to_owned()].into(),
        owned: Assignment::new(),
        session_timeout_ms: SESSION_TIMEOUT_MS,
        rebalance_timeout_ms: REBALANCE_TIMEOUT_MS,
    };
    let a = c.classic_join(&static_join("", "a"), 0).unwrap();
    assert!(
        !c.classic_join_held(GROUP, &a.member_id),
        "alone, nothing to wait for"
    );
    c.classic_sync(GROUP, &a.member_id, Some("a"), a.member_epoch, 0)
        .unwrap();
    // B's join waits: A holds what B is to have and must rejoin first.
    let b = c.classic_join(&static_join("", "b"), 1).unwrap();
    assert!(c.classic_join_held(GROUP, &b.member_id));
    // A, eager, rejoins having revoked everything: the rebalance is done.
    let a = c.classic_join(&static_join(&a.member_id, "a"), 2).unwrap();
    assert!(!c.classic_join_held(GROUP, &a.member_id));
    let b = c.classic_join(&static_join(&b.member_id, "b"), 3).unwrap();
    assert!(!c.classic_join_held(GROUP, &b.member_id));
    assert_eq!(b.assignment.len(), 1);

    // A static member's LeaveGroup removes it (it unsubscribed), unlike a KIP-848
    // static member's leave, which keeps its place for the session timeout.
    c.classic_leave(GROUP, &a.member_id, Some("a"), 4).unwrap();
    let group = c.describe_group(GROUP).unwrap();
    assert_eq!(group.members.len(), 1, "{group:?}");
    assert_eq!(
        c.classic_heartbeat(GROUP, &b.member_id, Some("b"), b.member_epoch, 5)
            .unwrap(),
        ClassicHeartbeat::Rejoin,
        "B is told to rejoin for A's partition"
    );
}

#[test]
fn a_held_join_is_answered_as_things_stood_when_the_last_member_rejoined() {
    let mut c = coordinator(&[("t", 2)]);
    let join = |member_id: &str, owned: Assignment| ClassicJoin {
        group_id: GROUP.to_owned(),
        member_id: member_id.to_owned(),
        group_instance_id: None,
        subscribed_topics: ["t".to_owned()].into(),
        owned,
        session_timeout_ms: SESSION_TIMEOUT_MS,
        rebalance_timeout_ms: REBALANCE_TIMEOUT_MS,
    };
    let a = c.classic_join(&join("", Assignment::new()), 0).unwrap();
    let a_owned = c
        .classic_sync(GROUP, &a.member_id, None, a.member_epoch, 0)
        .unwrap();
    assert_eq!(a_owned.len(), 2);

    // B's join waits for A to rejoin.
    let b = c.classic_join(&join("", Assignment::new()), 1).unwrap();
    assert!(c.classic_join_held(GROUP, &b.member_id));
    let b_join = join(&b.member_id, Assignment::new());
    c.hold_classic_join(&b_join, &b.member_id, 1);
    c.release_held_classic_joins(1);
    assert!(c.poll_held_classic_join(&b_join, 2).is_none(), "still held");

    // A, cooperative, rejoins still owning both: told to give one up, which ends B's
    // wait; B's answer is what it had then, nothing (the partition comes next rebalance).
    c.classic_join(&join(&a.member_id, a_owned.clone()), 3)
        .unwrap();
    c.release_held_classic_joins(3);
    // A gives it up at once; B's answer, taken later, is still the one of that moment.
    let kept: Assignment = a_owned.iter().take(1).cloned().collect();
    c.classic_join(&join(&a.member_id, kept), 4).unwrap();
    c.release_held_classic_joins(4);
    let answered = c.poll_held_classic_join(&b_join, 5).unwrap().unwrap();
    assert!(answered.assignment.is_empty(), "{answered:?}");
    assert_eq!(
        c.classic_heartbeat(GROUP, &b.member_id, None, answered.member_epoch, 7)
            .unwrap(),
        ClassicHeartbeat::Rejoin,
        "B is told to rejoin for the partition A gave up"
    );
}

/// Heartbeats both members until neither has a step to take, rejoining when told.
fn settle(c: &mut GroupCoordinator, members: &mut [&mut Classic], from_ms: i64) -> i64 {
    for now_ms in from_ms..from_ms + 10 {
        let mut stable = true;
        for member in members.iter_mut() {
            if member.heartbeat(c, now_ms) == ClassicHeartbeat::Rejoin {
                member.join(c, now_ms).unwrap();
                stable = false;
            }
        }
        if stable {
            return now_ms + 1;
        }
    }
    panic!("the group did not settle");
}

#[test]
fn a_deleted_topic_is_left_for_the_clients_to_find_in_their_metadata() {
    // Subscribed to "t" and "u" before "u" exists; it comes later, as librdkafka's 0113
    // `n_wildcard` has it, so each member ends with one partition of each.
    let mut c = coordinator(&[("t", 2)]);
    let (mut a, mut b) = (
        Classic::subscribed_to(&["t", "u"]),
        Classic::subscribed_to(&["t", "u"]),
    );
    a.join(&mut c, 0).unwrap();
    b.join(&mut c, 1).unwrap();
    let now_ms = settle(&mut c, &mut [&mut a, &mut b], 2);
    c.set_topics([("t".to_owned(), 2), ("u".to_owned(), 2)].into(), now_ms);
    let now_ms = settle(&mut c, &mut [&mut a, &mut b], now_ms + 1);
    for member in [&a, &b] {
        let topics: Vec<&str> = member.owned.iter().map(|tp| tp.topic.as_str()).collect();
        assert_eq!(topics, ["t", "u"]);
    }

    // "u" is deleted. Nobody else can take its partitions, so neither member is told to
    // rejoin: each finds the topic gone in its metadata and reports its partition lost.
    c.set_topics([("t".to_owned(), 2)].into(), now_ms);
    assert_eq!(a.heartbeat(&mut c, now_ms + 1), ClassicHeartbeat::Stable);
    assert_eq!(b.heartbeat(&mut c, now_ms + 1), ClassicHeartbeat::Stable);
    let generation_before = a.generation;
    a.owned.retain(|tp| tp.topic == "t");
    a.join(&mut c, now_ms + 2).unwrap();
    assert!(a.generation > generation_before);
    assert_eq!(a.owned.len(), 1);
    assert_eq!(a.heartbeat(&mut c, now_ms + 3), ClassicHeartbeat::Stable);

    // B has not noticed (its client has not refreshed its metadata): once it had time to,
    // it is told to rejoin, and revokes the partition.
    let noticed_by_ms = now_ms + 1 + DELETED_TOPIC_NOTICE_MS;
    assert_eq!(
        b.heartbeat(&mut c, noticed_by_ms - 1),
        ClassicHeartbeat::Stable
    );
    assert_eq!(b.heartbeat(&mut c, noticed_by_ms), ClassicHeartbeat::Rejoin);
    b.join(&mut c, noticed_by_ms).unwrap();
    assert_eq!(b.owned.len(), 1);
    let now_ms = settle(&mut c, &mut [&mut a, &mut b], noticed_by_ms + 1);

    // "u" comes back and is deleted again, then created again under the name before A
    // noticed: A, still holding "u"'s old partition, has a step to take at once.
    c.set_topics([("t".to_owned(), 2), ("u".to_owned(), 2)].into(), now_ms);
    let now_ms = settle(&mut c, &mut [&mut a, &mut b], now_ms + 1);
    assert_eq!(a.owned.len() + b.owned.len(), 4);
    c.set_topics([("t".to_owned(), 2)].into(), now_ms);
    assert_eq!(a.heartbeat(&mut c, now_ms + 1), ClassicHeartbeat::Stable);
    c.set_topics(
        [("t".to_owned(), 2), ("u".to_owned(), 2)].into(),
        now_ms + 2,
    );
    assert_eq!(a.heartbeat(&mut c, now_ms + 3), ClassicHeartbeat::Rejoin);
}

#[test]
fn a_deleted_topic_does_not_hold_back_a_step_that_moves_other_partitions() {
    let mut c = coordinator(&[("t", 2), ("u", 2)]);
    let mut a = Classic::subscribed_to(&["t", "u"]);
    a.join(&mut c, 0).unwrap();
    assert_eq!(a.owned.len(), 4);
    // "u" goes and another member comes: A must give up one of "t"'s partitions, so it
    // rejoins (revoking "u"'s along with it).
    c.set_topics([("t".to_owned(), 2)].into(), 1);
    let mut b = Classic::subscribed_to(&["t", "u"]);
    b.join(&mut c, 2).unwrap();
    assert_eq!(a.heartbeat(&mut c, 3), ClassicHeartbeat::Rejoin);
}

#[test]
fn members_whose_joins_are_held_do_not_hold_each_other() {
    let mut c = coordinator(&[("t", 4)]);
    let (mut a, mut b) = (Classic::new(false), Classic::new(false));
    a.join(&mut c, 0).unwrap();
    b.join(&mut c, 1).unwrap();
    let now_ms = settle(&mut c, &mut [&mut a, &mut b], 2);
    // A third member comes: A and B are both behind the new target, and each one's join
    // waits while the other has not rejoined.
    let mut newcomer = Classic::new(false);
    newcomer.join(&mut c, now_ms).unwrap();
    let rejoin = |member: &Classic| ClassicJoin {
        group_id: GROUP.to_owned(),
        member_id: member.member_id.clone(),
        group_instance_id: None,
        subscribed_topics: ["t".to_owned()].into(),
        owned: Assignment::new(),
        session_timeout_ms: SESSION_TIMEOUT_MS,
        rebalance_timeout_ms: REBALANCE_TIMEOUT_MS,
    };
    let (a_join, b_join) = (rejoin(&a), rejoin(&b));
    assert!(c.classic_join_held(GROUP, &a.member_id));
    c.hold_classic_join(&a_join, &a.member_id, now_ms + 1);
    c.release_held_classic_joins(now_ms + 1);
    assert!(
        c.poll_held_classic_join(&a_join, now_ms + 1).is_none(),
        "A waits for B"
    );
    // B rejoins too, and is held in turn: now both have rejoined, so both are answered.
    assert!(!c.classic_join_held(GROUP, &b.member_id));
    c.hold_classic_join(&b_join, &b.member_id, now_ms + 2);
    c.release_held_classic_joins(now_ms + 2);
    let a_answer = c
        .poll_held_classic_join(&a_join, now_ms + 3)
        .expect("answered");
    let b_answer = c
        .poll_held_classic_join(&b_join, now_ms + 3)
        .expect("answered");
    assert!(
        a_answer.is_ok() && b_answer.is_ok(),
        "{a_answer:?} {b_answer:?}"
    );
}

#[test]
fn a_rebalance_under_way_does_not_wait_for_a_member_to_find_a_deleted_topic_gone() {
    let mut c = coordinator(&[("t", 2)]);
    let (mut a, mut b) = (
        Classic::subscribed_to(&["t", "u"]),
        Classic::subscribed_to(&["t", "u"]),
    );
    a.join(&mut c, 0).unwrap();
    b.join(&mut c, 1).unwrap();
    let now_ms = settle(&mut c, &mut [&mut a, &mut b], 2);
    c.set_topics([("t".to_owned(), 2), ("u".to_owned(), 2)].into(), now_ms);
    let now_ms = settle(&mut c, &mut [&mut a, &mut b], now_ms + 1);
    c.set_topics([("t".to_owned(), 2)].into(), now_ms);
    assert_eq!(b.heartbeat(&mut c, now_ms + 1), ClassicHeartbeat::Stable);
    // A found "u" gone and rejoins; its join is held while B is behind, so B is asked now.
    let a_join = ClassicJoin {
        group_id: GROUP.to_owned(),
        member_id: a.member_id.clone(),
        group_instance_id: None,
        subscribed_topics: ["t".to_owned(), "u".to_owned()].into(),
        owned: a
            .owned
            .iter()
            .filter(|tp| tp.topic == "t")
            .cloned()
            .collect(),
        session_timeout_ms: SESSION_TIMEOUT_MS,
        rebalance_timeout_ms: REBALANCE_TIMEOUT_MS,
    };
    assert!(c.classic_join_held(GROUP, &a.member_id));
    c.hold_classic_join(&a_join, &a.member_id, now_ms + 2);
    assert_eq!(b.heartbeat(&mut c, now_ms + 3), ClassicHeartbeat::Rejoin);
}
