//! A model-based test: random joins, leaves, crashes, heartbeats (some of whose answers
//! are lost), commits, time passing and topic growth, checked at every step against the
//! rules a consumer group must keep. Consumers speak KIP-848 heartbeats or Kafka's
//! classic protocol (eager or cooperative), mixed in one group.

use proptest::prelude::*;

use super::super::{
    AssignorKind, ClassicJoin, GroupRecord, GroupState, MemberDescription, OffsetCommit,
};
use super::*;

const TOPICS: [&str; 2] = ["a", "b"];
const STEP_MS_MAX: i64 = 20_000;

#[derive(Debug, Clone)]
enum Op {
    /// A new consumer subscribes to a non-empty subset of TOPICS (bit mask), maybe static,
    /// maybe slow to give partitions up, maybe a classic client (cooperative or not).
    Join {
        topics: u8,
        instance: Option<u8>,
        slow: bool,
        classic: Option<bool>,
    },
    /// A slow consumer finishes with the partitions it was told to revoke.
    Release(usize),
    Heartbeat(usize),
    /// The coordinator handles the heartbeat; the answer never reaches the consumer.
    LostAnswer(usize),
    Leave(usize),
    /// The consumer's process dies: it owns nothing and says nothing more.
    Crash(usize),
    Commit {
        consumer: usize,
        stale: bool,
    },
    /// Time passes; every live consumer then heartbeats, and the coordinator ticks.
    Advance(i64),
    Grow {
        topic: usize,
        by: u32,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (
            1u8..4,
            proptest::option::weighted(0.3, 0u8..3),
            any::<bool>(),
            proptest::option::weighted(0.4, any::<bool>()),
        )
            .prop_map(|(topics, instance, slow, classic)| Op::Join { topics, instance, slow, classic }),
        2 => any::<usize>().prop_map(Op::Release),
        6 => any::<usize>().prop_map(Op::Heartbeat),
        1 => any::<usize>().prop_map(Op::LostAnswer),
        1 => any::<usize>().prop_map(Op::Leave),
        1 => any::<usize>().prop_map(Op::Crash),
        2 => (any::<usize>(), any::<bool>())
            .prop_map(|(consumer, stale)| Op::Commit { consumer, stale }),
        3 => (1..STEP_MS_MAX).prop_map(Op::Advance),
        1 => (0usize..2, 1u32..4).prop_map(|(topic, by)| Op::Grow { topic, by }),
    ]
}

fn assignor() -> impl Strategy<Value = AssignorKind> {
    prop_oneof![
        Just(AssignorKind::Range),
        Just(AssignorKind::RoundRobin),
        Just(AssignorKind::Sticky)
    ]
}

struct Model {
    c: GroupCoordinator,
    now_ms: i64,
    topics: BTreeMap<String, u32>,
    live: Vec<Consumer>,
    /// Member epochs last seen in the coordinator, to check they never go back.
    epochs: BTreeMap<String, i32>,
    /// Every record the coordinator wrote, in order.
    records: Vec<GroupRecord>,
}

impl Model {
    fn new(kind: AssignorKind) -> Self {
        let config = GroupConfig {
            default_assignor: kind,
            ..GroupConfig::default()
        };
        let topics: BTreeMap<String, u32> = [("a".to_owned(), 3), ("b".to_owned(), 2)].into();
        let mut c = GroupCoordinator::new(config, 1);
        c.set_topics(topics.clone(), 0);
        Model {
            c,
            now_ms: 0,
            topics,
            live: Vec::new(),
            epochs: BTreeMap::new(),
            records: Vec::new(),
        }
    }

    fn pick(&self, index: usize) -> Option<usize> {
        (!self.live.is_empty()).then(|| index % self.live.len())
    }

    /// A consumer whose heartbeat is refused starts over, owning nothing, as a client does
    /// after `UNKNOWN_MEMBER_ID` or `FENCED_MEMBER_EPOCH`.
    fn beat(&mut self, i: usize) {
        if self.live[i].beat(&mut self.c, self.now_ms).is_err() {
            let old = &self.live[i];
            let mut fresh = Consumer::new(&[]);
            fresh.topics.clone_from(&old.topics);
            fresh.instance_id.clone_from(&old.instance_id);
            fresh.slow = old.slow;
            fresh.classic = old.classic;
            self.live[i] = fresh;
        }
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Join {
                topics,
                instance,
                slow,
                classic,
            } => {
                let chosen: Vec<&str> = (0..TOPICS.len())
                    .filter(|bit| topics & (1 << bit) != 0)
                    .map(|bit| TOPICS[bit])
                    .collect();
                let mut consumer = match instance {
                    Some(k) => Consumer::static_member(&chosen, &format!("instance-{k}")),
                    None => Consumer::new(&chosen),
                };
                // A classic client gives up revoked partitions before it rejoins.
                consumer.slow = slow && classic.is_none();
                consumer.classic = classic;
                // Refused while another live process holds the instance id, except to a
                // classic client: Kafka's classic protocol lets a static member's new
                // process take its place at once and fences the old one, which is
                // modelled as the restart it stands for (the old process is gone).
                if consumer.beat(&mut self.c, self.now_ms).is_ok() {
                    if consumer.classic.is_some() && consumer.instance_id.is_some() {
                        self.live
                            .retain(|other| other.instance_id != consumer.instance_id);
                    }
                    self.live.push(consumer);
                }
            }
            Op::Release(i) => {
                if let Some(i) = self.pick(i) {
                    self.live[i].release();
                }
            }
            Op::Heartbeat(i) => {
                if let Some(i) = self.pick(i) {
                    self.beat(i);
                }
            }
            Op::LostAnswer(i) => {
                if let Some(i) = self.pick(i) {
                    match self.live[i].classic {
                        // A classic client's lost answer is its JoinGroup's; an eager
                        // one gave everything up before it sent it.
                        Some(cooperative) => {
                            let consumer = &mut self.live[i];
                            if !cooperative {
                                consumer.lose_all();
                            }
                            let join = ClassicJoin {
                                group_id: GROUP.to_owned(),
                                member_id: consumer.member_id.clone(),
                                group_instance_id: consumer.instance_id.clone(),
                                subscribed_topics: consumer.topics.clone(),
                                owned: consumer.owned.clone(),
                                session_timeout_ms: self.c.config().session_timeout_ms,
                                rebalance_timeout_ms: REBALANCE_TIMEOUT_MS,
                            };
                            let _ignored = self.c.classic_join(&join, self.now_ms);
                            // It knows its join failed and sends another.
                            consumer.epoch = -1;
                        }
                        None => {
                            let _ignored = self.c.heartbeat(&self.live[i].request(), self.now_ms);
                        }
                    }
                }
            }
            Op::Leave(i) => {
                if let Some(i) = self.pick(i) {
                    let gone = self.live.remove(i);
                    let _refused_if_fenced =
                        self.c
                            .leave(GROUP, &gone.member_id, gone.epoch, self.now_ms);
                }
            }
            Op::Crash(i) => {
                if let Some(i) = self.pick(i) {
                    self.live.remove(i);
                }
            }
            Op::Commit { consumer, stale } => {
                if let Some(i) = self.pick(consumer) {
                    self.commit(i, stale);
                }
            }
            Op::Advance(ms) => self.advance(ms),
            Op::Grow { topic, by } => {
                let count = self.topics.entry(TOPICS[topic].to_owned()).or_default();
                *count += by;
                self.c.set_topics(self.topics.clone(), self.now_ms);
            }
        }
    }

    /// Consumers finish what they were revoking well within the rebalance timeout.
    fn advance(&mut self, ms: i64) {
        self.now_ms += ms;
        for i in 0..self.live.len() {
            self.live[i].release();
            self.beat(i);
        }
        self.c.tick(self.now_ms);
    }

    fn commit(&mut self, i: usize, stale: bool) {
        let consumer = &self.live[i];
        if consumer.owned.is_empty() {
            return;
        }
        let epoch = consumer.epoch - i32::from(stale);
        let current = self.member(&consumer.member_id).map(|m| m.member_epoch);
        let commits: Vec<OffsetCommit> = consumer
            .owned
            .iter()
            .map(|tp| OffsetCommit {
                partition: tp.clone(),
                offset: 1,
                metadata: String::new(),
            })
            .collect();
        let result =
            self.c
                .commit_offsets(GROUP, &consumer.member_id, epoch, &commits, self.now_ms);
        if result.is_ok() {
            assert_eq!(
                Some(epoch),
                current,
                "a commit from a stale epoch was accepted"
            );
        }
        if current.is_some_and(|current| epoch < current) {
            assert!(
                matches!(result, Err(GroupError::StaleMemberEpoch { .. })),
                "{result:?}"
            );
        }
    }

    fn member(&self, member_id: &str) -> Option<MemberDescription> {
        let description = self.c.describe_group(GROUP).ok()?;
        description
            .members
            .into_iter()
            .find(|m| m.member_id == member_id)
    }

    fn check(&mut self) {
        self.records.extend(self.c.take_records());
        assert_one_owner(&self.live);
        let Ok(description) = self.c.describe_group(GROUP) else {
            return;
        };
        let mut holder: BTreeMap<&TopicPartition, &str> = BTreeMap::new();
        for member in &description.members {
            for tp in member.assignment.iter().chain(&member.pending_revocation) {
                if let Some(other) = holder.insert(tp, &member.member_id) {
                    panic!(
                        "the coordinator gives {tp} to {other} and {}",
                        member.member_id
                    );
                }
            }
            let last = self
                .epochs
                .insert(member.member_id.clone(), member.member_epoch);
            assert!(
                last.is_none_or(|last| last <= member.member_epoch),
                "member {} went from epoch {last:?} to {}",
                member.member_id,
                member.member_epoch
            );
        }
        // What a consumer owns, the coordinator counts as its: this is what makes the
        // coordinator's one-holder rule hold among the consumers.
        for consumer in &self.live {
            let Some(member) = description
                .members
                .iter()
                .find(|m| m.member_id == consumer.member_id)
            else {
                assert!(
                    consumer.owned.is_empty(),
                    "{} owns partitions as a non-member",
                    consumer.member_id
                );
                continue;
            };
            for tp in &consumer.owned {
                assert!(
                    member.assignment.contains(tp) || member.pending_revocation.contains(tp),
                    "{} owns {tp}, which the coordinator does not count as its",
                    consumer.member_id
                );
            }
        }
        let present: BTreeSet<&String> = description.members.iter().map(|m| &m.member_id).collect();
        self.epochs.retain(|id, _| present.contains(id));
        // Whatever call settled the group (either protocol's) ended the rebalance, and
        // rebalances never overlap.
        let rebalances = self.c.rebalance_durations(GROUP).expect("the group exists");
        assert!(
            !(rebalances.in_progress()
                && matches!(description.state, GroupState::Stable | GroupState::Empty)),
            "a rebalance is still timed in a {} group",
            description.state
        );
        assert!(rebalances.sum_ms() <= u64::try_from(self.now_ms).unwrap_or(0));
    }

    /// Membership is quiet: crashed members expire, the initial delay ends, everyone keeps
    /// heartbeating. Then every partition of a subscribed topic has exactly one owner.
    fn quiesce_and_check_everything_is_owned(&mut self) {
        let until_ms = self.now_ms + self.c.config().session_timeout_ms + STEP_MS_MAX;
        while self.now_ms < until_ms {
            self.advance(STEP_MS_MAX / 2);
            self.check();
        }
        for _ in 0..5 {
            self.advance(1);
            self.check();
        }
        let subscribed: BTreeSet<&String> = self.live.iter().flat_map(|c| &c.topics).collect();
        let expected: Assignment = self
            .topics
            .iter()
            .filter(|(topic, _)| subscribed.contains(topic))
            .flat_map(|(topic, &count)| (0..count).map(|p| TopicPartition::new(topic.clone(), p)))
            .collect();
        let owned: Assignment = self.live.iter().flat_map(|c| c.owned.clone()).collect();
        assert_eq!(
            owned, expected,
            "not every partition is owned once the group is quiet"
        );
    }

    /// The records written along the way rebuild what the coordinator holds.
    fn check_replay(&mut self) {
        self.records.extend(self.c.take_records());
        let config = self.c.config().clone();
        let replayed = GroupCoordinator::replay(config, 2, &self.records, self.now_ms)
            .expect("the coordinator's own records replay");
        assert_eq!(observe(&replayed), observe(&self.c));
    }
}

proptest! {
    #[test]
    fn a_group_under_random_churn_keeps_one_owner_per_partition_and_ends_fully_owned(
        kind in assignor(),
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        let mut model = Model::new(kind);
        for op in &ops {
            model.apply(op);
            model.check();
        }
        model.check_replay();
        model.quiesce_and_check_everything_is_owned();
        model.check_replay();
    }
}
