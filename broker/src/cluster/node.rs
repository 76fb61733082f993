//! `QuorumNode`: one broker's member of the metadata quorum, without I/O of
//! its own beyond the metadata log file. It owns the Raft core (raft-rs
//! `RawNode`), the log file and the applied `ClusterMetadata`; whoever drives
//! it (the quorum task, or a test's simulated network) feeds it ticks,
//! messages and proposals, and carries the messages it hands back.
//!
//! The order in [`QuorumNode::process_ready`] is Raft's persistence rule:
//! a snapshot from the leader, then new entries and the hard state reach the
//! disk (fsync) before any message that depends on them (votes, append
//! acknowledgements) is handed out.
//!
//! Every [`SNAPSHOT_ENTRIES_DEFAULT`] applied entries the node snapshots its
//! metadata and compacts the log (`RaftFile::compact`); a follower that
//! needs entries the leader compacted is sent the leader's snapshot instead.

use std::collections::HashMap;
use std::path::Path;

use raft::eraftpb::{ConfState, Entry, EntryType, HardState, Message, MessageType, Snapshot};
use raft::{Config, ProgressState, RawNode, SnapshotStatus, StateRole, Storage};
use serde::{Deserialize, Serialize};

use super::metadata::{ClusterMetadata, MetadataCommand, MetadataRefusal, NodeId};
use super::raft_file::RaftFile;
use super::snapshot;
use super::storage::LogStorage;
use super::ClusterError;

/// Raft timing in ticks of [`TICK_MS`]: a follower campaigns after 1–2 s
/// without a leader (raft-rs randomises within [election, 2 × election)),
/// and a leader heartbeats every 100 ms.
pub const TICK_MS: u64 = 50;
const ELECTION_TICKS: usize = 20;
const HEARTBEAT_TICKS: usize = 2;

/// Entries applied between two snapshots (and so at most this many entries,
/// plus those not yet applied, in the metadata log). Kafka's KRaft snapshots
/// by bytes (`metadata.log.max.record.bytes.between.snapshots`, 20 MiB); a
/// metadata entry here is a few hundred bytes, so this is of that order.
pub const SNAPSHOT_ENTRIES_DEFAULT: u64 = 10_000;

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
    /// The metadata was replaced by a snapshot from the leader: the entries
    /// it covers are not in `applied` (a proposal among them is never
    /// answered here; its proposer times out, as when its entry is lost).
    pub restored: bool,
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
    /// The index of the last snapshot; the log holds only the entries after it.
    pub snapshot_index: u64,
    /// Snapshots installed from a leader since this member started.
    pub snapshots_installed: u64,
}

pub struct QuorumNode {
    id: NodeId,
    raw: RawNode<LogStorage>,
    file: RaftFile,
    metadata: ClusterMetadata,
    voters: Vec<NodeId>,
    /// The commit index found on disk at open: until the metadata is applied
    /// that far, it is older than what this broker already knew.
    recovered_commit: u64,
    snapshot_entries: u64,
    /// Ticks each follower has waited, as leader, for the answer to a snapshot.
    snapshot_wait_ticks: HashMap<NodeId, usize>,
    snapshots_installed: u64,
}

impl QuorumNode {
    /// Opens the metadata log under `dir` and starts a Raft member `id` of the
    /// fixed voter set `voters` (every broker of the cluster, the same list on
    /// each), which snapshots every `snapshot_entries` applied entries. The
    /// snapshot found on disk is loaded before this returns; the committed
    /// entries after it apply at the first [`QuorumNode::process_ready`].
    pub fn open(
        dir: &Path,
        id: NodeId,
        voters: &[NodeId],
        snapshot_entries: u64,
    ) -> Result<QuorumNode, ClusterError> {
        debug_assert!(voters.contains(&id));
        debug_assert!(snapshot_entries > 0);
        let (file, recovered) = RaftFile::open(dir)?;
        if recovered.cut_bytes > 0 {
            tracing::warn!(
                node_id = id,
                cut_bytes = recovered.cut_bytes,
                entries = recovered.entries.len(),
                "the metadata log had a torn tail (a crash before its fsync)"
            );
        }
        let voters_conf = ConfState::from((voters.to_vec(), vec![]));
        let mut storage = LogStorage::new(voters_conf.clone());
        let mut metadata = ClusterMetadata::default();
        let mut hard_state = recovered.hard_state.clone();
        if let Some(loaded) = recovered.snapshot {
            let (index, term) = (loaded.index(), loaded.term());
            let mut snapshot_voters = loaded.raft.get_metadata().get_conf_state().voters.clone();
            snapshot_voters.sort_unstable();
            let mut configured = voters.to_vec();
            configured.sort_unstable();
            if snapshot_voters != configured {
                tracing::warn!(
                    node_id = id,
                    ?snapshot_voters,
                    ?voters,
                    "the metadata snapshot names other voters than --peers; going by --peers"
                );
            }
            storage.apply_snapshot(loaded.raft);
            storage.set_conf_state(voters_conf);
            metadata = loaded.metadata;
            // The snapshot is committed, and its term was reached. A term
            // raised here had no vote cast in it: a vote is fsynced before it
            // is sent, with its term.
            hard_state.commit = hard_state.commit.max(index);
            if hard_state.term < term {
                hard_state.term = term;
                hard_state.vote = raft::INVALID_ID;
            }
            tracing::info!(
                node_id = id,
                snapshot_index = index,
                entries = recovered.entries.len(),
                "loaded the metadata snapshot"
            );
        }
        storage.append(&recovered.entries);
        // A commit index past the entries that survived cannot be trusted.
        let last = storage
            .last_index()
            .map_err(|e| ClusterError::Raft(e.to_string()))?;
        hard_state.commit = hard_state.commit.min(last);
        let recovered_commit = hard_state.commit;
        storage.set_hard_state(hard_state);
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
            metadata,
            voters: voters.to_vec(),
            recovered_commit,
            snapshot_entries,
            snapshot_wait_ticks: HashMap::new(),
            snapshots_installed: 0,
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
        self.expire_snapshot_sends();
    }

    /// A leader that sent a follower a snapshot sends it nothing more until
    /// the follower answers. If the snapshot or the answer was lost, nothing
    /// would ever answer: after an election timeout the send counts as failed
    /// and Raft probes the follower again (etcd's transport reports a failed
    /// snapshot send instead; a lost message here shows only by its silence).
    fn expire_snapshot_sends(&mut self) {
        if !self.is_leader() {
            self.snapshot_wait_ticks.clear();
            return;
        }
        let waiting: Vec<NodeId> = self
            .raw
            .raft
            .prs()
            .iter()
            .filter(|(_, progress)| progress.state == ProgressState::Snapshot)
            .map(|(id, _)| *id)
            .collect();
        self.snapshot_wait_ticks
            .retain(|id, _| waiting.contains(id));
        for id in waiting {
            let ticks = self.snapshot_wait_ticks.entry(id).or_insert(0);
            *ticks += 1;
            if *ticks >= ELECTION_TICKS {
                self.snapshot_wait_ticks.remove(&id);
                self.raw.report_snapshot(id, SnapshotStatus::Failure);
            }
        }
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
        if message.get_msg_type() == MessageType::MsgSnapshot {
            // Checked before Raft takes it: once taken it must be installed.
            if let Err(reason) = snapshot::decode(message.get_snapshot(), Some(&self.voters)) {
                tracing::warn!(
                    from = message.from,
                    index = message.get_snapshot().get_metadata().index,
                    "dropping a metadata snapshot: {reason}"
                );
                return;
            }
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
            // Before the entries and hard state of this round, which follow it.
            self.install_snapshot(ready.snapshot().clone(), ready.hs())?;
            output.restored = true;
        }
        self.apply(ready.take_committed_entries(), &mut output)?;
        let entries = ready.take_entries();
        if !entries.is_empty() {
            self.file.append_entries(&entries)?;
            self.raw.mut_store().append(&entries);
        }
        if let Some(hard_state) = ready.hs() {
            self.persist_hard_state(hard_state.clone())?;
        }
        // The fsync that every vote and acknowledgement below stands on.
        self.file.sync()?;
        output.messages.extend(ready.take_persisted_messages());
        let mut light = self.raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            let mut hard_state = self.raw.store().hard_state().clone();
            hard_state.commit = commit;
            // Not fsynced: a lost commit index is learned again from the leader.
            self.persist_hard_state(hard_state)?;
        }
        output.messages.extend(light.take_messages());
        self.apply(light.take_committed_entries(), &mut output)?;
        self.raw.advance_apply();
        if self.metadata.applied_index >= self.raw.store().snapshot_index() + self.snapshot_entries
        {
            self.take_snapshot()?;
        }
        Ok(output)
    }

    fn persist_hard_state(&mut self, hard_state: HardState) -> Result<(), ClusterError> {
        self.file.write_hard_state(&hard_state)?;
        self.raw.mut_store().set_hard_state(hard_state);
        Ok(())
    }

    /// Replaces the log and the metadata with the leader's snapshot: the
    /// snapshot file first, then the log cut to it, then memory.
    fn install_snapshot(
        &mut self,
        snapshot: Snapshot,
        hard_state: Option<&HardState>,
    ) -> Result<(), ClusterError> {
        let (index, term) = (snapshot.get_metadata().index, snapshot.get_metadata().term);
        // `step` checked it; a failure here is this broker's own bug.
        let metadata = snapshot::decode(&snapshot, None).map_err(|reason| {
            ClusterError::Raft(format!("the metadata snapshot at index {index}: {reason}"))
        })?;
        debug_assert!(index >= self.metadata.applied_index);
        let mut hard_state = hard_state
            .cloned()
            .unwrap_or_else(|| self.raw.store().hard_state().clone());
        hard_state.commit = hard_state.commit.max(index);
        hard_state.term = hard_state.term.max(term);
        // No entry of this member's log survives: Raft sends a snapshot only
        // when the follower's log does not hold the entry at its index.
        self.file.compact(&snapshot, &[], &hard_state)?;
        let store = self.raw.mut_store();
        store.apply_snapshot(snapshot);
        store.set_hard_state(hard_state);
        self.metadata = metadata;
        self.snapshots_installed += 1;
        tracing::info!(
            node_id = self.id,
            snapshot_index = index,
            "installed the leader's metadata snapshot"
        );
        Ok(())
    }

    /// Snapshots the applied metadata and drops the log entries it covers.
    /// Called after the round's fsync, so the storage holds what the file does.
    fn take_snapshot(&mut self) -> Result<(), ClusterError> {
        let index = self.metadata.applied_index;
        let store = self.raw.store();
        let term = store
            .term(index)
            .map_err(|e| ClusterError::Raft(format!("term of applied entry {index}: {e}")))?;
        let mut snapshot = Snapshot {
            data: snapshot::encode_data(&self.metadata)?.into(),
            ..Default::default()
        };
        let meta = snapshot.mut_metadata();
        meta.index = index;
        meta.term = term;
        meta.set_conf_state(store.conf_state().clone());
        let later = store.entries_after(index).to_vec();
        let hard_state = store.hard_state().clone();
        self.file.compact(&snapshot, &later, &hard_state)?;
        self.raw.mut_store().compact(snapshot);
        tracing::info!(
            node_id = self.id,
            snapshot_index = index,
            entries_kept = later.len(),
            "snapshotted the metadata and compacted its log"
        );
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

    /// The Raft term this member is in.
    pub fn term(&self) -> u64 {
        self.raw.raft.term
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
            term: self.term(),
            is_leader: self.is_leader(),
            committed_index: self.raw.raft.raft_log.committed,
            applied_index: self.metadata.applied_index,
            snapshot_index: self.raw.store().snapshot_index(),
            snapshots_installed: self.snapshots_installed,
        }
    }
}
