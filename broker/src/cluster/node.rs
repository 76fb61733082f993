//! `QuorumNode`: one broker's member of the metadata quorum, without I/O of
//! its own beyond the metadata log file. It owns the Raft core (raft-rs
//! `RawNode`), the log file and the applied `ClusterMetadata`; whoever drives
//! it (the quorum task, or a test's simulated network) feeds it ticks,
//! messages and proposals, and carries the messages it hands back.
//!
//! The order in [`QuorumNode::process_ready`] is Raft's persistence rule:
//! new entries and the hard state reach the disk (fsync) before any message
//! that depends on them (votes, append acknowledgements) is handed out.

use std::path::Path;

use raft::eraftpb::{ConfState, Entry, EntryType, HardState, Message};
use raft::storage::MemStorage;
use raft::{Config, RawNode, StateRole};
use serde::{Deserialize, Serialize};

use super::metadata::{ClusterMetadata, MetadataCommand, MetadataRefusal, NodeId};
use super::raft_file::RaftFile;
use super::ClusterError;

/// Raft timing in ticks of [`TICK_MS`]: a follower campaigns after 1–2 s
/// without a leader (raft-rs randomises within [election, 2 × election)),
/// and a leader heartbeats every 100 ms.
pub const TICK_MS: u64 = 50;
const ELECTION_TICKS: usize = 20;
const HEARTBEAT_TICKS: usize = 2;

/// Tells a proposer's own broker which of its proposals an entry carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProposalId {
    pub node: NodeId,
    pub seq: u64,
}

#[derive(Serialize, Deserialize)]
struct EntryPayload {
    proposal: ProposalId,
    command: MetadataCommand,
}

/// One committed entry, applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub index: u64,
    pub proposal: ProposalId,
    pub result: Result<(), MetadataRefusal>,
}

/// What one round of [`QuorumNode::process_ready`] produced.
#[derive(Debug, Default)]
pub struct ReadyOutput {
    /// To be delivered to other members (each names its `to`).
    pub messages: Vec<Message>,
    pub applied: Vec<Applied>,
}

/// Where the node stands, for status pages and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuorumStatus {
    pub node_id: NodeId,
    pub leader_id: Option<NodeId>,
    pub term: u64,
    pub is_leader: bool,
    pub committed_index: u64,
    pub applied_index: u64,
}

pub struct QuorumNode {
    id: NodeId,
    raw: RawNode<MemStorage>,
    file: RaftFile,
    metadata: ClusterMetadata,
    voters: Vec<NodeId>,
    /// The commit index found on disk at open: until the metadata is applied
    /// that far, it is older than what this broker already knew.
    recovered_commit: u64,
}

impl QuorumNode {
    /// Opens the metadata log under `dir` and starts a Raft member `id` of the
    /// fixed voter set `voters` (every broker of the cluster, the same list on
    /// each). Committed entries found on disk are applied before this returns.
    pub fn open(dir: &Path, id: NodeId, voters: &[NodeId]) -> Result<QuorumNode, ClusterError> {
        debug_assert!(voters.contains(&id));
        let (file, recovered) = RaftFile::open(dir)?;
        if recovered.cut_bytes > 0 {
            tracing::warn!(
                node_id = id,
                cut_bytes = recovered.cut_bytes,
                entries = recovered.entries.len(),
                "the metadata log had a torn tail (a crash before its fsync)"
            );
        }
        let storage = MemStorage::new();
        let recovered_commit;
        {
            let mut core = storage.wl();
            core.set_conf_state(ConfState::from((voters.to_vec(), vec![])));
            core.append(&recovered.entries)
                .map_err(|e| ClusterError::Raft(e.to_string()))?;
            let mut hard_state = recovered.hard_state.clone();
            // A commit index past the entries that survived cannot be trusted.
            let last = recovered.entries.last().map_or(0, |e| e.index);
            hard_state.commit = hard_state.commit.min(last);
            recovered_commit = hard_state.commit;
            core.set_hardstate(hard_state);
        }
        let config = Config {
            id,
            election_tick: ELECTION_TICKS,
            heartbeat_tick: HEARTBEAT_TICKS,
            // Pre-vote: a member cut off from the others does not raise its
            // term and disrupt the leader when it comes back. Check-quorum: a
            // leader that cannot hear a majority steps down, so clients stop
            // being told it leads.
            pre_vote: true,
            check_quorum: true,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            applied: 0,
            ..Default::default()
        };
        config
            .validate()
            .map_err(|e| ClusterError::Raft(e.to_string()))?;
        let raw = RawNode::new(&config, storage, &super::raft_logger(id))
            .map_err(|e| ClusterError::Raft(e.to_string()))?;
        let mut node = QuorumNode {
            id,
            raw,
            file,
            metadata: ClusterMetadata::default(),
            voters: voters.to_vec(),
            recovered_commit,
        };
        if node.voters.len() == 1 {
            // A one-broker cluster elects itself at once: no election timeout
            // to wait through at start.
            node.raw
                .campaign()
                .map_err(|e| ClusterError::Raft(e.to_string()))?;
        }
        Ok(node)
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The commit index the metadata log held at open.
    pub fn recovered_commit(&self) -> u64 {
        self.recovered_commit
    }

    pub fn voters(&self) -> &[NodeId] {
        &self.voters
    }

    /// Advances Raft's logical clock by one [`TICK_MS`].
    pub fn tick(&mut self) {
        self.raw.tick();
    }

    /// Takes a message from another member. Messages from outside the voter
    /// set, or malformed for the current state, are dropped: Raft copes with
    /// lost messages, and a peer cannot make this broker fail.
    pub fn step(&mut self, message: Message) {
        if !self.voters.contains(&message.from) || message.to != self.id {
            tracing::debug!(
                from = message.from,
                to = message.to,
                "dropping a misaddressed quorum message"
            );
            return;
        }
        if let Err(e) = self.raw.step(message) {
            tracing::debug!(error = %e, "quorum message not taken");
        }
    }

    /// Appends `command` to the metadata log: here if this member leads,
    /// else Raft forwards it to the leader (and it is lost if the leader does
    /// not get it: the proposer learns of that only by waiting). The outcome
    /// arrives as an [`Applied`] with this `proposal` once committed.
    pub fn propose(
        &mut self,
        proposal: ProposalId,
        command: &MetadataCommand,
    ) -> Result<(), ClusterError> {
        let data = serde_json::to_vec(&EntryPayload {
            proposal,
            command: command.clone(),
        })
        .map_err(|e| ClusterError::Raft(e.to_string()))?;
        self.raw.propose(vec![], data).map_err(|e| match e {
            raft::Error::ProposalDropped => ClusterError::NotController {
                controller: self.leader_id(),
            },
            other => ClusterError::Raft(other.to_string()),
        })
    }

    /// Tells Raft a peer could not be reached, so the leader probes it
    /// instead of streaming to it.
    pub fn report_unreachable(&mut self, peer: NodeId) {
        self.raw.report_unreachable(peer);
    }

    pub fn has_ready(&self) -> bool {
        self.raw.has_ready()
    }

    /// Persists, applies and hands out whatever Raft has ready.
    pub fn process_ready(&mut self) -> Result<ReadyOutput, ClusterError> {
        let mut output = ReadyOutput::default();
        if !self.raw.has_ready() {
            return Ok(output);
        }
        let mut ready = self.raw.ready();
        // Messages that do not depend on this round's writes (a leader's
        // appends to followers) may leave before the fsync: Raft's leader
        // persists in parallel with replication.
        output.messages.extend(ready.take_messages());
        if !ready.snapshot().is_empty() {
            // Nothing compacts the metadata log yet, so no member has a
            // snapshot to send; one arriving means a broker from a newer
            // version.
            return Err(ClusterError::Raft(
                "received a metadata snapshot, which this broker cannot install".into(),
            ));
        }
        self.apply(ready.take_committed_entries(), &mut output)?;
        let entries = ready.take_entries();
        if !entries.is_empty() {
            self.file.append_entries(&entries)?;
            self.raw
                .mut_store()
                .wl()
                .append(&entries)
                .map_err(|e| ClusterError::Raft(e.to_string()))?;
        }
        if let Some(hard_state) = ready.hs() {
            self.persist_hard_state(hard_state.clone())?;
        }
        // The fsync that every vote and acknowledgement below stands on.
        self.file.sync()?;
        output.messages.extend(ready.take_persisted_messages());
        let mut light = self.raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            let mut hard_state = self.raw.store().rl().hard_state().clone();
            hard_state.commit = commit;
            // Not fsynced: a lost commit index is learned again from the leader.
            self.persist_hard_state(hard_state)?;
        }
        output.messages.extend(light.take_messages());
        self.apply(light.take_committed_entries(), &mut output)?;
        self.raw.advance_apply();
        Ok(output)
    }

    fn persist_hard_state(&mut self, hard_state: HardState) -> Result<(), ClusterError> {
        self.file.write_hard_state(&hard_state)?;
        self.raw.mut_store().wl().set_hardstate(hard_state);
        Ok(())
    }

    fn apply(&mut self, entries: Vec<Entry>, output: &mut ReadyOutput) -> Result<(), ClusterError> {
        for entry in entries {
            if entry.get_entry_type() != EntryType::EntryNormal || entry.data.is_empty() {
                // A new leader's empty entry, or a configuration change (the
                // voter set is fixed, so none is ever proposed).
                self.metadata.skip(entry.index);
                continue;
            }
            let payload: EntryPayload = serde_json::from_slice(&entry.data).map_err(|e| {
                ClusterError::Raft(format!(
                    "metadata log entry {} does not decode: {e}",
                    entry.index
                ))
            })?;
            let result = self.metadata.apply(entry.index, &payload.command);
            output.applied.push(Applied {
                index: entry.index,
                proposal: payload.proposal,
                result,
            });
        }
        Ok(())
    }

    pub fn metadata(&self) -> &ClusterMetadata {
        &self.metadata
    }

    pub fn leader_id(&self) -> Option<NodeId> {
        match self.raw.raft.leader_id {
            raft::INVALID_ID => None,
            id => Some(id),
        }
    }

    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    /// Peers the leader has heard from within the last election timeout
    /// (Raft's check-quorum bookkeeping); empty when this member does not lead.
    pub fn recently_active_peers(&self) -> Vec<NodeId> {
        if !self.is_leader() {
            return Vec::new();
        }
        self.raw
            .raft
            .prs()
            .iter()
            .filter(|(_, progress)| progress.recent_active)
            .map(|(id, _)| *id)
            .collect()
    }

    pub fn status(&self) -> QuorumStatus {
        QuorumStatus {
            node_id: self.id,
            leader_id: self.leader_id(),
            term: self.raw.raft.term,
            is_leader: self.is_leader(),
            committed_index: self.raw.raft.raft_log.committed,
            applied_index: self.metadata.applied_index,
        }
    }
}
