//! kafka-python's `KafkaConsumer` with a `group_id` against the Kafka listener: the
//! classic protocol (FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup) and
//! OffsetCommit/OffsetFetch on the broker's group coordinator.

mod common;
mod kafka_support;

use std::collections::BTreeSet;
use std::process::Command;

use kafka_support::{start_broker, tools};

/// Runs a kafka-python script with `args`; returns its JSON report.
async fn run_python(script: &'static str, args: Vec<String>) -> serde_json::Value {
    let output = tokio::task::spawn_blocking(move || {
        Command::new(tools::kafka_python())
            .arg("-c")
            .arg(script)
            .args(args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "kafka-python failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "kafka-python printed no report ({error}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

fn offsets(records: &serde_json::Value) -> Vec<(u64, u64)> {
    records
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r[0].as_u64().unwrap(), r[1].as_u64().unwrap()))
        .collect()
}

const RESUME: &str = r#"
import json, sys
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

bootstrap, topic, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
for i in range(count):
    producer.send(topic, value=b"value-%d" % i, partition=i % 2)
producer.flush()
producer.close()

def consumer():
    return KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id="resume",
                         enable_auto_commit=False, auto_offset_reset="earliest",
                         max_poll_records=5, session_timeout_ms=10000,
                         heartbeat_interval_ms=500, fetch_max_wait_ms=100)

def consume(c, at_least):
    records = []
    for _ in range(600):
        if len(records) >= at_least:
            break
        for batch in c.poll(timeout_ms=100).values():
            records.extend([r.partition, r.offset] for r in batch)
    return records

first = consumer()
read_first = consume(first, count // 4)
first.commit()
committed = {p: first.committed(TopicPartition(topic, p)) for p in (0, 1)}
first.close()

second = consumer()
read_second = consume(second, count - len(read_first))
second.commit()
second.close()
print(json.dumps({"first": read_first, "second": read_second, "committed": committed}))
"#;

#[tokio::test]
async fn a_group_consumer_commits_closes_and_the_next_one_resumes_from_its_commit() {
    let (broker, kafka) = start_broker().await;
    broker.create_topic("resume", 2).await;
    let count = 40u64;
    let report = run_python(
        RESUME,
        vec![kafka.to_string(), "resume".into(), count.to_string()],
    )
    .await;
    let first = offsets(&report["first"]);
    let second = offsets(&report["second"]);
    assert!(!first.is_empty() && (first.len() as u64) < count);
    // The first consumer committed the position after the last record it read.
    for partition in 0..2u64 {
        let next = first
            .iter()
            .filter(|(p, _)| *p == partition)
            .map(|(_, o)| o + 1)
            .max()
            .unwrap_or(0);
        let committed = &report["committed"][partition.to_string()];
        if next > 0 {
            assert_eq!(committed.as_u64(), Some(next), "partition {partition}");
        }
        // The second starts exactly there.
        let resumed = second
            .iter()
            .filter(|(p, _)| *p == partition)
            .map(|(_, o)| *o)
            .min();
        assert_eq!(resumed, Some(next), "partition {partition}");
    }
    // Between them every record was read once.
    let all: BTreeSet<(u64, u64)> = first.iter().chain(&second).copied().collect();
    assert_eq!(
        all.len(),
        first.len() + second.len(),
        "a record was read twice"
    );
    assert_eq!(all.len() as u64, count);

    // The commits are the coordinator's, as gRPC sees them.
    let committed = broker
        .running
        .as_ref()
        .unwrap()
        .groups()
        .read("resume", |c| c.fetch_offsets("resume", None))
        .await
        .unwrap();
    let ends: Vec<u64> = committed.values().map(|o| o.offset).collect();
    assert_eq!(ends, vec![count / 2, count / 2]);
    broker.shutdown().await;
}

const SPLIT: &str = r#"
import json, sys
from kafka import KafkaConsumer, KafkaProducer

bootstrap, topic, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
for i in range(count):
    producer.send(topic, value=b"value-%d" % i, partition=i % 4)
producer.flush()
producer.close()

def consumer():
    return KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id="split",
                         enable_auto_commit=True, auto_commit_interval_ms=200,
                         auto_offset_reset="earliest", session_timeout_ms=10000,
                         heartbeat_interval_ms=300, fetch_max_wait_ms=100)

consumers = [consumer(), consumer()]
read = [set(), set()]
split = None
stable_rounds = 0
for _ in range(1200):
    for i, c in enumerate(consumers):
        for batch in c.poll(timeout_ms=50).values():
            read[i].update((r.partition, r.offset) for r in batch)
    owned = [sorted(tp.partition for tp in c.assignment()) for c in consumers]
    if all(owned) and sorted(owned[0] + owned[1]) == [0, 1, 2, 3] and len(read[0] | read[1]) == count:
        stable_rounds = stable_rounds + 1 if owned == split else 0
        split = owned
        if stable_rounds >= 10:
            break
    else:
        stable_rounds = 0
for c in consumers:
    c.close()
print(json.dumps({"owned": split, "read": [sorted(r) for r in read]}))
"#;

#[tokio::test]
async fn two_group_consumers_split_the_partitions_and_read_every_record() {
    let (broker, kafka) = start_broker().await;
    broker.create_topic("split", 4).await;
    let count = 40u64;
    let report = run_python(
        SPLIT,
        vec![kafka.to_string(), "split".into(), count.to_string()],
    )
    .await;
    let owned: Vec<Vec<u64>> = serde_json::from_value(report["owned"].clone())
        .expect("the two consumers never held two partitions each");
    assert_eq!(owned.len(), 2);
    assert_eq!(owned[0].len(), 2, "{owned:?}");
    assert_eq!(owned[1].len(), 2, "{owned:?}");
    let all: BTreeSet<u64> = owned.iter().flatten().copied().collect();
    assert_eq!(all, (0..4).collect());
    let read: BTreeSet<(u64, u64)> = report["read"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(offsets)
        .collect();
    assert_eq!(read.len() as u64, count);
    // Closing left the group: each LeaveGroup removed its member at once.
    let description = broker
        .running
        .as_ref()
        .unwrap()
        .groups()
        .read("split", |c| c.describe_group("split"))
        .await
        .unwrap()
        .unwrap();
    assert!(
        description.members.is_empty(),
        "both consumers left when closed: {description:?}"
    );
    broker.shutdown().await;
}
