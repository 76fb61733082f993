//! The tasks that keep a broker's replicas in line with the cluster's
//! metadata:
//! - the applier makes local what the metadata log says: creates and
//!   deletes topics' local replicas, and makes each replica lead or follow
//!   at the epoch the log names;
//! - the ISR reporter asks the controller, for each partition this broker
//!   leads, to shrink or expand its ISR as the `ReplicaTracker` decides;
//! - the controller's duty (on the broker that leads the quorum): elect a
//!   new leader from the ISR when a partition's leader stops being alive,
//!   drop dead brokers from ISRs, and hand leadership back to the preferred
//!   replica once it is in sync again.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::cluster_link::ClusterLink;
use super::role::RoleKind;
use crate::broker::Broker;
use crate::cluster::{
    ClusterError, ClusterMetadata, MetadataCommand, NodeId, QuorumView, ALIVE_WITHIN,
};
use crate::config::UNCLEAN_LEADER_ELECTION_ENABLE_CONFIG;
use crate::error::BrokerError;
use crate::registry::TopicRecord;

/// How often the ISR reporter and the controller look.
const DUTY_INTERVAL: Duration = Duration::from_millis(250);
/// A broker the controller has not heard from for this long is dead: its
/// partitions get new leaders (Kafka's `broker.session.timeout.ms`, 9 s
/// there; shorter here because Raft's heartbeats, every 100 ms from a thread
/// of their own, are the liveness signal, so 3 s is 30 missed heartbeats).
pub const BROKER_SESSION_TIMEOUT: Duration = Duration::from_secs(3);
/// The quorum already calls a broker alive for `ALIVE_WITHIN` after its last
/// answer; the controller waits only the rest of the session.
const DEAD_AFTER_NOT_ALIVE: Duration = BROKER_SESSION_TIMEOUT.saturating_sub(ALIVE_WITHIN);
/// How long a change waits to commit.
const PROPOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Starts the applier, the ISR reporter and the controller duty.
pub(crate) fn start(broker: Arc<Broker>, link: ClusterLink) {
    tokio::spawn(apply_metadata(Arc::clone(&broker), link.clone()));
    tokio::spawn(report_isr_changes(Arc::clone(&broker), link.clone()));
    tokio::spawn(controller_duty(broker, link));
}

async fn apply_metadata(broker: Arc<Broker>, link: ClusterLink) {
    let mut metadata = link.quorum.metadata();
    let mut registered = link.registered.clone();
    let mut closing = broker.closing_signal();
    loop {
        registered.borrow_and_update();
        let current = metadata.borrow_and_update().clone();
        if let Err(error) = reconcile(&broker, &link, &current).await {
            tracing::warn!(%error, "cannot apply the cluster metadata yet; retrying");
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(200)) => continue,
                _ = closing.changed() => return,
            }
        }
        tokio::select! {
            changed = metadata.changed() => if changed.is_err() { return },
            // The flag is raised once and its sender then dropped: after
            // that only the metadata wakes the applier.
            Ok(()) = registered.changed() => {}
            _ = closing.changed() => return,
        }
    }
}

/// Makes the local replicas match `metadata`.
async fn reconcile(
    broker: &Arc<Broker>,
    link: &ClusterLink,
    metadata: &ClusterMetadata,
) -> Result<(), BrokerError> {
    let me = link.node_id;
    // A broker back from a stop replays the metadata log it kept, which may
    // name it leader of partitions that moved on while it was away. It leads
    // nothing until its registration of this run has applied here: entries
    // apply in order, so every change committed before it rejoined has
    // applied by then (Kafka's broker catches up with the metadata log
    // before it is unfenced). Until then such a replica follows no one and
    // refuses produce requests with NOT_LEADER_OR_FOLLOWER.
    let registered = *link.registered.borrow();
    for (name, meta) in &metadata.topics {
        if broker.topic(name).is_err() {
            let record = TopicRecord {
                name: name.clone(),
                replication_factor: meta
                    .partitions
                    .first()
                    .map_or(1, |p| p.replicas.len() as u32),
                configs: meta.configs.clone(),
                leader_epochs: meta.partitions.iter().map(|p| p.leader_epoch).collect(),
                hosted: Some(
                    meta.partitions
                        .iter()
                        .map(|p| p.replicas.contains(&me))
                        .collect(),
                ),
            };
            let registry = broker.lock_registry().await;
            match broker.create_from_record(registry, record).await {
                Ok(_) | Err(BrokerError::TopicExists { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let mut topic = broker.topic(name)?;
        if topic.configs != meta.configs {
            // A refusal here (a broker whose own `topic_defaults` make the settings
            // invalid) must not hold back the rest of the metadata: logged, and the
            // topic keeps its settings until they change again.
            match broker
                .replace_local_configs(name, meta.configs.clone())
                .await
            {
                Ok(_) => topic = broker.topic(name)?,
                Err(error) => {
                    tracing::warn!(topic = %name, %error, "cannot apply the cluster's settings of a topic")
                }
            }
        }
        if topic.partition_count() < meta.partitions.len() as u32 {
            let added = meta
                .partitions
                .iter()
                .map(|p| (p.leader_epoch, p.replicas.contains(&me)));
            broker
                .grow_from_metadata(name, added, meta.partitions.len() as u32)
                .await?;
            topic = broker.topic(name)?;
        }
        for (partition, assignment) in topic.partitions.iter().zip(&meta.partitions) {
            if partition.offline_cause().is_some() {
                // Its log did not open; it neither leads nor follows.
                continue;
            }
            let partition = Arc::clone(partition);
            let assignment = assignment.clone();
            match partition.role_kind() {
                RoleKind::NotHosted => partition.replica.set_known_leader(assignment.leader),
                kind if assignment.leader == Some(me) && !registered => {
                    if kind != RoleKind::Follower || partition.leader_id().is_some() {
                        broker
                            .run_io(move || {
                                partition.become_follower(None, assignment.leader_epoch)
                            })
                            .await?;
                    }
                }
                kind if assignment.leader == Some(me) => {
                    if kind != RoleKind::Leader
                        || partition.leader_epoch() != assignment.leader_epoch
                    {
                        broker
                            .run_io(move || {
                                partition.become_leader(
                                    me,
                                    assignment.leader_epoch,
                                    &assignment.replicas,
                                    &assignment.isr,
                                    assignment.partition_epoch,
                                )
                            })
                            .await?;
                    } else if partition.in_sync_replicas().as_deref()
                        != Some(&sorted(&assignment.isr))
                        || partition.isr_partition_epoch() != Some(assignment.partition_epoch)
                    {
                        partition.isr_committed(
                            &assignment.isr,
                            assignment.partition_epoch,
                            metadata.applied_index,
                        );
                    }
                }
                kind => {
                    if kind != RoleKind::Follower
                        || partition.leader_epoch() != assignment.leader_epoch
                        || partition.leader_id() != assignment.leader
                    {
                        broker
                            .run_io(move || {
                                partition
                                    .become_follower(assignment.leader, assignment.leader_epoch)
                            })
                            .await?;
                    }
                }
            }
        }
    }
    // Local topics the metadata no longer has were deleted through it. Only
    // topics created through the cluster (`hosted` set) are the cluster's:
    // the internal topics stay each broker's own.
    if link.quorum.caught_up() {
        for topic in broker.topics()? {
            if !metadata.topics.contains_key(&topic.name)
                && broker.is_cluster_topic(&topic.name).await
            {
                broker.delete_local_topic(&topic.name).await?;
            }
        }
    }
    Ok(())
}

fn sorted(ids: &[NodeId]) -> Vec<NodeId> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids
}

async fn report_isr_changes(broker: Arc<Broker>, link: ClusterLink) {
    let mut closing = broker.closing_signal();
    let mut interval = tokio::time::interval(DUTY_INTERVAL);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = closing.changed() => return,
        }
        let Ok(topics) = broker.topics() else {
            continue;
        };
        for topic in topics {
            for partition in &topic.partitions {
                let Some(proposal) = partition.isr_change(link.replica_lag_time_max_ms) else {
                    continue;
                };
                tracing::info!(topic = %topic.name, partition = partition.index(), isr = ?proposal.isr, "proposing an ISR change");
                let shrinks = partition
                    .in_sync_replicas()
                    .is_some_and(|isr| proposal.isr.len() < isr.len());
                let command = MetadataCommand::ChangePartition {
                    topic: topic.name.clone(),
                    partition: partition.index(),
                    leader: Some(link.node_id),
                    leader_epoch: partition.leader_epoch(),
                    isr: proposal.isr,
                    partition_epoch: Some(proposal.partition_epoch),
                };
                // The entry applied here, whatever its outcome: the metadata
                // now is as of it or later, which settles the proposal even
                // if the applier skips over it to a later ISR.
                let settled = || {
                    let metadata = link.quorum.metadata().borrow().clone();
                    metadata
                        .topics
                        .get(&topic.name)
                        .and_then(|t| t.partitions.get(partition.index() as usize))
                        .filter(|a| {
                            a.leader == Some(link.node_id)
                                && a.leader_epoch == partition.leader_epoch()
                        })
                        .map(|a| (a.isr.clone(), a.partition_epoch, metadata.applied_index))
                };
                match link.quorum.propose(command, PROPOSE_TIMEOUT).await {
                    Ok(_) => {
                        if let Some((isr, partition_epoch, index)) = settled() {
                            partition.isr_proposal_committed(&isr, partition_epoch, index);
                        }
                        match shrinks {
                            true => broker.metrics().isr_shrinks.inc(),
                            false => broker.metrics().isr_expands.inc(),
                        }
                    }
                    Err(error @ ClusterError::ProposalTimedOut { .. }) => {
                        tracing::info!(%error, "ISR change not seen committed; sending it again");
                        partition.isr_proposal_timed_out();
                        continue;
                    }
                    Err(error @ ClusterError::Refused(_)) => {
                        // Kafka's INVALID_UPDATE_VERSION (or FENCED_LEADER_EPOCH):
                        // the partition moved on; the next change is computed
                        // from the state that refused this one.
                        tracing::info!(%error, "ISR change refused; computing it again from the newer metadata");
                        if let Some((isr, partition_epoch, index)) = settled() {
                            partition.isr_committed(&isr, partition_epoch, index);
                        }
                        partition.isr_proposal_failed();
                        continue;
                    }
                    Err(error) => {
                        tracing::info!(%error, "ISR change not taken");
                        partition.isr_proposal_failed();
                        continue;
                    }
                };
            }
        }
    }
}

/// The controller's view of who is alive, with a grace period of a whole
/// session so that a newly elected controller does not declare everyone dead
/// before they have answered it once.
struct Liveness {
    since: Instant,
    last_seen: BTreeMap<NodeId, Instant>,
}

impl Liveness {
    fn new(now: Instant) -> Liveness {
        Liveness {
            since: now,
            last_seen: BTreeMap::new(),
        }
    }

    fn observe(&mut self, view: &QuorumView, brokers: impl Iterator<Item = NodeId>, now: Instant) {
        for id in brokers {
            let seen = self.last_seen.entry(id).or_insert(now);
            if view.alive.contains(&id) {
                *seen = now;
            }
        }
    }

    fn alive(&self, now: Instant) -> BTreeSet<NodeId> {
        let in_grace = now.duration_since(self.since) < BROKER_SESSION_TIMEOUT;
        self.last_seen
            .iter()
            .filter(|(_, seen)| in_grace || now.duration_since(**seen) < DEAD_AFTER_NOT_ALIVE)
            .map(|(id, _)| *id)
            .collect()
    }
}

async fn controller_duty(broker: Arc<Broker>, link: ClusterLink) {
    let mut closing = broker.closing_signal();
    let mut interval = tokio::time::interval(DUTY_INTERVAL);
    let view: watch::Receiver<QuorumView> = link.quorum.view();
    let metadata = link.quorum.metadata();
    let mut liveness: Option<Liveness> = None;
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = closing.changed() => return,
        }
        let current_view = view.borrow().clone();
        if !current_view.status.is_leader {
            liveness = None;
            continue;
        }
        let now = Instant::now();
        let current = metadata.borrow().clone();
        let tracker = liveness.get_or_insert_with(|| Liveness::new(now));
        tracker.observe(&current_view, current.brokers.keys().copied(), now);
        let alive = tracker.alive(now);
        for command in leadership_changes(&current, &alive) {
            tracing::info!(?command, "controller: changing a partition's leadership");
            let before = match &command {
                MetadataCommand::ChangePartition {
                    topic, partition, ..
                } => current
                    .topics
                    .get(topic)
                    .and_then(|t| t.partitions.get(*partition as usize)),
                _ => None,
            };
            let (elects, unclean) = match (&command, before) {
                (MetadataCommand::ChangePartition { leader, .. }, Some(before)) => (
                    before.leader != *leader,
                    leader.is_some_and(|l| !before.isr.contains(&l)),
                ),
                _ => (false, false),
            };
            if unclean {
                tracing::warn!(?command, "controller: unclean leader election: records the old in-sync replicas held beyond this replica's log are lost");
            }
            match link.quorum.propose(command, PROPOSE_TIMEOUT).await {
                Ok(_) => {
                    if elects {
                        broker.metrics().leader_elections.inc();
                    }
                    if unclean {
                        broker.metrics().unclean_leader_elections.inc();
                    }
                }
                Err(error) => {
                    tracing::info!(%error, "controller: change not taken");
                    break;
                }
            }
        }
    }
}

/// What the controller changes given who is `alive`: a partition whose
/// leader is dead gets the first live ISR member (in replica order) at the
/// next epoch; with none, and the topic's `unclean.leader.election.enable`
/// set, the first live replica outside the ISR, which then is the ISR alone
/// (Kafka's unclean election: what only the old ISR held is lost); dead
/// brokers leave ISRs (never the last member: that one holds the data); a
/// preferred replica back in the ISR leads again.
pub(crate) fn leadership_changes(
    metadata: &ClusterMetadata,
    alive: &BTreeSet<NodeId>,
) -> Vec<MetadataCommand> {
    let mut changes = Vec::new();
    for (name, topic) in &metadata.topics {
        for (index, assignment) in topic.partitions.iter().enumerate() {
            let live_isr: Vec<NodeId> = assignment
                .replicas
                .iter()
                .copied()
                .filter(|id| assignment.isr.contains(id) && alive.contains(id))
                .collect();
            let leader_alive = assignment.leader.is_some_and(|l| alive.contains(&l));
            // Computed from the metadata applied here, which may be behind
            // a change still committing (a leader's own ISR change): the
            // partition epoch makes such a change refused, not applied over it.
            let change = |leader: Option<NodeId>, leader_epoch: i32, isr: Vec<NodeId>| {
                MetadataCommand::ChangePartition {
                    topic: name.clone(),
                    partition: index as u32,
                    leader,
                    leader_epoch,
                    isr,
                    partition_epoch: Some(assignment.partition_epoch),
                }
            };
            if !leader_alive {
                let unclean = || {
                    topic
                        .configs
                        .get(UNCLEAN_LEADER_ELECTION_ENABLE_CONFIG)
                        .is_some_and(|v| v.trim() == "true")
                        .then(|| assignment.replicas.iter().find(|id| alive.contains(id)))
                        .flatten()
                };
                if let Some(&next) = live_isr.first() {
                    changes.push(change(Some(next), assignment.leader_epoch + 1, live_isr));
                } else if let Some(&next) = unclean() {
                    changes.push(change(Some(next), assignment.leader_epoch + 1, vec![next]));
                } else if assignment.leader.is_some() {
                    // No live ISR member: the partition has no leader (Kafka's
                    // -1) until the last one returns; the ISR keeps naming it.
                    changes.push(change(
                        None,
                        assignment.leader_epoch + 1,
                        assignment.isr.clone(),
                    ));
                }
                continue;
            }
            if live_isr.len() < assignment.isr.len() && !live_isr.is_empty() {
                changes.push(change(assignment.leader, assignment.leader_epoch, live_isr));
                continue;
            }
            let preferred = assignment.replicas[0];
            if assignment.leader != Some(preferred) && live_isr.contains(&preferred) {
                changes.push(change(
                    Some(preferred),
                    assignment.leader_epoch + 1,
                    live_isr,
                ));
            }
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{PartitionAssignment, TopicMetadata};

    fn metadata(leader: NodeId, isr: &[NodeId]) -> ClusterMetadata {
        let mut m = ClusterMetadata::default();
        m.topics.insert(
            "t".into(),
            TopicMetadata {
                name: "t".into(),
                configs: BTreeMap::new(),
                partitions: vec![PartitionAssignment {
                    replicas: vec![1, 2, 3],
                    leader: Some(leader),
                    leader_epoch: 4,
                    isr: isr.to_vec(),
                    partition_epoch: 9,
                }],
            },
        );
        m
    }

    fn change(c: &MetadataCommand) -> (Option<NodeId>, i32, Vec<NodeId>) {
        match c {
            MetadataCommand::ChangePartition {
                leader,
                leader_epoch,
                isr,
                partition_epoch,
                ..
            } => {
                assert_eq!(*partition_epoch, Some(9), "computed from the state given");
                (*leader, *leader_epoch, isr.clone())
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_dead_leader_is_replaced_by_the_first_live_isr_member_at_the_next_epoch() {
        let m = metadata(1, &[1, 2, 3]);
        let changes = leadership_changes(&m, &BTreeSet::from([2, 3]));
        assert_eq!(
            changes.iter().map(change).collect::<Vec<_>>(),
            vec![(Some(2), 5, vec![2, 3])]
        );
    }

    #[test]
    fn unclean_election_takes_a_live_replica_outside_the_isr_only_when_the_topic_allows_it() {
        let mut m = metadata(1, &[1]);
        // Off by default: broker 1, the only in-sync replica, is dead.
        assert_eq!(
            leadership_changes(&m, &BTreeSet::from([2, 3]))
                .iter()
                .map(change)
                .collect::<Vec<_>>(),
            vec![(None, 5, vec![1])]
        );
        m.topics
            .get_mut("t")
            .unwrap()
            .configs
            .insert(UNCLEAN_LEADER_ELECTION_ENABLE_CONFIG.into(), "true".into());
        assert_eq!(
            leadership_changes(&m, &BTreeSet::from([3]))
                .iter()
                .map(change)
                .collect::<Vec<_>>(),
            vec![(Some(3), 5, vec![3])]
        );
        // A live in-sync replica is still preferred to an unclean one.
        let mut clean = metadata(1, &[1, 3]);
        clean.topics.get_mut("t").unwrap().configs = m.topics["t"].configs.clone();
        assert_eq!(
            leadership_changes(&clean, &BTreeSet::from([2, 3]))
                .iter()
                .map(change)
                .collect::<Vec<_>>(),
            vec![(Some(3), 5, vec![3])]
        );
    }

    #[test]
    fn no_live_isr_member_leaves_the_partition_without_a_leader_until_it_returns() {
        let m = metadata(1, &[1]);
        let changes = leadership_changes(&m, &BTreeSet::from([2, 3]));
        assert_eq!(
            changes.iter().map(change).collect::<Vec<_>>(),
            vec![(None, 5, vec![1])]
        );
        let mut m = metadata(1, &[1]);
        let p = &mut m.topics.get_mut("t").unwrap().partitions[0];
        p.leader = None;
        p.leader_epoch = 5;
        assert!(leadership_changes(&m, &BTreeSet::from([2, 3])).is_empty());
        let changes = leadership_changes(&m, &BTreeSet::from([1, 2, 3]));
        assert_eq!(
            changes.iter().map(change).collect::<Vec<_>>(),
            vec![(Some(1), 6, vec![1])]
        );
    }

    #[test]
    fn dead_followers_leave_the_isr_and_the_preferred_replica_leads_again() {
        let m = metadata(1, &[1, 2, 3]);
        let changes = leadership_changes(&m, &BTreeSet::from([1, 2]));
        assert_eq!(
            changes.iter().map(change).collect::<Vec<_>>(),
            vec![(Some(1), 4, vec![1, 2])]
        );
        let m = metadata(2, &[1, 2]);
        let changes = leadership_changes(&m, &BTreeSet::from([1, 2, 3]));
        assert_eq!(
            changes.iter().map(change).collect::<Vec<_>>(),
            vec![(Some(1), 5, vec![1, 2])]
        );
        assert!(
            leadership_changes(&metadata(1, &[1, 2, 3]), &BTreeSet::from([1, 2, 3])).is_empty()
        );
    }
}
