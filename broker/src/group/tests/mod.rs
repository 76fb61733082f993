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
    Assignment, GroupConfig, GroupCoordinator, GroupError, HeartbeatRequest, TopicPartition,
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
