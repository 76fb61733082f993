//! Where the cluster's metadata says a partition is led, for the answers of
//! a broker that does not lead it: Kafka's clients refresh their metadata on
//! NOT_LEADER_OR_FOLLOWER and move to the leader it names.

use kafka_protocol::messages::fetch_response::LeaderIdAndEpoch;
use kafka_protocol::messages::BrokerId;

use crate::broker::Broker;
use crate::cluster::{NodeId, PartitionAssignment};
use crate::error::BrokerError;
use crate::partition::Partition;
use crate::replication::RoleKind;

/// A node id as Kafka's messages carry it; node ids run below
/// `cluster::NODE_IDS` (1024), so every one fits.
pub fn broker_id(id: NodeId) -> BrokerId {
    debug_assert!(id < crate::cluster::NODE_IDS, "node id {id} out of range");
    BrokerId(i32::try_from(id).unwrap_or(-1))
}

/// Whether this broker's replica of `partition` takes produces and serves
/// consumers: the leader's, or the only one on a broker in no cluster.
pub fn leads(partition: &Partition) -> bool {
    matches!(partition.role_kind(), RoleKind::Solo | RoleKind::Leader)
}

/// Whether this broker holds a replica of `partition` at all.
pub fn hosts(partition: &Partition) -> bool {
    partition.role_kind() != RoleKind::NotHosted
}

/// The refusal of a request for partition `partition` of `topic`, a topic
/// this broker has not created (yet): NOT_LEADER_OR_FOLLOWER naming the
/// leader when the cluster's metadata has the partition, as Kafka answers
/// for a partition its metadata knows and its replica manager does not
/// hold. `None` on a broker in no cluster, or when the metadata lacks it.
pub fn not_created_here(broker: &Broker, topic: &str, partition: i32) -> Option<BrokerError> {
    let index = u32::try_from(partition).ok()?;
    let leader = assignment(broker, topic, index)?.leader;
    Some(BrokerError::NotLeader {
        topic: topic.to_owned(),
        partition: index,
        leader,
    })
}

/// Fetch v12's `current_leader` for a partition this broker does not lead:
/// the leader and epoch of the cluster's metadata, or Kafka's "unknown"
/// (-1, -1) when there is none to name.
pub fn current_leader(broker: &Broker, topic: &str, partition: i32) -> LeaderIdAndEpoch {
    let assignment = u32::try_from(partition)
        .ok()
        .and_then(|index| assignment(broker, topic, index));
    match assignment {
        Some(PartitionAssignment {
            leader: Some(leader),
            leader_epoch,
            ..
        }) => LeaderIdAndEpoch::default()
            .with_leader_id(broker_id(leader))
            .with_leader_epoch(leader_epoch),
        _ => LeaderIdAndEpoch::default(),
    }
}

fn assignment(broker: &Broker, topic: &str, partition: u32) -> Option<PartitionAssignment> {
    let link = broker.cluster()?;
    let metadata = link.quorum.metadata();
    let metadata = metadata.borrow();
    metadata
        .topics
        .get(topic)?
        .partitions
        .get(usize::try_from(partition).ok()?)
        .cloned()
}
