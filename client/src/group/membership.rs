//! A group member's heartbeat: one background task per [`super::GroupConsumer`]
//! that joins, heartbeats what the member owns, learns its assignment, and leaves.
//!
//! The task never touches partitions: it only records what the coordinator said
//! ([`MemberState::target`], fencing as [`MemberState::lost`]) and wakes the poll
//! side, which gives partitions up (committing first) and takes new ones, then
//! records what it owns in [`MemberState::owned`] for the next heartbeat. So a
//! partition is reported released only after its position was committed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::Coordinator;
use crate::error::ClientError;
use crate::proto::{ConsumerGroupHeartbeatRequest, ErrorCode, TopicPartitions};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Partitions by topic.
pub(crate) type TopicPartitionSet = BTreeMap<String, BTreeSet<u32>>;

/// KIP-848's epochs of a leave: a dynamic member leaves for good, a static one
/// steps out and keeps its partitions for the session timeout.
const LEAVE_EPOCH: i32 = -1;
const STATIC_LEAVE_EPOCH: i32 = -2;

/// Until the coordinator names an interval: Kafka's
/// `group.consumer.heartbeat.interval.ms` default.
const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);

/// How long a heartbeat may take before it counts as failed and is sent again.
const HEARTBEAT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// After a failed heartbeat (broker unreachable, instance id not yet released):
/// Kafka's `retry.backoff.ms` grown to a few hundred ms, well inside any session.
const HEARTBEAT_RETRY_BACKOFF: Duration = Duration::from_millis(250);

/// What the heartbeat sends that never changes.
#[derive(Debug, Clone)]
pub(crate) struct MemberSettings {
    pub group_id: String,
    pub instance_id: Option<String>,
    pub topics: Vec<String>,
    pub assignor: Option<String>,
    /// `max.poll.interval.ms`: sent as the rebalance timeout, and the longest a
    /// member may go without polling before it leaves the group.
    pub max_poll_interval: Duration,
}

/// The member as both sides see it.
#[derive(Debug)]
pub(crate) struct MemberState {
    pub member_id: String,
    /// 0 until joined (and again after being fenced).
    pub member_epoch: i32,
    /// The coordinator's latest answer: exactly what the member should own now.
    /// `None` until the member has joined.
    pub target: Option<TopicPartitionSet>,
    /// Counts heartbeat answers, so the poll side can wait for one sent after a
    /// release it made.
    pub answers: u64,
    /// What the member owns; written only by the poll side, reported whole by
    /// every heartbeat.
    pub owned: TopicPartitionSet,
    /// Why the member's partitions were lost (fenced, removed, or it left after
    /// missing `max.poll.interval.ms`); the task does not rejoin until the poll
    /// side has dropped them and cleared this.
    pub lost: Option<String>,
    /// An error no heartbeat can get past (an unknown assignor, a bad request).
    pub fatal: Option<ClientError>,
    pub last_poll: Instant,
    pub heartbeat_interval: Duration,
    pub closing: bool,
}

/// The member's state and the two wake-ups between the task and the poll side.
#[derive(Debug)]
pub(crate) struct Membership {
    state: Mutex<MemberState>,
    /// Wakes the task: a release to report, a rejoin after a loss, or close.
    pub wake_heartbeat: Notify,
    /// Wakes a waiting poll: the assignment changed or the partitions were lost.
    pub changed: Notify,
}

impl Membership {
    pub fn new() -> Arc<Membership> {
        Arc::new(Membership {
            state: Mutex::new(MemberState {
                member_id: String::new(),
                member_epoch: 0,
                target: None,
                answers: 0,
                owned: TopicPartitionSet::new(),
                lost: None,
                fatal: None,
                last_poll: Instant::now(),
                heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
                closing: false,
            }),
            wake_heartbeat: Notify::new(),
            changed: Notify::new(),
        })
    }

    pub fn lock(&self) -> MutexGuard<'_, MemberState> {
        // A panic elsewhere leaves the state consistent: every write is a whole field.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn to_wire(set: &TopicPartitionSet) -> Vec<TopicPartitions> {
    set.iter()
        .filter(|(_, partitions)| !partitions.is_empty())
        .map(|(topic, partitions)| TopicPartitions {
            topic: topic.clone(),
            partitions: partitions.iter().copied().collect(),
        })
        .collect()
}

fn from_wire(list: Vec<TopicPartitions>) -> TopicPartitionSet {
    let mut set = TopicPartitionSet::new();
    for entry in list {
        set.entry(entry.topic).or_default().extend(entry.partitions);
    }
    set.retain(|_, partitions| !partitions.is_empty());
    set
}

/// Runs the member's heartbeats until it closes or meets a fatal error.
pub(crate) async fn run_heartbeats(
    membership: Arc<Membership>,
    coordinator: Coordinator,
    settings: MemberSettings,
) {
    let mut next_at = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next_at) => {}
            _ = membership.wake_heartbeat.notified() => {}
        }
        let (request, leaving_for_poll_timeout) = {
            let state = membership.lock();
            if state.closing || state.fatal.is_some() {
                return;
            }
            if state.lost.is_some() {
                // Rejoining now could report partitions the poll side still holds.
                next_at = Instant::now() + state.heartbeat_interval;
                continue;
            }
            let overdue =
                state.member_epoch > 0 && state.last_poll.elapsed() > settings.max_poll_interval;
            (heartbeat_request(&state, &settings, overdue), overdue)
        };
        let sent = tokio::time::timeout(HEARTBEAT_REQUEST_TIMEOUT, async {
            let mut client = coordinator.client().await?;
            let sent = client
                .consumer_group_heartbeat(request)
                .await
                .map_err(ClientError::from);
            coordinator.check(sent)
        })
        .await;
        let mut state = membership.lock();
        if state.closing {
            return;
        }
        if leaving_for_poll_timeout {
            // Kafka's consumer does the same: a member that stopped polling gives its
            // partitions to the others, and rejoins at its next poll.
            tracing::warn!(
                group = %settings.group_id,
                max_poll_interval_ms = settings.max_poll_interval.as_millis() as u64,
                "no poll within max.poll.interval.ms: leaving the group"
            );
            lose(
                &mut state,
                format!(
                    "the member did not poll within max.poll.interval.ms ({} ms) and left group {:?}",
                    settings.max_poll_interval.as_millis(),
                    settings.group_id
                ),
            );
            membership.changed.notify_one();
            next_at = Instant::now() + state.heartbeat_interval;
            continue;
        }
        let answer = match sent {
            Ok(Ok(answer)) => answer.into_inner(),
            Ok(Err(error)) => {
                tracing::warn!(group = %settings.group_id, %error, "heartbeat failed; retrying");
                next_at = Instant::now() + HEARTBEAT_RETRY_BACKOFF.min(state.heartbeat_interval);
                continue;
            }
            Err(_) => {
                tracing::warn!(group = %settings.group_id, "heartbeat timed out; retrying");
                next_at = Instant::now() + HEARTBEAT_RETRY_BACKOFF.min(state.heartbeat_interval);
                continue;
            }
        };
        match answer.error_code() {
            ErrorCode::None => {
                state.member_id = answer.member_id;
                state.member_epoch = answer.member_epoch;
                if answer.heartbeat_interval_ms > 0 {
                    state.heartbeat_interval =
                        Duration::from_millis(answer.heartbeat_interval_ms as u64);
                }
                let target = from_wire(answer.assignment);
                state.answers += 1;
                if state.target.as_ref() != Some(&target) || target != state.owned {
                    state.target = Some(target);
                    membership.changed.notify_one();
                }
            }
            ErrorCode::FencedMemberEpoch | ErrorCode::UnknownMemberId => {
                tracing::warn!(group = %settings.group_id, reason = %answer.error_message, "member fenced; its partitions are lost and it rejoins");
                lose(&mut state, answer.error_message);
                membership.changed.notify_one();
            }
            ErrorCode::NotCoordinator => {
                // The group's coordinator moved (a broker stopped, or stopped leading
                // the group's partition): find it again and heartbeat there, keeping
                // the member's id and epoch, which the new coordinator rebuilt from
                // the log.
                tracing::info!(group = %settings.group_id, reason = %answer.error_message, "the group's coordinator moved; finding it again");
                coordinator.lost();
                next_at = Instant::now() + HEARTBEAT_RETRY_BACKOFF.min(state.heartbeat_interval);
                continue;
            }
            ErrorCode::UnreleasedInstanceId => {
                // The previous holder of this instance id has not left yet; it will,
                // or the session timeout removes it.
                next_at = Instant::now() + HEARTBEAT_RETRY_BACKOFF;
                continue;
            }
            code => {
                state.fatal = Some(ClientError::Group {
                    group: settings.group_id.clone(),
                    code,
                    message: answer.error_message,
                });
                membership.changed.notify_one();
                return;
            }
        }
        next_at = Instant::now() + state.heartbeat_interval;
    }
}

/// The member is out of the group: it rejoins as a new member once the poll side
/// has dropped what it owned.
fn lose(state: &mut MemberState, reason: String) {
    state.lost = Some(reason);
    state.member_id.clear();
    state.member_epoch = 0;
    state.target = None;
}

fn heartbeat_request(
    state: &MemberState,
    settings: &MemberSettings,
    leave: bool,
) -> ConsumerGroupHeartbeatRequest {
    ConsumerGroupHeartbeatRequest {
        group_id: settings.group_id.clone(),
        member_id: state.member_id.clone(),
        member_epoch: if leave {
            LEAVE_EPOCH
        } else {
            state.member_epoch
        },
        instance_id: settings.instance_id.clone().unwrap_or_default(),
        rebalance_timeout_ms: i32::try_from(settings.max_poll_interval.as_millis())
            .unwrap_or(i32::MAX)
            .max(1),
        subscribed_topic_names: settings.topics.clone(),
        server_assignor: settings.assignor.clone().unwrap_or_default(),
        owned_topic_partitions: to_wire(&state.owned),
    }
}

/// The heartbeat that leaves the group on close: a static member steps out (its
/// partitions wait for it for the session timeout), a dynamic one leaves.
pub(crate) fn leave_request(
    state: &MemberState,
    settings: &MemberSettings,
) -> ConsumerGroupHeartbeatRequest {
    let mut request = heartbeat_request(state, settings, true);
    if settings.instance_id.is_some() {
        request.member_epoch = STATIC_LEAVE_EPOCH;
    }
    request.owned_topic_partitions.clear();
    request
}
