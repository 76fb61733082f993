//! The consumer protocol's payloads inside JoinGroup, SyncGroup and DescribeGroups: a
//! subscription (topics, and from v1 the partitions the member owns) and an assignment,
//! each an `i16` version followed by the message at that version. Clients read the
//! version first (kafka-python fails without it), and a newer version than the broker
//! knows is read as the newest it knows, as Kafka's `ConsumerProtocol` does: later
//! versions only add fields at the end.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition as OwnedTopic;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::group::{Assignment, TopicPartition};

/// The newest subscription and assignment versions `kafka-protocol` knows.
const VERSION_MAX: i16 = 3;

/// The assignment has the same fields in every version; v0 is the one every client reads.
const ASSIGNMENT_VERSION: i16 = 0;

/// A member's subscription, as a JoinGroup protocol's metadata carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub topics: BTreeSet<String>,
    pub owned: Assignment,
}

pub fn decode_subscription(mut bytes: Bytes) -> Result<Subscription, String> {
    if bytes.remaining() < 2 {
        return Err(format!(
            "a consumer-protocol subscription of {} bytes has no version",
            bytes.remaining()
        ));
    }
    let version = bytes.get_i16();
    if version < 0 {
        return Err(format!("consumer-protocol subscription version {version}"));
    }
    let subscription = ConsumerProtocolSubscription::decode(&mut bytes, version.min(VERSION_MAX))
        .map_err(|e| {
        format!("cannot decode a v{version} consumer-protocol subscription: {e}")
    })?;
    let mut owned = Assignment::new();
    for topic in &subscription.owned_partitions {
        for &partition in &topic.partitions {
            let partition = u32::try_from(partition).map_err(|_| {
                format!(
                    "the subscription owns partition {partition} of topic {:?}",
                    topic.topic.0.as_str()
                )
            })?;
            owned.insert(TopicPartition::new(topic.topic.0.as_str(), partition));
        }
    }
    Ok(Subscription {
        topics: subscription
            .topics
            .iter()
            .map(|t| t.as_str().to_owned())
            .collect(),
        owned,
    })
}

/// A subscription as DescribeGroups shows a member: its topics and what it holds (v1).
pub fn encode_subscription(topics: &BTreeSet<String>, owned: &Assignment) -> Bytes {
    let owned_partitions = by_topic(owned)
        .into_iter()
        .map(|(topic, partitions)| {
            OwnedTopic::default()
                .with_topic(topic_name(topic))
                .with_partitions(partitions)
        })
        .collect();
    let subscription = ConsumerProtocolSubscription::default()
        .with_topics(
            topics
                .iter()
                .map(|t| StrBytes::from_string(t.clone()))
                .collect(),
        )
        .with_owned_partitions(owned_partitions);
    with_version(1, &subscription)
}

pub fn encode_assignment(assignment: &Assignment) -> Bytes {
    let assigned_partitions = by_topic(assignment)
        .into_iter()
        .map(|(topic, partitions)| {
            AssignedTopic::default()
                .with_topic(topic_name(topic))
                .with_partitions(partitions)
        })
        .collect();
    let message = ConsumerProtocolAssignment::default()
        .with_assigned_partitions(assigned_partitions)
        .with_user_data(None);
    with_version(ASSIGNMENT_VERSION, &message)
}

fn with_version<M: Encodable>(version: i16, message: &M) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(version);
    // Both messages encode every field at these versions; nothing can fail.
    if let Err(error) = message.encode(&mut buf, version) {
        debug_assert!(false, "consumer-protocol payload failed to encode: {error}");
        tracing::error!(%error, "consumer-protocol payload failed to encode");
    }
    buf.freeze()
}

fn by_topic(assignment: &Assignment) -> BTreeMap<&str, Vec<i32>> {
    let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for tp in assignment {
        topics
            .entry(tp.topic.as_str())
            .or_default()
            .push(i32::try_from(tp.partition).unwrap_or(i32::MAX));
    }
    topics
}

fn topic_name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subscription_of_a_newer_version_is_read_as_the_newest_known() {
        let owned: Assignment = [TopicPartition::new("t", 1)].into();
        let topics: BTreeSet<String> = ["t".to_owned()].into();
        let mut bytes = BytesMut::new();
        bytes.put_i16(7);
        ConsumerProtocolSubscription::default()
            .with_topics(vec![StrBytes::from_static_str("t")])
            .with_owned_partitions(vec![OwnedTopic::default()
                .with_topic(topic_name("t"))
                .with_partitions(vec![1])])
            .encode(&mut bytes, 3)
            .unwrap();
        bytes.put_slice(b"fields of v7");
        let read = decode_subscription(bytes.freeze()).unwrap();
        assert_eq!(read, Subscription { topics, owned });
    }

    #[test]
    fn an_assignment_starts_with_its_version() {
        let assignment: Assignment =
            [TopicPartition::new("t", 0), TopicPartition::new("t", 2)].into();
        let mut bytes = encode_assignment(&assignment);
        assert_eq!(bytes.get_i16(), ASSIGNMENT_VERSION);
        let read = ConsumerProtocolAssignment::decode(&mut bytes, ASSIGNMENT_VERSION).unwrap();
        assert_eq!(read.assigned_partitions.len(), 1);
        assert_eq!(read.assigned_partitions[0].partitions, vec![0, 2]);
        assert!(decode_subscription(Bytes::from_static(&[0])).is_err());
    }
}
