//! The consumer-group APIs of the Kafka listener spoken to through `kafka-protocol`:
//! FindCoordinator, OffsetCommit and OffsetFetch at every version served, and a
//! cooperative classic member handing partitions over in two steps, with Kafka's error
//! codes.

mod common;
mod kafka_support;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition as OwnedTopic;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, DescribeGroupsRequest,
    FindCoordinatorRequest, GroupId, HeartbeatRequest, JoinGroupRequest, JoinGroupResponse,
    LeaveGroupRequest, ListGroupsRequest, OffsetCommitRequest, OffsetCommitResponse,
    OffsetFetchRequest, SyncGroupRequest, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use kafka_support::{start_broker, start_broker_with, KafkaWire};

const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const COORDINATOR_NOT_AVAILABLE: i16 = 15;
const ILLEGAL_GENERATION: i16 = 22;
const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
const UNKNOWN_MEMBER_ID: i16 = 25;
const REBALANCE_IN_PROGRESS: i16 = 27;
const INVALID_COMMIT_OFFSET_SIZE: i16 = 28;
const MEMBER_ID_REQUIRED: i16 = 79;

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_owned())
}

fn group(id: &str) -> GroupId {
    GroupId(s(id))
}

fn topic(name: &str) -> TopicName {
    TopicName(s(name))
}

fn commit(
    group_id: &str,
    member: &str,
    generation: i32,
    offsets: &[(&str, i32, i64)],
) -> OffsetCommitRequest {
    let topics = offsets
        .iter()
        .map(|&(name, partition, offset)| {
            OffsetCommitRequestTopic::default()
                .with_name(topic(name))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(partition)
                    .with_committed_offset(offset)
                    .with_committed_metadata(Some(s("meta")))])
        })
        .collect();
    OffsetCommitRequest::default()
        .with_group_id(group(group_id))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member))
        .with_topics(topics)
}

fn codes(response: &OffsetCommitResponse) -> Vec<i16> {
    response
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
        .collect()
}

/// Committed offset and metadata of `partition`, as OffsetFetch `version` answers it.
async fn fetch_committed(
    wire: &mut KafkaWire,
    version: i16,
    group_id: &str,
    partition: i32,
) -> (i64, String) {
    if version >= 8 {
        let request =
            OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
                .with_group_id(group(group_id))
                .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                    .with_name(topic("commits"))
                    .with_partition_indexes(vec![partition])]))]);
        let response = wire.call(version, &request).await;
        let group = &response.groups[0];
        assert_eq!(group.error_code, 0);
        let p = &group.topics[0].partitions[0];
        assert_eq!(p.error_code, 0);
        return (p.committed_offset, p.metadata.as_ref().unwrap().to_string());
    }
    let request = OffsetFetchRequest::default()
        .with_group_id(group(group_id))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(topic("commits"))
            .with_partition_indexes(vec![partition])]));
    let response = wire.call(version, &request).await;
    assert_eq!(response.error_code, 0);
    let p = &response.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    (p.committed_offset, p.metadata.as_ref().unwrap().to_string())
}

#[tokio::test]
async fn offsets_committed_from_outside_a_group_are_fetched_at_every_version() {
    let (broker, kafka) = start_broker().await;
    broker.create_topic("commits", 2).await;
    let mut wire = KafkaWire::connect(kafka).await;
    for (i, version) in (2..=9).enumerate() {
        let offset = 10 * (i as i64 + 1);
        // Generation -1 and no member: a consumer with manually assigned partitions.
        let response = wire
            .call(
                version,
                &commit("outside", "", -1, &[("commits", 0, offset)]),
            )
            .await;
        assert_eq!(codes(&response), vec![0], "OffsetCommit v{version}");
        for fetch_version in [1, 2, 5, 7, 8, 9] {
            assert_eq!(
                fetch_committed(&mut wire, fetch_version, "outside", 0).await,
                (offset, "meta".to_owned()),
                "OffsetCommit v{version}, OffsetFetch v{fetch_version}"
            );
        }
    }
    // A partition nobody committed: -1, as Kafka answers; so is a group nobody knows.
    assert_eq!(fetch_committed(&mut wire, 7, "outside", 1).await.0, -1);
    assert_eq!(fetch_committed(&mut wire, 9, "nobody", 0).await.0, -1);
    // All committed offsets of the group (no topics named).
    let all = wire
        .call(
            7,
            &OffsetFetchRequest::default()
                .with_group_id(group("outside"))
                .with_topics(None),
        )
        .await;
    assert_eq!(all.topics.len(), 1);
    assert_eq!(all.topics[0].partitions.len(), 1);

    // Refusals, partition by partition where Kafka checks them apart.
    let refused = wire
        .call(
            8,
            &commit("outside", "", -1, &[("missing", 0, 1), ("commits", 0, 90)]),
        )
        .await;
    assert_eq!(codes(&refused), vec![UNKNOWN_TOPIC_OR_PARTITION, 0]);
    assert_eq!(fetch_committed(&mut wire, 8, "outside", 0).await.0, 90);
    let refused = wire
        .call(
            8,
            &commit(
                "outside",
                "",
                -1,
                &[("commits", 1, -5), ("commits", 0, 100)],
            ),
        )
        .await;
    assert_eq!(codes(&refused), vec![INVALID_COMMIT_OFFSET_SIZE, 0]);
    assert_eq!(fetch_committed(&mut wire, 8, "outside", 0).await.0, 100);
    // A member id the group does not know.
    let refused = wire
        .call(8, &commit("outside", "ghost", 3, &[("commits", 0, 1)]))
        .await;
    assert_eq!(codes(&refused), vec![UNKNOWN_MEMBER_ID]);
    broker.shutdown().await;
}

#[tokio::test]
async fn find_coordinator_names_this_broker_for_groups_and_refuses_transactions() {
    let (broker, kafka) = start_broker().await;
    let mut wire = KafkaWire::connect(kafka).await;
    for version in 0..=3 {
        let response = wire
            .call(version, &FindCoordinatorRequest::default().with_key(s("g")))
            .await;
        assert_eq!(response.error_code, 0, "v{version}");
        assert_eq!(response.node_id.0, 0);
        assert_eq!(response.host.as_str(), kafka.ip().to_string());
        assert_eq!(response.port, i32::from(kafka.port()));
    }
    let response = wire
        .call(
            4,
            &FindCoordinatorRequest::default().with_coordinator_keys(vec![s("a"), s("b")]),
        )
        .await;
    let keys: Vec<_> = response
        .coordinators
        .iter()
        .map(|c| (c.key.to_string(), c.port))
        .collect();
    let port = i32::from(kafka.port());
    assert_eq!(keys, vec![("a".to_owned(), port), ("b".to_owned(), port)]);
    let transactions = wire
        .call(
            1,
            &FindCoordinatorRequest::default()
                .with_key(s("tx"))
                .with_key_type(1),
        )
        .await;
    assert_eq!(transactions.error_code, COORDINATOR_NOT_AVAILABLE);
    assert!(transactions.error_message.unwrap().contains("transactions"));
    broker.shutdown().await;
}

fn subscription(owned: &[i32]) -> Bytes {
    let mut bytes = BytesMut::new();
    bytes.put_i16(1);
    ConsumerProtocolSubscription::default()
        .with_topics(vec![s("coop")])
        .with_owned_partitions(if owned.is_empty() {
            Vec::new()
        } else {
            vec![OwnedTopic::default()
                .with_topic(topic("coop"))
                .with_partitions(owned.to_vec())]
        })
        .encode(&mut bytes, 1)
        .unwrap();
    bytes.freeze()
}

fn join_request(member_id: &str, owned: &[i32]) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(group("coop"))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(30_000)
        .with_member_id(s(member_id))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(s("cooperative-sticky"))
            .with_metadata(subscription(owned))])
}

fn decode_assignment(mut bytes: Bytes) -> Vec<i32> {
    let version = bytes.get_i16();
    assert!(version >= 0, "the assignment starts with its version");
    let assignment = ConsumerProtocolAssignment::decode(&mut bytes, version).unwrap();
    let mut partitions: Vec<i32> = assignment
        .assigned_partitions
        .iter()
        .flat_map(|t| {
            assert_eq!(t.topic.0.as_str(), "coop");
            t.partitions.clone()
        })
        .collect();
    partitions.sort_unstable();
    partitions
}

/// A cooperative classic member: its id, generation and partitions after a sync.
struct Member {
    id: String,
    generation: i32,
    owned: Vec<i32>,
}

/// JoinGroup (v7) reporting `owned` (a new member twice: the first answer is
/// MEMBER_ID_REQUIRED with its id), then SyncGroup (v5).
async fn join_and_sync(wire: &mut KafkaWire, member_id: &str, owned: &[i32]) -> Member {
    let mut joined = wire.call(7, &join_request(member_id, owned)).await;
    if member_id.is_empty() {
        assert_eq!(joined.error_code, MEMBER_ID_REQUIRED);
        joined = wire
            .call(7, &join_request(joined.member_id.as_str(), owned))
            .await;
    }
    sync_joined(wire, &joined).await
}

/// SyncGroup (v5) after `joined`, a JoinGroup's answer.
async fn sync_joined(wire: &mut KafkaWire, joined: &JoinGroupResponse) -> Member {
    assert_eq!(joined.error_code, 0);
    assert_eq!(
        joined.protocol_type.as_ref().map(|t| t.to_string()),
        Some("consumer".to_owned())
    );
    assert_eq!(
        joined.protocol_name.as_ref().unwrap().as_str(),
        "cooperative-sticky"
    );
    // No member is the leader: the coordinator assigns.
    assert_ne!(joined.leader, joined.member_id);
    assert!(joined.members.is_empty());
    let synced = wire
        .call(
            5,
            &SyncGroupRequest::default()
                .with_group_id(group("coop"))
                .with_generation_id(joined.generation_id)
                .with_member_id(joined.member_id.clone())
                .with_protocol_type(Some(s("consumer")))
                .with_protocol_name(Some(s("cooperative-sticky"))),
        )
        .await;
    assert_eq!(synced.error_code, 0);
    assert_eq!(synced.protocol_name.unwrap().as_str(), "cooperative-sticky");
    Member {
        id: joined.member_id.to_string(),
        generation: joined.generation_id,
        owned: decode_assignment(synced.assignment),
    }
}

async fn heartbeat(wire: &mut KafkaWire, member: &Member) -> i16 {
    wire.call(
        4,
        &HeartbeatRequest::default()
            .with_group_id(group("coop"))
            .with_generation_id(member.generation)
            .with_member_id(s(&member.id)),
    )
    .await
    .error_code
}

#[tokio::test]
async fn a_cooperative_classic_member_gives_up_only_what_moves_and_only_then_is_it_reassigned() {
    let data = tempfile::tempdir().unwrap();
    let mut config = common::config(data.path().to_path_buf());
    config.kafka_listen = Some("127.0.0.1:0".parse().unwrap());
    config.groups.initial_rebalance_delay_ms = 0;
    let (broker, kafka) = start_broker_with(config, data).await;
    broker.create_topic("coop", 4).await;
    let mut wire = KafkaWire::connect(kafka).await;

    let a = join_and_sync(&mut wire, "", &[]).await;
    assert_eq!(a.owned, vec![0, 1, 2, 3]);
    assert_eq!(heartbeat(&mut wire, &a).await, 0);

    // B joins on a connection of its own: its JoinGroup is held until A, which must give
    // up partitions for it, has rejoined, as Kafka's rebalance answers joins together.
    let mut wire_b = KafkaWire::connect(kafka).await;
    let named = wire_b.call(7, &join_request("", &[])).await;
    assert_eq!(named.error_code, MEMBER_ID_REQUIRED);
    let b_join = wire_b
        .send(7, &join_request(named.member_id.as_str(), &[]))
        .await;
    // A is told to rejoin once B's join reached the coordinator.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while heartbeat(&mut wire, &a).await != REBALANCE_IN_PROGRESS {
        assert!(
            tokio::time::Instant::now() < deadline,
            "A is never told to rejoin"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }

    // A rejoins owning all four: it keeps two, at the same generation, and commits
    // one it gives up before it lets go. That ends the first rebalance: B is answered,
    // with nothing yet, as cooperative-sticky gives a moving partition to its new owner
    // only in the next rebalance.
    let a_kept = join_and_sync(&mut wire, &a.id, &a.owned).await;
    assert_eq!(a_kept.generation, a.generation);
    assert_eq!(a_kept.owned.len(), 2);
    let b_joined = wire_b.response::<JoinGroupRequest>(7, b_join).await;
    let b = sync_joined(&mut wire_b, &b_joined).await;
    assert!(
        b.owned.is_empty(),
        "B waits for what A holds: {:?}",
        b.owned
    );
    let given_up = *a.owned.iter().find(|p| !a_kept.owned.contains(p)).unwrap();
    let committed = wire
        .call(
            8,
            &commit("coop", &a.id, a.generation, &[("coop", given_up, 7)]),
        )
        .await;
    assert_eq!(codes(&committed), vec![0]);
    // Nothing moved to B yet: A has not confirmed.
    assert_eq!(heartbeat(&mut wire, &b).await, 0);
    assert_eq!(heartbeat(&mut wire, &a_kept).await, REBALANCE_IN_PROGRESS);

    // A rejoins without them: a new generation; now B is told to rejoin and gets them.
    let a_moved = join_and_sync(&mut wire, &a.id, &a_kept.owned).await;
    assert!(a_moved.generation > a.generation);
    assert_eq!(a_moved.owned, a_kept.owned);
    assert_eq!(heartbeat(&mut wire, &b).await, REBALANCE_IN_PROGRESS);
    let b_moved = join_and_sync(&mut wire, &b.id, &b.owned).await;
    assert_eq!(b_moved.owned.len(), 2);
    assert!(b_moved.owned.iter().all(|p| !a_moved.owned.contains(p)));
    // B may not commit a partition A holds; a stale generation is refused.
    let kept_by_a = a_moved.owned[0];
    let refused = wire
        .call(
            8,
            &commit(
                "coop",
                &b_moved.id,
                b_moved.generation,
                &[("coop", kept_by_a, 8)],
            ),
        )
        .await;
    assert_ne!(codes(&refused), vec![0], "B committed A's partition");
    let stale = Member {
        generation: b_moved.generation - 1,
        id: b_moved.id.clone(),
        owned: Vec::new(),
    };
    assert_eq!(heartbeat(&mut wire, &stale).await, ILLEGAL_GENERATION);
    assert_eq!(heartbeat(&mut wire, &a_moved).await, 0);
    assert_eq!(heartbeat(&mut wire, &b_moved).await, 0);

    // Listed and described as Kafka's tools read them.
    let listed = wire.call(4, &ListGroupsRequest::default()).await;
    let states: Vec<_> = listed
        .groups
        .iter()
        .map(|g| (g.group_id.0.to_string(), g.group_state.to_string()))
        .collect();
    assert_eq!(states, vec![("coop".to_owned(), "Stable".to_owned())]);
    let classic_only = wire
        .call(
            5,
            &ListGroupsRequest::default().with_types_filter(vec![s("classic")]),
        )
        .await;
    assert!(classic_only.groups.is_empty());
    let described = wire
        .call(
            5,
            &DescribeGroupsRequest::default().with_groups(vec![group("coop"), group("none")]),
        )
        .await;
    let coop = &described.groups[0];
    assert_eq!((coop.error_code, coop.group_state.as_str()), (0, "Stable"));
    assert_eq!(coop.protocol_type.as_str(), "consumer");
    let mut assigned: Vec<i32> = coop
        .members
        .iter()
        .flat_map(|m| decode_assignment(m.member_assignment.clone()))
        .collect();
    assigned.sort_unstable();
    assert_eq!(assigned, vec![0, 1, 2, 3]);
    assert_eq!(described.groups[1].group_state.as_str(), "Dead");

    // A JoinGroup of another protocol type, a leave, and a leave of a member gone.
    let other = wire
        .call(7, &join_request("", &[]).with_protocol_type(s("connect")))
        .await;
    assert_eq!(other.error_code, INCONSISTENT_GROUP_PROTOCOL);
    let leave = |id: &str| {
        LeaveGroupRequest::default()
            .with_group_id(group("coop"))
            .with_members(vec![MemberIdentity::default().with_member_id(s(id))])
    };
    let left = wire.call(3, &leave(&a.id)).await;
    assert_eq!(left.members[0].error_code, 0);
    let again = wire.call(3, &leave(&a.id)).await;
    assert_eq!(again.members[0].error_code, UNKNOWN_MEMBER_ID);
    // B is told to rejoin and takes A's partitions at once.
    assert_eq!(heartbeat(&mut wire, &b_moved).await, REBALANCE_IN_PROGRESS);
    let b_all = join_and_sync(&mut wire, &b_moved.id, &b_moved.owned).await;
    assert_eq!(b_all.owned, vec![0, 1, 2, 3]);
    // The commit A made before it gave the partition up is the group's.
    assert_eq!(fetch_committed_coop(&mut wire, given_up).await, 7);
    broker.shutdown().await;
}

async fn fetch_committed_coop(wire: &mut KafkaWire, partition: i32) -> i64 {
    let request = OffsetFetchRequest::default()
        .with_group_id(group("coop"))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(topic("coop"))
            .with_partition_indexes(vec![partition])]));
    wire.call(5, &request).await.topics[0].partitions[0].committed_offset
}

/// Every version of every group API is answered and decodes: no field is set on a version
/// that lacks it (which would fail to encode and close the connection).
#[tokio::test]
async fn every_served_version_of_the_group_apis_is_answered() {
    let data = tempfile::tempdir().unwrap();
    let mut config = common::config(data.path().to_path_buf());
    config.kafka_listen = Some("127.0.0.1:0".parse().unwrap());
    // Ten new groups: none waits out an initial delay before its sessions are renewed.
    config.groups.initial_rebalance_delay_ms = 0;
    let (broker, kafka) = start_broker_with(config, data).await;
    broker.create_topic("coop", 2).await;
    let mut wire = KafkaWire::connect(kafka).await;
    // One group per JoinGroup version: a join into a group that has a member waits for
    // that member to rejoin, as in Kafka's classic rebalance.
    let group_of = |version: i16| format!("coop-v{version}");
    let mut members = Vec::new();
    for version in 0..=9 {
        let mut request = join_request("", &[]).with_group_id(group(&group_of(version)));
        if version == 0 {
            // v0 has no rebalance timeout (it uses the session timeout).
            request.rebalance_timeout_ms = -1;
        }
        let mut joined = wire.call(version, &request).await;
        if version >= 4 {
            // KIP-394: the first join of a new member only names it.
            assert_eq!(
                joined.error_code, MEMBER_ID_REQUIRED,
                "JoinGroup v{version}"
            );
            request.member_id = joined.member_id.clone();
            joined = wire.call(version, &request).await;
        }
        assert_eq!(joined.error_code, 0, "JoinGroup v{version}");
        assert!(!joined.member_id.is_empty(), "JoinGroup v{version}");
        members.push(Member {
            id: joined.member_id.to_string(),
            generation: joined.generation_id,
            owned: Vec::new(),
        });
    }
    for (version, member) in (0..=5).zip(&members) {
        let mut request = SyncGroupRequest::default()
            .with_group_id(group(&group_of(version)))
            .with_generation_id(member.generation)
            .with_member_id(s(&member.id));
        if version >= 5 {
            request = request
                .with_protocol_type(Some(s("consumer")))
                .with_protocol_name(Some(s("cooperative-sticky")));
        }
        let synced = wire.call(version, &request).await;
        assert_eq!(synced.error_code, 0, "SyncGroup v{version}");
        assert_eq!(
            decode_assignment(synced.assignment),
            [0, 1],
            "SyncGroup v{version}"
        );
    }
    for (version, member) in (0..=4).zip(&members) {
        let request = HeartbeatRequest::default()
            .with_group_id(group(&group_of(version)))
            .with_generation_id(member.generation)
            .with_member_id(s(&member.id));
        let code = wire.call(version, &request).await.error_code;
        assert_eq!(code, 0, "Heartbeat v{version}");
    }
    let every_group: Vec<_> = (0..=9).map(|v| group(&group_of(v))).collect();
    for version in 0..=5 {
        let listed = wire.call(version, &ListGroupsRequest::default()).await;
        assert_eq!(listed.groups.len(), 10, "ListGroups v{version}");
        let described = wire
            .call(
                version,
                &DescribeGroupsRequest::default().with_groups(every_group.clone()),
            )
            .await;
        assert!(
            described.groups.iter().all(|g| g.members.len() == 1),
            "DescribeGroups v{version}"
        );
    }
    for (version, member) in (0..=5).zip(&members) {
        let request = if version >= 3 {
            LeaveGroupRequest::default()
                .with_group_id(group(&group_of(version)))
                .with_members(vec![MemberIdentity::default().with_member_id(s(&member.id))])
        } else {
            LeaveGroupRequest::default()
                .with_group_id(group(&group_of(version)))
                .with_member_id(s(&member.id))
        };
        let left = wire.call(version, &request).await;
        assert_eq!(left.error_code, 0, "LeaveGroup v{version}");
        assert!(
            left.members.iter().all(|m| m.error_code == 0),
            "LeaveGroup v{version}"
        );
    }
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_during_the_initial_rebalance_delay_are_answered_after_it_with_the_whole_assignment()
{
    const DELAY_MS: u64 = 600;
    let data = tempfile::tempdir().unwrap();
    let mut config = common::config(data.path().to_path_buf());
    config.kafka_listen = Some("127.0.0.1:0".parse().unwrap());
    config.groups.initial_rebalance_delay_ms = DELAY_MS as i64;
    let (broker, kafka) = start_broker_with(config, data).await;
    broker.create_topic("coop", 4).await;

    // Two classic members on their own connections, joining the new group together.
    let started = std::time::Instant::now();
    let member = || async move {
        let mut wire = KafkaWire::connect(kafka).await;
        join_and_sync(&mut wire, "", &[]).await
    };
    let (a, b) = tokio::join!(member(), member());
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(DELAY_MS),
        "answered before the delay ended"
    );
    // Each one's first assignment is its share, as Kafka's classic coordinator gives
    // it: not an empty one followed by a rebalance.
    assert_eq!(
        (a.owned.len(), b.owned.len()),
        (2, 2),
        "{:?} {:?}",
        a.owned,
        b.owned
    );
    assert_eq!(a.generation, b.generation);
    let mut all: Vec<i32> = a.owned.iter().chain(&b.owned).copied().collect();
    all.sort_unstable();
    assert_eq!(all, [0, 1, 2, 3]);
}
