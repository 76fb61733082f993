//! The cluster as one broker sees it: the controller, the term, and which
//! brokers are registered and alive (`weir cluster status`).

use serde::Serialize;

use super::admin::Admin;
use super::error::ClientError;
use crate::proto::quorum_client::QuorumClient;
use crate::proto::ClusterStatusRequest;

/// One broker of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterBroker {
    pub node_id: u64,
    pub address: String,
    /// Heard by the controller within its election timeout (as the
    /// answering broker knows it: only the controller knows every broker).
    pub alive: bool,
    /// It has announced itself through the metadata log.
    pub registered: bool,
}

/// One partition of a replicated topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterPartition {
    pub topic: String,
    pub partition: u32,
    pub leader: Option<u64>,
    pub leader_epoch: i32,
    /// Preferred leader first.
    pub replicas: Vec<u64>,
    pub isr: Vec<u64>,
    /// Fewer in-sync replicas than replicas.
    pub under_replicated: bool,
}

/// What `cluster_status` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterStatus {
    /// The broker that answered.
    pub node_id: u64,
    /// The controller (the metadata quorum's leader), if one is elected.
    pub controller_id: Option<u64>,
    pub term: u64,
    pub committed_index: u64,
    pub applied_index: u64,
    pub brokers: Vec<ClusterBroker>,
    pub partitions: Vec<ClusterPartition>,
}

impl Admin {
    /// Asks the connected broker for the cluster's state. A broker started
    /// without `--peers` is in no cluster and answers with an error saying so.
    pub async fn cluster_status(&self) -> Result<ClusterStatus, ClientError> {
        let answer = QuorumClient::new(self.channel())
            .cluster_status(ClusterStatusRequest {})
            .await
            .map_err(|status| match status.code() {
                tonic::Code::Unimplemented => {
                    ClientError::from(tonic::Status::failed_precondition(
                        "this broker is not in a cluster (it was started without --peers)",
                    ))
                }
                _ => ClientError::from(status),
            })?
            .into_inner();
        Ok(ClusterStatus {
            node_id: answer.node_id,
            controller_id: Some(answer.controller_id).filter(|&id| id != 0),
            term: answer.term,
            committed_index: answer.committed_index,
            applied_index: answer.applied_index,
            brokers: answer
                .brokers
                .into_iter()
                .map(|b| ClusterBroker {
                    node_id: b.node_id,
                    address: b.address,
                    alive: b.alive,
                    registered: b.registered,
                })
                .collect(),
            partitions: answer
                .partitions
                .into_iter()
                .map(|p| ClusterPartition {
                    under_replicated: p.isr.len() < p.replicas.len(),
                    topic: p.topic,
                    partition: p.partition,
                    leader: Some(p.leader).filter(|&l| l != 0),
                    leader_epoch: p.leader_epoch,
                    replicas: p.replicas,
                    isr: p.isr,
                })
                .collect(),
        })
    }
}
