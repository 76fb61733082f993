//! A consumer group's coordinator SIGKILLed: three `weir broker` processes, a group that
//! read a topic with `weir consume --group` and committed where it stopped, and the broker
//! leading the group's partition of `__consumer_offsets` killed. A survivor takes the
//! partition over with the group's commits (`weir group describe` finds them through any
//! broker), and the next `weir consume --group` reads only what came after them.

mod cli_broker_common;
mod cli_cluster_common;

use std::time::Duration;

use cli_broker_common::{run_weir, stderr, stdout};
use cli_cluster_common::{wait_for, ProcessCluster};
use weir_broker::group::{
    offsets_partition_for, CONSUMER_OFFSETS_PARTITIONS_DEFAULT, CONSUMER_OFFSETS_TOPIC,
};

const TOPIC: &str = "events";
const GROUP: &str = "readers";

fn produce(cluster: &ProcessCluster, from: u32, count: u32) {
    let lines: String = (from..from + count).map(|i| format!("r{i}\n")).collect();
    let produced = run_weir(
        &cluster.bootstrap(),
        &["produce", TOPIC, "--acks", "all"],
        lines.as_bytes(),
    );
    assert!(produced.status.success(), "{}", stderr(&produced));
}

/// What one `weir consume --group` prints, reading up to the end offsets it starts with.
fn consume_as_group(bootstrap: &str) -> Vec<String> {
    let consumed = run_weir(bootstrap, &["consume", TOPIC, "--group", GROUP], b"");
    assert!(consumed.status.success(), "{}", stderr(&consumed));
    let mut values: Vec<String> = stdout(&consumed).lines().map(String::from).collect();
    values.sort_by_key(|v| v[1..].parse::<u32>().unwrap());
    values
}

fn committed_total(bootstrap: &str) -> Option<u64> {
    let described = run_weir(
        bootstrap,
        &["group", "describe", GROUP, "--output", "json"],
        b"",
    );
    if !described.status.success() {
        return None;
    }
    let description: serde_json::Value = serde_json::from_str(&stdout(&described)).unwrap();
    Some(
        description["partitions"]
            .as_array()?
            .iter()
            .filter_map(|p| p["committed_offset"].as_u64())
            .sum(),
    )
}

#[test]
fn the_groups_commits_survive_the_sigkill_of_its_coordinator() {
    let mut cluster = ProcessCluster::start(&[]);
    cluster.create_topic(TOPIC, 3);
    produce(&cluster, 0, 300);
    let read = consume_as_group(&cluster.bootstrap());
    assert_eq!(read, (0..300).map(|i| format!("r{i}")).collect::<Vec<_>>());
    assert_eq!(committed_total(&cluster.bootstrap()), Some(300));

    let index = offsets_partition_for(GROUP, CONSUMER_OFFSETS_PARTITIONS_DEFAULT);
    cluster.wait_in_sync(CONSUMER_OFFSETS_TOPIC, index + 1, Duration::from_secs(60));
    let (coordinator, isr) = cluster.partition(CONSUMER_OFFSETS_TOPIC, index).unwrap();
    assert_eq!(isr.len(), 3, "the group's partition is on every broker");
    cluster.kill(coordinator);
    wait_for(
        "a survivor leading the group's partition",
        Duration::from_secs(60),
        || {
            cluster
                .partition(CONSUMER_OFFSETS_TOPIC, index)
                .is_some_and(|(leader, _)| leader != 0 && leader != coordinator)
        },
    );
    let survivors: String = cluster
        .nodes
        .iter()
        .filter(|n| n.id != coordinator)
        .map(|n| n.addr())
        .collect::<Vec<_>>()
        .join(",");
    let mut total = None;
    wait_for(
        "the new coordinator answering",
        Duration::from_secs(60),
        || {
            total = committed_total(&survivors);
            total.is_some()
        },
    );
    assert_eq!(total, Some(300), "the commits after the coordinator died");

    produce(&cluster, 300, 30);
    let read = consume_as_group(&survivors);
    assert_eq!(
        read,
        (300..330).map(|i| format!("r{i}")).collect::<Vec<_>>(),
        "the group resumes from its commits"
    );
}
