//! Each `__consumer_offsets` partition's coordinator has its own lock: an operation held
//! up on one partition (in a cluster, a commit waiting up to 5 s for a slow follower)
//! holds up only the groups of that partition, never those of another.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{config, TestBroker};
use weir_broker::group::offsets_partition_for;

const PARTITIONS: u32 = 4;

/// The first group names of the form `g<n>` on two different partitions.
fn groups_on_two_partitions() -> (String, String) {
    let first = "g0".to_string();
    let home = offsets_partition_for(&first, PARTITIONS);
    let other = (1..)
        .map(|n| format!("g{n}"))
        .find(|g| offsets_partition_for(g, PARTITIONS) != home)
        .unwrap();
    (first, other)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_operation_held_up_on_one_partition_holds_up_only_its_groups() {
    let data = tempfile::tempdir().unwrap();
    let mut config = config(data.path().to_path_buf());
    config.offsets_topic_partitions = PARTITIONS;
    let broker = TestBroker::start_with(config, data).await;
    let groups = Arc::clone(broker.running.as_ref().unwrap().groups());
    let (held, free) = groups_on_two_partitions();

    // An operation on `held`'s partition that does not end until told to.
    let (release, released) = std::sync::mpsc::channel::<()>();
    let (entered, is_entered) = tokio::sync::oneshot::channel::<()>();
    let holder = {
        let groups = Arc::clone(&groups);
        let held = held.clone();
        tokio::spawn(async move {
            groups
                .mutate(&held, move |_, _| {
                    entered.send(()).unwrap();
                    released.recv().unwrap();
                    Ok(())
                })
                .await
        })
    };
    is_entered.await.unwrap();

    // Another partition's group is served meanwhile.
    let answer = tokio::time::timeout(
        Duration::from_secs(10),
        groups.read(&free, |c| c.list_groups().len()),
    )
    .await
    .expect("a group of another partition is served while one partition is held");
    answer.unwrap();
    // The held partition's group waits for the operation before it.
    let waiting = tokio::time::timeout(
        Duration::from_millis(300),
        groups.read(&held, |c| c.list_groups().len()),
    )
    .await;
    assert!(
        waiting.is_err(),
        "the held partition's group was served mid-operation"
    );

    release.send(()).unwrap();
    holder.await.unwrap().unwrap();
    groups.read(&held, |c| c.list_groups().len()).await.unwrap();
}
