//! The Kafka listener's group APIs beyond membership, through `kafka-protocol`:
//! JoinGroup v4+'s MEMBER_ID_REQUIRED round trip (KIP-394), DeleteGroups and
//! OffsetDelete on the same coordinator as `weir group`, with Kafka's error codes.

mod common;
mod kafka_support;

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ConsumerProtocolSubscription, DeleteGroupsRequest, GroupId,
    JoinGroupRequest, JoinGroupResponse, OffsetCommitRequest, OffsetDeleteRequest,
    OffsetFetchRequest, TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};

use kafka_support::{start_broker, KafkaWire};

const UNKNOWN_MEMBER_ID: i16 = 25;
const NON_EMPTY_GROUP: i16 = 68;
const GROUP_ID_NOT_FOUND: i16 = 69;
const MEMBER_ID_REQUIRED: i16 = 79;
const GROUP_SUBSCRIBED_TO_TOPIC: i16 = 86;

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_owned())
}

fn group(id: &str) -> GroupId {
    GroupId(s(id))
}

fn topic(name: &str) -> TopicName {
    TopicName(s(name))
}

fn subscription(topic_name: &str) -> Bytes {
    let mut bytes = BytesMut::new();
    bytes.put_i16(1);
    ConsumerProtocolSubscription::default()
        .with_topics(vec![s(topic_name)])
        .encode(&mut bytes, 1)
        .unwrap();
    bytes.freeze()
}

fn join_request(group_id: &str, member_id: &str, subscribed: &str) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(group(group_id))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(30_000)
        .with_member_id(s(member_id))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(s("range"))
            .with_metadata(subscription(subscribed))])
}

/// A new member's two JoinGroups (v5): the id, then the join.
async fn join_new(wire: &mut KafkaWire, group_id: &str, subscribed: &str) -> JoinGroupResponse {
    let named = wire.call(5, &join_request(group_id, "", subscribed)).await;
    assert_eq!(named.error_code, MEMBER_ID_REQUIRED);
    let joined = wire
        .call(
            5,
            &join_request(group_id, named.member_id.as_str(), subscribed),
        )
        .await;
    assert_eq!(joined.error_code, 0);
    joined
}

/// Commits from outside the group (generation -1, no member), OffsetCommit v8.
async fn commit_outside(wire: &mut KafkaWire, group_id: &str, offsets: &[(&str, i32, i64)]) {
    let topics = offsets
        .iter()
        .map(|&(name, partition, offset)| {
            OffsetCommitRequestTopic::default()
                .with_name(topic(name))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(partition)
                    .with_committed_offset(offset)])
        })
        .collect();
    let request = OffsetCommitRequest::default()
        .with_group_id(group(group_id))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(topics);
    let response = wire.call(8, &request).await;
    for partition in response.topics.iter().flat_map(|t| &t.partitions) {
        assert_eq!(partition.error_code, 0);
    }
}

/// The committed offset of `topic_name` partition 0 (-1: none), OffsetFetch v5.
async fn committed(wire: &mut KafkaWire, group_id: &str, topic_name: &str) -> i64 {
    let request = OffsetFetchRequest::default()
        .with_group_id(group(group_id))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(topic(topic_name))
            .with_partition_indexes(vec![0])]));
    wire.call(5, &request).await.topics[0].partitions[0].committed_offset
}

/// Members of every group the coordinator holds.
async fn members(groups: &weir_broker::GroupService) -> usize {
    groups
        .read_all(|c| vec![c.list_groups().iter().map(|g| g.members).sum::<usize>()])
        .await
        .unwrap()
        .into_iter()
        .sum()
}

#[tokio::test]
async fn a_first_join_without_a_member_id_is_answered_member_id_required_and_joins_with_it() {
    let (broker, kafka) = start_broker().await;
    broker.create_topic("clicks", 2).await;
    let mut wire = KafkaWire::connect(kafka).await;

    let named = wire.call(5, &join_request("kip394", "", "clicks")).await;
    assert_eq!(named.error_code, MEMBER_ID_REQUIRED);
    assert!(!named.member_id.is_empty(), "the answer names the member");
    // Named, not joined: the group has no member yet.
    let groups = broker.running.as_ref().unwrap().groups();
    assert_eq!(members(groups).await, 0);

    let joined = wire
        .call(
            5,
            &join_request("kip394", named.member_id.as_str(), "clicks"),
        )
        .await;
    assert_eq!(joined.error_code, 0);
    assert_eq!(joined.member_id, named.member_id);
    assert!(joined.generation_id >= 1);
    assert_eq!(members(groups).await, 1);

    // An id the coordinator did not issue, and an issued one used for another group.
    let made_up = wire
        .call(5, &join_request("kip394", "made-up", "clicks"))
        .await;
    assert_eq!(made_up.error_code, UNKNOWN_MEMBER_ID);
    let other = wire.call(5, &join_request("other", "", "clicks")).await;
    let crossed = wire
        .call(
            5,
            &join_request("kip394", other.member_id.as_str(), "clicks"),
        )
        .await;
    assert_eq!(crossed.error_code, UNKNOWN_MEMBER_ID);

    // Before v4, and for a static member, the first join joins (each in a group of its
    // own: a join into a group with a member waits for that member to rejoin).
    let old = wire.call(3, &join_request("kip394-v3", "", "clicks")).await;
    assert_eq!(old.error_code, 0);
    assert!(!old.member_id.is_empty());
    let static_member = wire
        .call(
            5,
            &join_request("kip394-static", "", "clicks").with_group_instance_id(Some(s("host-1"))),
        )
        .await;
    assert_eq!(static_member.error_code, 0);
    assert_eq!(members(groups).await, 3);
    broker.shutdown().await;
}

#[tokio::test]
async fn delete_groups_deletes_an_empty_group_with_its_offsets_and_refuses_the_others() {
    let (broker, kafka) = start_broker().await;
    broker.create_topic("clicks", 1).await;
    let mut wire = KafkaWire::connect(kafka).await;
    commit_outside(&mut wire, "emptied", &[("clicks", 0, 5)]).await;
    join_new(&mut wire, "busy", "clicks").await;

    for version in 0..=2 {
        let deleted = wire
            .call(
                version,
                &DeleteGroupsRequest::default().with_groups_names(vec![
                    group("emptied"),
                    group("busy"),
                    group("ghost"),
                ]),
            )
            .await;
        let codes: BTreeMap<String, i16> = deleted
            .results
            .iter()
            .map(|r| (r.group_id.0.to_string(), r.error_code))
            .collect();
        let first = if version == 0 { 0 } else { GROUP_ID_NOT_FOUND };
        assert_eq!(
            codes,
            BTreeMap::from([
                ("emptied".to_owned(), first),
                ("busy".to_owned(), NON_EMPTY_GROUP),
                ("ghost".to_owned(), GROUP_ID_NOT_FOUND),
            ]),
            "DeleteGroups v{version}"
        );
    }
    assert_eq!(committed(&mut wire, "emptied", "clicks").await, -1);
    // The same coordinator as gRPC's: the group is gone there too.
    let groups = broker.running.as_ref().unwrap().groups();
    let listed = groups
        .read_all(|c| {
            c.list_groups()
                .into_iter()
                .map(|g| g.group_id)
                .collect::<Vec<_>>()
        })
        .await
        .unwrap();
    assert_eq!(listed, vec!["busy".to_owned()]);
    broker.shutdown().await;
}

#[tokio::test]
async fn offset_delete_removes_offsets_of_unsubscribed_topics_and_keeps_subscribed_ones() {
    let (broker, kafka) = start_broker().await;
    broker.create_topic("subscribed", 1).await;
    broker.create_topic("retired", 1).await;
    let mut wire = KafkaWire::connect(kafka).await;
    commit_outside(
        &mut wire,
        "readers",
        &[("subscribed", 0, 3), ("retired", 0, 9)],
    )
    .await;
    join_new(&mut wire, "readers", "subscribed").await;

    let partitions = |name: &str| {
        OffsetDeleteRequestTopic::default()
            .with_name(topic(name))
            .with_partitions(vec![
                OffsetDeleteRequestPartition::default().with_partition_index(0)
            ])
    };
    let deleted = wire
        .call(
            0,
            &OffsetDeleteRequest::default()
                .with_group_id(group("readers"))
                .with_topics(vec![partitions("subscribed"), partitions("retired")]),
        )
        .await;
    assert_eq!(deleted.error_code, 0);
    let codes: Vec<(String, i16)> = deleted
        .topics
        .iter()
        .map(|t| (t.name.0.to_string(), t.partitions[0].error_code))
        .collect();
    assert_eq!(
        codes,
        vec![
            ("subscribed".to_owned(), GROUP_SUBSCRIBED_TO_TOPIC),
            ("retired".to_owned(), 0)
        ]
    );
    assert_eq!(committed(&mut wire, "readers", "subscribed").await, 3);
    assert_eq!(committed(&mut wire, "readers", "retired").await, -1);

    let unknown = wire
        .call(
            0,
            &OffsetDeleteRequest::default()
                .with_group_id(group("ghost"))
                .with_topics(vec![partitions("retired")]),
        )
        .await;
    assert_eq!(unknown.error_code, GROUP_ID_NOT_FOUND);

    let versions = wire.call(3, &ApiVersionsRequest::default()).await;
    let served = |key: ApiKey| {
        versions
            .api_keys
            .iter()
            .find(|v| v.api_key == key as i16)
            .map(|v| (v.min_version, v.max_version))
    };
    assert_eq!(served(ApiKey::DeleteGroups), Some((0, 2)));
    assert_eq!(served(ApiKey::OffsetDelete), Some((0, 0)));
    broker.shutdown().await;
}
