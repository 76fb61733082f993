//! The `weir.v1.Group` service against a real broker: members converge without a
//! partition owned twice, silent members are removed, epochs fence commits, groups are
//! independent and survive restarts, and bad requests get their error.

mod common;

use std::collections::BTreeSet;

use common::{config, TestBroker};
use weir_broker::group::GroupConfig;
use weir_client::proto::group_client::GroupClient;
use weir_client::proto::{
    ConsumerGroupHeartbeatRequest, DeleteGroupRequest, DescribeGroupRequest, ErrorCode,
    OffsetCommitPartition, OffsetCommitRequest, OffsetCommitTopic, OffsetFetchRequest,
    ResetOffsetsRequest, TopicPartitions,
};

type Client = GroupClient<tonic::transport::Channel>;

async fn start(session_timeout_ms: i64, data: tempfile::TempDir) -> TestBroker {
    let mut config = config(data.path().to_path_buf());
    config.offsets_topic_partitions = 3;
    config.groups = GroupConfig {
        initial_rebalance_delay_ms: 0,
        session_timeout_ms,
        // Below the session timeout, as the broker's config check demands.
        heartbeat_interval_ms: session_timeout_ms / 3,
        ..GroupConfig::default()
    };
    TestBroker::start_with(config, data).await
}

async fn client(broker: &TestBroker) -> Client {
    GroupClient::new(weir_client::connect(&broker.addr).await.unwrap())
}

/// One member as its heartbeats see it.
struct Member {
    group: String,
    topic: String,
    id: String,
    epoch: i32,
    owned: BTreeSet<u32>,
}

impl Member {
    fn new(group: &str, topic: &str) -> Member {
        Member {
            group: group.to_string(),
            topic: topic.to_string(),
            id: String::new(),
            epoch: 0,
            owned: BTreeSet::new(),
        }
    }

    /// One heartbeat reporting what it owns; it then owns what the answer says.
    async fn heartbeat(&mut self, client: &mut Client) {
        let answer = client
            .consumer_group_heartbeat(ConsumerGroupHeartbeatRequest {
                group_id: self.group.clone(),
                member_id: self.id.clone(),
                member_epoch: self.epoch,
                rebalance_timeout_ms: 300_000,
                subscribed_topic_names: vec![self.topic.clone()],
                owned_topic_partitions: vec![TopicPartitions {
                    topic: self.topic.clone(),
                    partitions: self.owned.iter().copied().collect(),
                }],
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            answer.error_code(),
            ErrorCode::None,
            "{}",
            answer.error_message
        );
        self.id = answer.member_id;
        self.epoch = answer.member_epoch;
        self.owned = answer
            .assignment
            .iter()
            .flat_map(|t| t.partitions.iter().copied())
            .collect();
    }

    async fn commit(&self, client: &mut Client, epoch: i32, partition: u32) -> (ErrorCode, String) {
        commit(
            client,
            &self.group,
            &self.id,
            epoch,
            &self.topic,
            partition,
            10,
        )
        .await
    }
}

async fn commit(
    client: &mut Client,
    group: &str,
    member: &str,
    epoch: i32,
    topic: &str,
    partition: u32,
    offset: u64,
) -> (ErrorCode, String) {
    let answer = client
        .offset_commit(OffsetCommitRequest {
            group_id: group.to_string(),
            member_id: member.to_string(),
            member_epoch: epoch,
            topics: vec![OffsetCommitTopic {
                topic: topic.to_string(),
                partitions: vec![OffsetCommitPartition {
                    partition,
                    offset,
                    metadata: String::new(),
                }],
            }],
        })
        .await
        .unwrap()
        .into_inner();
    let result = &answer.topics[0].partitions[0];
    (result.error_code(), result.error_message.clone())
}

async fn committed(client: &mut Client, group: &str) -> Vec<(String, u32, i64)> {
    client
        .offset_fetch(OffsetFetchRequest {
            group_id: group.to_string(),
            topics: Vec::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .offsets
        .into_iter()
        .map(|o| (o.topic, o.partition, o.offset))
        .collect()
}

/// Heartbeats `a` and `b` in turn until both own `each` partitions, asserting after
/// every answer that no partition is owned by both. Returns whether `b` was ever
/// answered with fewer partitions than it ends with while `a` still owned more.
async fn converge(client: &mut Client, a: &mut Member, b: &mut Member, each: usize) -> bool {
    let mut waited_for_release = false;
    for _ in 0..50 {
        a.heartbeat(client).await;
        assert!(
            a.owned.is_disjoint(&b.owned),
            "{:?} and {:?}",
            a.owned,
            b.owned
        );
        b.heartbeat(client).await;
        assert!(
            a.owned.is_disjoint(&b.owned),
            "{:?} and {:?}",
            a.owned,
            b.owned
        );
        waited_for_release |= b.owned.len() < each && a.owned.len() > each;
        if a.owned.len() == each && b.owned.len() == each {
            return waited_for_release;
        }
    }
    panic!("no convergence: {:?} and {:?}", a.owned, b.owned);
}

#[tokio::test]
async fn two_members_share_four_partitions_two_each_never_owning_one_twice() {
    let broker = start(45_000, tempfile::tempdir().unwrap()).await;
    broker.create_topic("clicks", 4).await;
    let mut client = client(&broker).await;
    let mut a = Member::new("readers", "clicks");
    for _ in 0..5 {
        a.heartbeat(&mut client).await;
    }
    assert_eq!(a.owned.len(), 4);
    let first_epoch = a.epoch;

    let mut b = Member::new("readers", "clicks");
    let waited = converge(&mut client, &mut a, &mut b, 2).await;
    assert!(
        waited,
        "the new member got partitions only after the old owner gave them up"
    );
    assert!(a.epoch > first_epoch);

    // A commit from the member's earlier epoch is refused; the current one is taken.
    let owned = *a.owned.first().unwrap();
    let (code, message) = a.commit(&mut client, first_epoch, owned).await;
    assert_eq!(code, ErrorCode::StaleMemberEpoch, "{message}");
    assert!(message.contains("readers"), "{message}");
    assert_eq!(
        a.commit(&mut client, a.epoch, owned).await.0,
        ErrorCode::None
    );
    // A partition the member does not own is not its to commit.
    let other = *b.owned.first().unwrap();
    assert_eq!(
        a.commit(&mut client, a.epoch, other).await.0,
        ErrorCode::PartitionNotAssigned
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn a_member_that_stops_heartbeating_loses_its_partitions() {
    let broker = start(600, tempfile::tempdir().unwrap()).await;
    broker.create_topic("clicks", 4).await;
    let mut client = client(&broker).await;
    let mut a = Member::new("readers", "clicks");
    let mut b = Member::new("readers", "clicks");
    converge(&mut client, &mut a, &mut b, 2).await;

    // Only `a` keeps heartbeating, at a pace well inside its session.
    let mut rounds = 0;
    while a.owned.len() < 4 {
        rounds += 1;
        assert!(rounds < 400, "the silent member was never removed");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        a.heartbeat(&mut client).await;
    }
    let described = client
        .describe_group(DescribeGroupRequest {
            group_id: "readers".to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    let members: Vec<_> = described
        .members
        .iter()
        .map(|m| m.member_id.as_str())
        .collect();
    assert_eq!(members, [a.id.as_str()]);
    broker.shutdown().await;
}

#[tokio::test]
async fn a_member_that_leaves_hands_its_partitions_over_at_once() {
    let broker = start(45_000, tempfile::tempdir().unwrap()).await;
    broker.create_topic("clicks", 4).await;
    let mut client = client(&broker).await;
    let mut a = Member::new("readers", "clicks");
    let mut b = Member::new("readers", "clicks");
    converge(&mut client, &mut a, &mut b, 2).await;

    let left = client
        .consumer_group_heartbeat(ConsumerGroupHeartbeatRequest {
            group_id: "readers".to_string(),
            member_id: b.id.clone(),
            member_epoch: -1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(left.error_code(), ErrorCode::None, "{}", left.error_message);
    assert_eq!(left.member_epoch, -1);
    a.heartbeat(&mut client).await;
    assert_eq!(a.owned.len(), 4);
    broker.shutdown().await;
}

#[tokio::test]
async fn two_groups_commit_independently_and_both_survive_a_restart() {
    let broker = start(45_000, tempfile::tempdir().unwrap()).await;
    broker.create_topic("clicks", 2).await;
    let mut c = client(&broker).await;
    assert_eq!(
        commit(&mut c, "billing", "", -1, "clicks", 0, 5).await.0,
        ErrorCode::None
    );
    assert_eq!(
        commit(&mut c, "audit", "", -1, "clicks", 0, 40).await.0,
        ErrorCode::None
    );
    assert_eq!(
        commit(&mut c, "audit", "", -1, "clicks", 1, 2).await.0,
        ErrorCode::None
    );
    let mut a = Member::new("members", "clicks");
    a.heartbeat(&mut c).await;
    a.heartbeat(&mut c).await;
    let before = (a.id.clone(), a.epoch);

    let mut broker = broker;
    broker.running.take().unwrap().shutdown().await.unwrap();
    let broker = start(45_000, broker.data).await;
    let mut c = client(&broker).await;
    assert_eq!(
        committed(&mut c, "billing").await,
        [("clicks".to_string(), 0, 5)]
    );
    assert_eq!(
        committed(&mut c, "audit").await,
        [("clicks".to_string(), 0, 40), ("clicks".to_string(), 1, 2)]
    );
    let described = c
        .describe_group(DescribeGroupRequest {
            group_id: "members".to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    let members: Vec<_> = described
        .members
        .iter()
        .map(|m| (m.member_id.clone(), m.member_epoch))
        .collect();
    assert_eq!(members, [before]);
    broker.shutdown().await;
}

#[tokio::test]
async fn bad_group_requests_get_an_error_naming_the_group() {
    let broker = start(45_000, tempfile::tempdir().unwrap()).await;
    broker.create_topic("clicks", 2).await;
    let mut c = client(&broker).await;

    let unknown = c
        .describe_group(DescribeGroupRequest {
            group_id: "nobody".to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    assert!(
        unknown.message().contains("nobody"),
        "{}",
        unknown.message()
    );

    let mut a = Member::new("busy", "clicks");
    a.heartbeat(&mut c).await;
    let reset = c
        .reset_offsets(ResetOffsetsRequest {
            group_id: "busy".to_string(),
            topics: vec![OffsetCommitTopic {
                topic: "clicks".to_string(),
                partitions: vec![OffsetCommitPartition {
                    partition: 0,
                    offset: 0,
                    metadata: String::new(),
                }],
            }],
        })
        .await
        .unwrap_err();
    assert_eq!(reset.code(), tonic::Code::FailedPrecondition);
    assert!(reset.message().contains("busy"), "{}", reset.message());
    let deleted = c
        .delete_group(DeleteGroupRequest {
            group_id: "busy".to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(deleted.code(), tonic::Code::FailedPrecondition);

    let no_timeout = c
        .consumer_group_heartbeat(ConsumerGroupHeartbeatRequest {
            group_id: "busy".to_string(),
            subscribed_topic_names: vec!["clicks".to_string()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(no_timeout.error_code(), ErrorCode::InvalidRequest);
    assert!(
        no_timeout.error_message.contains("rebalance_timeout_ms"),
        "{}",
        no_timeout.error_message
    );

    let (code, message) = commit(&mut c, "busy", "stranger", 1, "clicks", 0, 3).await;
    assert_eq!(code, ErrorCode::UnknownMemberId);
    assert!(message.contains("stranger"), "{message}");
    let (code, _) = commit(&mut c, "busy", "", -1, "nowhere", 0, 3).await;
    assert_eq!(code, ErrorCode::UnknownTopicOrPartition);
    assert!(committed(&mut c, "busy").await.is_empty());
    broker.shutdown().await;
}

#[tokio::test]
async fn a_topic_created_after_the_subscription_is_assigned() {
    let broker = start(45_000, tempfile::tempdir().unwrap()).await;
    let mut client = client(&broker).await;
    let mut a = Member::new("early", "later");
    a.heartbeat(&mut client).await;
    a.heartbeat(&mut client).await;
    assert!(a.owned.is_empty());

    broker.create_topic("later", 3).await;
    for _ in 0..10 {
        a.heartbeat(&mut client).await;
        if a.owned.len() == 3 {
            break;
        }
    }
    assert_eq!(a.owned, BTreeSet::from([0, 1, 2]));
    broker.shutdown().await;
}
