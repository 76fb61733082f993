//! Replication of partitions between the brokers of a cluster: the leader's
//! view of its followers (`tracker.rs`), each replica's role (`role.rs`),
//! the replica's side of leading and following (`replica.rs`), follower
//! fetching and the leader's answer to it (`fetch.rs`), topic changes through
//! the metadata log (`cluster_link.rs`), and the tasks that make local what
//! the metadata says and elect leaders (`manager.rs`).

mod cluster_link;
mod fetch;
mod manager;
mod replica;
mod role;
#[cfg(test)]
mod simulation;
mod tracker;
#[cfg(test)]
mod truncation_tests;

pub(crate) use cluster_link::ClusterLink;
pub use fetch::ReplicaService;
pub use replica::ReplicaRead;
pub use role::{ReplicaRole, RoleKind};

use std::sync::Arc;

use tokio::sync::watch;

use crate::broker::Broker;
use crate::cluster::{ClusterConfig, QuorumHandle};

/// Puts `broker` in its cluster: topic changes go through the metadata log,
/// and the applier, ISR reporter, controller duty and fetchers start.
/// Returns the flag to raise once this broker's registration has applied
/// here: until then it leads nothing (see `manager::reconcile`).
pub(crate) fn join(
    broker: &Arc<Broker>,
    cluster: &ClusterConfig,
    quorum: QuorumHandle,
    replica_lag_time_max_ms: i64,
) -> watch::Sender<bool> {
    let (registered_tx, registered) = watch::channel(false);
    let link = ClusterLink {
        node_id: cluster.node_id,
        quorum,
        replica_lag_time_max_ms,
        registered,
    };
    broker.join_cluster(link.clone());
    manager::start(Arc::clone(broker), link);
    fetch::start(Arc::clone(broker), cluster);
    registered_tx
}
