//! The group consumer: [`GroupConsumer::subscribe`] joins a consumer group, and the
//! group's coordinator shares the topics' partitions among its members (KIP-848:
//! the coordinator assigns, members heartbeat what they own).
//!
//! A partition that moves is revoked from its old owner first: the owner's next
//! `poll` calls the rebalance callback, commits the partition's position (the
//! offset after the records earlier polls returned) and only then reports it
//! released; the coordinator then gives it to its new owner, which starts at that
//! committed offset. Partitions that do not move are never paused. This is the
//! at-least-once contract: a record is handed out again only if it was handed out
//! after its partition's last commit.
//!
//! Does not own: fetching (one [`Consumer`] per subscribed topic does that) or the
//! heartbeat loop ([`membership`]).

mod commit;
mod coordinator;
mod membership;
mod reconcile;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::connection::{bootstrap_list, connect};
use crate::consumer::{Consumer, ConsumerConfig, ConsumerRecord, OffsetReset, SeekTo};
use crate::error::ClientError;
use crate::proto::ErrorCode;
use commit::{fetch_committed, CommitRequest};
pub(crate) use coordinator::group_client;
pub use coordinator::Coordinator;
use membership::{leave_request, run_heartbeats, MemberSettings, Membership, TopicPartitionSet};

/// How a member gives partitions up when the assignment changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RebalanceMode {
    /// Only the partitions that move are revoked (KIP-848); the rest are read on.
    #[default]
    Incremental,
    /// Every rebalance revokes every partition of the member, which takes its
    /// assignment back afterwards: the classic eager protocol's stop-the-world
    /// pause, kept to measure against.
    StopTheWorld,
}

/// Group consumer settings; names follow Kafka's consumer configs.
#[derive(Debug, Clone)]
pub struct GroupConsumerConfig {
    /// `group.id`.
    pub group_id: String,
    /// `group.instance.id`: a static member gets its partitions back after a
    /// restart within the session timeout, with no rebalance.
    pub instance_id: Option<String>,
    /// Fetch settings; `offset_reset` is where a partition with no committed
    /// offset starts.
    pub consumer: ConsumerConfig,
    /// `enable.auto.commit`: commit the positions of the records polls returned
    /// every `auto_commit_interval`. Revocation and close commit either way.
    pub enable_auto_commit: bool,
    /// `auto.commit.interval.ms`.
    pub auto_commit_interval: Duration,
    /// `max.poll.interval.ms`: the longest the caller may go between polls
    /// before the member leaves the group, and the time the coordinator gives
    /// it to revoke partitions.
    pub max_poll_interval: Duration,
    /// `group.remote.assignor`: `range`, `round-robin` or `sticky`; `None` for
    /// the broker's default.
    pub assignor: Option<String>,
    pub rebalance_mode: RebalanceMode,
}

impl GroupConsumerConfig {
    /// Kafka's defaults for group `group_id`; new partitions start at the
    /// earliest offset, as `weir consume --group` and Kafka Streams do.
    pub fn new(group_id: &str) -> GroupConsumerConfig {
        GroupConsumerConfig {
            group_id: group_id.to_string(),
            instance_id: None,
            consumer: ConsumerConfig {
                offset_reset: OffsetReset::Earliest,
                ..ConsumerConfig::default()
            },
            enable_auto_commit: true,
            auto_commit_interval: Duration::from_secs(5),
            max_poll_interval: Duration::from_secs(300),
            assignor: None,
            rebalance_mode: RebalanceMode::Incremental,
        }
    }
}

/// What a rebalance did to this member, passed to the callback of
/// [`GroupConsumer::on_rebalance`] from inside `poll`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rebalance {
    /// The member now reads these partitions (topic, partition).
    Assigned(Vec<(String, u32)>),
    /// The member gives these up; their positions are committed right after the
    /// callback returns, before they are released.
    Revoked(Vec<(String, u32)>),
    /// The member was fenced or left the group (it missed
    /// `max.poll.interval.ms`): these already belong to others, nothing of them
    /// can be committed, and records of them polled since the last commit will
    /// be read again by their new owner.
    Lost(Vec<(String, u32)>),
}

type RebalanceCallback = Box<dyn FnMut(&Rebalance) + Send>;

/// A member of a consumer group reading the partitions the group gives it.
pub struct GroupConsumer {
    channel: Channel,
    config: GroupConsumerConfig,
    settings: MemberSettings,
    membership: Arc<Membership>,
    heartbeats: JoinHandle<()>,
    /// The group's coordinator, found and followed.
    coordinator: Coordinator,
    /// One fetcher per subscribed topic.
    consumers: BTreeMap<String, Consumer>,
    /// What this side owns; published to the heartbeat after every change.
    owned: TopicPartitionSet,
    /// The last offset committed per partition, so an unchanged one is not sent again.
    committed: BTreeMap<(String, u32), u64>,
    next_auto_commit: Instant,
    /// In stop-the-world mode, the heartbeat answer count at the last full release.
    released_at_answer: Option<u64>,
    on_rebalance: Option<RebalanceCallback>,
    closed: bool,
}

impl std::fmt::Debug for GroupConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupConsumer")
            .field("group_id", &self.config.group_id)
            .field("topics", &self.settings.topics)
            .field("owned", &self.owned)
            .finish_non_exhaustive()
    }
}

impl GroupConsumer {
    /// Connects to the broker at `addr` and joins the group to read `topics`.
    /// The member's first partitions arrive during its first polls.
    pub async fn subscribe(
        addr: &str,
        topics: &[&str],
        config: GroupConsumerConfig,
    ) -> Result<GroupConsumer, ClientError> {
        let bootstrap = bootstrap_list(addr)?
            .into_iter()
            .map(String::from)
            .collect();
        GroupConsumer::start(connect(addr).await?, bootstrap, topics, config)
    }

    /// As [`GroupConsumer::subscribe`], on an open channel. Needs a Tokio runtime:
    /// the heartbeats run as a task.
    pub fn subscribe_on(
        channel: Channel,
        topics: &[&str],
        config: GroupConsumerConfig,
    ) -> Result<GroupConsumer, ClientError> {
        GroupConsumer::start(channel, Vec::new(), topics, config)
    }

    fn start(
        channel: Channel,
        bootstrap: Vec<String>,
        topics: &[&str],
        config: GroupConsumerConfig,
    ) -> Result<GroupConsumer, ClientError> {
        if config.group_id.is_empty() {
            return Err(ClientError::InvalidArgument(
                "a group consumer needs a group id".to_string(),
            ));
        }
        if topics.is_empty() {
            return Err(ClientError::InvalidArgument(format!(
                "group {:?}: subscribe to at least one topic",
                config.group_id
            )));
        }
        let topics: BTreeSet<String> = topics.iter().map(|t| t.to_string()).collect();
        let settings = MemberSettings {
            group_id: config.group_id.clone(),
            instance_id: config.instance_id.clone().filter(|id| !id.is_empty()),
            topics: topics.iter().cloned().collect(),
            assignor: config.assignor.clone(),
            max_poll_interval: config.max_poll_interval,
        };
        let coordinator = Coordinator::new(channel.clone(), bootstrap, &config.group_id);
        let membership = Membership::new();
        let heartbeats = tokio::spawn(run_heartbeats(
            Arc::clone(&membership),
            coordinator.clone(),
            settings.clone(),
        ));
        let consumers = topics
            .iter()
            .map(|topic| {
                let mut consumer = Consumer::from_channel(channel.clone(), config.consumer.clone());
                consumer.assign(topic, &[]);
                (topic.clone(), consumer)
            })
            .collect();
        Ok(GroupConsumer {
            channel,
            next_auto_commit: Instant::now() + config.auto_commit_interval,
            config,
            settings,
            membership,
            heartbeats,
            coordinator,
            consumers,
            owned: TopicPartitionSet::new(),
            committed: BTreeMap::new(),
            released_at_answer: None,
            on_rebalance: None,
            closed: false,
        })
    }

    /// Calls `callback` from inside `poll` whenever partitions are assigned,
    /// revoked or lost (Kafka's `ConsumerRebalanceListener`).
    pub fn on_rebalance(&mut self, callback: impl FnMut(&Rebalance) + Send + 'static) {
        self.on_rebalance = Some(Box::new(callback));
    }

    /// The partitions this member reads now, as (topic, partition).
    pub fn assignment(&self) -> Vec<(String, u32)> {
        flatten(&self.owned)
    }

    /// The offset after the records polls returned, for each owned partition
    /// whose start is known (what `commit` would record), as (topic, partition,
    /// offset).
    pub fn positions(&self) -> Vec<(String, u32, u64)> {
        self.owned_positions(None)
    }

    /// Each owned partition's lag, as (topic, partition, records): see
    /// [`Consumer::current_lags`].
    pub fn current_lags(&self) -> Vec<(String, u32, u64)> {
        let mut out = Vec::new();
        for (topic, consumer) in &self.consumers {
            for (partition, lag) in consumer.current_lags() {
                if self
                    .owned
                    .get(topic)
                    .is_some_and(|set| set.contains(&partition))
                {
                    out.push((topic.clone(), partition, lag));
                }
            }
        }
        out
    }

    /// Moves an owned partition's position (Kafka's `seek` on an assigned
    /// partition): the next poll reads it from `offset`, and a commit records it.
    pub fn seek(&mut self, topic: &str, partition: u32, offset: u64) -> Result<(), ClientError> {
        if !self
            .owned
            .get(topic)
            .is_some_and(|set| set.contains(&partition))
        {
            return Err(ClientError::InvalidArgument(format!(
                "topic {topic:?} partition {partition} is not assigned to this member of group {:?}",
                self.config.group_id
            )));
        }
        let consumer = self
            .consumers
            .get_mut(topic)
            .expect("owned topics are subscribed");
        consumer.seek(partition, SeekTo::Offset(offset))
    }

    /// The member id the coordinator gave this member; empty until joined.
    pub fn member_id(&self) -> String {
        self.membership.lock().member_id.clone()
    }

    pub fn member_epoch(&self) -> i32 {
        self.membership.lock().member_epoch
    }

    pub fn group_id(&self) -> &str {
        &self.config.group_id
    }

    /// Returns the records available now from the member's partitions, or
    /// waits up to about `timeout` for some; rebalances are carried out here.
    /// Each record's `topic` and `partition` say where it came from.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>, ClientError> {
        self.check_open()?;
        let deadline = Instant::now() + timeout;
        loop {
            self.membership.lock().last_poll = Instant::now();
            self.reconcile().await?;
            if self.config.enable_auto_commit && Instant::now() >= self.next_auto_commit {
                self.next_auto_commit = Instant::now() + self.config.auto_commit_interval;
                if let Err(error) = self.commit().await {
                    // Kafka's auto-commit logs and carries on; the next one retries.
                    tracing::warn!(group = %self.config.group_id, %error, "auto-commit failed");
                }
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            let changed = self.membership.changed.notified();
            let records = tokio::select! {
                records = poll_topics(&mut self.consumers, remaining) => records?,
                _ = changed => Vec::new(),
            };
            if !records.is_empty() || Instant::now() >= deadline {
                return Ok(records);
            }
        }
    }

    /// Commits the positions of every partition the member owns (the offset
    /// after the records polls returned), waiting for the coordinator.
    pub async fn commit(&mut self) -> Result<(), ClientError> {
        let offsets = self.owned_positions(None);
        self.commit_offsets(&offsets).await
    }

    /// As [`GroupConsumer::commit`], without waiting: the returned future sends
    /// the commit and resolves to its outcome; dropping it does not cancel it.
    pub fn commit_async(
        &mut self,
    ) -> impl Future<Output = Result<(), ClientError>> + Send + 'static {
        let offsets = self.owned_positions(None);
        // Not remembered as committed: a later commit sends these again, which
        // is harmless, where a failed one remembered would never be retried.
        let request = self.commit_request(&offsets);
        let task = tokio::spawn(async move {
            match request {
                Some(request) => request.send().await,
                None => Ok(()),
            }
        });
        async move {
            task.await
                .map_err(|e| ClientError::InvalidArgument(format!("commit task failed: {e}")))?
        }
    }

    /// Commits the given offsets, (topic, partition, offset of the next record
    /// to read), for partitions the member owns.
    ///
    /// A commit refused for a stale member epoch (a heartbeat answer with a new
    /// epoch, after a rebalance elsewhere in the group, crossed it) is sent once
    /// more after the next heartbeat answer, with the epoch it brings, as Kafka's
    /// consumer does: the partitions are still the member's until it reports them
    /// released.
    pub async fn commit_offsets(
        &mut self,
        offsets: &[(String, u32, u64)],
    ) -> Result<(), ClientError> {
        self.check_open()?;
        // Counted before the request takes its epoch: an answer after this one
        // brings an epoch at least as new as the one the refusal names.
        let answers = self.membership.lock().answers;
        let Some(request) = self.commit_request(offsets) else {
            return Ok(());
        };
        match request.send().await {
            Err(error) if is_stale_epoch(&error) => {
                let membership = Arc::clone(&self.membership);
                await_heartbeat_answer(&membership, answers).await;
                let Some(request) = self.commit_request(offsets) else {
                    return Ok(());
                };
                request.send().await?;
            }
            sent => sent?,
        }
        self.remember_committed(offsets);
        Ok(())
    }

    /// The group's committed offset of each (topic, partition); `None` for a
    /// partition it has not committed.
    pub async fn committed(
        &self,
        partitions: &[(String, u32)],
    ) -> Result<Vec<(String, u32, Option<u64>)>, ClientError> {
        fetch_committed(&self.coordinator, &self.config.group_id, partitions).await
    }

    /// Revokes every partition as a rebalance would (the callback, then a
    /// commit of their positions) and leaves the group so the others take them
    /// at once. Returns the commit's error, if it failed, after leaving.
    pub async fn close(mut self) -> Result<(), ClientError> {
        self.check_open()?;
        let owned = flatten(&self.owned);
        if !owned.is_empty() {
            self.call_back(&Rebalance::Revoked(owned));
        }
        let mut committed = self.commit().await;
        if committed.as_ref().is_err_and(Coordinator::is_lost) {
            // The coordinator moved while closing: once more at the new one.
            committed = self.commit().await;
        }
        self.closed = true;
        let request = {
            let mut state = self.membership.lock();
            state.closing = true;
            state.owned.clear();
            (state.member_epoch > 0).then(|| leave_request(&state, &self.settings))
        };
        self.membership.wake_heartbeat.notify_one();
        self.heartbeats.abort();
        if let Some(request) = request {
            for attempt in 1..=2 {
                let mut client = self.coordinator.client().await?;
                let sent = client
                    .consumer_group_heartbeat(request.clone())
                    .await
                    .map_err(ClientError::from)
                    .and_then(|answer| {
                        let answer = answer.into_inner();
                        match answer.error_code() {
                            ErrorCode::NotCoordinator => Err(ClientError::Group {
                                group: self.config.group_id.clone(),
                                code: ErrorCode::NotCoordinator,
                                message: answer.error_message,
                            }),
                            // Any other refusal: the member is gone either way.
                            _ => Ok(()),
                        }
                    });
                match self.coordinator.check(sent) {
                    Ok(()) => break,
                    Err(error) if attempt == 1 && Coordinator::is_lost(&error) => continue,
                    // Not left: the coordinator removes it after the session timeout.
                    Err(error) => return Err(error),
                }
            }
        }
        committed
    }

    fn check_open(&self) -> Result<(), ClientError> {
        if self.closed {
            return Err(ClientError::Closed);
        }
        Ok(())
    }

    /// Consumed positions of the owned partitions (or of `only`).
    fn owned_positions(&self, only: Option<&TopicPartitionSet>) -> Vec<(String, u32, u64)> {
        let mut out = Vec::new();
        for (topic, consumer) in &self.consumers {
            for (partition, offset) in consumer.consumed_positions() {
                let wanted = only.unwrap_or(&self.owned);
                if wanted
                    .get(topic)
                    .is_some_and(|set| set.contains(&partition))
                {
                    out.push((topic.clone(), partition, offset));
                }
            }
        }
        out
    }

    fn commit_request(&self, offsets: &[(String, u32, u64)]) -> Option<CommitRequest> {
        let changed: Vec<(String, u32, u64)> = offsets
            .iter()
            .filter(|(topic, partition, offset)| {
                self.committed.get(&(topic.clone(), *partition)) != Some(offset)
            })
            .cloned()
            .collect();
        if changed.is_empty() {
            return None;
        }
        let state = self.membership.lock();
        Some(CommitRequest {
            coordinator: self.coordinator.clone(),
            group_id: self.config.group_id.clone(),
            member_id: state.member_id.clone(),
            member_epoch: state.member_epoch,
            offsets: changed,
        })
    }

    fn remember_committed(&mut self, offsets: &[(String, u32, u64)]) {
        for (topic, partition, offset) in offsets {
            self.committed.insert((topic.clone(), *partition), *offset);
        }
    }

    fn call_back(&mut self, event: &Rebalance) {
        if let Some(callback) = self.on_rebalance.as_mut() {
            callback(event);
        }
    }

    /// The channel this consumer uses, for an [`crate::Admin`] or producer on
    /// the same connection.
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }
}

impl Drop for GroupConsumer {
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        // Not closed: leave without committing, so the others need not wait for
        // the session timeout.
        let request = {
            let mut state = self.membership.lock();
            state.closing = true;
            (state.member_epoch > 0).then(|| leave_request(&state, &self.settings))
        };
        self.heartbeats.abort();
        let coordinator = self.coordinator.known();
        if let (Some(request), Some(mut coordinator), Ok(runtime)) =
            (request, coordinator, tokio::runtime::Handle::try_current())
        {
            runtime.spawn(async move {
                let _ = coordinator.consumer_group_heartbeat(request).await;
            });
        }
    }
}

/// Polls every topic with partitions at once; the first records (or error)
/// win. A topic's poll that loses the race keeps its fetch in flight.
async fn poll_topics(
    consumers: &mut BTreeMap<String, Consumer>,
    timeout: Duration,
) -> Result<Vec<ConsumerRecord>, ClientError> {
    let mut polls: FuturesUnordered<_> = consumers
        .values_mut()
        .filter(|consumer| !consumer.assignment().is_empty())
        .map(|consumer| consumer.poll(timeout))
        .collect();
    if polls.is_empty() {
        tokio::time::sleep(timeout).await;
        return Ok(Vec::new());
    }
    while let Some(result) = polls.next().await {
        let records = result?;
        if !records.is_empty() {
            return Ok(records);
        }
    }
    Ok(Vec::new())
}

fn difference(a: &TopicPartitionSet, b: &TopicPartitionSet) -> TopicPartitionSet {
    let mut out = TopicPartitionSet::new();
    for (topic, partitions) in a {
        let rest: BTreeSet<u32> = match b.get(topic) {
            Some(other) => partitions.difference(other).copied().collect(),
            None => partitions.clone(),
        };
        if !rest.is_empty() {
            out.insert(topic.clone(), rest);
        }
    }
    out
}

/// Waits, up to two heartbeat intervals, for a heartbeat answer after the
/// `after`-th, waking the heartbeat task to send one now.
async fn await_heartbeat_answer(membership: &Membership, after: u64) {
    membership.wake_heartbeat.notify_one();
    let interval = membership.lock().heartbeat_interval;
    let deadline = Instant::now() + interval * 2;
    while membership.lock().answers <= after && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A commit refused because the member's epoch moved on since it was sent.
fn is_stale_epoch(error: &ClientError) -> bool {
    matches!(
        error,
        ClientError::Group {
            code: ErrorCode::StaleMemberEpoch,
            ..
        }
    )
}

fn flatten(set: &TopicPartitionSet) -> Vec<(String, u32)> {
    set.iter()
        .flat_map(|(topic, partitions)| partitions.iter().map(move |p| (topic.clone(), *p)))
        .collect()
}
