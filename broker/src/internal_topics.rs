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

/// Creates `__consumer_offsets` with `offsets_topic_partitions` partitions unless it
/// exists. An existing topic keeps its partition count, whatever the setting says now:
/// groups are placed by that count, so changing it would move them (Kafka does the same).
pub async fn ensure_offsets_topic(broker: &Broker) -> Result<u32, BrokerError> {
    if let Ok(topic) = broker.topic(CONSUMER_OFFSETS_TOPIC) {
        return Ok(topic.partition_count());
    }
    let partitions = broker.config().offsets_topic_partitions;
    match broker
        .create_topic(
            CONSUMER_OFFSETS_TOPIC,
            partitions,
            1,
            offsets_topic_configs(),
        )
        .await
    {
        Ok(topic) => {
            tracing::info!(partitions, "created the consumer offsets topic");
            Ok(topic.partition_count())
        }
        Err(error) => Err(error),
    }
}
