//! DeleteGroups (v0-v2) and OffsetDelete (v0): the administrative group APIs, served by
//! the same coordinator as `weir group delete` and gRPC's `DeleteGroup`. Each group or
//! partition is answered on its own, as Kafka does.

use std::collections::BTreeSet;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{
    DeleteGroupsRequest, DeleteGroupsResponse, OffsetDeleteRequest, OffsetDeleteResponse,
};
use kafka_protocol::ResponseError;

use super::connection::Session;
use super::groups::group_code;
use crate::error::BrokerError;
use crate::group::{GroupError, TopicPartition};

/// Deletes each named group that has no members, with its offsets.
pub async fn delete_groups(
    session: &Session,
    request: DeleteGroupsRequest,
) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(request.groups_names.len());
    for group_id in request.groups_names {
        let id = group_id.0.to_string();
        let deleted = session.groups.mutate(&id, |c, _| c.delete_group(&id)).await;
        results.push(
            DeletableGroupResult::default()
                .with_group_id(group_id)
                .with_error_code(deleted.err().map_or(0, |e| admin_code(&e))),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}

/// Deletes a group's committed offsets of the named partitions; those of a topic the
/// group subscribes to are kept and answered GROUP_SUBSCRIBED_TO_TOPIC.
pub async fn delete_offsets(
    session: &Session,
    request: OffsetDeleteRequest,
) -> OffsetDeleteResponse {
    let group_id = request.group_id.0.to_string();
    let partitions: Vec<TopicPartition> = request
        .topics
        .iter()
        .flat_map(|topic| {
            topic.partitions.iter().filter_map(|p| {
                u32::try_from(p.partition_index)
                    .ok()
                    .map(|index| TopicPartition::new(topic.name.0.as_str(), index))
            })
        })
        .collect();
    let deleted = session
        .groups
        .mutate(&group_id, |c, _| c.delete_offsets(&group_id, &partitions))
        .await;
    let refused: BTreeSet<TopicPartition> = match deleted {
        Ok(refused) => refused,
        Err(error) => return OffsetDeleteResponse::default().with_error_code(admin_code(&error)),
    };
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let code = match u32::try_from(p.partition_index) {
                        Err(_) => ResponseError::UnknownTopicOrPartition.code(),
                        Ok(index)
                            if refused
                                .contains(&TopicPartition::new(topic.name.0.as_str(), index)) =>
                        {
                            ResponseError::GroupSubscribedToTopic.code()
                        }
                        Ok(_) => 0,
                    };
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            OffsetDeleteResponseTopic::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetDeleteResponse::default().with_topics(topics)
}

/// An administrative refusal's code: unlike a member's, a missing group is
/// GROUP_ID_NOT_FOUND and one with members NON_EMPTY_GROUP.
fn admin_code(error: &BrokerError) -> i16 {
    match error {
        BrokerError::Group(GroupError::NonEmptyGroup { .. }) => ResponseError::NonEmptyGroup.code(),
        BrokerError::Group(GroupError::GroupIdNotFound { .. }) => {
            ResponseError::GroupIdNotFound.code()
        }
        other => group_code(other, false),
    }
}
