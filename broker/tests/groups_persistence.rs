//! The group coordinator's state lives in `__consumer_offsets`: committed offsets and
//! membership come back after a restart, rebuilt from the log alone.

mod common;

use std::collections::BTreeSet;

use common::{config, TestBroker};
use weir_broker::group::{
    offsets_partition_for, GroupConfig, HeartbeatRequest, OffsetCommit, TopicPartition,
    NO_MEMBER_EPOCH,
};
use weir_broker::GroupService;

fn group_config() -> GroupConfig {
    GroupConfig {
        initial_rebalance_delay_ms: 0,
        ..GroupConfig::default()
    }
}

async fn start(data: tempfile::TempDir) -> TestBroker {
    let mut config = config(data.path().to_path_buf());
    config.offsets_topic_partitions = 4;
    config.groups = group_config();
    TestBroker::start_with(config, data).await
}

async fn restart(mut broker: TestBroker) -> TestBroker {
    broker.running.take().unwrap().shutdown().await.unwrap();
    start(broker.data).await
}

fn groups(broker: &TestBroker) -> &GroupService {
    broker.running.as_ref().unwrap().groups()
}

fn join(group: &str, topic: &str) -> HeartbeatRequest {
    HeartbeatRequest {
        group_id: group.to_string(),
        member_id: String::new(),
        group_instance_id: None,
        member_epoch: 0,
        subscribed_topics: BTreeSet::from([topic.to_string()]),
        owned: BTreeSet::new(),
        rebalance_timeout_ms: 300_000,
        server_assignor: None,
    }
}

#[tokio::test]
async fn committed_offsets_survive_a_restart() {
    let broker = start(tempfile::tempdir().unwrap()).await;
    broker.create_topic("clicks", 2).await;
    let commits = [
        OffsetCommit {
            partition: TopicPartition::new("clicks", 0),
            offset: 17,
            metadata: "first".to_string(),
        },
        OffsetCommit {
            partition: TopicPartition::new("clicks", 1),
            offset: 4,
            metadata: String::new(),
        },
    ];
    groups(&broker)
        .mutate("audit", |c, now_ms| {
            c.commit_offsets("audit", "", NO_MEMBER_EPOCH, &commits, now_ms)
        })
        .await
        .unwrap();
    // The records are in the group's partition of the log, not only in memory.
    let placed = offsets_partition_for("audit", 4);
    let offsets = broker
        .admin()
        .await
        .describe_topic("__consumer_offsets")
        .await
        .unwrap();
    assert!(offsets.partitions[placed as usize].log_end_offset > 0);

    let broker = restart(broker).await;
    let fetched = groups(&broker)
        .read("audit", |c| c.fetch_offsets("audit", None))
        .await
        .unwrap();
    let fetched: Vec<_> = fetched
        .into_iter()
        .map(|(tp, o)| (tp.partition, o.offset, o.metadata))
        .collect();
    assert_eq!(
        fetched,
        [(0, 17, "first".to_string()), (1, 4, String::new())]
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn group_membership_and_assignment_survive_a_restart() {
    let broker = start(tempfile::tempdir().unwrap()).await;
    broker.create_topic("views", 3).await;
    let mut request = join("readers", "views");
    let mut answer = None;
    for _ in 0..10 {
        let response = groups(&broker)
            .mutate(&request.group_id, |c, now_ms| c.heartbeat(&request, now_ms))
            .await
            .unwrap();
        request.member_id = response.member_id.clone();
        request.member_epoch = response.member_epoch;
        request.owned = response.assignment.clone();
        if response.assignment.len() == 3 {
            answer = Some(response);
            break;
        }
    }
    let answer = answer.expect("the only member was given all 3 partitions");

    let broker = restart(broker).await;
    let described = groups(&broker)
        .read("readers", |c| c.describe_group("readers"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(described.members.len(), 1);
    let member = &described.members[0];
    assert_eq!(member.member_id, answer.member_id);
    assert_eq!(member.member_epoch, answer.member_epoch);
    assert_eq!(member.assignment, answer.assignment);
    // The member goes on heartbeating at its epoch after the restart.
    let again = groups(&broker)
        .mutate(&request.group_id, |c, now_ms| c.heartbeat(&request, now_ms))
        .await
        .unwrap();
    assert_eq!(again.member_epoch, answer.member_epoch);
    assert_eq!(again.assignment, answer.assignment);
    broker.shutdown().await;
}

#[tokio::test]
async fn a_deleted_group_stays_deleted_after_a_restart() {
    let broker = start(tempfile::tempdir().unwrap()).await;
    broker.create_topic("clicks", 1).await;
    let commit = [OffsetCommit {
        partition: TopicPartition::new("clicks", 0),
        offset: 9,
        metadata: String::new(),
    }];
    groups(&broker)
        .mutate("gone", |c, now_ms| {
            c.commit_offsets("gone", "", NO_MEMBER_EPOCH, &commit, now_ms)
        })
        .await
        .unwrap();
    let broker = restart(broker).await;
    assert_eq!(
        groups(&broker)
            .read("gone", |c| c.fetch_offsets("gone", None))
            .await
            .unwrap()
            .len(),
        1
    );
    groups(&broker)
        .mutate("gone", |c, _| c.delete_group("gone"))
        .await
        .unwrap();

    let broker = restart(broker).await;
    let listed = groups(&broker).read_all(|c| c.list_groups()).await.unwrap();
    assert!(listed.is_empty(), "{listed:?}");
    assert!(groups(&broker)
        .read("gone", |c| c.fetch_offsets("gone", None))
        .await
        .unwrap()
        .is_empty());
    broker.shutdown().await;
}

#[tokio::test]
async fn a_change_whose_append_fails_is_refused_and_forgotten() {
    let broker = start(tempfile::tempdir().unwrap()).await;
    broker.create_topic("clicks", 1).await;
    let commit = |offset| {
        [OffsetCommit {
            partition: TopicPartition::new("clicks", 0),
            offset,
            metadata: String::new(),
        }]
    };
    let service = groups(&broker);
    service
        .mutate("g", |c, now_ms| {
            c.commit_offsets("g", "", NO_MEMBER_EPOCH, &commit(5), now_ms)
        })
        .await
        .unwrap();
    // The broker itself may still reconfigure its topic: batches this small refuse
    // every append of group records.
    let running = broker.running.as_ref().unwrap().broker();
    let limit = [("max.message.bytes".to_string(), "16".to_string())].into();
    running
        .alter_configs("__consumer_offsets", limit)
        .await
        .unwrap();
    let refused = service
        .mutate("g", |c, now_ms| {
            c.commit_offsets("g", "", NO_MEMBER_EPOCH, &commit(9), now_ms)
        })
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("__consumer_offsets"),
        "{refused}"
    );
    let unlimited = [("max.message.bytes".to_string(), String::new())].into();
    running
        .alter_configs("__consumer_offsets", unlimited)
        .await
        .unwrap();
    // What is served next is the coordinator as the log has it: offset 5, not 9.
    let fetched = service
        .read("g", |c| c.fetch_offsets("g", None))
        .await
        .unwrap();
    assert_eq!(fetched.values().map(|o| o.offset).collect::<Vec<_>>(), [5]);
    broker.shutdown().await;
}
