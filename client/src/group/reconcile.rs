//! Reconciling: bringing what a member owns to the assignment its coordinator last
//! gave it, inside `poll` (lost partitions dropped, revoked ones committed and released,
//! assigned ones started at the group's commits), and the callback on each step.

use super::commit::fetch_committed;
use super::membership::TopicPartitionSet;
use super::{difference, flatten, GroupConsumer, Rebalance, RebalanceMode};
use crate::consumer::{OffsetReset, SeekTo};
use crate::error::ClientError;

impl GroupConsumer {
    /// Brings what the member owns to what the coordinator last said: lost
    /// partitions are dropped, revoked ones committed and released, new ones
    /// started at their committed offsets.
    pub(super) async fn reconcile(&mut self) -> Result<(), ClientError> {
        let (lost, target, answers) = {
            let state = self.membership.lock();
            if let Some(fatal) = &state.fatal {
                return Err(fatal.clone());
            }
            (state.lost.clone(), state.target.clone(), state.answers)
        };
        if let Some(reason) = lost {
            let dropped = std::mem::take(&mut self.owned);
            self.drop_partitions(&dropped);
            let dropped = flatten(&dropped);
            if !dropped.is_empty() {
                tracing::warn!(group = %self.config.group_id, %reason, partitions = dropped.len(), "partitions lost");
                self.call_back(&Rebalance::Lost(dropped));
            }
            self.committed.clear();
            let mut state = self.membership.lock();
            state.owned.clear();
            state.lost = None;
            drop(state);
            self.membership.wake_heartbeat.notify_one();
            return Ok(());
        }
        let Some(target) = target else {
            return Ok(());
        };
        let stop_the_world = self.config.rebalance_mode == RebalanceMode::StopTheWorld;
        let revoked = if stop_the_world && target != self.owned && !self.owned.is_empty() {
            // Any change of this member's share: give everything up and take the
            // assignment back only from an answer to the heartbeat that reported
            // the release. (A member whose share does not change reads on, so this
            // pause is a lower bound of the classic eager protocol's, where every
            // member stops.)
            self.released_at_answer = Some(answers);
            self.owned.clone()
        } else {
            difference(&self.owned, &target)
        };
        if !revoked.is_empty() {
            self.revoke(&revoked).await;
        }
        if stop_the_world {
            if let Some(released) = self.released_at_answer {
                if answers <= released {
                    return Ok(());
                }
                self.released_at_answer = None;
            }
        }
        let assigned = difference(&target, &self.owned);
        if !assigned.is_empty() {
            self.assign(&assigned).await?;
        }
        Ok(())
    }

    /// Calls back, commits the partitions' positions, stops reading them, and
    /// only then reports them released.
    async fn revoke(&mut self, revoked: &TopicPartitionSet) {
        self.call_back(&Rebalance::Revoked(flatten(revoked)));
        let offsets = self.owned_positions(Some(revoked));
        if let Err(error) = self.commit_offsets(&offsets).await {
            // The partition must still be released, or the group stalls until the
            // rebalance timeout; its next owner starts at the previous commit.
            tracing::warn!(group = %self.config.group_id, %error, "commit of revoked partitions failed");
        }
        self.drop_partitions(revoked);
        for (topic, partitions) in revoked {
            if let Some(owned) = self.owned.get_mut(topic) {
                owned.retain(|p| !partitions.contains(p));
            }
            for partition in partitions {
                self.committed.remove(&(topic.clone(), *partition));
            }
        }
        self.owned.retain(|_, set| !set.is_empty());
        self.publish_owned();
    }

    /// Starts reading newly assigned partitions at the group's committed offsets.
    async fn assign(&mut self, assigned: &TopicPartitionSet) -> Result<(), ClientError> {
        let wanted = flatten(assigned);
        let committed = fetch_committed(&self.coordinator, &self.config.group_id, &wanted).await?;
        let start_without_commit = match self.config.consumer.offset_reset {
            OffsetReset::Earliest => SeekTo::Beginning,
            OffsetReset::Latest => SeekTo::End,
            OffsetReset::Error => {
                if let Some((topic, partition, _)) = committed.iter().find(|c| c.2.is_none()) {
                    return Err(ClientError::InvalidArgument(format!(
                        "group {:?} has no committed offset for topic {topic:?} partition {partition} and auto.offset.reset is none",
                        self.config.group_id
                    )));
                }
                SeekTo::End
            }
        };
        for (topic, partitions) in assigned {
            let Some(consumer) = self.consumers.get_mut(topic) else {
                continue;
            };
            let starts: Vec<(u32, SeekTo)> = partitions
                .iter()
                .map(|partition| {
                    let offset = committed
                        .iter()
                        .find(|(t, p, _)| t == topic && p == partition)
                        .and_then(|(_, _, offset)| *offset);
                    if let Some(offset) = offset {
                        self.committed.insert((topic.clone(), *partition), offset);
                    }
                    (
                        *partition,
                        offset.map_or(start_without_commit, SeekTo::Offset),
                    )
                })
                .collect();
            consumer.add_partitions(&starts);
            self.owned
                .entry(topic.clone())
                .or_default()
                .extend(partitions.iter().copied());
        }
        self.publish_owned();
        self.call_back(&Rebalance::Assigned(wanted));
        Ok(())
    }

    fn drop_partitions(&mut self, partitions: &TopicPartitionSet) {
        for (topic, set) in partitions {
            if let Some(consumer) = self.consumers.get_mut(topic) {
                consumer.remove_partitions(&set.iter().copied().collect::<Vec<_>>());
            }
        }
    }

    fn publish_owned(&self) {
        self.membership.lock().owned = self.owned.clone();
        self.membership.wake_heartbeat.notify_one();
    }
}
