//! Raft messages between brokers, over the brokers' own gRPC listeners: the
//! `Quorum` service receives them, and one sender task per peer delivers
//! them, batching whatever queued while the previous call was in flight.
//!
//! Raft tolerates lost, repeated and reordered messages, so nothing here
//! retries: a call that fails drops its messages and tells the Raft core the
//! peer is unreachable, and Raft's next heartbeat or probe tries again.
//!
//! A call carries at most [`CALL_BYTES_MAX`] of messages, below gRPC's
//! default 4 MiB message bound. A larger message (a metadata snapshot, which
//! grows with the partitions of the cluster) goes in pieces of that size,
//! one `StepChunk` call each, in order; the receiver puts them together, up
//! to [`QUORUM_MESSAGE_BYTES_MAX`], and steps the whole message.

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
/// Bytes of messages sent in one call, and the size of a large message's
/// pieces: every call stays below gRPC's default 4 MiB message bound.
pub(crate) const CALL_BYTES_MAX: usize = 1 << 20;
/// The largest Raft message put together from pieces: a metadata snapshot
/// of about 5 million partitions. Each peer has at most one message in
/// pieces, so this bounds what a broker holds for them.
pub(crate) const QUORUM_MESSAGE_BYTES_MAX: u64 = 512 << 20;
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
    let mut message_id = 0u64;
    while queue.recv_many(&mut batch, MESSAGES_PER_CALL_MAX).await > 0 {
        let encoded = batch
            .drain(..)
            .filter_map(|m| m.write_to_bytes().ok().map(bytes::Bytes::from));
        for planned in plan_calls(encoded) {
            let sent = match planned {
                Call::Step(messages) => call(client.clone(), from, messages).await,
                Call::Pieces(message) => {
                    message_id += 1;
                    call_in_pieces(client.clone(), from, message_id, message).await
                }
            };
            if let Err(status) = sent {
                tracing::debug!(peer, error = %status, "quorum messages not delivered");
                // Raft probes the peer instead of streaming to it until it answers; the
                // messages after this one are dropped with it.
                let _ = requests.try_send(Request::Unreachable(peer));
                break;
            }
        }
    }
}

/// How a run of messages goes to a peer, in order.
#[derive(Debug, PartialEq)]
enum Call {
    /// One `Step` call of at most [`CALL_BYTES_MAX`] bytes of messages.
    Step(Vec<bytes::Bytes>),
    /// One message over that, in `StepChunk` pieces.
    Pieces(bytes::Bytes),
}

fn plan_calls(messages: impl IntoIterator<Item = bytes::Bytes>) -> Vec<Call> {
    let mut calls = Vec::new();
    let mut open: Vec<bytes::Bytes> = Vec::new();
    let mut open_bytes = 0;
    for message in messages {
        let large = message.len() > CALL_BYTES_MAX;
        if !open.is_empty() && (large || open_bytes + message.len() > CALL_BYTES_MAX) {
            calls.push(Call::Step(std::mem::take(&mut open)));
            open_bytes = 0;
        }
        if large {
            calls.push(Call::Pieces(message));
        } else {
            open_bytes += message.len();
            open.push(message);
        }
    }
    if !open.is_empty() {
        calls.push(Call::Step(open));
    }
    calls
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

/// Sends `message` in pieces of [`CALL_BYTES_MAX`], in order; the first that
/// fails ends it (the receiver drops what it put together).
async fn call_in_pieces(
    mut client: QuorumClient<Channel>,
    from: NodeId,
    message_id: u64,
    message: bytes::Bytes,
) -> Result<(), Status> {
    let total_bytes = message.len() as u64;
    if total_bytes > QUORUM_MESSAGE_BYTES_MAX {
        tracing::error!(
            bytes = total_bytes,
            max = QUORUM_MESSAGE_BYTES_MAX,
            "a quorum message (a metadata snapshot) is larger than a peer takes; it cannot catch up from it"
        );
        return Err(Status::resource_exhausted("quorum message too large"));
    }
    let mut offset = 0;
    while offset < message.len() {
        let end = (offset + CALL_BYTES_MAX).min(message.len());
        client
            .step_chunk(proto::QuorumChunk {
                from,
                message_id,
                offset: offset as u64,
                total_bytes,
                bytes: message.slice(offset..end),
            })
            .await?;
        offset = end;
    }
    Ok(())
}

/// A large message arriving in pieces, one per peer at a time.
struct Pieces {
    message_id: u64,
    total_bytes: u64,
    bytes: Vec<u8>,
}

/// The messages peers are sending in pieces.
#[derive(Default)]
struct Reassembly {
    by_peer: std::sync::Mutex<std::collections::HashMap<NodeId, Pieces>>,
}

impl Reassembly {
    /// Adds `chunk`; the whole message once its last piece arrived. A piece
    /// that does not follow the one before (lost, or a new message started)
    /// drops what was put together: Raft sends the message again.
    fn add(&self, chunk: proto::QuorumChunk) -> Result<Option<Vec<u8>>, Status> {
        if chunk.total_bytes > QUORUM_MESSAGE_BYTES_MAX {
            return Err(Status::resource_exhausted(format!(
                "a quorum message of {} bytes; at most {QUORUM_MESSAGE_BYTES_MAX}",
                chunk.total_bytes
            )));
        }
        let mut by_peer = self
            .by_peer
            .lock()
            .map_err(|_| Status::internal("the quorum's reassembly lock is poisoned"))?;
        if chunk.offset == 0 {
            by_peer.insert(
                chunk.from,
                Pieces {
                    message_id: chunk.message_id,
                    total_bytes: chunk.total_bytes,
                    bytes: Vec::new(),
                },
            );
        }
        let follows = by_peer.get(&chunk.from).is_some_and(|p| {
            p.message_id == chunk.message_id
                && p.total_bytes == chunk.total_bytes
                && p.bytes.len() as u64 == chunk.offset
                && chunk.offset + chunk.bytes.len() as u64 <= chunk.total_bytes
        });
        if !follows {
            by_peer.remove(&chunk.from);
            return Err(Status::failed_precondition(format!(
                "piece at {} of quorum message {} from node {} does not follow the pieces before it",
                chunk.offset, chunk.message_id, chunk.from
            )));
        }
        let Some(pieces) = by_peer.get_mut(&chunk.from) else {
            return Err(Status::internal("a quorum message's pieces vanished"));
        };
        if pieces.bytes.is_empty() {
            // Reserved once the first piece checked out, not from its claim alone.
            pieces
                .bytes
                .reserve_exact(usize::try_from(chunk.total_bytes).unwrap_or(0));
        }
        pieces.bytes.extend_from_slice(&chunk.bytes);
        if pieces.bytes.len() as u64 == pieces.total_bytes {
            return Ok(by_peer.remove(&chunk.from).map(|p| p.bytes));
        }
        Ok(None)
    }
}

/// The receiving half, served on the broker's gRPC listener.
pub struct QuorumService {
    node_id: NodeId,
    reassembly: Reassembly,
    requests: SyncSender<Request>,
    view: watch::Receiver<QuorumView>,
    metadata: watch::Receiver<std::sync::Arc<super::ClusterMetadata>>,
    peers: std::collections::BTreeMap<NodeId, String>,
}

impl QuorumService {
    pub fn new(quorum: &super::MetadataQuorum, config: &ClusterConfig) -> QuorumService {
        QuorumService {
            node_id: quorum.node_id(),
            reassembly: Reassembly::default(),
            requests: quorum.requests(),
            view: quorum.view(),
            metadata: quorum.metadata(),
            peers: config.peers.clone(),
        }
    }
}

impl QuorumService {
    /// A Raft message from `from` to this broker.
    fn decode(&self, from: NodeId, bytes: &[u8]) -> Result<Message, Status> {
        let message = Message::parse_from_bytes(bytes).map_err(|e| {
            Status::invalid_argument(format!("a quorum message does not decode: {e}"))
        })?;
        // The sender names itself once per call; each message must agree.
        if message.from != from || message.to != self.node_id {
            return Err(Status::invalid_argument(format!(
                "a quorum message from {} to {} arrived at node {} in a call from {from}",
                message.from, message.to, self.node_id
            )));
        }
        Ok(message)
    }

    fn forward(
        &self,
        messages: Vec<Message>,
    ) -> Result<Response<proto::QuorumStepResponse>, Status> {
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
            messages.push(self.decode(request.from, bytes)?);
        }
        self.forward(messages)
    }

    async fn step_chunk(
        &self,
        request: GrpcRequest<proto::QuorumChunk>,
    ) -> Result<Response<proto::QuorumStepResponse>, Status> {
        let chunk = request.into_inner();
        let from = chunk.from;
        // Only a peer may have memory held for it.
        if from == self.node_id || !self.peers.contains_key(&from) {
            return Err(Status::invalid_argument(format!(
                "a quorum message piece from node {from}, which is not a peer of node {}",
                self.node_id
            )));
        }
        match self.reassembly.add(chunk)? {
            Some(bytes) => {
                let message = self.decode(from, &bytes)?;
                self.forward(vec![message])
            }
            None => Ok(Response::new(proto::QuorumStepResponse {})),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(message_id: u64, offset: u64, total_bytes: u64, bytes: &[u8]) -> proto::QuorumChunk {
        proto::QuorumChunk {
            from: 2,
            message_id,
            offset,
            total_bytes,
            bytes: bytes::Bytes::copy_from_slice(bytes),
        }
    }

    #[test]
    fn calls_stay_under_the_bound_in_order_and_a_larger_message_goes_alone_in_pieces() {
        let sized = |n: usize| bytes::Bytes::from(vec![n as u8; n]);
        let half = CALL_BYTES_MAX / 2;
        let calls = plan_calls([
            sized(10),
            sized(half),
            sized(half),
            sized(CALL_BYTES_MAX + 1),
            sized(20),
        ]);
        assert_eq!(
            calls,
            vec![
                Call::Step(vec![sized(10), sized(half)]),
                Call::Step(vec![sized(half)]),
                Call::Pieces(sized(CALL_BYTES_MAX + 1)),
                Call::Step(vec![sized(20)]),
            ]
        );
        assert_eq!(plan_calls([]), vec![]);
    }

    #[test]
    fn pieces_in_order_make_the_whole_message_at_the_last() {
        let reassembly = Reassembly::default();
        assert_eq!(reassembly.add(piece(1, 0, 7, b"abc")).unwrap(), None);
        assert_eq!(reassembly.add(piece(1, 3, 7, b"de")).unwrap(), None);
        assert_eq!(
            reassembly.add(piece(1, 5, 7, b"fg")).unwrap(),
            Some(b"abcdefg".to_vec())
        );
        // Nothing is held once the message is out.
        assert!(reassembly.by_peer.lock().unwrap().is_empty());
    }

    #[test]
    fn a_piece_that_does_not_follow_drops_the_message() {
        let reassembly = Reassembly::default();
        reassembly.add(piece(1, 0, 9, b"abc")).unwrap();
        // A gap (the piece at 3 was lost).
        let refused = reassembly.add(piece(1, 6, 9, b"ghi")).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
        // What was put together is gone: the piece at 3 no longer follows.
        assert!(reassembly.add(piece(1, 3, 9, b"def")).is_err());
        // A piece of another message, or past the end, is refused too.
        reassembly.add(piece(2, 0, 4, b"ab")).unwrap();
        assert!(reassembly.add(piece(3, 2, 4, b"cd")).is_err());
        reassembly.add(piece(4, 0, 4, b"ab")).unwrap();
        assert!(reassembly.add(piece(4, 2, 4, b"cde")).is_err());
    }

    #[test]
    fn a_new_message_replaces_one_left_unfinished() {
        let reassembly = Reassembly::default();
        reassembly.add(piece(1, 0, 9, b"abc")).unwrap();
        assert_eq!(
            reassembly.add(piece(2, 0, 2, b"xy")).unwrap(),
            Some(b"xy".to_vec())
        );
        assert!(reassembly.add(piece(1, 3, 9, b"def")).is_err());
    }

    #[test]
    fn a_message_over_the_bound_is_refused_before_anything_is_held() {
        let reassembly = Reassembly::default();
        let refused = reassembly
            .add(piece(1, 0, QUORUM_MESSAGE_BYTES_MAX + 1, b"abc"))
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(reassembly.by_peer.lock().unwrap().is_empty());
    }
}
