//! The broker's own topics: `__consumer_offsets`, created at the first group change, and
//! the refusal of client writes to it. Clients may read it (as in Kafka, where tools
//! decode it), but only the group coordinator appends to it, and it cannot be deleted
//! or reconfigured: its records are the groups' only copy.

use std::collections::BTreeMap;

use crate::broker::Broker;
use crate::error::BrokerError;
use crate::group::CONSUMER_OFFSETS_TOPIC;

/// Kafka's `offsets.topic.segment.bytes`: smaller than ordinary topics' segments so
/// compaction, which never touches the active segment, keeps the topic small.
pub const OFFSETS_TOPIC_SEGMENT_BYTES: u64 = 100 * 1024 * 1024;

/// Whether `topic` is one of the broker's own topics.
pub fn is_internal(topic: &str) -> bool {
    topic == CONSUMER_OFFSETS_TOPIC
}

/// Refuses a client's `operation` ("produce to", "delete", "alter the configs of") on an
/// internal topic.
pub fn refuse_internal(topic: &str, operation: &'static str) -> Result<(), BrokerError> {
    if is_internal(topic) {
        return Err(BrokerError::InternalTopic {
            topic: topic.to_string(),
            operation,
        });
    }
    Ok(())
}

/// The settings `__consumer_offsets` is created with: compacted (the latest record per
/// key is the state) and Kafka's segment size for it.
pub fn offsets_topic_configs() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("cleanup.policy".to_string(), "compact".to_string()),
        (
            "segment.bytes".to_string(),
            OFFSETS_TOPIC_SEGMENT_BYTES.to_string(),
        ),
    ])
}

/// Kafka's `offsets.topic.replication.factor`: in a cluster, `__consumer_offsets` is
/// replicated like any topic, so a group's coordinator (its partition's leader) fails over
/// with its offsets. A cluster of fewer brokers gets one replica on each.
pub const OFFSETS_TOPIC_REPLICATION_FACTOR: u32 = 3;

/// How long a broker waits for `__consumer_offsets`, created by another broker of its
/// cluster at the same moment, to exist here too.
const OFFSETS_TOPIC_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

/// Creates `__consumer_offsets` with `offsets_topic_partitions` partitions unless it
/// exists. An existing topic keeps its partition count, whatever the setting says now:
/// groups are placed by that count, so changing it would move them (Kafka does the same).
/// In a cluster it goes through the metadata log with up to
/// [`OFFSETS_TOPIC_REPLICATION_FACTOR`] replicas.
pub async fn ensure_offsets_topic(broker: &Broker) -> Result<u32, BrokerError> {
    if let Ok(topic) = broker.topic(CONSUMER_OFFSETS_TOPIC) {
        return Ok(topic.partition_count());
    }
    let partitions = broker.config().offsets_topic_partitions;
    let replication_factor = match broker.cluster() {
        Some(link) => {
            let brokers = link.quorum.metadata().borrow().brokers.len();
            OFFSETS_TOPIC_REPLICATION_FACTOR.min(u32::try_from(brokers).unwrap_or(1).max(1))
        }
        None => 1,
    };
    match broker
        .create_topic(
            CONSUMER_OFFSETS_TOPIC,
            partitions,
            replication_factor,
            offsets_topic_configs(),
        )
        .await
    {
        Ok(topic) => {
            tracing::info!(
                partitions,
                replication_factor,
                "created the consumer offsets topic"
            );
            Ok(topic.partition_count())
        }
        // Another broker of the cluster created it first: its metadata entry is
        // applied, and the local replicas follow.
        Err(BrokerError::TopicExists { .. }) => {
            let deadline = tokio::time::Instant::now() + OFFSETS_TOPIC_WAIT;
            loop {
                if let Ok(topic) = broker.topic(CONSUMER_OFFSETS_TOPIC) {
                    return Ok(topic.partition_count());
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(BrokerError::TopicUnavailable {
                        topic: CONSUMER_OFFSETS_TOPIC.to_string(),
                        reason: "the cluster created it, but this broker has not yet".to_string(),
                    });
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
        Err(error) => Err(error),
    }
}
