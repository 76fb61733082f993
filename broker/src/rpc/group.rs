//! `weir.v1.Group`: the group coordinator on the wire (KIP-848 shapes).
//!
//! Heartbeats and commits answer the coordinator's refusals as error codes, which a
//! member acts on (rejoin, heartbeat then commit); the administrative calls answer them
//! as gRPC statuses naming the group. A change is in `__consumer_offsets` before its
//! answer leaves (`GroupService::mutate`).

use std::collections::BTreeMap;
use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::error::BrokerError;
use crate::group::{
    Assignment, AssignorKind, CommittedOffset, GroupError, HeartbeatRequest, OffsetCommit,
    TopicPartition,
};
use crate::group_service::GroupService;
use crate::proto;
use crate::proto::ErrorCode;

/// Kafka's `LEAVE_GROUP_MEMBER_EPOCH`.
const LEAVE_EPOCH: i32 = -1;
/// Kafka's `LEAVE_GROUP_STATIC_MEMBER_EPOCH`.
const STATIC_LEAVE_EPOCH: i32 = -2;

/// Serves `weir.v1.Group`.
#[derive(Debug, Clone)]
pub struct GroupRpc {
    groups: Arc<GroupService>,
}

impl GroupRpc {
    pub fn new(groups: Arc<GroupService>) -> Self {
        GroupRpc { groups }
    }
}

/// The error code of a coordinator refusal.
pub fn error_code(error: &GroupError) -> ErrorCode {
    match error {
        GroupError::GroupIdNotFound { .. } => ErrorCode::GroupIdNotFound,
        GroupError::UnknownMemberId { .. } => ErrorCode::UnknownMemberId,
        GroupError::FencedMemberEpoch { .. } => ErrorCode::FencedMemberEpoch,
        GroupError::StaleMemberEpoch { .. } => ErrorCode::StaleMemberEpoch,
        // Only the classic protocol (the Kafka listener) uses generations.
        GroupError::IllegalGeneration { .. } => ErrorCode::FencedMemberEpoch,
        GroupError::InvalidSessionTimeout { .. } => ErrorCode::InvalidRequest,
        GroupError::UnreleasedInstanceId { .. } => ErrorCode::UnreleasedInstanceId,
        GroupError::FencedInstanceId { .. } => ErrorCode::FencedInstanceId,
        GroupError::NonEmptyGroup { .. } => ErrorCode::NonEmptyGroup,
        GroupError::PartitionNotAssigned { .. } => ErrorCode::PartitionNotAssigned,
        GroupError::UnknownTopicOrPartition { .. } => ErrorCode::UnknownTopicOrPartition,
        GroupError::OffsetMetadataTooLarge { .. } => ErrorCode::OffsetMetadataTooLarge,
        GroupError::InvalidRequest { .. } => ErrorCode::InvalidRequest,
        GroupError::UnsupportedAssignor { .. } => ErrorCode::UnsupportedAssignor,
        GroupError::CorruptRecord { .. } => ErrorCode::Storage,
    }
}

/// A heartbeat sent to a broker that does not coordinate its group: the member finds the
/// coordinator again and sends it there, as a Kafka member does on NOT_COORDINATOR.
fn not_coordinator(error: &BrokerError) -> proto::ConsumerGroupHeartbeatResponse {
    proto::ConsumerGroupHeartbeatResponse {
        error_code: ErrorCode::NotCoordinator.into(),
        error_message: error.to_string(),
        ..Default::default()
    }
}

fn status(error: BrokerError) -> Status {
    tracing::debug!(%error, "group request failed");
    error.into()
}

/// Listings of several coordinators in one order, by group id.
fn sorted_by_id(mut groups: Vec<crate::group::GroupListing>) -> Vec<crate::group::GroupListing> {
    groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    groups
}

fn assignment_from(topics: &[proto::TopicPartitions]) -> Assignment {
    topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|&p| TopicPartition::new(t.topic.clone(), p))
        })
        .collect()
}

fn topic_partitions(assignment: &Assignment) -> Vec<proto::TopicPartitions> {
    let mut by_topic: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for tp in assignment {
        by_topic.entry(&tp.topic).or_default().push(tp.partition);
    }
    by_topic
        .into_iter()
        .map(|(topic, partitions)| proto::TopicPartitions {
            topic: topic.to_string(),
            partitions,
        })
        .collect()
}

fn commits_from(topics: &[proto::OffsetCommitTopic]) -> Vec<OffsetCommit> {
    topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| OffsetCommit {
                partition: TopicPartition::new(t.topic.clone(), p.partition),
                offset: p.offset,
                metadata: p.metadata.clone(),
            })
        })
        .collect()
}

fn committed(
    tp: &TopicPartition,
    offset: Option<&CommittedOffset>,
) -> proto::CommittedPartitionOffset {
    proto::CommittedPartitionOffset {
        topic: tp.topic.clone(),
        partition: tp.partition,
        offset: offset.map_or(-1, |o| i64::try_from(o.offset).unwrap_or(i64::MAX)),
        metadata: offset.map(|o| o.metadata.clone()).unwrap_or_default(),
        commit_timestamp_ms: offset.map_or(-1, |o| o.commit_timestamp_ms),
    }
}

impl GroupRpc {
    async fn find_coordinator(
        &self,
        request: proto::FindCoordinatorRequest,
    ) -> Result<proto::FindCoordinatorResponse, Status> {
        let me = u64::try_from(self.groups.broker().config().node_id).unwrap_or(0);
        match self.groups.coordinator_broker(&request.group_id).await {
            Ok(None) => Ok(proto::FindCoordinatorResponse {
                node_id: me,
                ..Default::default()
            }),
            Ok(Some(node_id)) => {
                let address = self.groups.broker().cluster().and_then(|link| {
                    let metadata = link.quorum.metadata().borrow().clone();
                    metadata.brokers.get(&node_id).map(|b| b.address.clone())
                });
                match address {
                    Some(address) => Ok(proto::FindCoordinatorResponse {
                        node_id,
                        address,
                        ..Default::default()
                    }),
                    None => Ok(proto::FindCoordinatorResponse {
                        error_code: ErrorCode::NotCoordinator.into(),
                        error_message: format!(
                            "group {:?} is coordinated by broker {node_id}, whose address is not known here yet",
                            request.group_id
                        ),
                        ..Default::default()
                    }),
                }
            }
            Err(error @ BrokerError::NotCoordinator { .. }) => Ok(proto::FindCoordinatorResponse {
                error_code: ErrorCode::NotCoordinator.into(),
                error_message: error.to_string(),
                ..Default::default()
            }),
            Err(other) => Err(status(other)),
        }
    }

    async fn heartbeat(
        &self,
        request: proto::ConsumerGroupHeartbeatRequest,
    ) -> Result<proto::ConsumerGroupHeartbeatResponse, Status> {
        let refused = |error: &GroupError| proto::ConsumerGroupHeartbeatResponse {
            error_code: error_code(error).into(),
            error_message: error.to_string(),
            ..Default::default()
        };
        if request.member_epoch == LEAVE_EPOCH || request.member_epoch == STATIC_LEAVE_EPOCH {
            let group = request.group_id.clone();
            let member = request.member_id.clone();
            // A leave carries the leave epoch, not the member's: it is never fenced by
            // epoch (KIP-848). The coordinator's `leave` checks the epoch, so it is
            // given the member's own. A static member steps out in both cases and is
            // removed after the session timeout (Kafka removes it at once on -1).
            let left = self
                .groups
                .mutate(&group, |c, now_ms| {
                    let epoch = c
                        .describe_group(&group)?
                        .members
                        .iter()
                        .find(|m| m.member_id == member)
                        .map_or(LEAVE_EPOCH, |m| m.member_epoch);
                    c.leave(&group, &member, epoch, now_ms)
                })
                .await;
            return match left {
                Ok(()) => Ok(proto::ConsumerGroupHeartbeatResponse {
                    member_id: request.member_id,
                    member_epoch: request.member_epoch,
                    ..Default::default()
                }),
                Err(BrokerError::Group(error)) => Ok(refused(&error)),
                Err(error @ BrokerError::NotCoordinator { .. }) => Ok(not_coordinator(&error)),
                Err(other) => Err(status(other)),
            };
        }
        // KIP-848 lets a heartbeat leave the rebalance timeout out once sent; here every
        // heartbeat carries it, and a member with none could never give a partition up in
        // time, so it is refused as Kafka refuses a join without one.
        if request.rebalance_timeout_ms <= 0 {
            return Ok(refused(&GroupError::InvalidRequest {
                group: request.group_id,
                reason: format!(
                    "rebalance_timeout_ms (max.poll.interval.ms) is {}; it must be positive",
                    request.rebalance_timeout_ms
                ),
            }));
        }
        let server_assignor = match request.server_assignor.as_str() {
            "" => None,
            name => match name.parse::<AssignorKind>() {
                Ok(kind) => Some(kind),
                Err(error) => return Ok(refused(&error)),
            },
        };
        let heartbeat = HeartbeatRequest {
            group_id: request.group_id,
            member_id: request.member_id,
            group_instance_id: Some(request.instance_id).filter(|id| !id.is_empty()),
            member_epoch: request.member_epoch,
            subscribed_topics: request.subscribed_topic_names.into_iter().collect(),
            owned: assignment_from(&request.owned_topic_partitions),
            rebalance_timeout_ms: i64::from(request.rebalance_timeout_ms),
            server_assignor,
        };
        match self
            .groups
            .mutate(&heartbeat.group_id, |c, now_ms| {
                c.heartbeat(&heartbeat, now_ms)
            })
            .await
        {
            Ok(answer) => Ok(proto::ConsumerGroupHeartbeatResponse {
                error_code: ErrorCode::None.into(),
                error_message: String::new(),
                member_id: answer.member_id,
                member_epoch: answer.member_epoch,
                heartbeat_interval_ms: i32::try_from(answer.heartbeat_interval_ms)
                    .unwrap_or(i32::MAX),
                assignment: topic_partitions(&answer.assignment),
            }),
            Err(BrokerError::Group(error)) => Ok(refused(&error)),
            Err(error @ BrokerError::NotCoordinator { .. }) => Ok(not_coordinator(&error)),
            Err(other) => Err(status(other)),
        }
    }

    async fn offset_commit(
        &self,
        request: proto::OffsetCommitRequest,
    ) -> Result<proto::OffsetCommitResponse, Status> {
        let commits = commits_from(&request.topics);
        let result = self
            .groups
            .mutate(&request.group_id, |c, now_ms| {
                c.commit_offsets(
                    &request.group_id,
                    &request.member_id,
                    request.member_epoch,
                    &commits,
                    now_ms,
                )
            })
            .await;
        let (code, message) = match result {
            Ok(()) => (ErrorCode::None, String::new()),
            Err(BrokerError::Group(error)) => (error_code(&error), error.to_string()),
            Err(error @ BrokerError::NotCoordinator { .. }) => {
                (ErrorCode::NotCoordinator, error.to_string())
            }
            Err(other) => return Err(status(other)),
        };
        let topics = request
            .topics
            .into_iter()
            .map(|t| proto::OffsetCommitTopicResult {
                partitions: t
                    .partitions
                    .iter()
                    .map(|p| proto::OffsetCommitPartitionResult {
                        partition: p.partition,
                        error_code: code.into(),
                        error_message: message.clone(),
                    })
                    .collect(),
                topic: t.topic,
            })
            .collect();
        Ok(proto::OffsetCommitResponse { topics })
    }

    async fn offset_fetch(
        &self,
        request: proto::OffsetFetchRequest,
    ) -> Result<proto::OffsetFetchResponse, Status> {
        let wanted: Vec<TopicPartition> = assignment_from(&request.topics).into_iter().collect();
        let group = request.group_id;
        let offsets = self
            .groups
            .read(&group, |c| {
                if wanted.is_empty() {
                    c.fetch_offsets(&group, None)
                        .iter()
                        .map(|(tp, o)| committed(tp, Some(o)))
                        .collect()
                } else {
                    let found = c.fetch_offsets(&group, Some(&wanted));
                    wanted
                        .iter()
                        .map(|tp| committed(tp, found.get(tp)))
                        .collect()
                }
            })
            .await
            .map_err(status)?;
        Ok(proto::OffsetFetchResponse { offsets })
    }

    async fn describe_group(
        &self,
        request: proto::DescribeGroupRequest,
    ) -> Result<proto::DescribeGroupResponse, Status> {
        let group = request.group_id;
        let (description, offsets) = self
            .groups
            .read(&group, |c| {
                c.describe_group(&group)
                    .map(|d| (d, c.fetch_offsets(&group, None)))
            })
            .await
            .map_err(status)?
            .map_err(|e| status(e.into()))?;
        let members = description
            .members
            .iter()
            .map(|m| proto::GroupMemberDescription {
                member_id: m.member_id.clone(),
                instance_id: m.group_instance_id.clone().unwrap_or_default(),
                member_epoch: m.member_epoch,
                state: format!("{:?}", m.state),
                left: m.left,
                subscribed_topic_names: m.subscribed_topics.iter().cloned().collect(),
                assignment: topic_partitions(&m.assignment),
                pending_revocation: topic_partitions(&m.pending_revocation),
                target_assignment: topic_partitions(&m.target_assignment),
            })
            .collect();
        Ok(proto::DescribeGroupResponse {
            group_id: description.group_id,
            state: description.state.to_string(),
            group_epoch: description.group_epoch,
            assignment_epoch: description.assignment_epoch,
            assignor: description.assignor.to_string(),
            members,
            offsets: offsets
                .iter()
                .map(|(tp, o)| committed(tp, Some(o)))
                .collect(),
        })
    }
}

#[tonic::async_trait]
impl proto::group_server::Group for GroupRpc {
    async fn find_coordinator(
        &self,
        request: Request<proto::FindCoordinatorRequest>,
    ) -> Result<Response<proto::FindCoordinatorResponse>, Status> {
        GroupRpc::find_coordinator(self, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn consumer_group_heartbeat(
        &self,
        request: Request<proto::ConsumerGroupHeartbeatRequest>,
    ) -> Result<Response<proto::ConsumerGroupHeartbeatResponse>, Status> {
        self.heartbeat(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn offset_commit(
        &self,
        request: Request<proto::OffsetCommitRequest>,
    ) -> Result<Response<proto::OffsetCommitResponse>, Status> {
        GroupRpc::offset_commit(self, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn offset_fetch(
        &self,
        request: Request<proto::OffsetFetchRequest>,
    ) -> Result<Response<proto::OffsetFetchResponse>, Status> {
        GroupRpc::offset_fetch(self, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn list_groups(
        &self,
        _request: Request<proto::ListGroupsRequest>,
    ) -> Result<Response<proto::ListGroupsResponse>, Status> {
        let groups = self
            .groups
            .read_all(|c| c.list_groups())
            .await
            .map_err(status)?;
        let groups = sorted_by_id(groups)
            .into_iter()
            .map(|g| proto::GroupListing {
                group_id: g.group_id,
                state: g.state.to_string(),
                members: u32::try_from(g.members).unwrap_or(u32::MAX),
            })
            .collect();
        Ok(Response::new(proto::ListGroupsResponse { groups }))
    }

    async fn describe_group(
        &self,
        request: Request<proto::DescribeGroupRequest>,
    ) -> Result<Response<proto::DescribeGroupResponse>, Status> {
        GroupRpc::describe_group(self, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn delete_group(
        &self,
        request: Request<proto::DeleteGroupRequest>,
    ) -> Result<Response<proto::DeleteGroupResponse>, Status> {
        let group = request.into_inner().group_id;
        self.groups
            .mutate(&group, |c, _| c.delete_group(&group))
            .await
            .map_err(status)?;
        Ok(Response::new(proto::DeleteGroupResponse {}))
    }

    async fn reset_offsets(
        &self,
        request: Request<proto::ResetOffsetsRequest>,
    ) -> Result<Response<proto::ResetOffsetsResponse>, Status> {
        let request = request.into_inner();
        let commits = commits_from(&request.topics);
        self.groups
            .mutate(&request.group_id, |c, now_ms| {
                c.reset_offsets(&request.group_id, &commits, now_ms)
            })
            .await
            .map_err(status)?;
        Ok(Response::new(proto::ResetOffsetsResponse {}))
    }
}
