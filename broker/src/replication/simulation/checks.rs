//! The invariants the simulation asserts after every step:
//! 1. a leader's high watermark never moves back while it leads at an epoch,
//!    and what any leader's high watermark ever covered (the committed
//!    prefix) is never changed: every leader at that epoch or later holds it;
//! 2. each in-sync replica (as the metadata names them) holds the current
//!    leader's batches, byte for byte, up to the leader's high watermark;
//! 3. one leader per epoch, among replicas and in the metadata;
//! 4. every batch acknowledged under `acks=all` is, byte for byte and at the
//!    same offset, on every later leader.
//!
//! Each replica's log is read through `PartitionLog::read` (what a fetch
//! reads), incrementally: the copy is cut where the simulation cut the log
//! and extended from its end, and compared with a whole re-read now and then.

use std::collections::BTreeMap;

use bytes::Bytes;
use weir_log::batch::{batches, BatchHeader};

use super::Node;
use crate::cluster::{NodeId, PartitionAssignment};
use crate::partition::Partition;
use crate::replication::role::RoleKind;

/// Steps between two whole re-reads of every replica's log.
const REREAD_EVERY_STEPS: u64 = 50;
/// Steps between two checks that every leader holds every acknowledged
/// batch (also checked whenever a replica takes leadership).
const HOLDS_EVERY_STEPS: u64 = 20;

/// One stored batch, as read back from a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LogCopy {
    pub base_offset: u64,
    pub next_offset: u64,
    pub leader_epoch: i32,
    pub bytes: Bytes,
}

pub(super) struct Checker {
    seed: u64,
    step: u64,
    logs: BTreeMap<NodeId, Vec<LogCopy>>,
    /// Which replica led at each epoch (as seen leading).
    leader_of_epoch: BTreeMap<i32, NodeId>,
    /// Which leader the metadata named at each epoch.
    metadata_leader_of_epoch: BTreeMap<i32, Option<NodeId>>,
    /// The highest high watermark seen per (replica, life, epoch) while it
    /// led: a restart may start lower (at the checkpointed one), as in Kafka.
    leader_high_watermarks: BTreeMap<(NodeId, u64, i32), u64>,
    /// Batches below the highest high watermark any leader published.
    committed: Vec<LogCopy>,
    acknowledged: Vec<LogCopy>,
}

/// Every batch of `partition`'s log from `from` to its end.
fn read_log(partition: &Partition, from: u64) -> Vec<LogCopy> {
    let log = partition.log().unwrap();
    let end = log.log_end_offset();
    let mut offset = from.max(log.log_start_offset());
    let mut copies = Vec::new();
    while offset < end {
        let bytes = log.read(offset, 1 << 20, end).unwrap().to_bytes().unwrap();
        if bytes.is_empty() {
            break;
        }
        for item in batches(&bytes) {
            let (header, raw) = item.unwrap();
            let start = raw.as_ptr() as usize - bytes.as_ptr() as usize;
            let next_offset = header.next_offset() as u64;
            copies.push(LogCopy {
                base_offset: header.base_offset as u64,
                next_offset,
                leader_epoch: header.partition_leader_epoch,
                bytes: bytes.slice(start..start + raw.len()),
            });
            offset = next_offset;
        }
    }
    copies
}

/// The batches of `log` below `offset`, if a batch ends exactly there.
fn below(log: &[LogCopy], offset: u64) -> Option<&[LogCopy]> {
    let count = log.partition_point(|b| b.next_offset <= offset);
    let reaches = match count {
        0 => offset == 0,
        n => log[n - 1].next_offset == offset,
    };
    reaches.then_some(&log[..count])
}

/// Where two logs first differ, as an offset, if they do.
fn first_difference(a: &[LogCopy], b: &[LogCopy]) -> Option<u64> {
    a.iter()
        .zip(b)
        .find(|(x, y)| x != y)
        .map(|(x, _)| x.base_offset)
        .or_else(|| (a.len() != b.len()).then(|| a.len().min(b.len()) as u64))
}

impl Checker {
    pub(super) fn new(seed: u64) -> Checker {
        Checker {
            seed,
            step: 0,
            logs: BTreeMap::new(),
            leader_of_epoch: BTreeMap::new(),
            metadata_leader_of_epoch: BTreeMap::new(),
            leader_high_watermarks: BTreeMap::new(),
            committed: Vec::new(),
            acknowledged: Vec::new(),
        }
    }

    fn fail(&self, what: std::fmt::Arguments<'_>) -> ! {
        panic!(
            "seed {} step {}: {what}\nreplay: WEIR_REPLICATION_SIM_SEED={} cargo test -p weir-broker --lib replication::simulation",
            self.seed, self.step, self.seed
        )
    }

    pub(super) fn reopened(&mut self, id: NodeId, partition: &Partition) {
        self.logs.insert(id, read_log(partition, 0));
    }

    /// The simulation cut `id`'s log: forget what lies past its new end.
    pub(super) fn cut(&mut self, id: NodeId, partition: &Partition) {
        let end = partition.log_end_offset();
        let log = self.logs.get_mut(&id).unwrap();
        let keep = log.partition_point(|b| b.next_offset <= end);
        log.truncate(keep);
    }

    /// Reads what `id`'s log gained since the last look.
    fn refresh(&mut self, id: NodeId, partition: &Partition) {
        let log = self.logs.get_mut(&id).unwrap();
        let from = log.last().map_or(0, |b| b.next_offset);
        let end = partition.log_end_offset();
        if end < from {
            let id_end = (id, end);
            self.fail(format_args!(
                "replica {} lost its tail (log end {}) without a truncation",
                id_end.0, id_end.1
            ));
        }
        log.extend(read_log(partition, from));
    }

    pub(super) fn metadata_applied(&mut self, step: u64, leader: Option<NodeId>, epoch: i32) {
        self.step = step;
        let named = *self.metadata_leader_of_epoch.entry(epoch).or_insert(leader);
        if named != leader {
            self.fail(format_args!(
                "the metadata named leaders {named:?} and {leader:?} at epoch {epoch}"
            ));
        }
    }

    /// `id` just took leadership: it must hold every acknowledged and every
    /// committed batch of its epoch or older.
    pub(super) fn became_leader(&mut self, step: u64, id: NodeId, partition: &Partition) {
        self.step = step;
        self.refresh(id, partition);
        self.check_leader_holds(id, partition.leader_epoch());
    }

    /// Leader `id` acknowledged the batch with CRC `crc` it stored at
    /// `base_offset`: that batch, as stored, must be on every later leader.
    pub(super) fn acknowledged(
        &mut self,
        step: u64,
        id: NodeId,
        partition: &Partition,
        base_offset: u64,
        crc: u32,
    ) {
        self.step = step;
        self.refresh(id, partition);
        let log = &self.logs[&id];
        let at = log.partition_point(|b| b.next_offset <= base_offset);
        let stored = log.get(at).filter(|b| {
            b.base_offset == base_offset && BatchHeader::parse(&b.bytes).unwrap().crc == crc
        });
        match stored {
            Some(stored) => {
                let stored = stored.clone();
                self.acknowledged.push(stored);
            }
            None => self.fail(format_args!(
                "leader {id} acknowledged the batch it appended at offset {base_offset}, which its log no longer holds there"
            )),
        }
    }

    fn check_leader_holds(&self, id: NodeId, epoch: i32) {
        let log = &self.logs[&id];
        for acked in self.acknowledged.iter().filter(|b| b.leader_epoch <= epoch) {
            let at = log.partition_point(|b| b.next_offset <= acked.base_offset);
            if log.get(at) != Some(acked) {
                self.fail(format_args!(
                    "leader {id} at epoch {epoch} lost the batch acknowledged at offset {} (epoch {})",
                    acked.base_offset, acked.leader_epoch
                ));
            }
        }
        let held = self.committed.partition_point(|b| b.leader_epoch <= epoch);
        let committed = &self.committed[..held];
        if log.len() < held || log[..held] != *committed {
            let at = first_difference(&log[..held.min(log.len())], committed);
            self.fail(format_args!(
                "leader {id} at epoch {epoch} does not hold the committed batches (first difference at {at:?})"
            ));
        }
    }

    pub(super) fn check(
        &mut self,
        step: u64,
        nodes: &BTreeMap<NodeId, Node>,
        state: &PartitionAssignment,
    ) {
        self.step = step;
        for (&id, node) in nodes {
            let Some(partition) = &node.partition else {
                continue;
            };
            self.refresh(id, partition);
            if step.is_multiple_of(REREAD_EVERY_STEPS) && self.logs[&id] != read_log(partition, 0) {
                self.fail(format_args!(
                    "replica {id}'s stored batches changed below its log end without a truncation"
                ));
            }
        }
        for (&id, node) in nodes {
            let Some(partition) = &node.partition else {
                continue;
            };
            if partition.role_kind() != RoleKind::Leader {
                continue;
            }
            self.check_leader(id, node.life, partition);
            if step.is_multiple_of(HOLDS_EVERY_STEPS) {
                self.check_leader_holds(id, partition.leader_epoch());
            }
        }
        self.check_isr(nodes, state);
    }

    /// Invariants 1 and 3 for a replica that leads (or believes it does).
    fn check_leader(&mut self, id: NodeId, life: u64, partition: &Partition) {
        let epoch = partition.leader_epoch();
        let leader = *self.leader_of_epoch.entry(epoch).or_insert(id);
        if leader != id {
            self.fail(format_args!(
                "replicas {leader} and {id} both led at epoch {epoch}"
            ));
        }
        let high_watermark = partition.high_watermark();
        let before = self
            .leader_high_watermarks
            .insert((id, life, epoch), high_watermark)
            .unwrap_or(0);
        if high_watermark < before {
            self.fail(format_args!(
                "leader {id}'s high watermark went back from {before} to {high_watermark} at epoch {epoch}"
            ));
        }
        let Some(mine) = below(&self.logs[&id], high_watermark) else {
            self.fail(format_args!(
                "leader {id}'s high watermark {high_watermark} is not at a batch boundary"
            ));
        };
        let common = mine.len().min(self.committed.len());
        if mine[..common] != self.committed[..common] {
            let at = first_difference(&mine[..common], &self.committed[..common]);
            self.fail(format_args!(
                "leader {id} at epoch {epoch} commits other batches than were committed before (first difference at {at:?})"
            ));
        }
        if mine.len() > self.committed.len() {
            self.committed = mine.to_vec();
        }
    }

    /// Invariant 2: the leader the metadata names, once it leads at the
    /// metadata's epoch, and every live in-sync replica agree below its high
    /// watermark.
    fn check_isr(&self, nodes: &BTreeMap<NodeId, Node>, state: &PartitionAssignment) {
        let Some(leader) = state.leader else {
            return;
        };
        let Some(partition) = &nodes[&leader].partition else {
            return;
        };
        if partition.role_kind() != RoleKind::Leader
            || partition.leader_epoch() != state.leader_epoch
        {
            return;
        }
        let high_watermark = partition.high_watermark();
        let theirs = below(&self.logs[&leader], high_watermark).unwrap();
        for &member in &state.isr {
            if member == leader || nodes[&member].partition.is_none() {
                continue;
            }
            let log = &self.logs[&member];
            let differs = match below(log, high_watermark) {
                Some(mine) => first_difference(mine, theirs),
                None => Some(log.last().map_or(0, |b| b.next_offset)),
            };
            if let Some(at) = differs {
                self.fail(format_args!(
                    "in-sync replica {member} differs from leader {leader} at offset {at}, below the high watermark {high_watermark} (epoch {}, isr {:?})",
                    state.leader_epoch, state.isr
                ));
            }
        }
    }

    /// After healing: one leader with every replica in sync, the same
    /// batches everywhere, everything committed, nothing acknowledged lost.
    pub(super) fn settled(&mut self, nodes: &BTreeMap<NodeId, Node>, state: &PartitionAssignment) {
        let Some(leader) = state.leader else {
            self.fail(format_args!("no leader after healing"));
        };
        let partition = nodes[&leader].partition.as_ref().unwrap();
        if partition.role_kind() != RoleKind::Leader {
            self.fail(format_args!("{leader} is named leader but does not lead"));
        }
        let mut isr = state.isr.clone();
        isr.sort_unstable();
        if isr != [1, 2, 3] {
            self.fail(format_args!("the ISR is {isr:?} after healing"));
        }
        if partition.high_watermark() != partition.log_end_offset() {
            self.fail(format_args!(
                "the high watermark {} is below the log end {} after healing",
                partition.high_watermark(),
                partition.log_end_offset()
            ));
        }
        for (&id, node) in nodes {
            let read = read_log(node.partition.as_ref().unwrap(), 0);
            if read != self.logs[&leader] {
                let at = first_difference(&read, &self.logs[&leader]);
                self.fail(format_args!(
                    "replica {id} differs from leader {leader} after healing (at {at:?})"
                ));
            }
        }
        self.check_leader_holds(leader, partition.leader_epoch());
        if self.acknowledged.is_empty() {
            self.fail(format_args!(
                "nothing was acknowledged, so nothing was tested"
            ));
        }
        eprintln!(
            "seed {}: {} batches acknowledged, log end {}, {} leader epochs",
            self.seed,
            self.acknowledged.len(),
            partition.log_end_offset(),
            self.leader_of_epoch.len()
        );
    }
}
