//! `MetadataQuorum`: runs a broker's [`QuorumNode`] on a thread of its own,
//! the one owner of the Raft core and of the metadata log file (whose fsyncs
//! would otherwise block an async worker), and gives the rest of the broker a
//! handle: propose a command and wait for it to apply, watch the applied
//! metadata, read the quorum's status.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use raft::eraftpb::Message;
use tokio::sync::{oneshot, watch};

use super::metadata::{ClusterMetadata, MetadataCommand, NodeId};
use super::node::{ProposalId, QuorumNode, QuorumStatus, TICK_MS};
use super::transport::PeerSenders;
use super::{ClusterConfig, ClusterError};

/// Requests queued for the quorum thread; bounded so that a flood of Raft
/// messages from the network cannot grow memory without limit.
const REQUEST_QUEUE: usize = 4096;

pub(crate) enum Request {
    Step(Vec<Message>),
    Propose(MetadataCommand, oneshot::Sender<Result<u64, ClusterError>>),
    Unreachable(NodeId),
    Stop,
}

/// A proposal made here and not yet applied here.
struct PendingProposal {
    /// Kept to propose again under a new leader: Raft does not retry a proposal forwarded to
    /// a leader that stopped, nor one this broker appended as a leader that lost its term
    /// before the entry committed, so without it the proposer only times out.
    command: MetadataCommand,
    reply: oneshot::Sender<Result<u64, ClusterError>>,
    /// The term and leader it was last proposed under.
    leadership: Leadership,
}

/// A term and the leader this broker knows in it.
type Leadership = (u64, Option<NodeId>);

/// The quorum as seen from one broker, published after every change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumView {
    pub status: QuorumStatus,
    /// Brokers the controller heard from within the last election timeout;
    /// on any other broker only itself and the controller it hears.
    pub alive: BTreeSet<NodeId>,
    /// Set when the quorum thread stopped on an error (the metadata log could
    /// not be written): the broker no longer takes part.
    pub failed: Option<String>,
}

/// A broker's member of the quorum: owns the thread; stopping it (or
/// dropping it) ends the member. Cloneable [`QuorumHandle`]s propose and watch.
pub struct MetadataQuorum {
    handle: QuorumHandle,
    thread: Option<JoinHandle<()>>,
}

/// Proposes to the quorum and watches what it applies; cheap to clone.
#[derive(Clone)]
pub struct QuorumHandle {
    node_id: NodeId,
    recovered_commit: u64,
    requests: SyncSender<Request>,
    metadata: watch::Receiver<Arc<ClusterMetadata>>,
    view: watch::Receiver<QuorumView>,
}

impl std::fmt::Debug for MetadataQuorum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetadataQuorum")
            .field("node_id", &self.handle.node_id)
            .field("view", &*self.handle.view.borrow())
            .finish()
    }
}

impl MetadataQuorum {
    /// Opens the metadata log under `dir` and starts this broker's member of
    /// the quorum of `config`. Must be called inside a Tokio runtime (the
    /// peer senders are tasks on it).
    pub fn start(dir: &Path, config: &ClusterConfig) -> Result<MetadataQuorum, ClusterError> {
        let voters: Vec<NodeId> = config.voters();
        let node = QuorumNode::open(dir, config.node_id, &voters, config.snapshot_entries)?;
        let recovered_commit = node.recovered_commit();
        let (requests, inbox) = mpsc::sync_channel(REQUEST_QUEUE);
        let peers = PeerSenders::start(config, requests.clone());
        let (metadata_tx, metadata) = watch::channel(Arc::new(node.metadata().clone()));
        let (view_tx, view) = watch::channel(view_of(&node, None, &HashMap::new()));
        let thread = std::thread::Builder::new()
            .name(format!("weir-quorum-{}", config.node_id))
            .spawn(move || run(node, inbox, peers, metadata_tx, view_tx))
            .map_err(|e| ClusterError::io("spawn", dir, e))?;
        Ok(MetadataQuorum {
            handle: QuorumHandle {
                node_id: config.node_id,
                recovered_commit,
                requests,
                metadata,
                view,
            },
            thread: Some(thread),
        })
    }

    pub fn handle(&self) -> QuorumHandle {
        self.handle.clone()
    }

    pub fn node_id(&self) -> NodeId {
        self.handle.node_id
    }

    /// See [`QuorumHandle::propose`].
    pub async fn propose(
        &self,
        command: MetadataCommand,
        timeout: Duration,
    ) -> Result<u64, ClusterError> {
        self.handle.propose(command, timeout).await
    }

    pub fn metadata(&self) -> watch::Receiver<Arc<ClusterMetadata>> {
        self.handle.metadata.clone()
    }

    pub fn view(&self) -> watch::Receiver<QuorumView> {
        self.handle.view.clone()
    }

    pub(crate) fn requests(&self) -> SyncSender<Request> {
        self.handle.requests.clone()
    }

    /// Stops the quorum thread and waits for it; entries already fsynced stay.
    pub fn stop(&mut self) {
        // A full queue delays Stop only until the thread drains it.
        if let Some(thread) = self.thread.take() {
            let _ = self.handle.requests.send(Request::Stop);
            let _ = thread.join();
        }
    }
}

impl Drop for MetadataQuorum {
    fn drop(&mut self) {
        self.stop();
    }
}

impl QuorumHandle {
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// Proposes `command` (forwarded to the controller by Raft if this broker
    /// does not lead) and waits until it is committed and applied here, up to
    /// `timeout`. Returns the entry's index. A timeout does not say the
    /// command was lost: it may still commit, so commands are written to be
    /// safe to propose again.
    pub async fn propose(
        &self,
        command: MetadataCommand,
        timeout: Duration,
    ) -> Result<u64, ClusterError> {
        let (reply, outcome) = oneshot::channel();
        match self.requests.try_send(Request::Propose(command, reply)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(ClusterError::Busy),
            Err(TrySendError::Disconnected(_)) => return Err(ClusterError::Stopped),
        }
        match tokio::time::timeout(timeout, outcome).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ClusterError::Stopped),
            Err(_) => Err(ClusterError::ProposalTimedOut {
                timeout_ms: timeout.as_millis() as u64,
            }),
        }
    }

    /// The metadata as applied on this broker, updated as entries apply.
    pub fn metadata(&self) -> watch::Receiver<Arc<ClusterMetadata>> {
        self.metadata.clone()
    }

    pub fn view(&self) -> watch::Receiver<QuorumView> {
        self.view.clone()
    }

    /// Whether the applied metadata is at least what this broker had
    /// committed before it started: only then does an absence in it mean a
    /// deletion rather than an entry not yet replayed.
    pub fn caught_up(&self) -> bool {
        self.metadata.borrow().applied_index >= self.recovered_commit
    }
}

/// A peer the leader heard from within this long is alive. Raft's own flag
/// is cleared at every check-quorum round and set again by the next answer,
/// so it is sampled every round of the thread and remembered this long.
pub(crate) const ALIVE_WITHIN: Duration = Duration::from_secs(2);

fn view_of(
    node: &QuorumNode,
    failed: Option<String>,
    last_active: &HashMap<NodeId, Instant>,
) -> QuorumView {
    let status = node.status();
    let alive = if node.is_leader() {
        let now = Instant::now();
        let mut alive: BTreeSet<NodeId> = last_active
            .iter()
            .filter(|(_, at)| now.duration_since(**at) < ALIVE_WITHIN)
            .map(|(id, _)| *id)
            .collect();
        alive.insert(node.id());
        alive
    } else {
        let mut alive = BTreeSet::from([node.id()]);
        alive.extend(status.leader_id);
        alive
    };
    QuorumView {
        status,
        alive,
        failed,
    }
}

/// The quorum thread: ticks, steps, proposals and Ready rounds, in one place.
fn run(
    mut node: QuorumNode,
    inbox: Receiver<Request>,
    peers: PeerSenders,
    metadata_tx: watch::Sender<Arc<ClusterMetadata>>,
    view_tx: watch::Sender<QuorumView>,
) {
    let tick = Duration::from_millis(TICK_MS);
    let mut next_tick = Instant::now() + tick;
    let mut next_seq = 0u64;
    let mut pending: HashMap<u64, PendingProposal> = HashMap::new();
    let mut last_active: HashMap<NodeId, Instant> = HashMap::new();
    let failure = loop {
        let wait = next_tick.saturating_duration_since(Instant::now());
        let first = match inbox.recv_timeout(wait) {
            Ok(request) => Some(request),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => break None,
        };
        // Take whatever else is queued, so one Ready round (one fsync) covers it.
        let mut stop = false;
        for request in first
            .into_iter()
            .chain(inbox.try_iter().take(REQUEST_QUEUE))
        {
            match request {
                Request::Step(messages) => messages.into_iter().for_each(|m| node.step(m)),
                Request::Propose(command, reply) => {
                    next_seq += 1;
                    let proposal = ProposalId {
                        node: node.id(),
                        seq: next_seq,
                    };
                    match node.propose(proposal, &command) {
                        Ok(()) => {
                            let leadership = leadership_of(&node);
                            pending.insert(
                                next_seq,
                                PendingProposal {
                                    command,
                                    reply,
                                    leadership,
                                },
                            );
                        }
                        Err(e) => {
                            let _ = reply.send(Err(e));
                        }
                    }
                }
                Request::Unreachable(peer) => node.report_unreachable(peer),
                Request::Stop => stop = true,
            }
        }
        if stop {
            break None;
        }
        let now = Instant::now();
        if now >= next_tick {
            node.tick();
            // After a stall, tick once and resume the cadence rather than
            // firing a burst of ticks that would trip election timeouts.
            next_tick = (next_tick + tick).max(now);
        }
        let output = match node.process_ready() {
            Ok(output) => output,
            Err(e) => break Some(e.to_string()),
        };
        peers.send(output.messages);
        if !output.applied.is_empty() || output.restored {
            // Published before the proposers hear back: one that reads the
            // metadata on its answer sees its entry applied (the ISR
            // reporter settles its proposal from it).
            metadata_tx.send_replace(Arc::new(node.metadata().clone()));
            for applied in &output.applied {
                if applied.proposal.node != node.id() {
                    continue;
                }
                if let Some(PendingProposal { reply, .. }) = pending.remove(&applied.proposal.seq) {
                    let _ = reply.send(
                        applied
                            .result
                            .clone()
                            .map(|()| applied.index)
                            .map_err(ClusterError::Refused),
                    );
                }
            }
        }
        // Proposers that gave up waiting leave a closed reply behind.
        pending.retain(|_, proposal| !proposal.reply.is_closed());
        propose_again_under_a_new_leader(&mut node, &mut pending);
        if node.is_leader() {
            let now = Instant::now();
            for peer in node.recently_active_peers() {
                last_active.insert(peer, now);
            }
        } else {
            last_active.clear();
        }
        let view = view_of(&node, None, &last_active);
        view_tx.send_if_modified(|current| {
            let changed = *current != view;
            *current = view;
            changed
        });
    };
    if let Some(reason) = &failure {
        tracing::error!(node_id = node.id(), error = %reason, "metadata quorum stopped");
    }
    let view = view_of(&node, failure.clone(), &HashMap::new());
    view_tx.send_replace(view);
    for (_, proposal) in pending {
        let _ = proposal.reply.send(Err(ClusterError::Stopped));
    }
}

fn leadership_of(node: &QuorumNode) -> Leadership {
    (node.term(), node.leader_id())
}

/// Proposes again, under the same id, what was proposed under another term or leader and has
/// not applied. If the first proposal commits after all, both apply: commands are written to
/// be safe to apply twice, and the proposer hears of the first. Until a leader is known Raft
/// drops proposals, so those wait for one.
fn propose_again_under_a_new_leader(
    node: &mut QuorumNode,
    pending: &mut HashMap<u64, PendingProposal>,
) {
    let now = leadership_of(node);
    if now.1.is_none() {
        return;
    }
    for (&seq, proposal) in pending.iter_mut() {
        if proposal.leadership == now {
            continue;
        }
        let id = ProposalId {
            node: node.id(),
            seq,
        };
        match node.propose(id, &proposal.command) {
            Ok(()) => {
                tracing::debug!(
                    node_id = node.id(),
                    seq,
                    "proposed again under a new leader"
                );
                proposal.leadership = now;
            }
            // Tried again at the next round.
            Err(e) => {
                tracing::debug!(node_id = node.id(), seq, error = %e, "proposing again failed")
            }
        }
    }
}
