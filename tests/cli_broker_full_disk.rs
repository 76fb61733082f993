//! A broker whose disk fills up, on a real file system that runs out of space
//! (a small tmpfs mounted in a private mount namespace, so the test needs no
//! privileges beyond `unshare`): appends fail with a storage error naming the
//! cause, the broker keeps running and serving reads, every acknowledged
//! record reads back at its offset, and once space is freed (a topic deleted)
//! the same partitions take appends again without a restart.
//!
//! Where the machine does not allow user namespaces the test says so on stderr
//! and does nothing: it cannot make a full disk there.

#[path = "cli_broker_common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{BrokerChild, WEIR};
use weir::client::{
    Acks, Admin, ClientError, Consumer, ConsumerConfig, OffsetReset, Producer, ProducerConfig,
    ProducerRecord,
};

/// The whole file system the broker writes to.
const DISK_BYTES: u64 = 6 * 1024 * 1024;
const RECORD_BYTES: usize = 1000;
const PARTITIONS: u32 = 2;
/// Failed sends in a row that mean the disk is full.
const FAILURES_IN_A_ROW: u32 = 8;
/// Each phase fails the test after this instead of hanging it.
const PHASE_TIMEOUT: Duration = Duration::from_secs(120);

async fn within_phase_timeout<T>(
    work: impl std::future::Future<Output = T>,
) -> Result<T, tokio::time::error::Elapsed> {
    common::within(PHASE_TIMEOUT, work).await
}

/// Whether this machine lets an unprivileged process mount a tmpfs in its own
/// mount namespace.
fn private_tmpfs_allowed(scratch: &Path) -> bool {
    let mount_point = scratch.join("probe");
    std::fs::create_dir_all(&mount_point).unwrap();
    Command::new("unshare")
        .args(["-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs \"$0\""])
        .arg(&mount_point)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// `weir broker` inside its own mount namespace, on a tmpfs of `DISK_BYTES`
/// mounted over `mount_point` (outside the namespace the directory stays empty).
fn start_on_small_disk(mount_point: &Path, address_file: &Path, log: &Path) -> BrokerChild {
    let script = format!(
        "mount -t tmpfs -o size={DISK_BYTES} tmpfs \"$0\" && exec \"$1\" broker \
         --listen 127.0.0.1:0 --kafka-listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --data-dir \"$0/data\" --address-file \"$2\""
    );
    let mut command = Command::new("unshare");
    command
        .args(["-rm", "sh", "-c", &script])
        .arg(mount_point)
        .arg(WEIR)
        .arg(address_file);
    BrokerChild::spawn(command, address_file, log)
}

/// Small segments (rolls happen while the disk fills, each allocating index
/// files) and small preallocated indexes, so the tmpfs holds data, not indexes.
fn small_segments() -> BTreeMap<String, String> {
    [
        ("segment.bytes", "262144"),
        ("segment.index.bytes", "16384"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn producer_config() -> ProducerConfig {
    ProducerConfig {
        acks: Acks::Leader,
        linger: Duration::from_millis(1),
        batch_size_bytes: 16 * 1024,
        retries: 0,
        delivery_timeout: Duration::from_secs(10),
        request_timeout: Duration::from_secs(10),
        ..ProducerConfig::default()
    }
}

/// Sends numbered records to `topic` one at a time until `FAILURES_IN_A_ROW`
/// sends fail (or `limit` records were acknowledged); returns what was
/// acknowledged, as (partition, offset) -> value, and the last error.
async fn produce_until_full(
    addr: &str,
    topic: &str,
    first: u64,
    limit: u64,
    acknowledged: &mut BTreeMap<(u32, u64), Vec<u8>>,
) -> Option<ClientError> {
    let producer = Producer::connect(addr, producer_config()).await.unwrap();
    let mut failures = 0;
    let mut last_error = None;
    let mut sent = 0;
    let mut n = first;
    while failures < FAILURES_IN_A_ROW && sent < limit {
        let mut value = format!("{n:020}").into_bytes();
        value.resize(RECORD_BYTES, b'.');
        let key = (n % 16).to_string();
        let outcome = match producer
            .send(ProducerRecord::new(topic, &value).with_key(key.as_bytes()))
            .await
        {
            Ok(delivery) => delivery.await,
            Err(error) => Err(error),
        };
        match outcome {
            Ok(stored) => {
                failures = 0;
                sent += 1;
                let offset = stored.offset.expect("acks=1 answers with an offset");
                let previous = acknowledged.insert((stored.partition, offset), value);
                assert!(
                    previous.is_none(),
                    "offset {offset} of partition {} acknowledged twice",
                    stored.partition
                );
            }
            Err(error) => {
                failures += 1;
                last_error = Some(error);
            }
        }
        n += 1;
    }
    let _ = producer.close().await;
    last_error
}

async fn read_all(addr: &str, topic: &str) -> BTreeMap<(u32, u64), Vec<u8>> {
    let mut consumer = Consumer::connect(
        addr,
        ConsumerConfig {
            offset_reset: OffsetReset::Earliest,
            ..ConsumerConfig::default()
        },
    )
    .await
    .unwrap();
    consumer.assign(topic, &(0..PARTITIONS).collect::<Vec<_>>());
    let admin = Admin::connect(addr).await.unwrap();
    let ends: Vec<(u32, u64)> = admin
        .describe_topic(topic)
        .await
        .unwrap()
        .partitions
        .iter()
        .map(|p| (p.partition, p.log_end_offset))
        .collect();
    let mut read = BTreeMap::new();
    let mut empty_polls = 0;
    loop {
        let mut behind = false;
        for &(partition, end) in &ends {
            behind |= consumer.position(partition).await.unwrap() < end;
        }
        if !behind {
            break;
        }
        let records = consumer.poll(Duration::from_millis(500)).await.unwrap();
        if records.is_empty() {
            empty_polls += 1;
            assert!(empty_polls < 20, "reading {topic} back stalled");
            continue;
        }
        empty_polls = 0;
        for record in records {
            let value = record.value.map(|v| v.to_vec()).unwrap_or_default();
            read.insert((record.partition, record.offset), value);
        }
    }
    read
}

#[test]
fn full_disk_fails_appends_cleanly_and_recovers_when_space_is_freed() {
    let scratch = tempfile::tempdir().unwrap();
    if !private_tmpfs_allowed(scratch.path()) {
        eprintln!(
            "full_disk test: this machine does not allow `unshare -rm` with a tmpfs mount; \
             no full disk can be made here"
        );
        return;
    }
    let mount_point = scratch.path().join("disk");
    std::fs::create_dir_all(&mount_point).unwrap();
    let broker = start_on_small_disk(
        &mount_point,
        &scratch.path().join("addr"),
        &scratch.path().join("broker.log"),
    );
    let addr = broker.addr.clone();
    let runtime = tokio::runtime::Runtime::new().unwrap();

    let mut acknowledged = BTreeMap::new();
    let last_error = runtime
        .block_on(within_phase_timeout(async {
            let admin = Admin::connect(&addr).await.unwrap();
            admin
                .create_topic("filler", 1, 1, &small_segments())
                .await
                .unwrap();
            admin
                .create_topic("events", PARTITIONS, 1, &small_segments())
                .await
                .unwrap();
            // A third of the disk goes to a topic that is deleted later to free space.
            let mut filler = BTreeMap::new();
            let filler_records = DISK_BYTES / 3 / RECORD_BYTES as u64;
            let error = produce_until_full(&addr, "filler", 0, filler_records, &mut filler).await;
            assert_eq!(filler.len() as u64, filler_records, "filler: {error:?}");
            produce_until_full(&addr, "events", 0, u64::MAX, &mut acknowledged).await
        }))
        .expect("filling the disk timed out");

    let error = last_error.expect("the disk never filled up");
    let message = error.to_string();
    assert!(
        message.contains("No space left on device") || message.contains("storage"),
        "a full disk must be reported as a storage error naming the cause: {message}"
    );
    assert!(
        acknowledged.len() > 100,
        "only {} records fit",
        acknowledged.len()
    );
    let mut broker = broker;
    assert!(
        broker.child.try_wait().unwrap().is_none(),
        "the broker exited on a full disk: {}",
        std::fs::read_to_string(&broker.log).unwrap_or_default()
    );

    // Every acknowledged record reads back, at the offset it was acknowledged
    // with, while the disk is still full.
    let read = runtime
        .block_on(within_phase_timeout(read_all(&addr, "events")))
        .expect("reading back timed out");
    assert_eq!(
        read, acknowledged,
        "what reads back is exactly what was acknowledged"
    );

    // Freeing space makes the same partitions writable again, no restart.
    let mut after = BTreeMap::new();
    runtime
        .block_on(within_phase_timeout(async {
            Admin::connect(&addr)
                .await
                .unwrap()
                .delete_topic("filler")
                .await
                .unwrap();
            let error = produce_until_full(&addr, "events", 1_000_000, 200, &mut after).await;
            assert_eq!(after.len(), 200, "appends after freeing space: {error:?}");
        }))
        .expect("producing after freeing space timed out");
    acknowledged.extend(after);
    let read = runtime
        .block_on(within_phase_timeout(read_all(&addr, "events")))
        .expect("reading back timed out");
    assert_eq!(read, acknowledged);
    broker.kill();
}
