//! kcat's balanced consumer (librdkafka, `-G`) with the cooperative-sticky assignor
//! against the Kafka listener: it joins through the classic protocol, is assigned every
//! partition by the broker's coordinator, reads every record, and its commits are the
//! group's.

mod common;
mod kafka_support;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

use kafka_support::{start_broker, tools};

/// Runs kcat with `args`, feeding `input`, and returns its stdout.
async fn kcat(args: Vec<String>, input: String) -> String {
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new(tools::kcat())
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "kcat {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    })
    .await
    .unwrap()
}

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
        .read(|c| c.fetch_offsets("kcat-group", None))
        .await
        .unwrap()
        .into_iter()
        .map(|(tp, o)| (tp.partition, o.offset))
        .collect();
    assert_eq!(committed, ends);
    // It left the group when it closed.
    let description = groups
        .read(|c| c.describe_group("kcat-group"))
        .await
        .unwrap()
        .unwrap();
    assert!(description.members.is_empty(), "{description:?}");
    broker.shutdown().await;
}
