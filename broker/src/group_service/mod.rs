//! The group coordinator served by the broker: one [`GroupCoordinator`] behind a lock,
//! whose changes are appended to `__consumer_offsets` before any answer leaves.
//!
//! Owns: the lock around the coordinator, the records' way into and out of the log
//! (`log.rs`), the topic sizes it is fed, and the clock it is driven by. Does not own the
//! rules of groups (`group/`) or the wire (`rpc/group.rs`).
//!
//! Invariant: what the coordinator answers is in the log. Each operation runs under the
//! lock, its records are appended (fsynced per the topic's flush policy) while the lock is
//! held, and only then is the answer returned. When an append fails the coordinator is
//! ahead of the log; it is then rebuilt from the log (`replay`) before the next operation
//! is served, rather than undoing the change in memory: the log is the one truth, and an
//! append that failed half-way (some partitions written, others not) is then reflected
//! exactly as it was stored.

mod log;

use std::sync::Arc;

use tokio::sync::Mutex;

use crate::broker::Broker;
use crate::error::BrokerError;
use crate::group::{GroupConfig, GroupCoordinator, GroupError, TopicMetadata};

/// The broker's group coordinator.
#[derive(Debug)]
pub struct GroupService {
    broker: Arc<Broker>,
    config: GroupConfig,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    coordinator: GroupCoordinator,
    /// The topic sizes last given to `set_topics`.
    topics: TopicMetadata,
    /// An append failed after the coordinator changed: rebuild it from the log first.
    ahead_of_log: bool,
}

impl GroupService {
    /// Reads every partition of `__consumer_offsets` from its start and rebuilds the
    /// groups from their records (none before the first group change creates it).
    pub async fn start(broker: Arc<Broker>, config: GroupConfig) -> Result<Self, BrokerError> {
        let coordinator = log::replay(&broker, &config).await?;
        let service = GroupService {
            broker,
            config,
            state: Mutex::new(State {
                coordinator,
                topics: TopicMetadata::new(),
                ahead_of_log: false,
            }),
        };
        // Topics may have changed while the broker was down: groups that subscribe to
        // them get a new assignment now.
        service.mutate(|_, _| Ok(())).await?;
        Ok(service)
    }

    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    /// Runs `operation` on the coordinator and appends the records it left before
    /// returning its result. A refused operation's records (it should leave none) are
    /// appended too, so memory and log never part.
    pub async fn mutate<T>(
        &self,
        operation: impl FnOnce(&mut GroupCoordinator, i64) -> Result<T, GroupError>,
    ) -> Result<T, BrokerError> {
        let mut state = self.state.lock().await;
        self.catch_up(&mut state).await?;
        let now_ms = now_ms();
        let topics = self.topic_metadata()?;
        if topics != state.topics {
            state.coordinator.set_topics(topics.clone(), now_ms);
            state.topics = topics;
        }
        let result = operation(&mut state.coordinator, now_ms);
        let records = state.coordinator.take_records();
        if !records.is_empty() {
            if let Err(error) = log::append(&self.broker, records, now_ms).await {
                tracing::warn!(%error, "cannot append group records; the coordinator will be rebuilt from the log");
                state.ahead_of_log = true;
                return Err(error);
            }
        }
        result.map_err(BrokerError::from)
    }

    /// Runs `query` on the coordinator, which it cannot change.
    pub async fn read<T>(
        &self,
        query: impl FnOnce(&GroupCoordinator) -> T,
    ) -> Result<T, BrokerError> {
        let mut state = self.state.lock().await;
        self.catch_up(&mut state).await?;
        Ok(query(&state.coordinator))
    }

    /// Rebuilds the coordinator from the log when a failed append left it ahead, so
    /// neither answers nor changes build on what the log does not hold.
    async fn catch_up(&self, state: &mut State) -> Result<(), BrokerError> {
        if state.ahead_of_log {
            state.coordinator = log::replay(&self.broker, &self.config).await?;
            state.topics = TopicMetadata::new();
            state.ahead_of_log = false;
            tracing::info!("rebuilt the group coordinator from __consumer_offsets");
        }
        Ok(())
    }

    /// Removes members past their timeouts and computes delayed assignments, persisting
    /// what that changed. Returns the removed (group, member) pairs.
    pub async fn tick(&self) -> Result<Vec<(String, String)>, BrokerError> {
        self.mutate(|coordinator, now_ms| Ok(coordinator.tick(now_ms)))
            .await
    }

    /// The broker's topics and their partition counts, the internal ones left out: no
    /// group subscribes to them.
    fn topic_metadata(&self) -> Result<TopicMetadata, BrokerError> {
        Ok(self
            .broker
            .topics()?
            .iter()
            .filter(|topic| !crate::internal_topics::is_internal(&topic.name))
            .map(|topic| (topic.name.clone(), topic.partition_count()))
            .collect())
    }
}

/// How often the coordinator looks for expired members and ended rebalance delays.
/// Kafka's coordinator schedules a timer per deadline; a 100 ms sweep bounds the lateness
/// the same way at this scale.
const TICK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// Ticks `service` every [`TICK_INTERVAL`] until shutdown begins.
pub async fn tick_periodically(
    service: Arc<GroupService>,
    mut closing: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(TICK_INTERVAL) => {}
            _ = closing.changed() => return,
        }
        match service.tick().await {
            Ok(removed) => {
                for (group, member) in removed {
                    tracing::info!(%group, %member, "removed a group member past its timeout");
                }
            }
            Err(error) => tracing::warn!(%error, "group coordinator tick failed"),
        }
    }
}

/// Wall-clock milliseconds: group deadlines and commit times.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
