//! The metadata side: proposals to the metadata log as Raft orders them,
//! the real `ClusterMetadata::apply` deciding what commits, each broker
//! applying the log at its own pace (`manager::reconcile`'s role changes),
//! the ISR reporter and the controller's duty with the real
//! `leadership_changes`.

use super::{trace, tracing_on, Sim, LAG_TIME_MAX_MS, SESSION_MS, TOPIC};
use crate::clock::Clock;
use crate::cluster::{ClusterMetadata, MetadataCommand, MetadataRefusal, NodeId};
use crate::replication::manager::leadership_changes;
use crate::replication::role::RoleKind;

/// A proposal not applied on its proposer within this many steps timed out.
const PROPOSE_TIMEOUT_STEPS: u64 = 40;

/// Who proposed a metadata change, to hand it the outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Proposer {
    Controller,
    /// A leader's ISR reporter, in one life of its broker.
    IsrReporter {
        node: NodeId,
        life: u64,
        id: u64,
    },
    Registration {
        node: NodeId,
        life: u64,
    },
}

/// The same broker's same duty (a restarted broker's reporter is the same sender).
fn same_proposer(a: Proposer, b: Proposer) -> bool {
    match (a, b) {
        (Proposer::Controller, Proposer::Controller) => true,
        (Proposer::IsrReporter { node: x, .. }, Proposer::IsrReporter { node: y, .. }) => x == y,
        (Proposer::Registration { node: x, .. }, Proposer::Registration { node: y, .. }) => x == y,
        _ => false,
    }
}

pub(super) struct Proposal {
    /// When it reaches the Raft leader.
    arrive: u64,
    /// When it commits, unless one before it has not.
    due: u64,
    proposer: Proposer,
    command: MetadataCommand,
}

/// One entry of the metadata log and the state after it.
pub(super) struct Entry {
    pub(super) result: Result<(), MetadataRefusal>,
    pub(super) state: ClusterMetadata,
}

/// The ISR change a leader's reporter awaits (it awaits one at a time, as
/// `report_isr_changes` does).
pub(super) struct IsrWait {
    id: u64,
    sent: u64,
}

impl Sim {
    /// Sends a proposal to the metadata log as Raft orders it: it reaches
    /// the Raft leader (at once for the controller, which runs there; over
    /// the network for the others, in the order each broker sent), and
    /// commits in the order proposals reached it, usually within a few
    /// steps, now and then after a stall longer than a proposer's timeout (a
    /// Raft leader change), so a change its proposer gave up on may still
    /// commit later.
    pub(super) fn propose(&mut self, proposer: Proposer, command: MetadataCommand) {
        let forward = match proposer {
            Proposer::Controller => 0,
            _ => 1 + self.rng.below(4),
        };
        let sent_before = self
            .proposals
            .iter()
            .filter(|p| same_proposer(p.proposer, proposer))
            .map(|p| p.arrive)
            .max()
            .unwrap_or(0);
        let arrive = (self.step + forward).max(sent_before);
        let latency = match self.rng.chance(20) {
            true => 30 + self.rng.below(50),
            false => 1 + self.rng.below(3),
        };
        let lost =
            self.faults && matches!(proposer, Proposer::IsrReporter { .. }) && self.rng.chance(20);
        if !lost {
            let at = self.proposals.partition_point(|p| p.arrive <= arrive);
            let proposal = Proposal {
                arrive,
                due: arrive + latency,
                proposer,
                command,
            };
            self.proposals.insert(at, proposal);
        }
    }

    /// Commits, in order, the proposals that are due and have nothing
    /// before them still waiting, with the real `ClusterMetadata::apply`
    /// deciding what is refused.
    pub(super) fn land_proposals(&mut self) {
        let step = self.step;
        let ready = self.proposals.iter().take_while(|p| p.due <= step).count();
        let due: Vec<Proposal> = self.proposals.drain(..ready).collect();
        for proposal in due {
            let mut state = self.committed_state().clone();
            let index = self.metadata_log.len();
            let result = state.apply(index as u64 + 1, &proposal.command);
            trace!(
                self,
                "metadata {index}: {:?} -> {result:?}",
                proposal.command
            );
            if result.is_ok() {
                let p = &state.topics[TOPIC].partitions[0];
                self.checker
                    .metadata_applied(self.step, p.leader, p.leader_epoch);
            }
            match proposal.proposer {
                Proposer::IsrReporter { id, .. } => {
                    self.landed.insert(id, index);
                }
                Proposer::Registration { node, life } => {
                    let node = self.nodes.get_mut(&node).unwrap();
                    if node.life == life {
                        node.registration = Some(index);
                    }
                }
                Proposer::Controller => {}
            }
            self.metadata_log.push(Entry { result, state });
        }
    }

    /// Node `id` applies some of the committed entries it has not applied
    /// yet (brokers apply at their own pace), makes its replica match, and
    /// hears the outcome of its ISR proposal.
    pub(super) fn apply_metadata(&mut self, id: NodeId) {
        let end = self.metadata_log.len();
        let applied = self.nodes[&id].applied;
        if applied < end && self.rng.chance(600) {
            let to = applied + 1 + self.rng.below((end - applied) as u64) as usize;
            self.nodes.get_mut(&id).unwrap().applied = to;
        }
        self.reconcile(id);
        let node = &self.nodes[&id];
        let Some(wait) = &node.isr_wait else {
            return;
        };
        // `propose` resolves when the entry applies on the proposer, or
        // times out (the entry may still commit later).
        let outcome = match self.landed.get(&wait.id) {
            Some(&index) if node.applied > index => Some(self.metadata_log[index].result.is_ok()),
            _ if self.step - wait.sent > PROPOSE_TIMEOUT_STEPS => None,
            _ => return,
        };
        trace!(self, "node {id} hears of its isr proposal: {outcome:?}");
        let partition = node.partition.as_ref().unwrap();
        // `report_isr_changes`: the metadata as of the entry or later settles it.
        let assignment = self.state_of(node);
        let settled = (assignment.leader == Some(id)
            && assignment.leader_epoch == partition.leader_epoch())
        .then_some((
            &assignment.isr,
            assignment.partition_epoch,
            self.metadata_index(node),
        ));
        match outcome {
            Some(true) => {
                if let Some((isr, partition_epoch, index)) = settled {
                    partition.isr_proposal_committed(isr, partition_epoch, index);
                }
            }
            Some(false) => {
                if let Some((isr, partition_epoch, index)) = settled {
                    partition.isr_committed(isr, partition_epoch, index);
                }
                partition.isr_proposal_failed();
            }
            None => partition.isr_proposal_timed_out(),
        }
        self.nodes.get_mut(&id).unwrap().isr_wait = None;
    }

    /// `manager::reconcile`'s role changes for one replica, rule for rule.
    fn reconcile(&mut self, id: NodeId) {
        let node = &self.nodes[&id];
        let assignment = self.state_of(node);
        let registered = node.registered();
        let partition = node.partition.as_ref().unwrap();
        let me = id;
        let result = match partition.role_kind() {
            RoleKind::NotHosted => Ok(()),
            kind if assignment.leader == Some(me) && !registered => {
                if kind != RoleKind::Follower || partition.leader_id().is_some() {
                    partition.become_follower(None, assignment.leader_epoch)
                } else {
                    Ok(())
                }
            }
            kind if assignment.leader == Some(me) => {
                if kind != RoleKind::Leader || partition.leader_epoch() != assignment.leader_epoch {
                    trace!(
                        self,
                        "node {id} leads at {} isr {:?} (log end {}, hw {})",
                        assignment.leader_epoch,
                        assignment.isr,
                        partition.log_end_offset(),
                        partition.high_watermark()
                    );
                    let led = partition.become_leader(
                        me,
                        assignment.leader_epoch,
                        &assignment.replicas,
                        &assignment.isr,
                        assignment.partition_epoch,
                    );
                    if led.is_ok() {
                        self.checker.became_leader(self.step, id, partition);
                    }
                    led
                } else {
                    let mut isr = assignment.isr.clone();
                    isr.sort_unstable();
                    if partition.in_sync_replicas().as_deref() != Some(&isr)
                        || partition.isr_partition_epoch() != Some(assignment.partition_epoch)
                    {
                        partition.isr_committed(
                            &assignment.isr,
                            assignment.partition_epoch,
                            self.metadata_index(node),
                        );
                    }
                    Ok(())
                }
            }
            kind => {
                if kind != RoleKind::Follower
                    || partition.leader_epoch() != assignment.leader_epoch
                    || partition.leader_id() != assignment.leader
                {
                    trace!(
                        self,
                        "node {id} follows {:?} at {}",
                        assignment.leader,
                        assignment.leader_epoch
                    );
                    partition.become_follower(assignment.leader, assignment.leader_epoch)
                } else {
                    Ok(())
                }
            }
        };
        if let Err(error) = result {
            self.fail(format_args!("node {id} cannot take its role: {error}"));
        }
    }

    /// The controller's duty on the committed metadata, with the real
    /// `leadership_changes`; one round at a time, as it awaits each proposal.
    pub(super) fn controller(&mut self) {
        let busy = self
            .proposals
            .iter()
            .any(|p| p.proposer == Proposer::Controller);
        if busy || !self.rng.chance(300) {
            return;
        }
        let now_ms = self.clock.now_ms();
        let alive = self
            .nodes
            .values()
            .filter(|n| {
                n.down_since_ms
                    .is_none_or(|down| now_ms - down < SESSION_MS)
            })
            .map(|n| n.id)
            .collect();
        let changes = leadership_changes(self.committed_state(), &alive);
        for command in changes {
            trace!(self, "controller proposes {command:?}");
            self.propose(Proposer::Controller, command);
        }
    }

    /// `manager::report_isr_changes` for one broker.
    pub(super) fn report_isr_change(&mut self, id: NodeId) {
        let node = &self.nodes[&id];
        if node.isr_wait.is_some() || !self.rng.chance(250) {
            return;
        }
        let partition = node.partition.as_ref().unwrap();
        let Some(proposal) = partition.isr_change(LAG_TIME_MAX_MS) else {
            return;
        };
        trace!(
            self,
            "node {id} proposes isr {:?} at {} from partition epoch {} (hw {})",
            proposal.isr,
            partition.leader_epoch(),
            proposal.partition_epoch,
            partition.high_watermark()
        );
        let command = MetadataCommand::ChangePartition {
            topic: TOPIC.into(),
            partition: 0,
            leader: Some(id),
            leader_epoch: partition.leader_epoch(),
            isr: proposal.isr,
            partition_epoch: Some(proposal.partition_epoch),
        };
        self.next_id += 1;
        let (wait_id, life) = (self.next_id, node.life);
        self.nodes.get_mut(&id).unwrap().isr_wait = Some(IsrWait {
            id: wait_id,
            sent: self.step,
        });
        let proposer = Proposer::IsrReporter {
            node: id,
            life,
            id: wait_id,
        };
        self.propose(proposer, command);
    }
}
