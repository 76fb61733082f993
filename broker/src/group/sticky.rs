//! The uniform sticky assignor (Kafka's `uniform` server assignor, the default): balanced,
//! and moving as few partitions as balance needs.
//!
//! 1. Every partition stays with its previous owner while that member still subscribes.
//! 2. Partitions left without an owner go, one at a time, to the least loaded subscriber.
//! 3. While a member holds at least two more partitions than another member that subscribes
//!    to one of them, one such partition moves from the most loaded to the least loaded.
//!    Each move lowers the sum of squared loads, so this ends; with one subscription for
//!    all members it ends with loads differing by at most one, after moving only the excess
//!    of the overloaded members.

use std::collections::{BTreeMap, BTreeSet};

use super::assignor::{subscribed_topics, AssignorMember};
use super::types::{Assignment, TopicMetadata, TopicPartition};

pub(super) fn assign_sticky(
    members: &[AssignorMember<'_>],
    topics: &TopicMetadata,
) -> BTreeMap<String, Assignment> {
    // Indexes into `members`, which the caller sorted; ties go to the earlier member.
    let mut loads: Vec<Assignment> = vec![Assignment::new(); members.len()];
    let mut taken = Assignment::new();
    let partition_count = |topic: &str| topics.get(topic).copied().unwrap_or(0);

    for (index, member) in members.iter().enumerate() {
        for tp in member.previous {
            let still_valid =
                member.subscribed.contains(&tp.topic) && tp.partition < partition_count(&tp.topic);
            if still_valid && taken.insert(tp.clone()) {
                loads[index].insert(tp.clone());
            }
        }
    }

    // (load, member index), least loaded first: finding a subscriber is a short walk.
    let mut by_load: BTreeSet<(usize, usize)> = loads
        .iter()
        .enumerate()
        .map(|(i, a)| (a.len(), i))
        .collect();
    for (topic, count) in subscribed_topics(members, topics) {
        for partition in 0..count {
            let tp = TopicPartition::new(topic, partition);
            if taken.contains(&tp) {
                continue;
            }
            let least = by_load
                .iter()
                .find(|&&(_, i)| members[i].subscribed.contains(topic))
                .copied();
            if let Some((load, index)) = least {
                by_load.remove(&(load, index));
                by_load.insert((load + 1, index));
                taken.insert(tp.clone());
                loads[index].insert(tp);
            }
        }
    }

    while let Some((from, to, tp)) = next_move(members, &loads) {
        loads[from].remove(&tp);
        loads[to].insert(tp);
    }

    members
        .iter()
        .zip(loads)
        .map(|(member, assignment)| (member.member_id.to_owned(), assignment))
        .collect()
}

/// The move that best evens loads: from the most loaded member that can give a partition to
/// a member holding at least two fewer, to the least loaded such member.
fn next_move(
    members: &[AssignorMember<'_>],
    loads: &[Assignment],
) -> Option<(usize, usize, TopicPartition)> {
    let mut by_load_desc: Vec<usize> = (0..members.len()).collect();
    by_load_desc.sort_by_key(|&i| (std::cmp::Reverse(loads[i].len()), i));
    for &from in &by_load_desc {
        let mut receivers: Vec<usize> = by_load_desc
            .iter()
            .copied()
            .filter(|&to| loads[to].len() + 1 < loads[from].len())
            .collect();
        receivers.sort_by_key(|&i| (loads[i].len(), i));
        for to in receivers {
            // The highest partition the receiver subscribes to, so the lowest stay put.
            let movable = loads[from]
                .iter()
                .rev()
                .find(|tp| members[to].subscribed.contains(&tp.topic));
            if let Some(tp) = movable {
                return Some((from, to, tp.clone()));
            }
        }
    }
    None
}
