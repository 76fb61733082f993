//! The server-side assignors: given the members' subscriptions, the topics' sizes and the
//! previous target, the next target assignment. Pure functions; every partition of a topic
//! some member subscribes to goes to exactly one subscribed member.

use std::collections::{BTreeMap, BTreeSet};

use super::sticky::assign_sticky;
use super::types::{Assignment, AssignorKind, TopicMetadata, TopicPartition};

/// What an assignor knows of one member.
#[derive(Debug, Clone, Copy)]
pub struct AssignorMember<'a> {
    pub member_id: &'a str,
    /// Members are ordered by this: the instance id of a static member, so a restarted
    /// static member keeps its place (as Kafka's range assignor does), else the member id.
    pub sort_key: &'a str,
    pub subscribed: &'a BTreeSet<String>,
    /// The member's part of the previous target assignment (used by `sticky`).
    pub previous: &'a Assignment,
}

/// Runs `kind` over `members`: an entry for every member, empty when it gets nothing.
pub fn assign(
    kind: AssignorKind,
    members: &[AssignorMember<'_>],
    topics: &TopicMetadata,
) -> BTreeMap<String, Assignment> {
    let mut sorted: Vec<AssignorMember<'_>> = members.to_vec();
    sorted.sort_by(|a, b| (a.sort_key, a.member_id).cmp(&(b.sort_key, b.member_id)));
    let assignment = match kind {
        AssignorKind::Range => assign_range(&sorted, topics),
        AssignorKind::RoundRobin => assign_round_robin(&sorted, topics),
        AssignorKind::Sticky => assign_sticky(&sorted, topics),
    };
    debug_assert!(
        covers_each_partition_once(&sorted, topics, &assignment),
        "assignor {kind} must give every subscribed partition to exactly one subscriber"
    );
    assignment
}

fn empty_assignment(members: &[AssignorMember<'_>]) -> BTreeMap<String, Assignment> {
    members
        .iter()
        .map(|m| (m.member_id.to_owned(), Assignment::new()))
        .collect()
}

/// The topics some member subscribes to, with their partition counts.
pub(super) fn subscribed_topics<'t>(
    members: &[AssignorMember<'_>],
    topics: &'t TopicMetadata,
) -> Vec<(&'t str, u32)> {
    topics
        .iter()
        .filter(|(topic, _)| members.iter().any(|m| m.subscribed.contains(*topic)))
        .map(|(topic, &count)| (topic.as_str(), count))
        .collect()
}

/// Per topic, the subscribers in order take contiguous ranges; the first `count % n` take
/// one more (Kafka's `RangeAssignor`).
fn assign_range(
    members: &[AssignorMember<'_>],
    topics: &TopicMetadata,
) -> BTreeMap<String, Assignment> {
    let mut result = empty_assignment(members);
    for (topic, count) in subscribed_topics(members, topics) {
        let subscribers: Vec<&AssignorMember<'_>> = members
            .iter()
            .filter(|m| m.subscribed.contains(topic))
            .collect();
        let n = u32::try_from(subscribers.len()).unwrap_or(u32::MAX);
        let (quota, extra) = (count / n, count % n);
        let mut next = 0u32;
        for (index, member) in (0u32..).zip(subscribers) {
            let take = quota + u32::from(index < extra);
            let target = result.entry(member.member_id.to_owned()).or_default();
            target.extend((next..next + take).map(|p| TopicPartition::new(topic, p)));
            next += take;
        }
        debug_assert_eq!(next, count);
    }
    result
}

/// Every partition in (topic, partition) order goes to the next subscriber in turn (Kafka's
/// `RoundRobinAssignor`).
fn assign_round_robin(
    members: &[AssignorMember<'_>],
    topics: &TopicMetadata,
) -> BTreeMap<String, Assignment> {
    let mut result = empty_assignment(members);
    let mut cursor = 0usize;
    for (topic, count) in subscribed_topics(members, topics) {
        for partition in 0..count {
            // Some member subscribes to `topic`, so this finds one within members.len() steps.
            let Some(offset) = (0..members.len()).find(|step| {
                members[(cursor + step) % members.len()]
                    .subscribed
                    .contains(topic)
            }) else {
                break;
            };
            let chosen = (cursor + offset) % members.len();
            if let Some(target) = result.get_mut(members[chosen].member_id) {
                target.insert(TopicPartition::new(topic, partition));
            }
            cursor = chosen + 1;
        }
    }
    result
}

fn covers_each_partition_once(
    members: &[AssignorMember<'_>],
    topics: &TopicMetadata,
    assignment: &BTreeMap<String, Assignment>,
) -> bool {
    let mut seen = BTreeSet::new();
    for member in members {
        for tp in assignment.get(member.member_id).into_iter().flatten() {
            if !member.subscribed.contains(&tp.topic) || !seen.insert(tp.clone()) {
                return false;
            }
        }
    }
    let expected: u64 = subscribed_topics(members, topics)
        .iter()
        .map(|&(_, count)| u64::from(count))
        .sum();
    seen.len() as u64 == expected
}
