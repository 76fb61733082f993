//! Offset commits and committed-offset lookups of a group, shared by the group
//! consumer and [`crate::Admin`].

use super::Coordinator;
use crate::error::ClientError;
use crate::proto::{
    OffsetCommitPartition, OffsetCommitRequest, OffsetCommitTopic, OffsetFetchRequest,
    TopicPartitions,
};

/// One commit, ready to send.
pub(crate) struct CommitRequest {
    pub coordinator: Coordinator,
    pub group_id: String,
    pub member_id: String,
    pub member_epoch: i32,
    /// (topic, partition, offset of the next record to read).
    pub offsets: Vec<(String, u32, u64)>,
}

impl CommitRequest {
    /// Sends the commit; a refusal (the coordinator takes a commit whole or not at
    /// all) is [`ClientError::Group`] with the coordinator's sentence.
    pub async fn send(self) -> Result<(), ClientError> {
        let mut topics: Vec<OffsetCommitTopic> = Vec::new();
        for (topic, partition, offset) in &self.offsets {
            let entry = match topics.iter_mut().position(|t| &t.topic == topic) {
                Some(i) => &mut topics[i],
                None => {
                    topics.push(OffsetCommitTopic {
                        topic: topic.clone(),
                        partitions: Vec::new(),
                    });
                    topics.last_mut().expect("just pushed")
                }
            };
            entry.partitions.push(OffsetCommitPartition {
                partition: *partition,
                offset: *offset,
                metadata: String::new(),
            });
        }
        // Sent again at the new coordinator if it moved: the same offsets, so a
        // commit that did land is only written twice.
        self.coordinator
            .commit(OffsetCommitRequest {
                group_id: self.group_id,
                member_id: self.member_id,
                member_epoch: self.member_epoch,
                topics,
            })
            .await
    }
}

/// The committed offset of each (topic, partition) of `group_id`; `None` where
/// the group has committed none.
pub(crate) async fn fetch_committed(
    coordinator: &Coordinator,
    group_id: &str,
    partitions: &[(String, u32)],
) -> Result<Vec<(String, u32, Option<u64>)>, ClientError> {
    if partitions.is_empty() {
        return Ok(Vec::new());
    }
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
        group_id: group_id.to_string(),
        topics,
    };
    let answer = coordinator
        .call(|mut client| {
            let request = request.clone();
            async move { Ok(client.offset_fetch(request).await?.into_inner()) }
        })
        .await?;
    Ok(partitions
        .iter()
        .map(|(topic, partition)| {
            let offset = answer
                .offsets
                .iter()
                .find(|o| &o.topic == topic && o.partition == *partition)
                .and_then(|o| u64::try_from(o.offset).ok());
            (topic.clone(), *partition, offset)
        })
        .collect())
}
