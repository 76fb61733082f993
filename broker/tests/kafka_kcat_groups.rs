//! kcat's balanced consumer (librdkafka, `-G`) with the cooperative-sticky assignor
//! against the Kafka listener: it joins through the classic protocol, is assigned every
//! partition by the broker's coordinator, reads every record, and its commits are the
//! group's; a second one takes half the partitions while the first keeps consuming the
//! rest.

mod common;
mod kafka_support;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};

use kafka_support::start_broker;
use kafka_support::tools::kcat;

#[tokio::test]
async fn kcat_cooperative_sticky_group_consumer_reads_every_record_and_commits() {
    let (broker, kafka) = start_broker().await;
    broker.create_topic("coop", 3).await;
    let bootstrap = kafka.to_string();
    let count = 30;
    let input: String = (0..count).map(|i| format!("key-{i}:value-{i}\n")).collect();
    kcat(
        [
            "-b", &bootstrap, "-t", "coop", "-P", "-K", ":", "-X", "acks=all",
        ]
        .map(String::from)
        .to_vec(),
        input,
    )
    .await;
    let consumed = kcat(
        [
            "-b",
            &bootstrap,
            "-G",
            "kcat-group",
            "-X",
            "partition.assignment.strategy=cooperative-sticky",
            "-X",
            "auto.offset.reset=earliest",
            "-e",
            "-f",
            "%p %o %s\n",
            "coop",
        ]
        .map(String::from)
        .to_vec(),
        String::new(),
    )
    .await;
    let mut values: Vec<&str> = consumed
        .lines()
        .map(|line| line.split(' ').nth(2).unwrap())
        .collect();
    values.sort_unstable();
    let mut expected: Vec<String> = (0..count).map(|i| format!("value-{i}")).collect();
    expected.sort_unstable();
    assert_eq!(values, expected, "{consumed}");

    // Its commits on close are the end of each partition it read.
    let mut ends: BTreeMap<u32, u64> = BTreeMap::new();
    for line in consumed.lines() {
        let mut fields = line.split(' ');
        let partition: u32 = fields.next().unwrap().parse().unwrap();
        let offset: u64 = fields.next().unwrap().parse().unwrap();
        let end = ends.entry(partition).or_default();
        *end = (*end).max(offset + 1);
    }
    let groups = broker.running.as_ref().unwrap().groups();
    let committed: BTreeMap<u32, u64> = groups
        .read("kcat-group", |c| c.fetch_offsets("kcat-group", None))
        .await
        .unwrap()
        .into_iter()
        .map(|(tp, o)| (tp.partition, o.offset))
        .collect();
    assert_eq!(committed, ends);
    // It left the group when it closed.
    let description = groups
        .read("kcat-group", |c| c.describe_group("kcat-group"))
        .await
        .unwrap()
        .unwrap();
    assert!(description.members.is_empty(), "{description:?}");
    broker.shutdown().await;
}

/// A long-running `kcat -G` whose printed lines are collected as they come.
struct Member {
    /// Taken by `stop`; a member dropped without it (a failed test) is killed.
    child: Option<std::process::Child>,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Member {
    fn start(bootstrap: &str, group: &str, topic: &str) -> Member {
        let mut child = Command::new(kafka_support::tools::kcat_binary())
            .args([
                "-b",
                bootstrap,
                "-G",
                group,
                "-X",
                "partition.assignment.strategy=cooperative-sticky",
                "-X",
                "auto.offset.reset=earliest",
                "-X",
                "auto.commit.interval.ms=100",
                "-X",
                "heartbeat.interval.ms=200",
                "-f",
                "%p %o\n",
                // Unbuffered: a line as soon as its record is read.
                "-u",
                topic,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let collected = std::sync::Arc::clone(&lines);
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                collected.lock().unwrap().push(line);
            }
        });
        Member {
            child: Some(child),
            lines,
        }
    }

    /// (partition, offset) of every record printed so far.
    fn read(&self) -> Vec<(u32, u64)> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .map(|line| {
                let (p, o) = line.split_once(' ').unwrap();
                (p.parse().unwrap(), o.parse().unwrap())
            })
            .collect()
    }

    /// SIGTERM: kcat closes its consumer, which leaves the group. Waited for off the
    /// runtime, which serves that LeaveGroup.
    async fn stop(mut self) {
        let mut child = self.child.take().unwrap();
        let pid = child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        tokio::task::spawn_blocking(move || child.wait())
            .await
            .unwrap()
            .unwrap();
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits (bounded) until `condition` holds.
async fn until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn produce_to_every_partition(bootstrap: &str, partitions: u32, per_partition: u32) {
    for partition in 0..partitions {
        let input: String = (0..per_partition).map(|i| format!("v{i}\n")).collect();
        kcat(
            [
                "-b",
                bootstrap,
                "-t",
                "shared",
                "-P",
                "-p",
                &partition.to_string(),
            ]
            .map(String::from)
            .to_vec(),
            input,
        )
        .await;
    }
}

#[tokio::test]
async fn a_second_cooperative_kcat_takes_half_the_partitions_while_the_first_keeps_the_rest() {
    let data = tempfile::tempdir().unwrap();
    let mut config = common::config(data.path().to_path_buf());
    config.kafka_listen = Some("127.0.0.1:0".parse().unwrap());
    config.groups.initial_rebalance_delay_ms = 0;
    let (broker, kafka) = kafka_support::start_broker_with(config, data).await;
    broker.create_topic("shared", 4).await;
    let bootstrap = kafka.to_string();
    let groups = std::sync::Arc::clone(broker.running.as_ref().unwrap().groups());
    let describe = || {
        let groups = std::sync::Arc::clone(&groups);
        async move {
            groups
                .read("kcat-pair", |c| c.describe_group("kcat-pair"))
                .await
                .unwrap()
                .ok()
        }
    };
    produce_to_every_partition(&bootstrap, 4, 10).await;

    let first = Member::start(&bootstrap, "kcat-pair", "shared");
    until("the first member read all 40 records", || {
        first.read().len() >= 40
    })
    .await;
    let first_id = describe().await.unwrap().members[0].member_id.clone();

    let second = Member::start(&bootstrap, "kcat-pair", "shared");
    let mut split = None;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while split.is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the two members never split the partitions"
        );
        if let Some(d) = describe().await {
            let stable = d.state == weir_broker::group::GroupState::Stable;
            if stable && d.members.len() == 2 && d.members.iter().all(|m| m.assignment.len() == 2) {
                split = Some(d);
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let split = split.unwrap();
    let kept: Vec<u32> = split
        .members
        .iter()
        .find(|m| m.member_id == first_id)
        .expect("the first member is still in the group")
        .assignment
        .iter()
        .map(|tp| tp.partition)
        .collect();

    // New records go to whoever owns their partition now.
    let first_before = first.read().len();
    produce_to_every_partition(&bootstrap, 4, 10).await;
    until("the new 40 records were read", || {
        let new_by_first = first.read().len() - first_before;
        new_by_first + second.read().len() >= 40
    })
    .await;
    let new_by_first: Vec<(u32, u64)> = first.read()[first_before..].to_vec();
    assert!(
        new_by_first
            .iter()
            .all(|(p, o)| kept.contains(p) && *o >= 10),
        "the first member read {new_by_first:?} after keeping {kept:?}"
    );
    assert_eq!(new_by_first.len(), 20, "{new_by_first:?}");
    // The second member read only its own partitions, from where the first committed.
    let by_second = second.read();
    assert!(
        by_second.iter().all(|(p, _)| !kept.contains(p)),
        "{by_second:?} {kept:?}"
    );
    assert_eq!(
        by_second.iter().filter(|(_, o)| *o >= 10).count(),
        20,
        "{by_second:?}"
    );
    first.stop().await;
    second.stop().await;
    // Both left the group as they closed.
    let left = describe().await.unwrap();
    assert!(left.members.is_empty(), "{left:?}");
    broker.shutdown().await;
}
