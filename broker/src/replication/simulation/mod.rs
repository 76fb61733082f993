//! A seeded simulation of partition replication: three real `Partition`
//! replicas (real log files) driven by a seeded RNG. Producers append to
//! whoever leads (a deposed leader too, until it learns), followers fetch with
//! `read_for_follower` / `append_from_leader` and run KIP-279 truncation with
//! `epoch_end_for_follower` / `truncate_by_leader_epoch` over a network that
//! delays, drops, duplicates and reorders answers (`fetcher.rs`); leaders
//! propose ISR changes (`isr_change`) and a controller applies the real
//! `leadership_changes` through a metadata log (the real
//! `ClusterMetadata::apply`) that each broker applies at its own pace
//! (`metadata.rs`); brokers crash (the `Partition` is dropped, not closed)
//! and reopen their directory; fetchers stall long enough to leave the ISR.
//! `acks=all` is decided by the real `wait_replicated`.
//!
//! After every step `checks.rs` asserts the invariants; a failure names the
//! seed. `WEIR_REPLICATION_SIM_SEEDS=N` runs N seeds (8 by default),
//! `WEIR_REPLICATION_SIM_SEED=S` replays one, `WEIR_REPLICATION_SIM_TRACE=1`
//! prints what each step did. Regression seeds: 0 (a restarted replica took
//! its log end as its high watermark), 17 (a leader forgot an ISR change
//! whose commit timed out, and it committed later, behind the high
//! watermark), and 108 and 122 (the controller's change dropping a dead
//! broker, computed from the metadata it had applied, committed just after
//! the leader's own shrink and put back the replica the leader dropped,
//! behind the high watermark; changes now name the partition epoch they were
//! computed from).
//!
//! It lives inside the crate because the replica's side of replication is
//! crate-private; the fetcher's glue (`fetch.rs`) and the applier's role
//! changes (`manager::reconcile`) are async tasks around a `Broker`, so their
//! few decisions are mirrored here, rule for rule, in `fetcher.rs` and
//! `Sim::reconcile`.

mod checks;
mod fetcher;
mod metadata;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::BytesMut;
use weir_log::batch::{BatchBuilder, BatchHeader, Compression};
use weir_log::LogConfig;

use super::role::RoleKind;
use crate::clock::{Clock, ManualClock};
use crate::cluster::{
    BrokerRecord, ClusterMetadata, MetadataCommand, NodeId, PartitionAssignment, TopicMetadata,
};
use crate::error::BrokerError;
use crate::partition::Partition;
use checks::Checker;
use fetcher::Message;
use metadata::{Entry, IsrWait, Proposal, Proposer};

const NODES: [NodeId; 3] = [1, 2, 3];
const TOPIC: &str = "sim";
/// Simulated milliseconds per step.
const STEP_MS: i64 = 10;
/// `replica.lag.time.max.ms`, scaled to the simulation: 40 steps.
const LAG_TIME_MAX_MS: i64 = 400;
/// The controller counts a crashed broker dead after this long.
const SESSION_MS: i64 = 300;
/// An `acks=all` produce not replicated within this many steps timed out.
const ACK_TIMEOUT_STEPS: u64 = 150;
const MIN_INSYNC_REPLICAS: usize = 2;
const FAULT_STEPS: u64 = 2_000;
const QUIET_STEPS: u64 = 1_000;

/// `WEIR_REPLICATION_SIM_TRACE=1` prints what each step did, to follow a failing seed.
fn tracing_on() -> bool {
    std::env::var_os("WEIR_REPLICATION_SIM_TRACE").is_some()
}

macro_rules! trace {
    ($sim:expr, $($arg:tt)*) => {
        if tracing_on() {
            eprintln!("[{}] {}", $sim.step, format_args!($($arg)*));
        }
    };
}
pub(super) use trace;

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

    fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
        (!items.is_empty()).then(|| items[self.below(items.len() as u64) as usize])
    }
}

/// An `acks=all` produce waiting for its answer.
struct PendingAck {
    base_offset: u64,
    last_offset: u64,
    /// The batch's CRC-32C, which covers its records but not the offset
    /// and epoch the leader writes into it.
    crc: u32,
    leader_epoch: i32,
    sent: u64,
}

struct Node {
    id: NodeId,
    dir: PathBuf,
    /// `None` while crashed.
    partition: Option<Partition>,
    /// Incremented by every crash: answers to an earlier life are dropped
    /// with its connections, and its waiters are gone.
    life: u64,
    /// Metadata log entries applied here (the log survives crashes).
    applied: usize,
    /// Where this life's registration landed in the metadata log.
    registration: Option<usize>,
    down_since_ms: Option<i64>,
    /// A stalled fetcher (a SIGSTOPped process, a slow disk): no fetch until then.
    paused_until: u64,
    isr_wait: Option<IsrWait>,
    acks: Vec<PendingAck>,
    /// Per leader fetched from: the outstanding request's id and step.
    fetchers: BTreeMap<NodeId, (u64, u64)>,
}

impl Node {
    fn registered(&self) -> bool {
        self.registration.is_some_and(|at| self.applied > at)
    }
}

struct Sim {
    seed: u64,
    rng: Rng,
    step: u64,
    clock: Arc<ManualClock>,
    config: LogConfig,
    runtime: tokio::runtime::Runtime,
    _root: tempfile::TempDir,
    nodes: BTreeMap<NodeId, Node>,
    metadata_log: Vec<Entry>,
    proposals: Vec<Proposal>,
    /// Landed ISR proposals: reporter id -> entry index.
    landed: BTreeMap<u64, usize>,
    next_id: u64,
    network: Vec<(u64, Message)>,
    checker: Checker,
    /// Whether faults (crashes, pauses, drops, duplicates) happen.
    faults: bool,
    producing: bool,
    produced_records: u64,
}

impl Sim {
    fn new(seed: u64) -> Sim {
        // tmpfs when there is one: the simulation writes and truncates often.
        let root = match std::path::Path::new("/dev/shm").is_dir() {
            true => tempfile::tempdir_in("/dev/shm").unwrap(),
            false => tempfile::tempdir().unwrap(),
        };
        let config = LogConfig {
            // Small segments, so appends roll and truncations cross segments.
            segment_bytes: 4 * 1024,
            index_interval_bytes: 256,
            // Preallocated per segment: the default 10 MiB would make every roll cost more
            // than the rest of a step.
            index_bytes_max: 1024,
            ..LogConfig::default()
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let mut sim = Sim {
            seed,
            rng: Rng(seed),
            step: 0,
            clock: Arc::new(ManualClock::new(1_700_000_000_000)),
            config,
            runtime,
            nodes: BTreeMap::new(),
            metadata_log: Vec::new(),
            proposals: Vec::new(),
            landed: BTreeMap::new(),
            next_id: 0,
            network: Vec::new(),
            checker: Checker::new(seed),
            faults: true,
            producing: true,
            produced_records: 0,
            _root: root,
        };
        // The cluster as it is once the topic's creation applied everywhere.
        let mut state = ClusterMetadata::default();
        let mut commands: Vec<MetadataCommand> = NODES
            .iter()
            .map(|&id| {
                MetadataCommand::RegisterBroker(BrokerRecord {
                    node_id: id,
                    address: format!("127.0.0.1:{}", 9300 + id),
                    kafka_address: None,
                })
            })
            .collect();
        commands.push(MetadataCommand::CreateTopic(TopicMetadata {
            name: TOPIC.into(),
            configs: BTreeMap::new(),
            partitions: vec![PartitionAssignment {
                replicas: NODES.to_vec(),
                leader: Some(NODES[0]),
                leader_epoch: 0,
                isr: NODES.to_vec(),
                partition_epoch: 0,
            }],
        }));
        for (index, command) in commands.iter().enumerate() {
            state.apply(index as u64 + 1, command).unwrap();
            sim.metadata_log.push(Entry {
                result: Ok(()),
                state: state.clone(),
            });
        }
        for id in NODES {
            let dir = sim._root.path().join(format!("node-{id}"));
            let node = Node {
                id,
                dir,
                partition: None,
                life: 0,
                applied: sim.metadata_log.len(),
                registration: Some(id as usize - 1),
                down_since_ms: None,
                paused_until: 0,
                isr_wait: None,
                acks: Vec::new(),
                fetchers: BTreeMap::new(),
            };
            sim.nodes.insert(id, node);
            sim.open(id);
        }
        sim
    }

    fn fail(&self, what: std::fmt::Arguments<'_>) -> ! {
        panic!(
            "seed {} step {}: {what}\nreplay: WEIR_REPLICATION_SIM_SEED={} cargo test -p weir-broker --lib replication::simulation",
            self.seed, self.step, self.seed
        )
    }

    /// Opens node `id`'s replica from its directory, as a broker does at
    /// start: a replica of a cluster topic follows no one until the
    /// metadata says otherwise (`Broker::create_from_record`).
    fn open(&mut self, id: NodeId) {
        let node = &self.nodes[&id];
        let epoch = self.state_of(node).leader_epoch;
        let opened = Partition::open_replica(
            &node.dir,
            TOPIC,
            0,
            self.config.clone(),
            epoch,
            self.clock.clone(),
        );
        let partition = match opened {
            Ok(partition) => partition,
            Err(error) => self.fail(format_args!("node {id} does not reopen: {error}")),
        };
        let node = self.nodes.get_mut(&id).unwrap();
        node.partition = Some(partition);
        node.down_since_ms = None;
        self.checker.reopened(id, node.partition.as_ref().unwrap());
    }

    fn state_of(&self, node: &Node) -> PartitionAssignment {
        self.metadata_log[node.applied - 1].state.topics[TOPIC].partitions[0].clone()
    }

    /// The metadata log index node's applied state is as of.
    fn metadata_index(&self, node: &Node) -> u64 {
        self.metadata_log[node.applied - 1].state.applied_index
    }

    fn committed_state(&self) -> &ClusterMetadata {
        &self.metadata_log.last().unwrap().state
    }

    fn live(&self) -> Vec<NodeId> {
        self.nodes
            .values()
            .filter(|n| n.partition.is_some())
            .map(|n| n.id)
            .collect()
    }

    fn run_step(&mut self) {
        self.step += 1;
        self.clock.advance(STEP_MS);
        if self.faults {
            self.inject_faults();
        }
        self.land_proposals();
        for id in self.live() {
            self.apply_metadata(id);
        }
        self.controller();
        for id in self.live() {
            self.report_isr_change(id);
        }
        if self.producing && self.rng.chance(400) {
            self.produce();
        }
        self.resolve_acks();
        for id in self.live() {
            self.fetch_round(id);
        }
        self.deliver();
        let nodes = &self.nodes;
        let state = self.metadata_log.last().unwrap().state.topics[TOPIC].partitions[0].clone();
        self.checker.check(self.step, nodes, &state);
    }

    fn inject_faults(&mut self) {
        let live = self.live();
        if live.len() > 1 && self.rng.chance(6) {
            let id = self.rng.pick(&live).unwrap();
            self.crash(id);
        }
        for id in NODES {
            if self.nodes[&id].partition.is_none() && self.rng.chance(15) {
                self.restart(id);
            }
        }
        if self.rng.chance(5) {
            if let Some(id) = self.rng.pick(&live) {
                let steps = 20 + self.rng.below(100);
                self.nodes.get_mut(&id).unwrap().paused_until = self.step + steps;
            }
        }
    }

    /// Drops the replica without closing it: what was written stays in the
    /// files (the page cache survives a process crash), everything in memory
    /// (role, tracker, waiters) is gone.
    fn crash(&mut self, id: NodeId) {
        trace!(self, "node {id} crashes");
        let now_ms = self.clock.now_ms();
        let node = self.nodes.get_mut(&id).unwrap();
        node.partition = None;
        node.life += 1;
        node.registration = None;
        node.down_since_ms = Some(now_ms);
        node.isr_wait = None;
        node.acks.clear();
        node.fetchers.clear();
        node.paused_until = 0;
    }

    fn restart(&mut self, id: NodeId) {
        self.open(id);
        trace!(
            self,
            "node {id} restarts at log end {}",
            self.nodes[&id].partition.as_ref().unwrap().log_end_offset()
        );
        let life = self.nodes[&id].life;
        let command = MetadataCommand::RegisterBroker(BrokerRecord {
            node_id: id,
            address: format!("127.0.0.1:{}", 9300 + id),
            kafka_address: None,
        });
        self.propose(Proposer::Registration { node: id, life }, command);
    }

    /// A producer sends one batch to a broker that believes it leads (a
    /// deposed one included, until it learns), with `acks=all` or `acks=1`.
    fn produce(&mut self) {
        let leaders: Vec<NodeId> = self
            .nodes
            .values()
            .filter(|n| {
                n.partition
                    .as_ref()
                    .is_some_and(|p| p.role_kind() == RoleKind::Leader)
            })
            .map(|n| n.id)
            .collect();
        let Some(id) = self.rng.pick(&leaders) else {
            return;
        };
        let acks_all = self.rng.chance(700);
        let records = 1 + self.rng.below(4);
        let padding = "x".repeat(self.rng.below(200) as usize);
        let mut builder = BatchBuilder::new(Compression::None);
        for _ in 0..records {
            self.produced_records += 1;
            let value = format!(
                "seed {} record {} {padding}",
                self.seed, self.produced_records
            );
            builder.push(self.clock.now_ms(), None, Some(value.as_bytes()), &[]);
        }
        let mut batch = BytesMut::from(&builder.build().unwrap()[..]);
        let partition = self.nodes[&id].partition.as_ref().unwrap();
        if acks_all && partition.check_min_isr(MIN_INSYNC_REPLICAS).is_err() {
            return;
        }
        let appended = match partition.append(&mut batch) {
            Ok(appended) => appended,
            Err(error) => self.fail(format_args!("leader {id} refused an append: {error}")),
        };
        trace!(
            self,
            "node {id} appends {}..={} at {} acks_all {acks_all}",
            appended.base_offset,
            appended.last_offset,
            appended.leader_epoch
        );
        if acks_all {
            let pending = PendingAck {
                base_offset: appended.base_offset,
                last_offset: appended.last_offset,
                crc: BatchHeader::parse(&batch).unwrap().crc,
                leader_epoch: appended.leader_epoch,
                sent: self.step,
            };
            self.nodes.get_mut(&id).unwrap().acks.push(pending);
        }
    }

    /// Asks the real `wait_replicated` about every waiting `acks=all`
    /// produce, with a deadline that has already passed: it decides from the
    /// role, the epoch and the high watermark as they are now.
    fn resolve_acks(&mut self) {
        for id in self.live() {
            let node = self.nodes.get_mut(&id).unwrap();
            let partition = node.partition.as_ref().unwrap();
            let mut acks = std::mem::take(&mut node.acks);
            let (_closing_tx, closing) = tokio::sync::watch::channel(false);
            let mut acknowledged = Vec::new();
            acks.retain(|ack| {
                let answer = self.runtime.block_on(partition.wait_replicated(
                    ack.last_offset,
                    ack.leader_epoch,
                    // In the past: the timer fires at its first poll, without parking.
                    tokio::time::Instant::now() - std::time::Duration::from_secs(1),
                    closing.clone(),
                ));
                match answer {
                    Ok(()) => {
                        trace!(self, "node {id} acknowledges {}", ack.base_offset);
                        acknowledged.push((ack.base_offset, ack.crc));
                        false
                    }
                    Err(BrokerError::ReplicationTimedOut { .. }) => {
                        self.step - ack.sent < ACK_TIMEOUT_STEPS
                    }
                    Err(_) => false,
                }
            });
            node.acks = acks;
            let partition = self.nodes[&id].partition.as_ref().unwrap();
            for (base_offset, crc) in acknowledged {
                self.checker
                    .acknowledged(self.step, id, partition, base_offset, crc);
            }
        }
    }

    fn deliver(&mut self) {
        let step = self.step;
        let (due, later): (Vec<_>, Vec<_>) =
            self.network.drain(..).partition(|(at, _)| *at <= step);
        self.network = later;
        for (_, message) in due {
            if self.faults && self.rng.chance(30) {
                continue;
            }
            if self.faults && message.is_answer() && self.rng.chance(20) {
                let again = self.step + 1 + self.rng.below(6);
                self.network.push((again, message.clone()));
            }
            self.handle(message);
        }
    }

    fn send(&mut self, message: Message) {
        let at = self.step + 1 + self.rng.below(4);
        self.network.push((at, message));
    }

    /// Heals every fault and lets the cluster settle: every broker back,
    /// nothing dropped or paused, producers on for a while, then off.
    fn heal_and_settle(&mut self) {
        self.faults = false;
        for id in NODES {
            if self.nodes[&id].partition.is_none() {
                self.restart(id);
            }
            self.nodes.get_mut(&id).unwrap().paused_until = 0;
        }
        for i in 0..QUIET_STEPS {
            self.producing = i < QUIET_STEPS / 3;
            self.run_step();
        }
    }
}

fn run_seed(seed: u64) {
    let mut sim = Sim::new(seed);
    for _ in 0..FAULT_STEPS {
        sim.run_step();
    }
    sim.heal_and_settle();
    let state = sim.committed_state().topics[TOPIC].partitions[0].clone();
    sim.checker.settled(&sim.nodes, &state);
}

fn seeds_from_env() -> Vec<u64> {
    if let Some(seed) = std::env::var("WEIR_REPLICATION_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return vec![seed];
    }
    let seeds: u64 = std::env::var("WEIR_REPLICATION_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    (0..seeds).collect()
}

#[test]
fn replication_keeps_high_watermarks_isr_copies_epochs_and_every_acknowledged_record() {
    for seed in seeds_from_env() {
        eprintln!("replication simulation seed {seed}");
        run_seed(seed);
    }
}
