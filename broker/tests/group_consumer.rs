//! `weir_client::GroupConsumer` against a real broker: members share partitions,
//! a revoked partition's position is committed before it moves (so clean churn
//! reads every record exactly once), lost partitions are read again only from the
//! last commit, and offsets outlive the broker.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{config, TestBroker};
use tokio::sync::mpsc;
use weir_broker::group::GroupConfig;
use weir_client::proto::ErrorCode;
use weir_client::{
    ClientError, GroupConsumer, GroupConsumerConfig, Producer, ProducerConfig, ProducerRecord,
    Rebalance, RebalanceMode,
};

/// A hang guard only: every wait below ends on a condition.
const HANG_GUARD: Duration = Duration::from_secs(90);

async fn start() -> TestBroker {
    let data = tempfile::tempdir().unwrap();
    let mut config = config(data.path().to_path_buf());
    config.offsets_topic_partitions = 3;
    config.groups = GroupConfig {
        initial_rebalance_delay_ms: 0,
        session_timeout_ms: 10_000,
        heartbeat_interval_ms: 100,
        ..GroupConfig::default()
    };
    TestBroker::start_with(config, data).await
}

fn member_config(group: &str) -> GroupConsumerConfig {
    GroupConsumerConfig {
        auto_commit_interval: Duration::from_millis(200),
        ..GroupConsumerConfig::new(group)
    }
}

/// Writes `per_partition` records to each partition; values name their place.
async fn produce(addr: &str, topic: &str, partitions: u32, per_partition: u32) {
    let producer = Producer::connect(addr, ProducerConfig::default())
        .await
        .unwrap();
    let mut deliveries = Vec::new();
    for i in 0..per_partition {
        for partition in 0..partitions {
            let value = format!("{partition}-{i}");
            deliveries.push(
                producer
                    .send(ProducerRecord {
                        partition: Some(partition),
                        ..ProducerRecord::new(topic, value.as_bytes())
                    })
                    .await
                    .unwrap(),
            );
        }
    }
    for delivery in deliveries {
        delivery.await.unwrap();
    }
    producer.close().await.unwrap();
}

/// (topic, partition, offset) of a record.
type Place = (String, u32, u64);

/// Polls `member` in a task, sending each record's place with the member's tag,
/// until told to stop; then closes it (or drops it, unclean).
fn spawn_member(
    mut member: GroupConsumer,
    tag: usize,
    out: mpsc::UnboundedSender<(usize, Place)>,
    mut stop: tokio::sync::oneshot::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match stop.try_recv() {
                Ok(clean) => {
                    if clean {
                        member.close().await.unwrap();
                    }
                    return;
                }
                Err(tokio::sync::oneshot::error::TryRecvError::Closed) => return,
                Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {}
            }
            for record in member.poll(Duration::from_millis(100)).await.unwrap() {
                let place = (record.topic.to_string(), record.partition, record.offset);
                if out.send((tag, place)).is_err() {
                    return;
                }
            }
        }
    })
}

async fn collect_until(
    deliveries: &mut mpsc::UnboundedReceiver<(usize, Place)>,
    seen: &mut Vec<(usize, Place)>,
    distinct: usize,
) {
    tokio::time::timeout(HANG_GUARD, async {
        while seen.iter().map(|(_, p)| p).collect::<BTreeSet<_>>().len() < distinct {
            seen.push(deliveries.recv().await.unwrap());
        }
    })
    .await
    .expect("every record delivered");
}

fn duplicates(seen: &[(usize, Place)]) -> Vec<&Place> {
    let mut count: BTreeMap<&Place, usize> = BTreeMap::new();
    for (_, place) in seen {
        *count.entry(place).or_default() += 1;
    }
    count
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(p, _)| p)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_joining_one_by_one_read_every_record_exactly_once() {
    let broker = start().await;
    broker.create_topic("t", 6).await;
    let admin = broker.admin().await;
    let mut members: Vec<GroupConsumer> = Vec::new();
    let mut seen: Vec<Place> = Vec::new();
    for round in 0..3u32 {
        produce(&broker.addr, "t", 6, 100).await;
        // Without auto-commit, only the commit made on revocation keeps a moved
        // partition's records from being read again by its next owner.
        let config = GroupConsumerConfig {
            enable_auto_commit: false,
            ..member_config("g")
        };
        members.push(
            GroupConsumer::subscribe(&broker.addr, &["t"], config)
                .await
                .unwrap(),
        );
        let share = 6 / members.len();
        tokio::time::timeout(HANG_GUARD, async {
            loop {
                for member in members.iter_mut() {
                    for record in member.poll(Duration::from_millis(20)).await.unwrap() {
                        seen.push((record.topic.to_string(), record.partition, record.offset));
                    }
                }
                let group = admin.describe_group("g").await.unwrap();
                let settled = group.state == "Stable"
                    && members.iter().all(|m| m.assignment().len() == share);
                let read = seen.iter().collect::<BTreeSet<_>>().len();
                if settled && read == 600 * (round as usize + 1) {
                    return;
                }
            }
        })
        .await
        .expect("the members settle and read every record");
    }
    assert_eq!(
        seen.iter().collect::<BTreeSet<_>>().len(),
        seen.len(),
        "records read twice: a revoked partition's position is committed before its next owner starts"
    );
    let owned: BTreeSet<(String, u32)> = members.iter().flat_map(|m| m.assignment()).collect();
    assert_eq!(owned.len(), 6, "no partition owned twice");
    for member in members {
        member.close().await.unwrap();
    }
    let group = admin.describe_group("g").await.unwrap();
    assert!(group.members.is_empty(), "closed members left: {group:?}");
    for partition in &group.partitions {
        assert_eq!(partition.committed_offset, Some(300), "{partition:?}");
        assert_eq!(partition.lag, Some(0), "{partition:?}");
    }
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_churn_every_record_is_read_and_only_a_dropped_members_are_read_again() {
    let broker = start().await;
    broker.create_topic("t", 6).await;
    let addr = broker.addr.clone();
    // Records keep arriving through the churn (30 rounds of 60), so members leave
    // with records read since their last commit.
    let producing = tokio::spawn(async move {
        let producer = Producer::connect(&addr, ProducerConfig::default())
            .await
            .unwrap();
        for round in 0..30 {
            let mut deliveries = Vec::new();
            for i in 0..10 {
                for partition in 0..6 {
                    let value = format!("{partition}-{round}-{i}");
                    deliveries.push(
                        producer
                            .send(ProducerRecord {
                                partition: Some(partition),
                                ..ProducerRecord::new("t", value.as_bytes())
                            })
                            .await
                            .unwrap(),
                    );
                }
            }
            for delivery in deliveries {
                delivery.await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        producer.close().await.unwrap();
    });
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut seen = Vec::new();
    let mut live: Vec<(
        usize,
        tokio::sync::oneshot::Sender<bool>,
        tokio::task::JoinHandle<()>,
    )> = Vec::new();
    let mut dropped = BTreeSet::new();
    let member_config = |group: &str| GroupConsumerConfig {
        auto_commit_interval: Duration::from_secs(1),
        ..GroupConsumerConfig::new(group)
    };
    // Members join and leave while records flow: every third leave is unclean (the
    // member is dropped without closing, so nothing is committed on its way out).
    for round in 0..9usize {
        let member = GroupConsumer::subscribe(&broker.addr, &["t"], member_config("g"))
            .await
            .unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        live.push((
            round,
            stop,
            spawn_member(member, round, tx.clone(), stopped),
        ));
        collect_until(&mut rx, &mut seen, 150 * (round + 1)).await;
        if live.len() > 2 {
            let (tag, stop, task) = live.remove(0);
            let clean = tag % 3 != 2;
            if !clean {
                dropped.insert(tag);
            }
            stop.send(clean).unwrap();
            task.await.unwrap();
        }
    }
    producing.await.unwrap();
    collect_until(&mut rx, &mut seen, 1800).await;
    let repeated = duplicates(&seen);
    for place in &repeated {
        let first = seen.iter().find(|(_, p)| p == *place).unwrap().0;
        assert!(
            dropped.contains(&first),
            "record {place:?} was read again although member {first}, which read it first, \
             left cleanly (dropped members: {dropped:?})"
        );
    }
    eprintln!(
        "churn: {} deliveries of 1800 records, {} read twice, all first read by a dropped member",
        seen.len(),
        repeated.len()
    );
    for (_, stop, task) in live {
        stop.send(true).unwrap();
        task.await.unwrap();
    }
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_groups_each_read_every_record_and_offsets_outlive_a_restart() {
    let broker = start().await;
    broker.create_topic("t", 3).await;
    produce(&broker.addr, "t", 3, 20).await;
    for group in ["a", "b"] {
        let mut member = GroupConsumer::subscribe(&broker.addr, &["t"], member_config(group))
            .await
            .unwrap();
        let mut read = BTreeSet::new();
        tokio::time::timeout(HANG_GUARD, async {
            while read.len() < 60 {
                for record in member.poll(Duration::from_millis(100)).await.unwrap() {
                    assert!(read.insert((record.partition, record.offset)));
                }
            }
        })
        .await
        .expect("each group reads all 60 records");
        member.close().await.unwrap();
    }
    let broker = broker.restart().await;
    produce(&broker.addr, "t", 3, 5).await;
    let mut member = GroupConsumer::subscribe(&broker.addr, &["t"], member_config("a"))
        .await
        .unwrap();
    let mut read = Vec::new();
    tokio::time::timeout(HANG_GUARD, async {
        while read.len() < 15 {
            read.extend(member.poll(Duration::from_millis(100)).await.unwrap());
        }
    })
    .await
    .expect("the group resumes after the restart");
    assert!(
        read.iter().all(|r| r.offset >= 20),
        "resumed at the committed offsets: {:?}",
        read.iter()
            .map(|r| (r.partition, r.offset))
            .collect::<Vec<_>>()
    );
    member.close().await.unwrap();
    broker.shutdown().await;
}

/// Partitions revoked in one rebalance, as the callback saw them.
async fn revocations_when_a_second_member_joins(mode: RebalanceMode) -> Vec<Rebalance> {
    let broker = start().await;
    broker.create_topic("t", 4).await;
    let events = Arc::new(Mutex::new(Vec::new()));
    let mut first = GroupConsumer::subscribe(
        &broker.addr,
        &["t"],
        GroupConsumerConfig {
            rebalance_mode: mode,
            ..member_config("g")
        },
    )
    .await
    .unwrap();
    let sink = Arc::clone(&events);
    first.on_rebalance(move |event| sink.lock().unwrap().push(event.clone()));
    tokio::time::timeout(HANG_GUARD, async {
        while first.assignment().len() < 4 {
            first.poll(Duration::from_millis(50)).await.unwrap();
        }
    })
    .await
    .expect("the first member gets all four partitions");
    let mut second = GroupConsumer::subscribe(&broker.addr, &["t"], member_config("g"))
        .await
        .unwrap();
    tokio::time::timeout(HANG_GUARD, async {
        while first.assignment().len() != 2 || second.assignment().len() != 2 {
            first.poll(Duration::from_millis(20)).await.unwrap();
            second.poll(Duration::from_millis(20)).await.unwrap();
        }
    })
    .await
    .expect("the members settle on two partitions each");
    first.close().await.unwrap();
    second.close().await.unwrap();
    broker.shutdown().await;
    let events = events.lock().unwrap().clone();
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incremental_rebalance_revokes_only_what_moves() {
    let events = revocations_when_a_second_member_joins(RebalanceMode::Incremental).await;
    let all: Vec<(String, u32)> = (0..4).map(|p| ("t".to_string(), p)).collect();
    assert_eq!(events[0], Rebalance::Assigned(all), "{events:?}");
    match &events[1] {
        Rebalance::Revoked(moved) => assert_eq!(moved.len(), 2, "{events:?}"),
        other => panic!("expected a revocation of two partitions, got {other:?}"),
    }
    // Closing revokes the two it kept; nothing was taken back in between.
    assert_eq!(events.len(), 3, "{events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_the_world_rebalance_revokes_everything_and_takes_its_share_back() {
    let events = revocations_when_a_second_member_joins(RebalanceMode::StopTheWorld).await;
    let all: Vec<(String, u32)> = (0..4).map(|p| ("t".to_string(), p)).collect();
    assert_eq!(events[0], Rebalance::Assigned(all.clone()), "{events:?}");
    assert_eq!(events[1], Rebalance::Revoked(all), "{events:?}");
    match &events[2] {
        Rebalance::Assigned(back) => assert_eq!(back.len(), 2, "{events:?}"),
        other => panic!("expected two partitions assigned back, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_stops_polling_loses_its_partitions_to_the_others() {
    let broker = start().await;
    broker.create_topic("t", 2).await;
    let events = Arc::new(Mutex::new(Vec::new()));
    let mut stuck = GroupConsumer::subscribe(
        &broker.addr,
        &["t"],
        GroupConsumerConfig {
            max_poll_interval: Duration::from_millis(500),
            ..member_config("g")
        },
    )
    .await
    .unwrap();
    let sink = Arc::clone(&events);
    stuck.on_rebalance(move |event| sink.lock().unwrap().push(event.clone()));
    tokio::time::timeout(HANG_GUARD, async {
        while stuck.assignment().len() < 2 {
            stuck.poll(Duration::from_millis(50)).await.unwrap();
        }
    })
    .await
    .expect("the first member gets both partitions");
    let mut other = GroupConsumer::subscribe(&broker.addr, &["t"], member_config("g"))
        .await
        .unwrap();
    // `stuck` is never polled again here: after max.poll.interval.ms it leaves.
    tokio::time::timeout(HANG_GUARD, async {
        while other.assignment().len() < 2 {
            other.poll(Duration::from_millis(50)).await.unwrap();
        }
    })
    .await
    .expect("the polling member gets both partitions");
    stuck.poll(Duration::from_millis(10)).await.unwrap();
    let events = events.lock().unwrap().clone();
    assert!(
        matches!(events.last(), Some(Rebalance::Lost(lost)) if lost.len() == 2),
        "{events:?}"
    );
    drop(stuck);
    other.close().await.unwrap();
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_for_a_partition_the_member_does_not_own_is_refused() {
    let broker = start().await;
    broker.create_topic("t", 1).await;
    broker.create_topic("u", 1).await;
    let mut member = GroupConsumer::subscribe(&broker.addr, &["t"], member_config("g"))
        .await
        .unwrap();
    tokio::time::timeout(HANG_GUARD, async {
        while member.assignment().is_empty() {
            member.poll(Duration::from_millis(50)).await.unwrap();
        }
    })
    .await
    .expect("the member gets its partition");
    let error = member
        .commit_offsets(&[("u".to_string(), 0, 1)])
        .await
        .unwrap_err();
    assert!(
        matches!(
            &error,
            ClientError::Group {
                code: ErrorCode::PartitionNotAssigned,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains('u'), "{error}");
    member
        .commit_offsets(&[("t".to_string(), 0, 0)])
        .await
        .unwrap();
    member.close().await.unwrap();
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_member_that_restarts_gets_its_partitions_back_without_a_rebalance() {
    let broker = start().await;
    broker.create_topic("t", 4).await;
    let static_config = |instance: &str| GroupConsumerConfig {
        instance_id: Some(instance.to_string()),
        ..member_config("g")
    };
    let mut first = GroupConsumer::subscribe(&broker.addr, &["t"], static_config("a"))
        .await
        .unwrap();
    let mut second = GroupConsumer::subscribe(&broker.addr, &["t"], static_config("b"))
        .await
        .unwrap();
    tokio::time::timeout(HANG_GUARD, async {
        while first.assignment().len() != 2 || second.assignment().len() != 2 {
            first.poll(Duration::from_millis(20)).await.unwrap();
            second.poll(Duration::from_millis(20)).await.unwrap();
        }
    })
    .await
    .expect("two static members share four partitions");
    let owned_by_first = first.assignment();
    let admin = broker.admin().await;
    let epoch_before = admin.describe_group("g").await.unwrap().group_epoch;
    // A static member's close steps out for the session timeout; it comes back
    // under the same instance id.
    first.close().await.unwrap();
    let mut restarted = GroupConsumer::subscribe(&broker.addr, &["t"], static_config("a"))
        .await
        .unwrap();
    tokio::time::timeout(HANG_GUARD, async {
        while restarted.assignment().len() != 2 {
            restarted.poll(Duration::from_millis(20)).await.unwrap();
            second.poll(Duration::from_millis(20)).await.unwrap();
        }
    })
    .await
    .expect("the restarted member gets its partitions back");
    assert_eq!(restarted.assignment(), owned_by_first);
    assert_eq!(
        second.assignment().len(),
        2,
        "the other member kept its own"
    );
    let group = admin.describe_group("g").await.unwrap();
    assert_eq!(group.group_epoch, epoch_before, "no rebalance: {group:?}");
    restarted.close().await.unwrap();
    second.close().await.unwrap();
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_commit_resolves_once_the_coordinator_has_it() {
    let broker = start().await;
    broker.create_topic("t", 1).await;
    produce(&broker.addr, "t", 1, 10).await;
    let mut member = GroupConsumer::subscribe(
        &broker.addr,
        &["t"],
        GroupConsumerConfig {
            enable_auto_commit: false,
            ..member_config("g")
        },
    )
    .await
    .unwrap();
    let mut read = 0;
    tokio::time::timeout(HANG_GUARD, async {
        while read < 10 {
            read += member.poll(Duration::from_millis(50)).await.unwrap().len();
        }
    })
    .await
    .expect("the member reads the ten records");
    member.commit_async().await.unwrap();
    let committed = member.committed(&[("t".to_string(), 0)]).await.unwrap();
    assert_eq!(committed, vec![("t".to_string(), 0, Some(10))]);
    member.close().await.unwrap();
    broker.shutdown().await;
}
