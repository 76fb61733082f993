//! A seeded simulation of the metadata quorum: three real `QuorumNode`s
//! (real Raft core, real metadata log files) on a simulated network that
//! delays, drops, duplicates and reorders messages, cuts brokers off, and
//! crashes and restarts them. Every step checks Raft's safety properties; the
//! end checks that nothing a proposer saw applied was lost. Members snapshot
//! every [`SNAPSHOT_ENTRIES`] entries, so a member that comes back from a crash
//! is sometimes caught up by a snapshot rather than by entries.
//!
//! `WEIR_QUORUM_SIM_SEEDS=N` runs N seeds (the short default runs a few);
//! `WEIR_QUORUM_SIM_SEED=S` replays one. A failure names its seed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use raft::eraftpb::MessageType;
use weir_broker::cluster::{
    MetadataCommand, NodeId, PartitionAssignment, ProposalId, QuorumNode, RaftMessage as Message,
    TopicMetadata,
};

const VOTERS: [NodeId; 3] = [1, 2, 3];
const FAULT_STEPS: u64 = 2_500;
const QUIET_STEPS: u64 = 1_500;
/// Low, so that compaction and snapshot catch-up happen within a run.
const SNAPSHOT_ENTRIES: u64 = 20;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent_tenths: u64) -> bool {
        self.below(1000) < percent_tenths
    }
}

struct Sim {
    seed: u64,
    rng: Rng,
    now: u64,
    dirs: Vec<PathBuf>,
    _root: tempfile::TempDir,
    nodes: BTreeMap<NodeId, Option<QuorumNode>>,
    in_flight: Vec<(u64, Message)>,
    isolated: BTreeSet<NodeId>,
    leader_of_term: HashMap<u64, NodeId>,
    entry_at: BTreeMap<u64, ProposalId>,
    /// Proposals not yet seen applied by their proposer: (node, seq) -> topic.
    pending: HashMap<(NodeId, u64), String>,
    next_seq: HashMap<NodeId, u64>,
    /// Topics whose creation its proposer saw applied.
    acknowledged: Vec<String>,
    next_topic: u64,
    /// Whether `step` proposes now and then.
    proposing: bool,
    snapshot_entries: u64,
    /// Snapshots from a leader installed, per member.
    restores: BTreeMap<NodeId, u64>,
    /// Snapshot messages still to be lost on their way.
    snapshots_to_lose: u32,
}

impl Sim {
    fn new(seed: u64) -> Sim {
        Sim::with_snapshot_entries(seed, SNAPSHOT_ENTRIES)
    }

    fn with_snapshot_entries(seed: u64, snapshot_entries: u64) -> Sim {
        // tmpfs when there is one: the simulation fsyncs thousands of times.
        let root = match std::path::Path::new("/dev/shm").is_dir() {
            true => tempfile::tempdir_in("/dev/shm").unwrap(),
            false => tempfile::tempdir().unwrap(),
        };
        let dirs: Vec<PathBuf> = VOTERS
            .iter()
            .map(|id| root.path().join(format!("node-{id}")))
            .collect();
        let mut sim = Sim {
            seed,
            rng: Rng(seed),
            now: 0,
            dirs,
            _root: root,
            nodes: BTreeMap::new(),
            in_flight: Vec::new(),
            isolated: BTreeSet::new(),
            leader_of_term: HashMap::new(),
            entry_at: BTreeMap::new(),
            pending: HashMap::new(),
            next_seq: HashMap::new(),
            acknowledged: Vec::new(),
            next_topic: 0,
            proposing: true,
            snapshot_entries,
            restores: BTreeMap::new(),
            snapshots_to_lose: 0,
        };
        for id in VOTERS {
            sim.start(id);
        }
        sim
    }

    fn start(&mut self, id: NodeId) {
        let dir = &self.dirs[(id - 1) as usize];
        let node = QuorumNode::open(dir, id, &VOTERS, self.snapshot_entries)
            .unwrap_or_else(|e| panic!("seed {}: node {id} does not reopen: {e}", self.seed));
        self.nodes.insert(id, Some(node));
    }

    fn crash(&mut self, id: NodeId) {
        // Dropping the node loses everything it held in memory; its file keeps
        // what was written (the page cache survives a process crash).
        self.nodes.insert(id, None);
        // Its pending proposals have no one left to hear the outcome.
        self.pending.retain(|(node, _), _| *node != id);
    }

    fn live(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.is_some())
            .map(|(id, _)| *id)
            .collect()
    }

    fn step(&mut self, faults: bool) {
        self.now += 1;
        if faults {
            self.inject_faults();
        }
        // Deliver what is due.
        let now = self.now;
        let (due, later): (Vec<_>, Vec<_>) =
            self.in_flight.drain(..).partition(|(at, _)| *at <= now);
        self.in_flight = later;
        for (_, message) in due {
            let cut = self.isolated.contains(&message.from) || self.isolated.contains(&message.to);
            if cut || (faults && self.rng.chance(30)) {
                continue;
            }
            if self.snapshots_to_lose > 0 && message.get_msg_type() == MessageType::MsgSnapshot {
                self.snapshots_to_lose -= 1;
                continue;
            }
            if faults && self.rng.chance(20) {
                let again = self.now + 1 + self.rng.below(3);
                self.in_flight.push((again, message.clone()));
            }
            if let Some(Some(node)) = self.nodes.get_mut(&message.to) {
                node.step(message);
            }
        }
        // Propose now and then, on any live broker (followers forward).
        if self.proposing && self.rng.chance(100) {
            let live = self.live();
            if !live.is_empty() {
                let id = live[self.rng.below(live.len() as u64) as usize];
                self.propose(id);
            }
        }
        for id in self.live() {
            let node = self.nodes.get_mut(&id).unwrap().as_mut().unwrap();
            node.tick();
            let output = node
                .process_ready()
                .unwrap_or_else(|e| panic!("seed {}: node {id}: {e}", self.seed));
            for message in output.messages {
                let at = self.now + 1 + self.rng.below(3);
                self.in_flight.push((at, message));
            }
            if output.restored {
                *self.restores.entry(id).or_insert(0) += 1;
            }
            for applied in output.applied {
                // State machine safety: one entry per index, everywhere.
                let first = *self
                    .entry_at
                    .entry(applied.index)
                    .or_insert(applied.proposal);
                assert_eq!(
                    first, applied.proposal,
                    "seed {}: node {id} applied a different entry at index {}",
                    self.seed, applied.index
                );
                if applied.proposal.node == id {
                    if let Some(topic) = self.pending.remove(&(id, applied.proposal.seq)) {
                        if applied.result.is_ok() {
                            self.acknowledged.push(topic);
                        }
                    }
                }
            }
            let node = self.nodes[&id].as_ref().unwrap();
            let status = node.status();
            if status.is_leader {
                // Election safety: one leader per term.
                let leader = *self.leader_of_term.entry(status.term).or_insert(id);
                assert_eq!(
                    leader, id,
                    "seed {}: two leaders in term {}",
                    self.seed, status.term
                );
            }
            assert!(
                status.applied_index <= status.committed_index,
                "seed {}: node {id} applied past its commit index",
                self.seed
            );
        }
    }

    /// The live member that leads, if one does.
    fn leader(&self) -> Option<NodeId> {
        self.nodes
            .iter()
            .find(|(_, node)| node.as_ref().is_some_and(|n| n.is_leader()))
            .map(|(id, _)| *id)
    }

    /// Steps without faults until `done` holds (checked before each step), at
    /// most `steps_max` steps; says whether it held.
    fn run_until(&mut self, steps_max: u64, mut done: impl FnMut(&mut Sim) -> bool) -> bool {
        for _ in 0..steps_max {
            if done(self) {
                return true;
            }
            self.step(false);
        }
        done(self)
    }

    fn propose(&mut self, id: NodeId) {
        self.next_topic += 1;
        let topic = format!("t{}", self.next_topic);
        let seq = self.next_seq.entry(id).or_insert(0);
        *seq += 1;
        let proposal = ProposalId {
            node: id,
            seq: *seq,
        };
        let command = MetadataCommand::CreateTopic(TopicMetadata {
            name: topic.clone(),
            configs: BTreeMap::new(),
            partitions: vec![PartitionAssignment {
                replicas: vec![1, 2, 3],
                leader: Some(1),
                leader_epoch: 0,
                isr: vec![1, 2, 3],
                partition_epoch: 0,
            }],
        });
        let node = self.nodes.get_mut(&id).unwrap().as_mut().unwrap();
        if node.propose(proposal, &command).is_ok() {
            self.pending.insert((id, proposal.seq), topic);
        }
    }

    fn inject_faults(&mut self) {
        let live = self.live();
        // Crash a broker now and then, keeping at least one alive.
        if live.len() > 1 && self.rng.chance(4) {
            let id = live[self.rng.below(live.len() as u64) as usize];
            self.crash(id);
        }
        for id in VOTERS {
            if self.nodes[&id].is_none() && self.rng.chance(20) {
                // A restarted broker's sequence numbers start over; the
                // proposal ids of its earlier life must not collide.
                self.next_seq.insert(id, self.now * 1_000);
                self.start(id);
            }
        }
        if self.rng.chance(5) {
            let id = VOTERS[self.rng.below(3) as usize];
            self.isolated.insert(id);
        }
        if self.rng.chance(20) {
            self.isolated.clear();
        }
    }

    fn heal_and_settle(&mut self) {
        self.isolated.clear();
        for id in VOTERS {
            if self.nodes[&id].is_none() {
                self.next_seq.insert(id, self.now * 1_000);
                self.start(id);
            }
        }
        // Quiet at first, then without new proposals, so every broker
        // learns the last commit index.
        for i in 0..QUIET_STEPS {
            self.proposing = i < QUIET_STEPS / 2;
            self.step(false);
        }
    }
}

/// Runs one seed; returns how many snapshots members installed.
fn run_seed(seed: u64) -> u64 {
    let mut sim = Sim::new(seed);
    for _ in 0..FAULT_STEPS {
        sim.step(true);
    }
    sim.heal_and_settle();
    // Liveness after healing: a leader, and every broker applied the same state.
    let leaders: Vec<_> = VOTERS
        .iter()
        .filter(|id| sim.nodes[id].as_ref().unwrap().is_leader())
        .collect();
    assert_eq!(
        leaders.len(),
        1,
        "seed {seed}: no single leader after healing"
    );
    let metadata: Vec<_> = VOTERS
        .iter()
        .map(|id| sim.nodes[id].as_ref().unwrap().metadata().clone())
        .collect();
    assert!(
        metadata.windows(2).all(|w| w[0] == w[1]),
        "seed {seed}: brokers disagree after healing"
    );
    // Durability: nothing a proposer saw applied is gone, even after crashes.
    for topic in &sim.acknowledged {
        assert!(
            metadata[0].topics.contains_key(topic),
            "seed {seed}: acknowledged topic {topic} was lost"
        );
    }
    assert!(
        !sim.acknowledged.is_empty(),
        "seed {seed}: the simulation acknowledged nothing, so it tested nothing"
    );
    sim.restores.values().sum()
}

#[test]
fn quorum_keeps_one_leader_per_term_one_entry_per_index_and_every_acknowledged_change() {
    if let Some(seed) = std::env::var("WEIR_QUORUM_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        run_seed(seed);
        return;
    }
    let seeds: u64 = std::env::var("WEIR_QUORUM_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6);
    let mut restores = 0;
    for seed in 0..seeds {
        let installed = run_seed(seed);
        eprintln!("quorum simulation seed {seed}: {installed} snapshots installed");
        restores += installed;
    }
    assert!(
        restores > 0,
        "no member was caught up by a snapshot in {seeds} seeds, so that path went untested"
    );
}

#[test]
fn whole_cluster_restart_keeps_the_metadata() {
    let mut sim = Sim::new(99);
    sim.proposing = false;
    for _ in 0..200 {
        sim.step(false);
    }
    for id in VOTERS {
        sim.propose(id);
    }
    for _ in 0..200 {
        sim.step(false);
    }
    assert_eq!(sim.acknowledged.len(), 3, "three proposals applied");
    let before = sim.nodes[&1].as_ref().unwrap().metadata().clone();
    for id in VOTERS {
        sim.crash(id);
    }
    for id in VOTERS {
        sim.start(id);
    }
    // The commit index is on disk: each broker re-applies its log at once,
    // before any election.
    for id in VOTERS {
        let node = sim.nodes.get_mut(&id).unwrap().as_mut().unwrap();
        node.process_ready().unwrap();
        assert_eq!(
            node.metadata().topics,
            before.topics,
            "node {id} after restart"
        );
    }
}

/// Three members snapshotting every 10 entries; a follower stops, the
/// other two commit 40 topics, and both compact past everything it holds.
/// Returns the simulation and the stopped member.
fn cluster_compacted_past_a_stopped_member() -> (Sim, NodeId) {
    let mut sim = Sim::with_snapshot_entries(7, 10);
    sim.proposing = false;
    let leader = sim.run_until(1_000, |sim| sim.leader().is_some());
    assert!(leader, "a leader is elected");
    let stopped = VOTERS
        .into_iter()
        .find(|id| Some(*id) != sim.leader())
        .unwrap();
    let stopped_applied = sim.nodes[&stopped].as_ref().unwrap().status().applied_index;
    sim.crash(stopped);
    // One at a time through whoever leads, so none is lost to an election.
    for n in 1..=40 {
        let proposed = sim.run_until(1_000, |sim| {
            if sim.acknowledged.len() == n {
                return true;
            }
            if sim.pending.is_empty() {
                if let Some(leader) = sim.leader() {
                    sim.propose(leader);
                }
            }
            false
        });
        assert!(proposed, "proposal {n} applied");
    }
    for id in VOTERS.into_iter().filter(|id| *id != stopped) {
        let status = sim.nodes[&id].as_ref().unwrap().status();
        assert!(
            status.snapshot_index > stopped_applied + 10,
            "member {id} compacted past member {stopped}: {status:?}"
        );
    }
    (sim, stopped)
}

#[test]
fn a_member_that_missed_compacted_entries_catches_up_through_a_snapshot() {
    let (mut sim, stopped) = cluster_compacted_past_a_stopped_member();
    let leader = sim.leader().unwrap();
    let expected = sim.nodes[&leader].as_ref().unwrap().metadata().clone();
    // The first snapshot sent is lost: the leader must notice and send again.
    sim.snapshots_to_lose = 1;
    sim.start(stopped);
    let caught_up = sim.run_until(2_000, |sim| {
        sim.nodes[&stopped].as_ref().unwrap().metadata().topics == expected.topics
    });
    assert!(caught_up, "member {stopped} caught up");
    assert_eq!(sim.snapshots_to_lose, 0, "a snapshot was sent and lost");
    assert!(
        sim.restores.get(&stopped).copied().unwrap_or(0) >= 1,
        "member {stopped} installed a snapshot: {:?}",
        sim.restores
    );
    // It goes on taking entries after the snapshot, and all agree.
    sim.propose(stopped);
    let applied = sim.run_until(1_000, |sim| {
        let metadata: Vec<_> = VOTERS
            .iter()
            .map(|id| sim.nodes[id].as_ref().unwrap().metadata().clone())
            .collect();
        metadata[0].topics.len() == expected.topics.len() + 1
            && metadata.windows(2).all(|w| w[0] == w[1])
    });
    assert!(
        applied,
        "a proposal after the snapshot applied everywhere alike"
    );
}

#[test]
fn whole_cluster_restart_after_compaction_keeps_the_metadata() {
    let (mut sim, stopped) = cluster_compacted_past_a_stopped_member();
    sim.start(stopped);
    let leader = sim.leader().unwrap();
    let before = sim.nodes[&leader].as_ref().unwrap().metadata().clone();
    assert_eq!(before.topics.len(), 40);
    let caught_up = sim.run_until(2_000, |sim| {
        sim.nodes[&stopped].as_ref().unwrap().metadata().topics == before.topics
    });
    assert!(caught_up, "member {stopped} caught up");
    for id in VOTERS {
        sim.crash(id);
    }
    for id in VOTERS {
        sim.start(id);
        let node = sim.nodes.get_mut(&id).unwrap().as_mut().unwrap();
        assert!(
            node.status().snapshot_index > 0,
            "member {id} has a snapshot"
        );
        node.process_ready().unwrap();
        assert_eq!(
            node.metadata().topics,
            before.topics,
            "member {id} after restart"
        );
    }
    // And the restarted cluster still commits.
    let committed = sim.run_until(2_000, |sim| {
        if sim.acknowledged.len() == 41 {
            return true;
        }
        if sim.pending.is_empty() {
            if let Some(leader) = sim.leader() {
                sim.propose(leader);
            }
        }
        false
    });
    assert!(committed, "a proposal after the restart applied");
}
