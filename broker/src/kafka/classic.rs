//! Kafka's classic group membership (JoinGroup v0-v9, SyncGroup v0-v5, Heartbeat v0-v4,
//! LeaveGroup v0-v5) translated onto the coordinator's KIP-848 groups
//! (`group/classic.rs` says how). The assignment is the coordinator's: no member is
//! named leader, so every client syncs as a follower, and the assignment a client sends
//! in SyncGroup is not used. Eager (range, roundrobin) and cooperative-sticky clients
//! both work: an eager one revokes everything before it rejoins, a cooperative one
//! reports what it keeps and loses only what moves.
//!
//! JoinGroup v4+ without a member id (and without `group.instance.id`) is answered with
//! MEMBER_ID_REQUIRED and a new id, which the client joins with next (KIP-394).
//!
//! A JoinGroup that starts a new group's initial rebalance delay
//! (`group_initial_rebalance_delay_ms`), or arrives during it, is answered when the delay
//! ends, with the assignment made then, as Kafka's classic coordinator holds such joins: a
//! classic client takes its first assignment as the real one (librdkafka's own tests check
//! it), where a KIP-848 client is handed an empty one and then the real one.
//!
//! A JoinGroup is held while another member has not rejoined since the assignment moved
//! on (`GroupCoordinator::classic_join_held`), as Kafka's classic rebalance answers every
//! member's join once all have rejoined; a member with partitions to revoke is answered at
//! once, which tells it to. A static member's new process (the same `group.instance.id`) takes the
//! place of the old one at once and the old one is fenced (FENCED_INSTANCE_ID); a static
//! member's LeaveGroup removes it.

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::connection::Session;
use super::consumer_protocol::{decode_subscription, encode_assignment};
use super::groups::{group_code, CONSUMER_PROTOCOL_TYPE};
use crate::group::{ClassicHeartbeat, ClassicJoin};

pub async fn join(session: &Session, request: JoinGroupRequest, version: i16) -> JoinGroupResponse {
    let refused = |code: i16, member_id: StrBytes| {
        let response = JoinGroupResponse::default()
            .with_error_code(code)
            .with_member_id(member_id);
        // A null protocol name exists from v7 only.
        if version >= 7 {
            response.with_protocol_name(None)
        } else {
            response
        }
    };
    if request.protocol_type.as_str() != CONSUMER_PROTOCOL_TYPE {
        tracing::debug!(group = %request.group_id.0, protocol_type = %request.protocol_type,
            "refused a JoinGroup of another protocol type");
        return refused(
            ResponseError::InconsistentGroupProtocol.code(),
            request.member_id,
        );
    }
    // The client lists its assignors by preference; their subscriptions name the same
    // topics, and the first one's owned partitions are what it holds.
    let Some(protocol) = request.protocols.first() else {
        return refused(
            ResponseError::InconsistentGroupProtocol.code(),
            request.member_id,
        );
    };
    let subscription = match decode_subscription(protocol.metadata.clone()) {
        Ok(subscription) => subscription,
        Err(reason) => {
            tracing::debug!(group = %request.group_id.0, %reason, "refused a JoinGroup");
            return refused(
                ResponseError::InconsistentGroupProtocol.code(),
                request.member_id,
            );
        }
    };
    let session_timeout_ms = i64::from(request.session_timeout_ms);
    let join = ClassicJoin {
        group_id: request.group_id.0.to_string(),
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.as_ref().map(ToString::to_string),
        subscribed_topics: subscription.topics,
        owned: subscription.owned,
        session_timeout_ms,
        // JoinGroup v0 has no rebalance timeout; Kafka uses the session timeout.
        rebalance_timeout_ms: if version >= 1 {
            i64::from(request.rebalance_timeout_ms)
        } else {
            session_timeout_ms
        },
    };
    if version >= 4 && join.member_id.is_empty() && join.group_instance_id.is_none() {
        // KIP-394, as Kafka: the id first, the join with it next, so a client that gives
        // up between the two leaves no member behind to time out.
        let issued = session
            .groups
            .mutate(&join.group_id, |c, now_ms| {
                c.classic_member_id_required(&join, now_ms)
            })
            .await;
        return match issued {
            Ok(member_id) => refused(
                ResponseError::MemberIdRequired.code(),
                StrBytes::from_string(member_id),
            ),
            Err(error) => refused(group_code(&error, true), request.member_id),
        };
    }
    let mut join = join;
    let mut joined = join_once(session, &join).await;
    // Held while the delay runs (then joined again at the generation the first join
    // gave: that heartbeat takes the assignment made when the delay ended), or while
    // the rebalance runs (then answered as the coordinator answered it when the last
    // member it waited for rejoined). Bounded by the rebalance timeout, after which the
    // client would have given up; then answered with what the member has.
    let held_until_ms = crate::group_service::now_ms().saturating_add(join.rebalance_timeout_ms);
    while let Ok((answer, Some(hold))) = &joined {
        let now_ms = crate::group_service::now_ms();
        let member_id = answer.member_id.clone();
        if now_ms >= held_until_ms {
            let group_id = join.group_id.clone();
            let _ = session
                .groups
                .mutate(&group_id, |c, _| {
                    c.forget_held_classic_join(&group_id, &member_id);
                    Ok(())
                })
                .await;
            break;
        }
        let wait_ms = match hold {
            Hold::Until(until_ms) => until_ms.saturating_sub(now_ms),
            Hold::ForRebalance => REBALANCE_POLL_MS,
        }
        .clamp(1, held_until_ms - now_ms);
        let hold = *hold;
        tokio::time::sleep(std::time::Duration::from_millis(wait_ms.unsigned_abs())).await;
        join.member_id = member_id;
        joined = match hold {
            Hold::Until(_) => join_once(session, &join).await,
            Hold::ForRebalance => match poll_held(session, &join).await {
                Ok(Some(Ok(answer))) => Ok((answer, None)),
                Ok(Some(Err(error))) => Err(error.into()),
                Ok(None) => joined,
                Err(error) => Err(error),
            },
        };
    }
    match joined.map(|(answer, _)| answer) {
        Ok(answer) => {
            let response = JoinGroupResponse::default()
                .with_generation_id(answer.member_epoch)
                .with_protocol_name(Some(protocol.name.clone()))
                .with_member_id(StrBytes::from_string(answer.member_id));
            if version >= 7 {
                response.with_protocol_type(Some(StrBytes::from_static_str(CONSUMER_PROTOCOL_TYPE)))
            } else {
                response
            }
        }
        Err(error) => refused(group_code(&error, true), request.member_id),
    }
}

/// A held JoinGroup's answer, once its hold ended.
async fn poll_held(
    session: &Session,
    join: &ClassicJoin,
) -> Result<
    Option<Result<crate::group::HeartbeatResponse, crate::group::GroupError>>,
    crate::error::BrokerError,
> {
    session
        .groups
        .mutate(&join.group_id, |c, now_ms| {
            Ok(c.poll_held_classic_join(join, now_ms))
        })
        .await
}

/// Why a JoinGroup's answer waits.
#[derive(Debug, Clone, Copy)]
enum Hold {
    /// The group's initial rebalance delay runs until then.
    Until(i64),
    /// The rebalance is under way: another member has not rejoined yet.
    ForRebalance,
}

/// How often a held JoinGroup looks again whether the rebalance is done.
const REBALANCE_POLL_MS: i64 = 20;

/// One classic join, and whether its answer should wait.
async fn join_once(
    session: &Session,
    join: &ClassicJoin,
) -> Result<(crate::group::HeartbeatResponse, Option<Hold>), crate::error::BrokerError> {
    session
        .groups
        .mutate(&join.group_id, |c, now_ms| {
            let answer = c.classic_join(join, now_ms)?;
            let hold = match c.assignment_delayed_until_ms(&join.group_id) {
                Some(until_ms) => Some(Hold::Until(until_ms)),
                None if c.classic_join_held(&join.group_id, &answer.member_id) => {
                    c.hold_classic_join(join, &answer.member_id, now_ms);
                    Some(Hold::ForRebalance)
                }
                None => None,
            };
            Ok((answer, hold))
        })
        .await
}

pub async fn sync(session: &Session, request: SyncGroupRequest, version: i16) -> SyncGroupResponse {
    let with_protocol = |response: SyncGroupResponse| {
        if version >= 5 {
            response
                .with_protocol_type(request.protocol_type.clone())
                .with_protocol_name(request.protocol_name.clone())
        } else {
            response
        }
    };
    if request
        .protocol_type
        .as_ref()
        .is_some_and(|t| t.as_str() != CONSUMER_PROTOCOL_TYPE)
    {
        return with_protocol(
            SyncGroupResponse::default()
                .with_error_code(ResponseError::InconsistentGroupProtocol.code()),
        );
    }
    let group_id = request.group_id.0.to_string();
    let member_id = request.member_id.to_string();
    let instance_id = request.group_instance_id.as_ref().map(ToString::to_string);
    let generation = request.generation_id;
    let synced = session
        .groups
        .mutate(&group_id, |c, now_ms| {
            c.classic_sync(
                &group_id,
                &member_id,
                instance_id.as_deref(),
                generation,
                now_ms,
            )
        })
        .await;
    with_protocol(match synced {
        Ok(assignment) => {
            SyncGroupResponse::default().with_assignment(encode_assignment(&assignment))
        }
        Err(error) => SyncGroupResponse::default().with_error_code(group_code(&error, true)),
    })
}

pub async fn heartbeat(session: &Session, request: HeartbeatRequest) -> HeartbeatResponse {
    let group_id = request.group_id.0.to_string();
    let member_id = request.member_id.to_string();
    let instance_id = request.group_instance_id.as_ref().map(ToString::to_string);
    let generation = request.generation_id;
    let answered = session
        .groups
        .mutate(&group_id, |c, now_ms| {
            c.classic_heartbeat(
                &group_id,
                &member_id,
                instance_id.as_deref(),
                generation,
                now_ms,
            )
        })
        .await;
    let code = match answered {
        Ok(ClassicHeartbeat::Stable) => 0,
        Ok(ClassicHeartbeat::Rejoin) => ResponseError::RebalanceInProgress.code(),
        Err(error) => group_code(&error, true),
    };
    HeartbeatResponse::default().with_error_code(code)
}

pub async fn leave(
    session: &Session,
    request: LeaveGroupRequest,
    version: i16,
) -> LeaveGroupResponse {
    let group_id = request.group_id.0.to_string();
    if version < 3 {
        let member_id = request.member_id.to_string();
        let left = session
            .groups
            .mutate(&group_id, |c, now_ms| {
                c.classic_leave(&group_id, &member_id, None, now_ms)
            })
            .await;
        return LeaveGroupResponse::default()
            .with_error_code(left.err().map_or(0, |e| group_code(&e, true)));
    }
    let mut members = Vec::with_capacity(request.members.len());
    for member in request.members {
        let member_id = member.member_id.to_string();
        let instance_id = member.group_instance_id.as_ref().map(ToString::to_string);
        let left = session
            .groups
            .mutate(&group_id, |c, now_ms| {
                c.classic_leave(&group_id, &member_id, instance_id.as_deref(), now_ms)
            })
            .await;
        members.push(
            MemberResponse::default()
                .with_member_id(member.member_id)
                .with_group_instance_id(member.group_instance_id)
                .with_error_code(left.err().map_or(0, |e| group_code(&e, true))),
        );
    }
    LeaveGroupResponse::default().with_members(members)
}
