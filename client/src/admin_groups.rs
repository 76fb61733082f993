//! Group administration: list, describe with lag, delete, and reset the
//! committed offsets of an empty group.

use serde::Serialize;

use super::admin::Admin;
use super::error::ClientError;
use super::leader_fetch::{by_leader, fetch_client};
use crate::group::group_client;
use crate::proto::{
    DeleteGroupRequest, DescribeGroupRequest, ListGroupsRequest, ListOffsetsRequest,
    OffsetCommitPartition, OffsetCommitTopic, OffsetSpec, PartitionOffsetQuery,
    ResetOffsetsRequest,
};

/// A group as `list_groups` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupListing {
    pub group_id: String,
    /// Empty, Assigning, Reconciling or Stable.
    pub state: String,
    pub members: u32,
}

/// One member of a described group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupMember {
    pub member_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub instance_id: String,
    pub member_epoch: i32,
    pub state: String,
    pub topics: Vec<String>,
    /// What it owns now, as (topic, partition).
    pub assignment: Vec<(String, u32)>,
}

/// One partition the group reads or has committed, with its lag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupPartition {
    pub topic: String,
    pub partition: u32,
    /// The member that owns it now, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member_id: Option<String>,
    /// `None`: the group has committed nothing for it.
    pub committed_offset: Option<u64>,
    /// The partition's high watermark; `None` when it cannot be read (the
    /// topic was deleted, or the partition is offline).
    pub end_offset: Option<u64>,
    /// Records between the commit (or the log start, without one) and the end.
    pub lag: Option<u64>,
}

/// A group as `describe_group` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupDescription {
    pub group_id: String,
    pub state: String,
    pub group_epoch: i32,
    pub assignor: String,
    pub members: Vec<GroupMember>,
    pub partitions: Vec<GroupPartition>,
}

/// Where `reset_offsets` moves a group's committed offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTo {
    Earliest,
    Latest,
    Offset(u64),
    /// The first record at or after this time (ms since the epoch), or the end.
    Time(i64),
}

impl Admin {
    /// Every group: each broker lists the groups it coordinates, so in a cluster every
    /// broker is asked (as Kafka's admin client does). A broker that cannot be reached is
    /// left out while another answers.
    pub async fn list_groups(&self) -> Result<Vec<GroupListing>, ClientError> {
        self.metadata().ensure_known().await;
        let mut groups: Vec<GroupListing> = Vec::new();
        let mut answered = false;
        let mut last_error = None;
        for channel in self.metadata().any_brokers() {
            match group_client(channel)
                .list_groups(ListGroupsRequest {})
                .await
            {
                Ok(answer) => {
                    answered = true;
                    for g in answer.into_inner().groups {
                        if !groups.iter().any(|known| known.group_id == g.group_id) {
                            groups.push(GroupListing {
                                group_id: g.group_id,
                                state: g.state,
                                members: g.members,
                            });
                        }
                    }
                }
                Err(status) => last_error = Some(ClientError::from(status)),
            }
        }
        match (answered, last_error) {
            (false, Some(error)) => Err(error),
            _ => {
                groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
                Ok(groups)
            }
        }
    }

    /// Members, their partitions, and per partition the committed offset, end
    /// offset and lag. An unknown group is a `NotFound` status naming it.
    pub async fn describe_group(&self, group_id: &str) -> Result<GroupDescription, ClientError> {
        let request = DescribeGroupRequest {
            group_id: group_id.to_string(),
        };
        let answer = self
            .coordinator(group_id)
            .call(|mut client| {
                let request = request.clone();
                async move { Ok(client.describe_group(request).await?.into_inner()) }
            })
            .await?;
        let members: Vec<GroupMember> = answer
            .members
            .into_iter()
            .map(|m| GroupMember {
                member_id: m.member_id,
                instance_id: m.instance_id,
                member_epoch: m.member_epoch,
                state: m.state,
                topics: m.subscribed_topic_names,
                assignment: m
                    .assignment
                    .into_iter()
                    .flat_map(|t| {
                        let topic = t.topic;
                        t.partitions.into_iter().map(move |p| (topic.clone(), p))
                    })
                    .collect(),
            })
            .collect();
        let mut partitions: Vec<GroupPartition> = Vec::new();
        for member in &members {
            for (topic, partition) in &member.assignment {
                let i = slot(&mut partitions, topic, *partition);
                partitions[i].member_id = Some(member.member_id.clone());
            }
        }
        for offset in &answer.offsets {
            let i = slot(&mut partitions, &offset.topic, offset.partition);
            partitions[i].committed_offset = u64::try_from(offset.offset).ok();
        }
        partitions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        let mut topics: Vec<String> = partitions.iter().map(|p| p.topic.clone()).collect();
        topics.dedup();
        for topic in topics {
            let wanted: Vec<u32> = partitions
                .iter()
                .filter(|p| p.topic == topic)
                .map(|p| p.partition)
                .collect();
            // A deleted topic or offline partition leaves its end unknown; the
            // rest of the description still stands.
            let Ok(starts) = self
                .list_offsets(&topic, &wanted, OffsetSpec::Earliest, 0)
                .await
            else {
                continue;
            };
            let Ok(ends) = self
                .list_offsets(&topic, &wanted, OffsetSpec::Latest, 0)
                .await
            else {
                continue;
            };
            for p in partitions.iter_mut().filter(|p| p.topic == topic) {
                let end = ends.iter().find(|(q, _)| *q == p.partition).map(|e| e.1);
                let start = starts.iter().find(|(q, _)| *q == p.partition).map(|e| e.1);
                p.end_offset = end;
                p.lag = match (end, p.committed_offset.or(start)) {
                    (Some(end), Some(from)) => Some(end.saturating_sub(from)),
                    _ => None,
                };
            }
        }
        Ok(GroupDescription {
            group_id: answer.group_id,
            state: answer.state,
            group_epoch: answer.group_epoch,
            assignor: answer.assignor,
            members,
            partitions,
        })
    }

    /// Deletes an empty group and its committed offsets; a group with members
    /// is refused (`FailedPrecondition`, naming it).
    pub async fn delete_group(&self, group_id: &str) -> Result<(), ClientError> {
        let request = DeleteGroupRequest {
            group_id: group_id.to_string(),
        };
        self.coordinator(group_id)
            .call(|mut client| {
                let request = request.clone();
                async move { Ok(client.delete_group(request).await?.into_inner()) }
            })
            .await?;
        Ok(())
    }

    /// Sets the committed offsets of every partition of `topic` for an empty
    /// group (a group with members is refused, naming it); returns the offsets
    /// set, per partition.
    pub async fn reset_offsets(
        &self,
        group_id: &str,
        topic: &str,
        to: ResetTo,
    ) -> Result<Vec<(u32, u64)>, ClientError> {
        let partitions: Vec<u32> = (0..self.describe_topic(topic).await?.partition_count).collect();
        let offsets = match to {
            ResetTo::Offset(offset) => {
                // As Kafka's tool does: an offset past a partition's range is
                // clamped to it, so the group never starts out of range.
                let starts = self
                    .list_offsets(topic, &partitions, OffsetSpec::Earliest, 0)
                    .await?;
                let ends = self
                    .list_offsets(topic, &partitions, OffsetSpec::Latest, 0)
                    .await?;
                starts
                    .iter()
                    .map(|(p, start)| {
                        let end = ends.iter().find(|(q, _)| q == p).map_or(*start, |e| e.1);
                        (*p, offset.clamp(*start, end.max(*start)))
                    })
                    .collect()
            }
            ResetTo::Earliest => {
                self.list_offsets(topic, &partitions, OffsetSpec::Earliest, 0)
                    .await?
            }
            ResetTo::Latest => {
                self.list_offsets(topic, &partitions, OffsetSpec::Latest, 0)
                    .await?
            }
            ResetTo::Time(ms) => {
                self.list_offsets(topic, &partitions, OffsetSpec::Timestamp, ms)
                    .await?
            }
        };
        let request = ResetOffsetsRequest {
            group_id: group_id.to_string(),
            topics: vec![OffsetCommitTopic {
                topic: topic.to_string(),
                partitions: offsets
                    .iter()
                    .map(|(partition, offset)| OffsetCommitPartition {
                        partition: *partition,
                        offset: *offset,
                        metadata: String::new(),
                    })
                    .collect(),
            }],
        };
        self.coordinator(group_id)
            .call(|mut client| {
                let request = request.clone();
                async move { Ok(client.reset_offsets(request).await?.into_inner()) }
            })
            .await?;
        Ok(offsets)
    }

    /// Each partition of `topic` with its end offset (high watermark) as its leader
    /// answers it: a follower's own, in `describe_topic`, lags the leader's.
    pub async fn end_offsets(&self, topic: &str) -> Result<Vec<(u32, u64)>, ClientError> {
        self.every_partition_offset(topic, OffsetSpec::Latest).await
    }

    /// Each partition of `topic` with its first offset as its leader answers it.
    pub async fn start_offsets(&self, topic: &str) -> Result<Vec<(u32, u64)>, ClientError> {
        self.every_partition_offset(topic, OffsetSpec::Earliest)
            .await
    }

    async fn every_partition_offset(
        &self,
        topic: &str,
        spec: OffsetSpec,
    ) -> Result<Vec<(u32, u64)>, ClientError> {
        let partitions: Vec<u32> = (0..self.describe_topic(topic).await?.partition_count).collect();
        let mut offsets = self.list_offsets(topic, &partitions, spec, 0).await?;
        offsets.sort_unstable();
        Ok(offsets)
    }

    async fn list_offsets(
        &self,
        topic: &str,
        partitions: &[u32],
        spec: OffsetSpec,
        timestamp_ms: i64,
    ) -> Result<Vec<(u32, u64)>, ClientError> {
        // The high watermark is the leader's: ask it (a follower's lags).
        self.metadata().ensure_known().await;
        let mut offsets = Vec::with_capacity(partitions.len());
        for (channel, partitions) in by_leader(self.metadata(), topic, partitions) {
            let answer = fetch_client(channel)
                .list_offsets(ListOffsetsRequest {
                    topic: topic.to_string(),
                    partitions: partitions
                        .iter()
                        .map(|p| PartitionOffsetQuery {
                            partition: *p,
                            spec: spec.into(),
                            timestamp_ms,
                        })
                        .collect(),
                })
                .await?
                .into_inner();
            offsets.extend(
                answer
                    .partitions
                    .into_iter()
                    .map(|r| (r.partition, r.offset)),
            );
        }
        Ok(offsets)
    }
}

/// The index of (topic, partition) in `partitions`, added when absent.
fn slot(partitions: &mut Vec<GroupPartition>, topic: &str, partition: u32) -> usize {
    if let Some(i) = partitions
        .iter()
        .position(|p| p.topic == topic && p.partition == partition)
    {
        return i;
    }
    partitions.push(GroupPartition {
        topic: topic.to_string(),
        partition,
        member_id: None,
        committed_offset: None,
        end_offset: None,
        lag: None,
    });
    partitions.len() - 1
}
