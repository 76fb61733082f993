//! OffsetCommit (v2-v9) and OffsetFetch (v1-v9) on the group coordinator.
//!
//! A commit names its member and generation (a member epoch from v9); generation -1 with
//! no member id commits from outside the group, as a consumer with manually assigned
//! partitions does, which only an empty group accepts (Kafka's rule). A commit is all
//! or nothing in the coordinator, so every partition gets the one answer, except
//! partitions refused before it (an unknown topic or partition, a negative offset).

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::connection::Session;
use super::groups::group_code;
use crate::group::{CommittedOffset, OffsetCommit, TopicPartition};

/// One partition of a commit: what to commit, or the code it is refused with before the
/// coordinator sees it.
type Checked = Result<OffsetCommit, i16>;

/// The first OffsetCommit version that carries a KIP-848 member epoch.
const MEMBER_EPOCH_VERSION: i16 = 9;

pub async fn commit(
    session: &Session,
    request: OffsetCommitRequest,
    version: i16,
) -> OffsetCommitResponse {
    let group_id = request.group_id.0.to_string();
    let member_id = request.member_id.to_string();
    let epoch = request.generation_id_or_member_epoch;
    let mut checked: Vec<(TopicName, Vec<(i32, Checked)>)> = Vec::new();
    for topic in request.topics {
        let name = topic.name.0.to_string();
        // Checked here, partition by partition, as Kafka does; the coordinator would
        // refuse the whole commit.
        let partition_count = session
            .broker
            .topic(&name)
            .ok()
            .map(|t| t.partition_count());
        let partitions = topic
            .partitions
            .into_iter()
            .map(|p| {
                let index = p.partition_index;
                let commit = match (u32::try_from(index), u64::try_from(p.committed_offset)) {
                    (Err(_), _) => Err(ResponseError::UnknownTopicOrPartition.code()),
                    (Ok(partition), _) if partition_count.is_none_or(|n| partition >= n) => {
                        Err(ResponseError::UnknownTopicOrPartition.code())
                    }
                    (_, Err(_)) => Err(ResponseError::InvalidCommitOffsetSize.code()),
                    (Ok(partition), Ok(offset)) => Ok(OffsetCommit {
                        partition: TopicPartition::new(name.clone(), partition),
                        offset,
                        metadata: p
                            .committed_metadata
                            .map(|m| m.to_string())
                            .unwrap_or_default(),
                    }),
                };
                (index, commit)
            })
            .collect();
        checked.push((topic.name, partitions));
    }
    let commits: Vec<OffsetCommit> = checked
        .iter()
        .flat_map(|(_, partitions)| partitions.iter())
        .filter_map(|(_, c)| c.as_ref().ok().cloned())
        .collect();
    let code = if commits.is_empty() {
        0
    } else {
        match session
            .groups
            .mutate(&group_id, |c, now_ms| {
                c.commit_offsets(&group_id, &member_id, epoch, &commits, now_ms)
            })
            .await
        {
            Ok(()) => 0,
            Err(error) => group_code(&error, version < MEMBER_EPOCH_VERSION),
        }
    };
    let topics = checked
        .into_iter()
        .map(|(name, partitions)| {
            OffsetCommitResponseTopic::default()
                .with_name(name)
                .with_partitions(
                    partitions
                        .into_iter()
                        .map(|(index, commit)| {
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(index)
                                .with_error_code(commit.err().unwrap_or(code))
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

/// One group's wanted partitions: `None` asks for all committed ones (v2+).
type Wanted = Option<Vec<(TopicName, Vec<i32>)>>;

pub async fn fetch(
    session: &Session,
    request: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    if version >= 8 {
        let mut groups = Vec::with_capacity(request.groups.len());
        for group in request.groups {
            let wanted = group.topics.map(|topics| {
                topics
                    .into_iter()
                    .map(|t| (t.name, t.partition_indexes))
                    .collect()
            });
            let response =
                OffsetFetchResponseGroup::default().with_group_id(group.group_id.clone());
            groups.push(
                match fetch_group(session, &group.group_id.0, wanted).await {
                    Ok(topics) => response.with_topics(
                        topics
                            .into_iter()
                            .map(|(name, partitions)| {
                                OffsetFetchResponseTopics::default()
                                    .with_name(name)
                                    .with_partitions(
                                        partitions
                                            .into_iter()
                                            .map(|(index, offset)| {
                                                let (offset, metadata) =
                                                    offset_and_metadata(offset);
                                                OffsetFetchResponsePartitions::default()
                                                    .with_partition_index(index)
                                                    .with_committed_offset(offset)
                                                    .with_metadata(Some(metadata))
                                            })
                                            .collect(),
                                    )
                            })
                            .collect(),
                    ),
                    Err(code) => response.with_error_code(code),
                },
            );
        }
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let wanted: Wanted = request.topics.map(|topics| {
        topics
            .into_iter()
            .map(|t| (t.name, t.partition_indexes))
            .collect()
    });
    let asked = wanted.clone();
    match fetch_group(session, &request.group_id.0, wanted).await {
        Ok(topics) => OffsetFetchResponse::default().with_topics(
            topics
                .into_iter()
                .map(|(name, partitions)| {
                    OffsetFetchResponseTopic::default()
                        .with_name(name)
                        .with_partitions(
                            partitions
                                .into_iter()
                                .map(|(index, offset)| {
                                    let (offset, metadata) = offset_and_metadata(offset);
                                    OffsetFetchResponsePartition::default()
                                        .with_partition_index(index)
                                        .with_committed_offset(offset)
                                        .with_metadata(Some(metadata))
                                })
                                .collect(),
                        )
                })
                .collect(),
        ),
        // v1 has no top-level error code: each partition asked for carries it (as
        // Kafka answers, so that a client sees NOT_COORDINATOR and finds it again).
        Err(code) if version < 2 => OffsetFetchResponse::default().with_topics(
            asked
                .unwrap_or_default()
                .into_iter()
                .map(|(name, partitions)| {
                    OffsetFetchResponseTopic::default()
                        .with_name(name)
                        .with_partitions(
                            partitions
                                .into_iter()
                                .map(|index| {
                                    OffsetFetchResponsePartition::default()
                                        .with_partition_index(index)
                                        .with_committed_offset(-1)
                                        .with_error_code(code)
                                })
                                .collect(),
                        )
                })
                .collect(),
        ),
        Err(code) => OffsetFetchResponse::default().with_error_code(code),
    }
}

type Fetched = Vec<(TopicName, Vec<(i32, Option<CommittedOffset>)>)>;

/// The committed offsets of one group: of the wanted partitions (-1 for those with none,
/// as Kafka answers), or every committed one.
async fn fetch_group(
    session: &Session,
    group_id: &StrBytes,
    wanted: Wanted,
) -> Result<Fetched, i16> {
    let group_id = group_id.to_string();
    let offsets = session
        .groups
        .read(&group_id, |c| c.fetch_offsets(&group_id, None))
        .await
        .map_err(|error| group_code(&error, true))?;
    let Some(wanted) = wanted else {
        let mut topics: Fetched = Vec::new();
        for (tp, offset) in offsets {
            let index = i32::try_from(tp.partition).unwrap_or(i32::MAX);
            match topics.last_mut() {
                Some((name, partitions)) if name.0.as_str() == tp.topic => {
                    partitions.push((index, Some(offset)));
                }
                _ => topics.push((
                    TopicName(StrBytes::from_string(tp.topic.clone())),
                    vec![(index, Some(offset))],
                )),
            }
        }
        return Ok(topics);
    };
    Ok(wanted
        .into_iter()
        .map(|(name, indexes)| {
            let partitions = indexes
                .into_iter()
                .map(|index| {
                    let found = u32::try_from(index).ok().and_then(|p| {
                        offsets
                            .get(&TopicPartition::new(name.0.as_str(), p))
                            .cloned()
                    });
                    (index, found)
                })
                .collect();
            (name, partitions)
        })
        .collect())
}

fn offset_and_metadata(offset: Option<CommittedOffset>) -> (i64, StrBytes) {
    match offset {
        Some(o) => (
            i64::try_from(o.offset).unwrap_or(i64::MAX),
            StrBytes::from_string(o.metadata),
        ),
        None => (-1, StrBytes::default()),
    }
}
