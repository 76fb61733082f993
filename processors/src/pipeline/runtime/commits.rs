//! A worker's commits: each owned partition's offset with the metadata its state is
//! rebuilt from (watermarks, the snapshots a changelog holds), a copy in the state
//! group for partitions the group consumer commits itself when they are revoked, and
//! reading both back when a partition is assigned.

use weir_client::proto::{
    OffsetCommitPartition, OffsetCommitRequest, OffsetCommitTopic, OffsetFetchRequest,
    TopicPartitions,
};
use weir_client::{ClientError, GroupConsumer};

use super::super::chain::{decode_metadata, encode_metadata, Checkpoint, Restored};
use super::{RoundError, Worker, NO_MEMBER_EPOCH};

/// What a commit needs of the group consumer, taken before the commit is sent (the
/// consumer is not shared across the await).
pub(super) struct Member {
    id: String,
    epoch: i32,
    /// (topic, partition, consumed position) of each owned partition.
    positions: Vec<(String, u32, u64)>,
}

impl Member {
    pub(super) fn of(consumer: &GroupConsumer) -> Member {
        Member {
            id: consumer.member_id(),
            epoch: consumer.member_epoch(),
            positions: consumer.positions(),
        }
    }
}

impl Worker {
    /// How to rebuild each partition's state: from its last commit's metadata; or,
    /// when that commit is the group consumer's own (made when the partition was
    /// revoked from its last owner, at its consumed position), from the state
    /// group's copy of the last commit made here, moving the partition back to the
    /// oldest offset that commit held.
    pub(super) async fn fetch_restored(
        &mut self,
        partitions: &[(String, u32)],
    ) -> Result<Vec<(Restored, Option<u64>)>, ClientError> {
        let committed = self
            .fetch_committed(&self.group.clone(), partitions)
            .await?;
        let saved = self
            .fetch_committed(&self.state_group.clone(), partitions)
            .await?;
        Ok(committed
            .into_iter()
            .zip(saved)
            .map(|(committed, saved)| {
                let ours = committed.as_ref().map(|(_, m)| decode_metadata(m));
                if let Some(restored) = ours.filter(|r| r.position.is_some()) {
                    return (restored, None);
                }
                let Some((saved_offset, metadata)) = saved else {
                    return (Restored::default(), None);
                };
                let mut restored = decode_metadata(&metadata);
                let committed_offset = committed.map(|(offset, _)| offset);
                // A revoke commit is at or past the copy's consumed position; one
                // before it was moved there on purpose (offsets reset), and the copy
                // is of another history.
                if restored.consumed.is_none() || committed_offset < restored.consumed {
                    return (Restored::default(), None);
                }
                // Records before the revoke commit were processed by the last owner.
                restored.position = restored.position.max(committed_offset);
                let rewind_to = match committed_offset {
                    Some(offset) if saved_offset >= offset => None,
                    _ => Some(saved_offset),
                };
                (restored, rewind_to)
            })
            .collect())
    }

    /// The committed offset and metadata of each partition in `group`.
    async fn fetch_committed(
        &mut self,
        group: &str,
        partitions: &[(String, u32)],
    ) -> Result<Vec<Option<(u64, String)>>, ClientError> {
        let mut topics: Vec<TopicPartitions> = Vec::new();
        for (topic, partition) in partitions {
            match topics.iter_mut().find(|t| &t.topic == topic) {
                Some(entry) => entry.partitions.push(*partition),
                None => topics.push(TopicPartitions {
                    topic: topic.clone(),
                    partitions: vec![*partition],
                }),
            }
        }
        let request = OffsetFetchRequest {
            group_id: group.to_string(),
            topics,
        };
        // Retried at the new coordinator while the group's moves.
        let answer = self
            .coordinator_of(group)
            .call(|mut client| {
                let request = request.clone();
                async move { Ok(client.offset_fetch(request).await?.into_inner()) }
            })
            .await?;
        Ok(partitions
            .iter()
            .map(|(topic, partition)| {
                answer
                    .offsets
                    .iter()
                    .find(|o| &o.topic == topic && o.partition == *partition)
                    .and_then(|o| Some((u64::try_from(o.offset).ok()?, o.metadata.clone())))
            })
            .collect())
    }

    /// Commits every owned partition at the oldest offset its open windows hold (its
    /// consumed position when none is open), with the consumed position and the
    /// watermarks as metadata. Called only when every output so far is acknowledged.
    pub(super) async fn commit(&mut self, member: Member) -> Result<(), RoundError> {
        let Member {
            id: member_id,
            epoch: member_epoch,
            positions,
        } = member;
        if member_epoch <= 0 || positions.is_empty() {
            return Ok(());
        }
        let stateful = self.chain.is_stateful();
        if !self.changelogs.is_empty() {
            // Every snapshot this commit names is stored before the commit is sent.
            self.changelogs
                .save(&self.producer, &mut self.chain, &positions)
                .await?;
        }
        let committed: Vec<(String, u32)> =
            positions.iter().map(|(t, p, _)| (t.clone(), *p)).collect();
        let mut topics: Vec<OffsetCommitTopic> = Vec::new();
        for (topic, partition, position) in positions {
            let mut checkpoint = Checkpoint::default();
            self.chain.checkpoint(&topic, partition, &mut checkpoint);
            let offset = checkpoint
                .oldest_offset
                .map_or(position, |o| o.min(position));
            let metadata = if stateful {
                let processed_below = checkpoint
                    .processed_below
                    .map_or(position, |p| p.max(position));
                let snapshots = self.changelogs.refs(&topic, partition);
                encode_metadata(
                    processed_below,
                    position,
                    &checkpoint.watermarks,
                    &snapshots,
                )
            } else {
                String::new()
            };
            let entry = OffsetCommitPartition {
                partition,
                offset,
                metadata,
            };
            match topics.iter_mut().find(|t| t.topic == topic) {
                Some(t) => t.partitions.push(entry),
                None => topics.push(OffsetCommitTopic {
                    topic,
                    partitions: vec![entry],
                }),
            }
        }
        let copy = stateful.then(|| topics.clone());
        self.send_commit(self.group.clone(), member_id, member_epoch, topics)
            .await?;
        if let Some(topics) = copy {
            // The group consumer commits a partition it gives up in a rebalance at its
            // consumed position, without this metadata: its next owner then rebuilds
            // from this copy, in a group no member joins (a commit from outside the
            // group). Written after the group's own commit, which fences a worker no
            // longer in the group.
            let state_group = self.state_group.clone();
            self.send_commit(state_group, String::new(), NO_MEMBER_EPOCH, topics)
                .await?;
        }
        // Both commits name the new snapshots: the ones they replaced can go.
        self.changelogs.committed(&self.producer, &committed).await;
        Ok(())
    }

    async fn send_commit(
        &mut self,
        group: String,
        member_id: String,
        member_epoch: i32,
        topics: Vec<OffsetCommitTopic>,
    ) -> Result<(), ClientError> {
        // Sent again at the new coordinator while the group's moves: the same offsets
        // and metadata, so one that did land is only written twice.
        self.coordinator_of(&group)
            .commit(OffsetCommitRequest {
                group_id: group,
                member_id,
                member_epoch,
                topics,
            })
            .await
    }

    /// The coordinator of `group`: the pipeline's group or its state group.
    fn coordinator_of(&self, group: &str) -> weir_client::GroupCoordinator {
        if group == self.state_group {
            self.state_coordinator.clone()
        } else {
            self.coordinator.clone()
        }
    }
}
