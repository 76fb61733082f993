//! Which broker leads each partition, and a connection to each broker: the
//! client's view of a cluster, learnt from `weir.v1.Quorum/ClusterStatus`.
//!
//! Until a broker says otherwise everything goes to the bootstrap broker (the
//! first of the list that answered). A broker in no cluster never answers
//! NOT_LEADER_OR_FOLLOWER, so a client of one broker never asks for metadata
//! on its hot path; when it is asked (once, before an offset lookup), the broker answers
//! UNIMPLEMENTED and the client remembers it is alone. In a cluster, the
//! first NOT_LEADER_OR_FOLLOWER (or a failed connection to a known leader)
//! refreshes the view, as Kafka's clients refresh metadata on that error,
//! and requests go to each partition's leader from then on.
//!
//! Refreshes are coalesced: callers pass the generation they routed with,
//! and a refresh finding a newer one returns at once. At most one refresh
//! runs per `min_interval` (the producer's `retry_backoff`), as Kafka's
//! clients wait `retry.backoff.ms` between metadata requests after errors.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tonic::transport::Channel;

use super::connection::connect_lazy;
use super::error::ClientError;
use crate::proto::quorum_client::QuorumClient;
use crate::proto::{ClusterStatusRequest, ClusterStatusResponse};

/// How long one broker has to answer a metadata request before the next
/// known broker is asked.
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Nothing asked yet: everything goes to the bootstrap broker.
    Unknown,
    /// The bootstrap broker is in no cluster: everything goes to it, always.
    Alone,
    Cluster,
}

#[derive(Debug)]
struct KnownBroker {
    address: String,
    /// Opened on first use, kept while the address stays the same.
    channel: Option<Channel>,
}

#[derive(Debug)]
struct View {
    mode: Mode,
    /// Bumped by every refresh that got an answer.
    generation: u64,
    /// Per topic, each partition's leader (absent or 0: none known).
    leaders: HashMap<String, HashMap<u32, u64>>,
    brokers: HashMap<u64, KnownBroker>,
}

/// A client's view of the cluster; shared by the tasks of one client.
#[derive(Debug)]
pub(crate) struct ClusterMetadata {
    bootstrap: Channel,
    /// The rest of the bootstrap list, asked when no known broker answers.
    bootstrap_addrs: Vec<String>,
    view: Mutex<View>,
    /// When the last refresh asked; held while one runs (coalescing).
    refreshing: tokio::sync::Mutex<Option<Instant>>,
}

impl ClusterMetadata {
    pub(crate) fn new(bootstrap: Channel, bootstrap_addrs: Vec<String>) -> ClusterMetadata {
        ClusterMetadata {
            bootstrap,
            bootstrap_addrs,
            view: Mutex::new(View {
                mode: Mode::Unknown,
                generation: 0,
                leaders: HashMap::new(),
                brokers: HashMap::new(),
            }),
            refreshing: tokio::sync::Mutex::new(None),
        }
    }

    fn view(&self) -> MutexGuard<'_, View> {
        // A panic elsewhere while holding the lock leaves a usable view.
        self.view
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether the client is known to talk to a cluster.
    pub(crate) fn in_cluster(&self) -> bool {
        self.view().mode == Mode::Cluster
    }

    /// The generation requests are routed with now.
    pub(crate) fn generation(&self) -> u64 {
        self.view().generation
    }

    /// The channel to the leader of `partition` and that leader's id; the
    /// bootstrap broker (id 0) while none is known. No allocation once the
    /// leader's channel is open.
    pub(crate) fn leader(&self, topic: &str, partition: u32) -> (Channel, u64) {
        let mut view = self.view();
        if view.mode != Mode::Cluster {
            return (self.bootstrap.clone(), 0);
        }
        let leader = view
            .leaders
            .get(topic)
            .and_then(|leaders| leaders.get(&partition))
            .copied()
            .unwrap_or(0);
        match view.brokers.get_mut(&leader) {
            Some(broker) if leader != 0 => (channel_of(broker, &self.bootstrap), leader),
            _ => (self.bootstrap.clone(), 0),
        }
    }

    /// Whether the cluster's metadata, as last learnt, has `topic`: a broker
    /// that says it does not exist has not applied it yet.
    pub(crate) fn knows_topic(&self, topic: &str) -> bool {
        let view = self.view();
        view.mode == Mode::Cluster && view.leaders.contains_key(topic)
    }

    /// Every broker to ask something any broker can answer, the bootstrap
    /// broker first.
    pub(crate) fn any_brokers(&self) -> Vec<Channel> {
        let mut view = self.view();
        let mut channels = vec![self.bootstrap.clone()];
        if view.mode == Mode::Cluster {
            let mut ids: Vec<u64> = view.brokers.keys().copied().collect();
            ids.sort_unstable();
            for id in ids {
                if let Some(broker) = view.brokers.get_mut(&id) {
                    channels.push(channel_of(broker, &self.bootstrap));
                }
            }
        }
        channels
    }

    /// Asks for the cluster's state once, unless it is already known (the
    /// offset lookups of the consumer and the admin: not a hot path).
    pub(crate) async fn ensure_known(&self) {
        let seen = {
            let view = self.view();
            if view.mode != Mode::Unknown {
                return;
            }
            view.generation
        };
        self.refresh(seen, Duration::ZERO).await;
    }

    /// Learns the leaders again, unless a refresh since `seen` already did;
    /// waits out `min_interval` since the last one first. A client of a
    /// broker in no cluster learns that and never asks again. Failing to
    /// reach any broker leaves the view as it was (the caller retries).
    pub(crate) async fn refresh(&self, seen: u64, min_interval: Duration) {
        let mut last = self.refreshing.lock().await;
        {
            let view = self.view();
            if view.generation != seen || view.mode == Mode::Alone {
                return;
            }
        }
        if let Some(at) = *last {
            let due = at + min_interval;
            if due > Instant::now() {
                tokio::time::sleep_until(due.into()).await;
            }
        }
        *last = Some(Instant::now());
        // The known brokers first; the bootstrap list's channels are opened
        // only if none of them answers.
        let known = self.any_brokers().into_iter().map(Ok);
        let listed = self.bootstrap_addrs.iter().map(|addr| connect_lazy(addr));
        let mut last_error = None;
        for channel in known.chain(listed) {
            let channel = match channel {
                Ok(channel) => channel,
                Err(error) => {
                    last_error = Some(error);
                    continue;
                }
            };
            let asked = tokio::time::timeout(
                STATUS_TIMEOUT,
                QuorumClient::new(channel).cluster_status(ClusterStatusRequest {}),
            )
            .await;
            match asked {
                Ok(Ok(answer)) => {
                    self.apply(answer.into_inner());
                    return;
                }
                Ok(Err(status)) if status.code() == tonic::Code::Unimplemented => {
                    let mut view = self.view();
                    // Only the bootstrap broker can say so before any
                    // cluster was seen; a cluster member never does.
                    if view.mode == Mode::Unknown {
                        view.mode = Mode::Alone;
                        return;
                    }
                    last_error = Some(ClientError::from(status));
                }
                Ok(Err(status)) => last_error = Some(ClientError::from(status)),
                Err(_) => {
                    last_error = Some(ClientError::Status {
                        code: tonic::Code::DeadlineExceeded,
                        message: format!(
                            "no cluster status within {} ms",
                            STATUS_TIMEOUT.as_millis()
                        ),
                    });
                }
            }
        }
        if let Some(error) = last_error {
            tracing::warn!(%error, "cannot refresh the cluster metadata from any broker");
        }
    }

    fn apply(&self, answer: ClusterStatusResponse) {
        let mut view = self.view();
        view.mode = Mode::Cluster;
        view.generation += 1;
        let mut leaders: HashMap<String, HashMap<u32, u64>> = HashMap::new();
        for partition in answer.partitions {
            leaders
                .entry(partition.topic)
                .or_default()
                .insert(partition.partition, partition.leader);
        }
        view.leaders = leaders;
        for broker in answer.brokers {
            if broker.address.is_empty() {
                continue;
            }
            match view.brokers.get_mut(&broker.node_id) {
                Some(known) if known.address == broker.address => {}
                _ => {
                    view.brokers.insert(
                        broker.node_id,
                        KnownBroker {
                            address: broker.address,
                            channel: None,
                        },
                    );
                }
            }
        }
        tracing::debug!(
            generation = view.generation,
            brokers = view.brokers.len(),
            "cluster metadata refreshed"
        );
    }
}

/// The broker's channel, opened on first use; an address that cannot be
/// parsed falls back to the bootstrap broker (which then answers NOT_LEADER).
fn channel_of(broker: &mut KnownBroker, bootstrap: &Channel) -> Channel {
    if broker.channel.is_none() {
        match connect_lazy(&broker.address) {
            Ok(channel) => broker.channel = Some(channel),
            Err(error) => {
                tracing::warn!(address = %broker.address, %error, "cannot use a broker's address");
                return bootstrap.clone();
            }
        }
    }
    broker.channel.clone().unwrap_or_else(|| bootstrap.clone())
}

/// Whether `error` says the partition's leader is elsewhere.
pub(crate) fn is_not_leader(error: &ClientError) -> bool {
    matches!(
        error,
        ClientError::Partition {
            code: crate::proto::ErrorCode::NotLeaderOrFollower,
            ..
        }
    )
}

/// Whether `error` says the broker could not be reached (it may have stopped).
pub(crate) fn is_unreachable(error: &ClientError) -> bool {
    match error {
        ClientError::Connect { .. } => true,
        ClientError::Status { code, .. } => matches!(
            code,
            tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
        ),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{ClusterBroker, ClusterPartition};

    fn status(leader_of_partition_1: u64) -> ClusterStatusResponse {
        ClusterStatusResponse {
            brokers: (1..=3)
                .map(|id| ClusterBroker {
                    node_id: id,
                    address: format!("127.0.0.1:{}", 9300 + id),
                    alive: true,
                    registered: true,
                })
                .collect(),
            partitions: [(0, 1), (1, leader_of_partition_1)]
                .into_iter()
                .map(|(partition, leader)| ClusterPartition {
                    topic: "orders".to_string(),
                    partition,
                    leader,
                    ..ClusterPartition::default()
                })
                .collect(),
            ..ClusterStatusResponse::default()
        }
    }

    #[tokio::test]
    async fn routes_to_the_leader_once_a_cluster_is_seen_and_to_the_bootstrap_broker_otherwise() {
        let metadata = ClusterMetadata::new(connect_lazy("127.0.0.1:9300").unwrap(), Vec::new());
        assert_eq!(metadata.leader("orders", 1).1, 0, "nothing learnt yet");
        metadata.apply(status(2));
        assert!(metadata.in_cluster());
        assert_eq!(metadata.generation(), 1);
        assert_eq!(metadata.leader("orders", 0).1, 1);
        assert_eq!(metadata.leader("orders", 1).1, 2);
        assert_eq!(metadata.leader("orders", 7).1, 0, "an unknown partition");
        assert_eq!(metadata.leader("other", 0).1, 0, "an unknown topic");
        // The leader moves; no leader (0) goes to the bootstrap broker.
        metadata.apply(status(3));
        assert_eq!(metadata.leader("orders", 1).1, 3);
        metadata.apply(status(0));
        assert_eq!(metadata.leader("orders", 1).1, 0);
        assert_eq!(
            metadata.any_brokers().len(),
            4,
            "the bootstrap broker and three"
        );
    }
}
