//! Raft messages between brokers, over the brokers' own gRPC listeners: the
//! `Quorum` service receives them, and one sender task per peer delivers
//! them, batching whatever queued while the previous call was in flight.
//!
//! Raft tolerates lost, repeated and reordered messages, so nothing here
//! retries: a call that fails drops its messages and tells the Raft core the
//! peer is unreachable, and Raft's next heartbeat or probe tries again.

use std::sync::mpsc::SyncSender;
use std::time::Duration;

use protobuf::Message as _;
use raft::eraftpb::Message;
use tokio::sync::{mpsc, watch};
use tonic::transport::{Channel, Endpoint};
use tonic::{Request as GrpcRequest, Response, Status};

use super::metadata::NodeId;
use super::quorum::{QuorumView, Request};
use super::ClusterConfig;
use crate::proto;
use crate::proto::quorum_client::QuorumClient;

/// Messages queued per peer before new ones are dropped (a peer that is down
/// must not grow this broker's memory).
const PEER_QUEUE: usize = 4096;
/// Messages sent in one call, and taken in one call.
const MESSAGES_PER_CALL_MAX: usize = 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// The sending half: one queue and task per peer.
pub(crate) struct PeerSenders {
    queues: Vec<(NodeId, mpsc::Sender<Message>)>,
}

impl PeerSenders {
    pub(crate) fn start(config: &ClusterConfig, requests: SyncSender<Request>) -> PeerSenders {
        let mut queues = Vec::new();
        for (&peer, address) in &config.peers {
            if peer == config.node_id {
                continue;
            }
            let (tx, rx) = mpsc::channel(PEER_QUEUE);
            tokio::spawn(deliver(
                config.node_id,
                peer,
                address.clone(),
                rx,
                requests.clone(),
            ));
            queues.push((peer, tx));
        }
        PeerSenders { queues }
    }

    /// Queues each message for its peer; never blocks.
    pub(crate) fn send(&self, messages: Vec<Message>) {
        for message in messages {
            match self.queues.iter().find(|(peer, _)| *peer == message.to) {
                Some((_, queue)) => {
                    if queue.try_send(message).is_err() {
                        tracing::debug!("a peer's quorum queue is full; dropping a message");
                    }
                }
                None => tracing::debug!(to = message.to, "no such peer"),
            }
        }
    }
}

async fn deliver(
    from: NodeId,
    peer: NodeId,
    address: String,
    mut queue: mpsc::Receiver<Message>,
    requests: SyncSender<Request>,
) {
    let client = match Endpoint::from_shared(format!("http://{address}")) {
        Ok(endpoint) => QuorumClient::new(
            endpoint
                .connect_timeout(CONNECT_TIMEOUT)
                .timeout(CALL_TIMEOUT)
                .tcp_nodelay(true)
                .connect_lazy(),
        ),
        Err(e) => {
            tracing::error!(peer, %address, error = %e, "peer address is not usable");
            return;
        }
    };
    let mut batch = Vec::new();
    while queue.recv_many(&mut batch, MESSAGES_PER_CALL_MAX).await > 0 {
        let messages: Vec<bytes::Bytes> = batch
            .drain(..)
            .filter_map(|m| m.write_to_bytes().ok().map(bytes::Bytes::from))
            .collect();
        if let Err(status) = call(client.clone(), from, messages).await {
            tracing::debug!(peer, error = %status, "quorum messages not delivered");
            // Raft probes the peer instead of streaming to it until it answers.
            let _ = requests.try_send(Request::Unreachable(peer));
        }
    }
}

async fn call(
    mut client: QuorumClient<Channel>,
    from: NodeId,
    messages: Vec<bytes::Bytes>,
) -> Result<(), Status> {
    client
        .step(proto::QuorumStepRequest { from, messages })
        .await
        .map(|_| ())
}

/// The receiving half, served on the broker's gRPC listener.
pub struct QuorumService {
    node_id: NodeId,
    requests: SyncSender<Request>,
    view: watch::Receiver<QuorumView>,
    metadata: watch::Receiver<std::sync::Arc<super::ClusterMetadata>>,
    peers: std::collections::BTreeMap<NodeId, String>,
}

impl QuorumService {
    pub fn new(quorum: &super::MetadataQuorum, config: &ClusterConfig) -> QuorumService {
        QuorumService {
            node_id: quorum.node_id(),
            requests: quorum.requests(),
            view: quorum.view(),
            metadata: quorum.metadata(),
            peers: config.peers.clone(),
        }
    }
}

#[tonic::async_trait]
impl proto::quorum_server::Quorum for QuorumService {
    async fn step(
        &self,
        request: GrpcRequest<proto::QuorumStepRequest>,
    ) -> Result<Response<proto::QuorumStepResponse>, Status> {
        let request = request.into_inner();
        if request.messages.len() > MESSAGES_PER_CALL_MAX {
            return Err(Status::invalid_argument(format!(
                "{} quorum messages in one call; at most {MESSAGES_PER_CALL_MAX}",
                request.messages.len()
            )));
        }
        let mut messages = Vec::with_capacity(request.messages.len());
        for bytes in &request.messages {
            let message = Message::parse_from_bytes(bytes).map_err(|e| {
                Status::invalid_argument(format!("a quorum message does not decode: {e}"))
            })?;
            // The sender names itself once per call; each message must agree.
            if message.from != request.from || message.to != self.node_id {
                return Err(Status::invalid_argument(format!(
                    "a quorum message from {} to {} arrived at node {} in a call from {}",
                    message.from, message.to, self.node_id, request.from
                )));
            }
            messages.push(message);
        }
        match self.requests.try_send(Request::Step(messages)) {
            Ok(()) => Ok(Response::new(proto::QuorumStepResponse {})),
            Err(std::sync::mpsc::TrySendError::Full(_)) => {
                Err(Status::resource_exhausted("the quorum's queue is full"))
            }
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => Err(Status::unavailable(
                "this broker's quorum member has stopped",
            )),
        }
    }

    async fn cluster_status(
        &self,
        _request: GrpcRequest<proto::ClusterStatusRequest>,
    ) -> Result<Response<proto::ClusterStatusResponse>, Status> {
        let view = self.view.borrow().clone();
        let metadata = self.metadata.borrow().clone();
        let brokers = self
            .peers
            .iter()
            .map(|(&node_id, address)| {
                let registered = metadata.brokers.get(&node_id);
                proto::ClusterBroker {
                    node_id,
                    // A broker's own registration names where it listens now.
                    address: registered.map_or_else(|| address.clone(), |b| b.address.clone()),
                    alive: view.alive.contains(&node_id),
                    registered: registered.is_some(),
                }
            })
            .collect();
        let partitions = metadata
            .topics
            .values()
            .flat_map(|topic| {
                topic
                    .partitions
                    .iter()
                    .enumerate()
                    .map(|(index, p)| proto::ClusterPartition {
                        topic: topic.name.clone(),
                        partition: index as u32,
                        leader: p.leader.unwrap_or(0),
                        leader_epoch: p.leader_epoch,
                        replicas: p.replicas.clone(),
                        isr: p.isr.clone(),
                    })
            })
            .collect();
        Ok(Response::new(proto::ClusterStatusResponse {
            partitions,
            node_id: self.node_id,
            controller_id: view.status.leader_id.unwrap_or(0),
            term: view.status.term,
            committed_index: view.status.committed_index,
            applied_index: view.status.applied_index,
            brokers,
        }))
    }
}
