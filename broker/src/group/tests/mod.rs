//! Tests of the group coordinator, and the simulated consumers they drive it with.

mod admin;
mod assignors;
mod classic;
mod model;
mod offsets;
mod persistence;

mod rebalance;
mod requests;
mod static_membership;

use std::collections::{BTreeMap, BTreeSet};

use super::{
    Assignment, ClassicHeartbeat, ClassicJoin, GroupConfig, GroupCoordinator, GroupError,
    HeartbeatRequest, TopicPartition,
};

pub(super) const GROUP: &str = "g";
pub(super) const REBALANCE_TIMEOUT_MS: i64 = 60_000;

/// Kafka's defaults without the initial delay, which only its own tests want.
pub(super) fn config() -> GroupConfig {
    GroupConfig {
        initial_rebalance_delay_ms: 0,
        ..GroupConfig::default()
    }
}

pub(super) fn coordinator_with(config: GroupConfig, topics: &[(&str, u32)]) -> GroupCoordinator {
    let mut coordinator = GroupCoordinator::new(config, 7);
    let metadata = topics.iter().map(|&(t, n)| (t.to_owned(), n)).collect();
    coordinator.set_topics(metadata, 0);
    coordinator
}

pub(super) fn coordinator(topics: &[(&str, u32)]) -> GroupCoordinator {
    coordinator_with(config(), topics)
}

pub(super) fn tps(topic: &str, partitions: impl IntoIterator<Item = u32>) -> Assignment {
    partitions
        .into_iter()
        .map(|p| TopicPartition::new(topic, p))
        .collect()
}

/// A consumer as the coordinator sees it from outside: what it was told and what it owns.
#[derive(Debug, Clone)]
pub(super) struct Consumer {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub epoch: i32,
    pub topics: BTreeSet<String>,
    pub owned: Assignment,
    /// What the last answer said to own.
    pub told: Assignment,
    /// A slow consumer keeps (and reports) partitions it is told to revoke until it calls
    /// `release`, as a real one does while it finishes and commits them.
    pub slow: bool,
    /// A client of Kafka's classic protocol (JoinGroup, SyncGroup, Heartbeat), cooperative
    /// (`Some(true)`: it reports what it owns when it rejoins) or eager (`Some(false)`: it
    /// gives everything up first).
    pub classic: Option<bool>,
}

impl Consumer {
    pub fn new(topics: &[&str]) -> Self {
        Consumer {
            member_id: String::new(),
            instance_id: None,
            epoch: 0,
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            owned: Assignment::new(),
            told: Assignment::new(),
            slow: false,
            classic: None,
        }
    }

    /// A slow consumer is done with the partitions it was told to revoke.
    pub fn release(&mut self) {
        self.owned.clone_from(&self.told);
    }

    pub fn static_member(topics: &[&str], instance_id: &str) -> Self {
        Consumer {
            instance_id: Some(instance_id.to_owned()),
            ..Consumer::new(topics)
        }
    }

    pub fn request(&self) -> HeartbeatRequest {
        HeartbeatRequest {
            group_id: GROUP.to_owned(),
            member_id: self.member_id.clone(),
            group_instance_id: self.instance_id.clone(),
            member_epoch: self.epoch,
            subscribed_topics: self.topics.clone(),
            owned: self.owned.clone(),
            rebalance_timeout_ms: REBALANCE_TIMEOUT_MS,
            server_assignor: None,
        }
    }

    /// One heartbeat; on success the consumer takes the answer as a real one would: it
    /// gives up what is missing from the assignment and starts on what is new.
    pub fn beat(&mut self, c: &mut GroupCoordinator, now_ms: i64) -> Result<(), GroupError> {
        if let Some(cooperative) = self.classic {
            return self.classic_beat(c, now_ms, cooperative);
        }
        let response = c.heartbeat(&self.request(), now_ms)?;
        assert!(
            response.member_epoch >= self.epoch,
            "member {} went from epoch {} back to {}",
            response.member_id,
            self.epoch,
            response.member_epoch
        );
        self.member_id = response.member_id;
        self.epoch = response.member_epoch;
        if self.slow {
            let revoked: Vec<TopicPartition> = self
                .owned
                .difference(&response.assignment)
                .cloned()
                .collect();
            self.owned.clone_from(&response.assignment);
            self.owned.extend(revoked);
        } else {
            self.owned.clone_from(&response.assignment);
        }
        self.told = response.assignment;
        Ok(())
    }
}

impl Consumer {
    /// A classic client gives up every partition (an eager one before each JoinGroup).
    pub fn lose_all(&mut self) {
        self.owned.clear();
        self.told.clear();
    }

    /// A classic client's turn: a Heartbeat, and when it is told to rejoin (or has not
    /// joined yet, or its last JoinGroup failed: epoch -1) a JoinGroup and a SyncGroup,
    /// taking the synced assignment as its own. After ILLEGAL_GENERATION it rejoins under
    /// its member id having lost everything, as Kafka's clients do.
    fn classic_beat(
        &mut self,
        c: &mut GroupCoordinator,
        now_ms: i64,
        cooperative: bool,
    ) -> Result<(), GroupError> {
        if !self.member_id.is_empty() && self.epoch >= 0 {
            match c.classic_heartbeat(GROUP, &self.member_id, None, self.epoch, now_ms) {
                Ok(ClassicHeartbeat::Stable) => return Ok(()),
                Ok(ClassicHeartbeat::Rejoin) => {}
                Err(GroupError::IllegalGeneration { .. }) => self.lose_all(),
                Err(other) => return Err(other),
            }
        }
        if !cooperative {
            self.lose_all();
        }
        let join = ClassicJoin {
            group_id: GROUP.to_owned(),
            member_id: self.member_id.clone(),
            group_instance_id: self.instance_id.clone(),
            subscribed_topics: self.topics.clone(),
            owned: self.owned.clone(),
            session_timeout_ms: c.config().session_timeout_ms,
            rebalance_timeout_ms: REBALANCE_TIMEOUT_MS,
        };
        let answer = c.classic_join(&join, now_ms)?;
        assert!(
            answer.member_epoch >= self.epoch,
            "classic member {} went from generation {} back to {}",
            answer.member_id,
            self.epoch,
            answer.member_epoch
        );
        self.member_id = answer.member_id;
        self.epoch = answer.member_epoch;
        self.owned = c.classic_sync(GROUP, &self.member_id, None, self.epoch, now_ms)?;
        self.told.clone_from(&self.owned);
        Ok(())
    }
}

pub(super) fn joined(c: &mut GroupCoordinator, topics: &[&str], now_ms: i64) -> Consumer {
    let mut consumer = Consumer::new(topics);
    consumer.beat(c, now_ms).expect("join");
    consumer
}

/// Panics if two consumers own one partition.
pub(super) fn assert_one_owner(consumers: &[Consumer]) {
    let mut owner: BTreeMap<&TopicPartition, &str> = BTreeMap::new();
    for consumer in consumers {
        for tp in &consumer.owned {
            if let Some(other) = owner.insert(tp, &consumer.member_id) {
                panic!("{tp} owned by {other} and {}", consumer.member_id);
            }
        }
    }
}

/// Heartbeats every consumer in turn until a whole round changes nothing (at most 20
/// rounds), checking after each heartbeat that no partition has two owners.
pub(super) fn settle(c: &mut GroupCoordinator, consumers: &mut [Consumer], now_ms: i64) {
    for _ in 0..20 {
        let mut changed = false;
        for i in 0..consumers.len() {
            let before = (consumers[i].epoch, consumers[i].owned.clone());
            consumers[i].beat(c, now_ms).expect("heartbeat");
            assert_one_owner(consumers);
            changed |= before != (consumers[i].epoch, consumers[i].owned.clone());
        }
        if !changed {
            return;
        }
    }
    panic!("the group did not settle in 20 rounds");
}

pub(super) fn owned_counts(consumers: &[Consumer]) -> Vec<usize> {
    let mut counts: Vec<usize> = consumers.iter().map(|c| c.owned.len()).collect();
    counts.sort_unstable();
    counts
}

/// Everything observable from outside: listings, descriptions, offsets.
pub(super) fn observe(c: &GroupCoordinator) -> Vec<String> {
    c.list_groups()
        .iter()
        .map(|listing| {
            let description = c.describe_group(&listing.group_id).expect("listed group");
            let offsets = c.fetch_offsets(&listing.group_id, None);
            format!("{listing:?}\n{description:?}\n{offsets:?}")
        })
        .collect()
}
