//! Pipelines of closures against a real broker: records flow from one topic through
//! the stages into another, workers of one group share the input, and a worker that
//! dies loses no output (at-least-once).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use weir_client::{
    Admin, Consumer, ConsumerConfig, OffsetReset, Producer, ProducerConfig, ProducerRecord,
};
use weir_processors::pipeline::Pipeline;

/// A hang guard only: every wait ends on a condition.
const HANG_GUARD: Duration = Duration::from_secs(90);

async fn produce(addr: &str, numbers: std::ops::Range<u64>) {
    let producer = Producer::connect(addr, ProducerConfig::default())
        .await
        .unwrap();
    let mut deliveries = Vec::new();
    for n in numbers {
        let value = n.to_string();
        let partition = (n % 4) as u32;
        deliveries.push(
            producer
                .send(ProducerRecord::new("in", value.as_bytes()).with_partition(partition))
                .await
                .unwrap(),
        );
    }
    for delivery in deliveries {
        delivery.await.unwrap();
    }
    producer.close().await.unwrap();
}

/// The even numbers, times ten, keyed by the number mod 7.
fn pipeline() -> weir_processors::pipeline::Runnable {
    Pipeline::from_topic("in")
        .group("tens")
        .filter_map(|record| {
            std::str::from_utf8(record.value.as_deref()?)
                .ok()?
                .parse::<u64>()
                .ok()
        })
        .filter(|n| n % 2 == 0)
        .map(|n| n * 10)
        .key_by(|n| n % 7)
        .to_topic("out", |(key, n)| {
            (
                Some(key.to_string().into_bytes()),
                n.to_string().into_bytes(),
            )
        })
}

/// Reads "out" until it holds every value of `expected`; returns each value's count.
async fn read_out(addr: &str, expected: &BTreeSet<u64>) -> BTreeMap<u64, usize> {
    let mut consumer = Consumer::connect(
        addr,
        ConsumerConfig {
            offset_reset: OffsetReset::Earliest,
            ..ConsumerConfig::default()
        },
    )
    .await
    .unwrap();
    let partitions: Vec<u32> = (0..4).collect();
    consumer.assign("out", &partitions);
    let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
    tokio::time::timeout(HANG_GUARD, async {
        while !expected.iter().all(|n| seen.contains_key(n)) {
            for record in consumer.poll(Duration::from_millis(100)).await.unwrap() {
                let value: u64 = std::str::from_utf8(record.value.as_deref().unwrap())
                    .unwrap()
                    .parse()
                    .unwrap();
                let key: u64 = std::str::from_utf8(record.key.as_deref().unwrap())
                    .unwrap()
                    .parse()
                    .unwrap();
                assert_eq!(key, value % 7, "the key is the one key_by gave");
                *seen.entry(value).or_default() += 1;
            }
        }
    })
    .await
    .expect("every output arrives");
    seen
}

fn expected(numbers: std::ops::Range<u64>) -> BTreeSet<u64> {
    numbers.filter(|n| n % 2 == 0).map(|n| n * 10).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_flow_through_the_stages_into_the_output_topic_once() {
    let data = tempfile::tempdir().unwrap();
    let broker = common::start_broker(data.path(), 10_000).await;
    let addr = broker.local_addr().to_string();
    let admin = Admin::connect(&addr).await.unwrap();
    admin
        .create_topic("in", 4, 1, &Default::default())
        .await
        .unwrap();
    admin
        .create_topic("out", 4, 1, &Default::default())
        .await
        .unwrap();
    produce(&addr, 0..200).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn({
        let addr = addr.clone();
        async move {
            pipeline()
                .run(&addr, async {
                    let _ = stopped.await;
                })
                .await
        }
    });
    let seen = read_out(&addr, &expected(0..200)).await;
    stop.send(()).unwrap();
    let stats = worker.await.unwrap().unwrap();
    assert_eq!(stats.records_in, 200);
    assert_eq!(stats.records_out, 100);
    assert!(seen.values().all(|n| *n == 1), "each output once: {seen:?}");
    // The worker committed what it read: the group has no lag left.
    let group = admin.describe_group("tens").await.unwrap();
    assert!(
        group.partitions.iter().all(|p| p.lag == Some(0)),
        "{group:?}"
    );
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_share_the_input_and_a_killed_one_loses_no_output() {
    let data = tempfile::tempdir().unwrap();
    let broker = common::start_broker(data.path(), 10_000).await;
    let addr = broker.local_addr().to_string();
    let admin = Admin::connect(&addr).await.unwrap();
    admin
        .create_topic("in", 4, 1, &Default::default())
        .await
        .unwrap();
    admin
        .create_topic("out", 4, 1, &Default::default())
        .await
        .unwrap();
    let spawn = |addr: String| {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            pipeline()
                .run(&addr, async {
                    let _ = stopped.await;
                })
                .await
        });
        (stop, task)
    };
    let (_first_stop, first) = spawn(addr.clone());
    let (second_stop, second) = spawn(addr.clone());
    tokio::time::timeout(HANG_GUARD, async {
        loop {
            if let Ok(group) = admin.describe_group("tens").await {
                let shares: Vec<usize> = group.members.iter().map(|m| m.assignment.len()).collect();
                if shares == vec![2, 2] {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the two workers share the four partitions");
    produce(&addr, 0..200).await;
    read_out(&addr, &expected(0..100)).await;
    // The first worker dies: its task is aborted, with no commit and no leave.
    first.abort();
    produce(&addr, 200..400).await;
    let seen = read_out(&addr, &expected(0..400)).await;
    let repeated = seen.values().filter(|n| **n > 1).count();
    eprintln!("{repeated} outputs repeated after the killed worker's partitions moved");
    second_stop.send(()).unwrap();
    second.await.unwrap().unwrap();
    broker.shutdown().await.unwrap();
}
