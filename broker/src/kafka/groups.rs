//! The consumer-group APIs on the Kafka listener, all answered by the broker's one group
//! coordinator (`GroupService`), which also serves `weir.v1.Group`: FindCoordinator,
//! ListGroups and DescribeGroups here, commits in `offsets.rs`, the classic membership
//! protocol in `classic.rs`, DeleteGroups and OffsetDelete in `group_admin.rs`. This broker coordinates every group.

use std::collections::VecDeque;

use bytes::Bytes;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    ApiKey, BrokerId, DeleteGroupsRequest, DescribeGroupsRequest, DescribeGroupsResponse,
    FindCoordinatorRequest, FindCoordinatorResponse, GroupId, HeartbeatRequest, JoinGroupRequest,
    LeaveGroupRequest, ListGroupsRequest, ListGroupsResponse, OffsetCommitRequest,
    OffsetDeleteRequest, OffsetFetchRequest, SyncGroupRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use kafka_protocol::ResponseError;

use super::connection::Session;
use super::consumer_protocol::{encode_assignment, encode_subscription};
use super::frame::{encode_response, Chunk};
use super::{classic, group_admin, offsets};
use crate::error::BrokerError;
use crate::group::{GroupDescription, GroupError, GroupState};

/// The consumer protocol's type, the only one groups here speak.
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

/// FindCoordinator's key type for groups (1 is transactions, not served).
const KEY_TYPE_GROUP: i8 = 0;

/// Whether `api_key` is a group API, served by [`serve`].
pub fn is_group_api(api_key: ApiKey) -> bool {
    matches!(
        api_key,
        ApiKey::FindCoordinator
            | ApiKey::OffsetCommit
            | ApiKey::OffsetFetch
            | ApiKey::JoinGroup
            | ApiKey::SyncGroup
            | ApiKey::Heartbeat
            | ApiKey::LeaveGroup
            | ApiKey::ListGroups
            | ApiKey::DescribeGroups
            | ApiKey::DeleteGroups
            | ApiKey::OffsetDelete
    )
}

/// Serves one group request; the error is why the connection must close.
pub async fn serve(
    session: &Session,
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: Bytes,
) -> Result<VecDeque<Chunk>, String> {
    let respond = |response: &dyn EncodeResponse| response.encode(api_key, version, correlation_id);
    match api_key {
        ApiKey::FindCoordinator => {
            respond(&find_coordinator(session, decode(body, api_key, version)?, version).await)
        }
        ApiKey::OffsetCommit => {
            let request: OffsetCommitRequest = decode(body, api_key, version)?;
            respond(&offsets::commit(session, request, version).await)
        }
        ApiKey::OffsetFetch => {
            let request: OffsetFetchRequest = decode(body, api_key, version)?;
            respond(&offsets::fetch(session, request, version).await)
        }
        ApiKey::JoinGroup => {
            let request: JoinGroupRequest = decode(body, api_key, version)?;
            respond(&classic::join(session, request, version).await)
        }
        ApiKey::SyncGroup => {
            let request: SyncGroupRequest = decode(body, api_key, version)?;
            respond(&classic::sync(session, request, version).await)
        }
        ApiKey::Heartbeat => {
            let request: HeartbeatRequest = decode(body, api_key, version)?;
            respond(&classic::heartbeat(session, request).await)
        }
        ApiKey::LeaveGroup => {
            let request: LeaveGroupRequest = decode(body, api_key, version)?;
            respond(&classic::leave(session, request, version).await)
        }
        ApiKey::ListGroups => {
            let request: ListGroupsRequest = decode(body, api_key, version)?;
            respond(&list_groups(session, request, version).await)
        }
        ApiKey::DescribeGroups => {
            let request: DescribeGroupsRequest = decode(body, api_key, version)?;
            respond(&describe_groups(session, request, version).await)
        }
        ApiKey::DeleteGroups => {
            let request: DeleteGroupsRequest = decode(body, api_key, version)?;
            respond(&group_admin::delete_groups(session, request).await)
        }
        ApiKey::OffsetDelete => {
            let request: OffsetDeleteRequest = decode(body, api_key, version)?;
            respond(&group_admin::delete_offsets(session, request).await)
        }
        other => Err(format!("{other:?} is not a group API")),
    }
}

/// A response of any group API, encoded into its frame.
trait EncodeResponse {
    fn encode(
        &self,
        api_key: ApiKey,
        version: i16,
        correlation_id: i32,
    ) -> Result<VecDeque<Chunk>, String>;
}

impl<R: Encodable + HeaderVersion> EncodeResponse for R {
    fn encode(
        &self,
        api_key: ApiKey,
        version: i16,
        correlation_id: i32,
    ) -> Result<VecDeque<Chunk>, String> {
        encode_response(api_key, version, correlation_id, self, Vec::new())
            .map_err(|e| format!("cannot encode the {api_key:?} v{version} response: {}", e.0))
    }
}

fn decode<T: Decodable>(mut body: Bytes, api_key: ApiKey, version: i16) -> Result<T, String> {
    T::decode(&mut body, version)
        .map_err(|e| format!("cannot decode the {api_key:?} v{version} request: {e}"))
}

/// The Kafka error code of a refused group operation. `classic` is for a client of the
/// classic protocol, which knows generations, not member epochs: a stale or fenced epoch
/// is its ILLEGAL_GENERATION, and an unknown group its UNKNOWN_MEMBER_ID, as Kafka 4.0
/// answers classic members of a consumer group. A failed append to `__consumer_offsets`
/// is COORDINATOR_NOT_AVAILABLE, which clients retry.
pub fn group_code(error: &BrokerError, classic: bool) -> i16 {
    let error = match error {
        BrokerError::Group(error) => error,
        // The group's partition is led elsewhere: the client finds the coordinator again.
        BrokerError::NotCoordinator { .. } => return ResponseError::NotCoordinator.code(),
        _ => return ResponseError::CoordinatorNotAvailable.code(),
    };
    let kind = match error {
        GroupError::GroupIdNotFound { .. } if classic => ResponseError::UnknownMemberId,
        GroupError::GroupIdNotFound { .. } => ResponseError::GroupIdNotFound,
        GroupError::UnknownMemberId { .. } => ResponseError::UnknownMemberId,
        GroupError::FencedMemberEpoch { .. }
        | GroupError::StaleMemberEpoch { .. }
        | GroupError::IllegalGeneration { .. }
            if classic =>
        {
            ResponseError::IllegalGeneration
        }
        GroupError::FencedMemberEpoch { .. } | GroupError::IllegalGeneration { .. } => {
            ResponseError::FencedMemberEpoch
        }
        GroupError::StaleMemberEpoch { .. } => ResponseError::StaleMemberEpoch,
        GroupError::UnreleasedInstanceId { .. } => ResponseError::UnreleasedInstanceId,
        GroupError::FencedInstanceId { .. } => ResponseError::FencedInstanceId,
        // Only a commit from outside the group meets a non-empty group here; Kafka
        // answers it as from a member the group does not know.
        GroupError::NonEmptyGroup { .. } => ResponseError::UnknownMemberId,
        // Kafka has no code for it; a member committing what it does not hold is behind
        // the group, and rejoining is what brings it back.
        GroupError::PartitionNotAssigned { .. } if classic => ResponseError::IllegalGeneration,
        GroupError::PartitionNotAssigned { .. } => ResponseError::StaleMemberEpoch,
        GroupError::UnknownTopicOrPartition { .. } => ResponseError::UnknownTopicOrPartition,
        GroupError::OffsetMetadataTooLarge { .. } => ResponseError::OffsetMetadataTooLarge,
        GroupError::InvalidSessionTimeout { .. } => ResponseError::InvalidSessionTimeout,
        GroupError::InvalidRequest { .. } => ResponseError::InvalidRequest,
        GroupError::UnsupportedAssignor { .. } => ResponseError::UnsupportedAssignor,
        GroupError::CorruptRecord { .. } => ResponseError::CoordinatorNotAvailable,
    };
    tracing::debug!(%error, code = kind.code(), "group request refused");
    kind.code()
}

fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

async fn find_coordinator(
    session: &Session,
    request: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    if version >= 4 {
        let mut coordinators = Vec::with_capacity(request.coordinator_keys.len());
        for key in request.coordinator_keys {
            let found = Coordinator::default().with_key(key.clone());
            coordinators.push(match locate(session, request.key_type, &key).await {
                Ok((node_id, host, port)) => {
                    found.with_node_id(node_id).with_host(host).with_port(port)
                }
                Err((code, message)) => found
                    .with_error_code(code)
                    .with_error_message(Some(str_bytes(message)))
                    .with_node_id(BrokerId(-1))
                    .with_port(-1),
            });
        }
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let response = FindCoordinatorResponse::default();
    match locate(session, request.key_type, &request.key).await {
        Ok((node_id, host, port)) => response
            .with_node_id(node_id)
            .with_host(host)
            .with_port(port),
        Err((code, message)) => {
            let response = response
                .with_error_code(code)
                .with_node_id(BrokerId(-1))
                .with_port(-1);
            if version >= 1 {
                response.with_error_message(Some(str_bytes(message)))
            } else {
                response
            }
        }
    }
}

/// The Kafka listener of the broker that coordinates group `key`: the leader of its
/// `__consumer_offsets` partition, this broker at the address the client reached, or
/// another at the one it registered. COORDINATOR_NOT_AVAILABLE, which clients retry,
/// while none leads it.
async fn locate(
    session: &Session,
    key_type: i8,
    key: &StrBytes,
) -> Result<(BrokerId, StrBytes, i32), (i16, String)> {
    let unavailable = |message: String| (ResponseError::CoordinatorNotAvailable.code(), message);
    if key_type != KEY_TYPE_GROUP {
        return Err(unavailable(format!(
            "key type {key_type} is not served: this broker coordinates consumer groups (key type 0), not transactions"
        )));
    }
    match session.groups.coordinator_broker(key.as_str()).await {
        Ok(None) => Ok((
            BrokerId(session.broker.config().node_id),
            str_bytes(session.advertised.ip().to_string()),
            i32::from(session.advertised.port()),
        )),
        Ok(Some(node_id)) => {
            let endpoint = session.broker.cluster().and_then(|link| {
                let metadata = link.quorum.metadata().borrow().clone();
                metadata
                    .brokers
                    .get(&node_id)
                    .and_then(super::metadata::kafka_endpoint)
            });
            match endpoint {
                Some((host, port)) => Ok((
                    super::leaders::broker_id(node_id),
                    str_bytes(host),
                    i32::from(port),
                )),
                None => Err(unavailable(format!(
                    "group {key:?} is coordinated by broker {node_id}, which has no Kafka listener known here"
                ))),
            }
        }
        Err(error) => Err(unavailable(error.to_string())),
    }
}

/// A consumer group's state under the names Kafka's `ListGroups` uses for it.
fn listed_state(state: GroupState) -> &'static str {
    match state {
        GroupState::Empty => "Empty",
        GroupState::Assigning => "Assigning",
        GroupState::Reconciling => "Reconciling",
        GroupState::Stable => "Stable",
        GroupState::Dead => "Dead",
    }
}

/// The classic state a classic `DescribeGroups` client understands: a group on its
/// way to a new assignment is rebalancing.
fn classic_state(state: GroupState) -> &'static str {
    match state {
        GroupState::Empty => "Empty",
        GroupState::Assigning => "PreparingRebalance",
        GroupState::Reconciling => "CompletingRebalance",
        GroupState::Stable => "Stable",
        GroupState::Dead => "Dead",
    }
}

async fn list_groups(
    session: &Session,
    request: ListGroupsRequest,
    version: i16,
) -> ListGroupsResponse {
    let listings = match session.groups.read_all(|c| c.list_groups()).await {
        Ok(mut listings) => {
            listings.sort_by(|a, b| a.group_id.cmp(&b.group_id));
            listings
        }
        Err(error) => {
            return ListGroupsResponse::default().with_error_code(group_code(&error, false))
        }
    };
    // Filters are case-insensitive, as in Kafka; every group here is a consumer group.
    let wanted_state = |state: &str| {
        request.states_filter.is_empty()
            || request
                .states_filter
                .iter()
                .any(|s| s.as_str().eq_ignore_ascii_case(state))
    };
    let wanted_type = request.types_filter.is_empty()
        || request
            .types_filter
            .iter()
            .any(|t| t.as_str().eq_ignore_ascii_case(CONSUMER_PROTOCOL_TYPE));
    let groups = listings
        .into_iter()
        .filter(|g| wanted_type && wanted_state(listed_state(g.state)))
        .map(|g| {
            let listed = ListedGroup::default()
                .with_group_id(GroupId(str_bytes(g.group_id)))
                .with_protocol_type(str_bytes(CONSUMER_PROTOCOL_TYPE));
            let listed = if version >= 4 {
                listed.with_group_state(str_bytes(listed_state(g.state)))
            } else {
                listed
            };
            if version >= 5 {
                listed.with_group_type(str_bytes(CONSUMER_PROTOCOL_TYPE))
            } else {
                listed
            }
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}

async fn describe_groups(
    session: &Session,
    request: DescribeGroupsRequest,
    version: i16,
) -> DescribeGroupsResponse {
    let mut groups = Vec::with_capacity(request.groups.len());
    for group_id in request.groups {
        let id = group_id.0.to_string();
        let described = session
            .groups
            .read(&id, |c| c.describe_group(&id))
            .await
            .and_then(|d| d.map_err(BrokerError::from));
        groups.push(match described {
            Ok(description) => described_group(group_id, &description, version),
            // Kafka's classic DescribeGroups (before v6) answers an unknown group as
            // Dead, with no error.
            Err(BrokerError::Group(GroupError::GroupIdNotFound { .. })) => {
                DescribedGroup::default()
                    .with_group_id(group_id)
                    .with_group_state(str_bytes("Dead"))
            }
            Err(error) => DescribedGroup::default()
                .with_group_id(group_id)
                .with_error_code(group_code(&error, true)),
        });
    }
    DescribeGroupsResponse::default().with_groups(groups)
}

fn described_group(group_id: GroupId, d: &GroupDescription, version: i16) -> DescribedGroup {
    let members = d
        .members
        .iter()
        .map(|m| {
            let holds = m.assignment.union(&m.pending_revocation).cloned().collect();
            let member = DescribedGroupMember::default()
                .with_member_id(str_bytes(m.member_id.clone()))
                .with_member_metadata(encode_subscription(&m.subscribed_topics, &holds))
                .with_member_assignment(encode_assignment(&m.assignment));
            if version >= 4 {
                member.with_group_instance_id(m.group_instance_id.clone().map(str_bytes))
            } else {
                member
            }
        })
        .collect();
    DescribedGroup::default()
        .with_group_id(group_id)
        .with_group_state(str_bytes(classic_state(d.state)))
        .with_protocol_type(str_bytes(CONSUMER_PROTOCOL_TYPE))
        .with_protocol_data(str_bytes(d.assignor.name()))
        .with_members(members)
}
