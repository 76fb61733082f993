//! The metrics listener: `/metrics` after produce and fetch over gRPC and
//! over the Kafka listener shows counters moved by exactly the records and
//! bytes sent, partition gauges and consumer-group lag, members,
//! rebalances and how long they paused the group as they are; with `fsync = always` every acknowledged produce
//! shows in the fsync histogram; `/healthz` answers while the broker runs and
//! `/readyz` answers 503 naming an offline partition. (`metrics_dashboard.rs`
//! holds the exposition to `promtool` and to the Grafana dashboard.)

mod common;
mod kafka_support;
mod metrics_support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use weir_broker::group::{OffsetCommit, TopicPartition, NO_MEMBER_EPOCH};
use weir_client::proto::ErrorCode;
use weir_log::FsyncPolicy;

use common::{batch, config, TestBroker};
use kafka_support::{start_broker_with, KafkaWire};
use metrics_support::{
    get, get_accepting, grpc_fetch, grpc_produce, join, kafka_fetch, kafka_produce, metrics_addr,
    promtool_check, sample, start, value, TOPIC,
};

#[tokio::test]
async fn counters_move_by_exactly_the_records_and_bytes_sent_over_grpc_and_kafka() {
    let (broker, kafka, metrics) = start().await;
    broker.create_topic(TOPIC, 1).await;
    let before = get(metrics, "/metrics").await.1;
    let grpc_labels = format!("topic=\"{TOPIC}\",listener=\"grpc\"");
    let kafka_labels = format!("topic=\"{TOPIC}\",listener=\"kafka\"");
    assert_eq!(
        value(&before, "weir_topic_bytes_in_total", &grpc_labels),
        0.0
    );

    // 3 records over gRPC (offsets 0-2), then 4 over Kafka (offsets 3-6).
    let grpc_batch = batch(&["a", "bb", "ccc"], 1_000);
    let kafka_batch = batch(&["dddd", "e", "ff", "g"], 2_000);
    assert_eq!(
        grpc_produce(&broker, 0, grpc_batch.clone()).await,
        ErrorCode::None
    );
    let mut wire = KafkaWire::connect(kafka).await;
    let produced = wire.call(9, &kafka_produce(0, kafka_batch.clone())).await;
    assert_eq!(produced.responses[0].partition_responses[0].error_code, 0);

    // gRPC reads both batches; Kafka reads its own from offset 3.
    let (code, fetched_bytes) = grpc_fetch(&broker, 0).await;
    assert_eq!(code, ErrorCode::None);
    assert_eq!(fetched_bytes, grpc_batch.len() + kafka_batch.len());
    let fetched = wire.call(12, &kafka_fetch(3)).await;
    let records = fetched.responses[0].partitions[0].records.clone().unwrap();
    assert_eq!(records.len(), kafka_batch.len());

    // Errors: a Kafka produce to a partition the topic lacks, a gRPC fetch past the end.
    let refused = wire.call(9, &kafka_produce(5, kafka_batch.clone())).await;
    assert_eq!(refused.responses[0].partition_responses[0].error_code, 3);
    assert_eq!(
        grpc_fetch(&broker, 100).await.0,
        ErrorCode::OffsetOutOfRange
    );

    let held = broker.produce_client().await;
    let (status, after) = get(metrics, "/metrics").await;
    drop(held);
    assert_eq!(status, 200);
    let counted = |name: &str, labels: &str| value(&after, name, labels) as usize;
    assert_eq!(
        counted("weir_topic_bytes_in_total", &grpc_labels),
        grpc_batch.len()
    );
    assert_eq!(counted("weir_topic_records_in_total", &grpc_labels), 3);
    assert_eq!(
        counted("weir_topic_bytes_in_total", &kafka_labels),
        kafka_batch.len()
    );
    assert_eq!(counted("weir_topic_records_in_total", &kafka_labels), 4);
    assert_eq!(
        counted("weir_topic_bytes_out_total", &grpc_labels),
        grpc_batch.len() + kafka_batch.len()
    );
    assert_eq!(counted("weir_topic_records_out_total", &grpc_labels), 7);
    assert_eq!(
        counted("weir_topic_bytes_out_total", &kafka_labels),
        kafka_batch.len()
    );
    assert_eq!(counted("weir_topic_records_out_total", &kafka_labels), 4);

    let requests = |listener: &str, api: &str| {
        counted(
            "weir_requests_total",
            &format!("listener=\"{listener}\",api=\"{api}\""),
        )
    };
    assert_eq!(requests("grpc", "Produce"), 1);
    assert_eq!(requests("grpc", "Fetch"), 2);
    assert_eq!(requests("kafka", "Produce"), 2);
    assert_eq!(requests("kafka", "Fetch"), 1);
    assert_eq!(requests("grpc", "CreateTopic"), 1);
    assert_eq!(
        counted(
            "weir_request_duration_seconds_count",
            "listener=\"kafka\",api=\"Produce\""
        ),
        2
    );
    assert_eq!(
        counted(
            "weir_request_errors_total",
            "listener=\"kafka\",api=\"Produce\",error=\"UNKNOWN_TOPIC_OR_PARTITION\""
        ),
        1
    );
    assert_eq!(
        counted(
            "weir_request_errors_total",
            "listener=\"grpc\",api=\"Fetch\",error=\"OFFSET_OUT_OF_RANGE\""
        ),
        1
    );

    let partition = format!("topic=\"{TOPIC}\",partition=\"0\"");
    assert_eq!(counted("weir_partition_log_end_offset", &partition), 7);
    assert_eq!(counted("weir_partition_high_watermark", &partition), 7);
    assert_eq!(counted("weir_partition_log_start_offset", &partition), 0);
    assert_eq!(counted("weir_partition_segments", &partition), 1);
    assert_eq!(
        counted("weir_partition_size_bytes", &partition),
        grpc_batch.len() + kafka_batch.len()
    );
    assert_eq!(counted("weir_partition_online", &partition), 1);
    // The Kafka connection and a gRPC client are open (earlier gRPC clients
    // may not have been seen closing yet).
    assert_eq!(counted("weir_open_connections", "listener=\"kafka\""), 1);
    assert!(counted("weir_open_connections", "listener=\"grpc\"") >= 1);
    assert_eq!(
        counted("weir_request_memory_max_bytes", ""),
        weir_broker::BrokerConfig::default().queued_request_bytes_max
    );
    assert_eq!(counted("weir_request_memory_refusals_total", ""), 0);
    // Prometheus asks for OpenMetrics, which names the same samples.
    let (status, openmetrics) = get_accepting(
        metrics,
        "/metrics",
        "application/openmetrics-text;version=1.0.0",
    )
    .await;
    assert_eq!(status, 200);
    assert!(openmetrics.ends_with("# EOF\n"));
    assert!(openmetrics.contains("# TYPE weir_requests counter\n"));
    assert_eq!(
        value(&openmetrics, "weir_topic_records_out_total", &grpc_labels),
        7.0
    );
    assert!(after.contains("# TYPE weir_requests_total counter\n"));
    drop(wire);
    broker.shutdown().await;
}

#[tokio::test]
async fn consumer_group_lag_is_the_high_watermark_past_the_committed_offset() {
    let (broker, _kafka, metrics) = start().await;
    broker.create_topic(TOPIC, 1).await;
    assert_eq!(
        grpc_produce(&broker, 0, batch(&["1", "2", "3", "4", "5"], 0)).await,
        ErrorCode::None
    );
    // A group id a client chose, with characters the exposition must escape.
    let group = "billing \"eu\"\\west";
    let groups = broker.running.as_ref().unwrap().groups();
    groups
        .mutate(group, |coordinator, now_ms| {
            coordinator.commit_offsets(
                group,
                "",
                NO_MEMBER_EPOCH,
                &[OffsetCommit {
                    partition: TopicPartition::new(TOPIC, 0),
                    offset: 2,
                    metadata: String::new(),
                }],
                now_ms,
            )
        })
        .await
        .unwrap();
    let exposition = get(metrics, "/metrics").await.1;
    let labels = format!("group=\"billing \\\"eu\\\"\\\\west\",topic=\"{TOPIC}\",partition=\"0\"");
    assert_eq!(value(&exposition, "weir_consumer_group_lag", &labels), 3.0);
    assert_eq!(
        value(
            &exposition,
            "weir_consumer_group_members",
            "group=\"billing \\\"eu\\\"\\\\west\""
        ),
        0.0
    );
    promtool_check(&exposition);
    broker.shutdown().await;
}

#[tokio::test]
async fn with_fsync_always_each_produce_adds_at_least_one_fsync_to_the_histogram() {
    let data = tempfile::tempdir().unwrap();
    let mut config = config(data.path().to_path_buf());
    config.kafka_listen = Some("127.0.0.1:0".parse().unwrap());
    config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    config.set_fsync(FsyncPolicy::Always);
    let (broker, kafka) = start_broker_with(config, data).await;
    let metrics = metrics_addr(&broker);
    broker.create_topic(TOPIC, 1).await;
    let fsyncs = |exposition: &str| value(exposition, "weir_log_fsync_duration_seconds_count", "");
    let before = get(metrics, "/metrics").await.1;

    const PRODUCES: usize = 5;
    let mut wire = KafkaWire::connect(kafka).await;
    for round in 0..PRODUCES {
        let produced = wire
            .call(9, &kafka_produce(0, batch(&["fsynced"], round as i64)))
            .await;
        assert_eq!(produced.responses[0].partition_responses[0].error_code, 0);
    }
    let after = get(metrics, "/metrics").await.1;
    // Other tests in this process fsync too (the observer is process-wide), so
    // at least: each acknowledged append was fsynced before its answer.
    assert!(
        fsyncs(&after) >= fsyncs(&before) + PRODUCES as f64,
        "{} fsyncs before, {} after {PRODUCES} produces",
        fsyncs(&before),
        fsyncs(&after)
    );
    let inf = value(
        &after,
        "weir_log_fsync_duration_seconds_bucket",
        "le=\"+Inf\"",
    );
    assert_eq!(inf, fsyncs(&after), "+Inf holds every observation");
    assert!(after.contains("# TYPE weir_log_fsync_duration_seconds histogram\n"));
    promtool_check(&after);
    drop(wire);
    broker.shutdown().await;
}

#[tokio::test]
async fn a_member_joining_counts_one_rebalance_and_shows_in_the_members() {
    let (broker, _kafka, metrics) = start().await;
    broker.create_topic(TOPIC, 2).await;
    let groups = broker.running.as_ref().unwrap().groups();
    let group = "rebalancing";
    let labels = format!("group=\"{group}\"");
    groups
        .mutate(group, |coordinator, now_ms| {
            coordinator.heartbeat(&join(group, TOPIC), now_ms)
        })
        .await
        .unwrap();
    let first = get(metrics, "/metrics").await.1;
    let rebalances =
        |exposition: &str| value(exposition, "weir_consumer_group_rebalances_total", &labels);
    assert_eq!(value(&first, "weir_consumer_group_members", &labels), 1.0);
    assert!(rebalances(&first) >= 1.0, "the first join is a rebalance");

    groups
        .mutate(group, |coordinator, now_ms| {
            coordinator.heartbeat(&join(group, TOPIC), now_ms)
        })
        .await
        .unwrap();
    let second = get(metrics, "/metrics").await.1;
    assert_eq!(value(&second, "weir_consumer_group_members", &labels), 2.0);
    assert_eq!(rebalances(&second), rebalances(&first) + 1.0);
    assert_eq!(
        value(&second, "weir_consumer_group_series_omitted", ""),
        0.0
    );
    broker.shutdown().await;
}

/// The wall clock in milliseconds, the group coordinator's clock.
fn wall_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(since_epoch.as_millis()).unwrap()
}

#[tokio::test]
async fn rebalance_durations_count_each_completed_rebalance_within_the_wall_time_around_them() {
    let data = tempfile::tempdir().unwrap();
    let mut config = config(data.path().to_path_buf());
    config.kafka_listen = Some("127.0.0.1:0".parse().unwrap());
    config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    // No initial delay: the first member's rebalance ends in the answer to its join.
    config.groups.initial_rebalance_delay_ms = 0;
    let (broker, _kafka) = start_broker_with(config, data).await;
    let metrics = metrics_addr(&broker);
    broker.create_topic(TOPIC, 2).await;
    let groups = broker.running.as_ref().unwrap().groups();
    let group = "pausing";
    let labels = format!("group=\"{group}\"");
    let durations = |exposition: &str, part: &str| {
        value(
            exposition,
            &format!("weir_consumer_group_rebalance_duration_seconds_{part}"),
            &labels,
        )
    };
    let heartbeat = |member_id: &str, member_epoch: i32, owned: &BTreeSet<TopicPartition>| {
        let mut request = join(group, TOPIC);
        request.member_id = member_id.to_owned();
        request.member_epoch = member_epoch;
        request.owned = owned.clone();
        request
    };

    let started_ms = wall_ms();
    let a = groups
        .mutate(group, |coordinator, now_ms| {
            coordinator.heartbeat(&join(group, TOPIC), now_ms)
        })
        .await
        .unwrap();
    assert_eq!(a.assignment.len(), 2, "alone, a holds both partitions");
    let first = get(metrics, "/metrics").await.1;
    assert_eq!(durations(&first, "count"), 1.0);

    let b = groups
        .mutate(group, |coordinator, now_ms| {
            coordinator.heartbeat(&join(group, TOPIC), now_ms)
        })
        .await
        .unwrap();
    assert!(b.assignment.is_empty(), "b waits for a partition a holds");
    let during = get(metrics, "/metrics").await.1;
    assert_eq!(
        durations(&during, "count"),
        1.0,
        "b's rebalance is under way"
    );
    // The coordinator's clock counts milliseconds: let one pass, so the pause is not 0.
    let joined_ms = wall_ms();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while wall_ms() <= joined_ms {
        assert!(
            std::time::Instant::now() < deadline,
            "the wall clock stands still"
        );
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    // a gives up one partition, confirms it, and b takes it.
    let revoking = groups
        .mutate(group, |c, now_ms| {
            c.heartbeat(
                &heartbeat(&a.member_id, a.member_epoch, &a.assignment),
                now_ms,
            )
        })
        .await
        .unwrap();
    assert_eq!(revoking.assignment.len(), 1);
    let kept = revoking.assignment.clone();
    groups
        .mutate(group, |c, now_ms| {
            c.heartbeat(
                &heartbeat(&a.member_id, revoking.member_epoch, &kept),
                now_ms,
            )
        })
        .await
        .unwrap();
    let settled = groups
        .mutate(group, |c, now_ms| {
            c.heartbeat(
                &heartbeat(&b.member_id, b.member_epoch, &BTreeSet::new()),
                now_ms,
            )
        })
        .await
        .unwrap();
    let ended_ms = wall_ms();
    assert_eq!(settled.assignment.len(), 1);
    let state = groups.read(group, |c| c.group_state(group)).await.unwrap();
    assert_eq!(state.to_string(), "Stable");

    let after = get(metrics, "/metrics").await.1;
    assert_eq!(durations(&after, "count"), 2.0);
    assert_eq!(
        value(&after, "weir_consumer_group_rebalances_total", &labels),
        2.0
    );
    let sum = durations(&after, "sum");
    let wall_seconds = (ended_ms - started_ms) as f64 / 1e3;
    assert!(
        sum > 0.0 && sum <= wall_seconds,
        "rebalances took {sum} s in all, within {wall_seconds} s of wall time"
    );
    let inf = format!("le=\"+Inf\",{labels}");
    assert_eq!(
        value(
            &after,
            "weir_consumer_group_rebalance_duration_seconds_bucket",
            &inf
        ),
        2.0
    );
    assert!(after.contains("# TYPE weir_consumer_group_rebalance_duration_seconds histogram\n"));
    promtool_check(&after);
    broker.shutdown().await;
}

#[tokio::test]
async fn a_taken_metrics_port_fails_the_start_naming_it_and_leaves_the_data_directory_free() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut refused = config(data.path().to_path_buf());
    refused.metrics_listen = Some(addr);
    refused.kafka_listen = Some("127.0.0.1:0".parse().unwrap());
    let error = weir_broker::RunningBroker::start(refused)
        .await
        .unwrap_err();
    assert!(error.to_string().contains(&addr.to_string()), "{error}");
    // Nothing started holds the broker: the same directory opens at once.
    let broker = TestBroker::start_with(config(data.path().to_path_buf()), data).await;
    broker.shutdown().await;
}

fn segment_logs(dir: &Path) -> Vec<PathBuf> {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs
}

#[tokio::test]
async fn readyz_answers_503_naming_an_offline_partition_and_healthz_stays_up() {
    let (broker, _kafka, metrics) = start().await;
    assert_eq!(get(metrics, "/readyz").await, (200, "ready\n".to_string()));
    let configs = BTreeMap::from([("segment.bytes".to_string(), "1024".to_string())]);
    broker
        .admin()
        .await
        .create_topic(TOPIC, 2, 1, &configs)
        .await
        .unwrap();
    let record = "v".repeat(300);
    for _ in 0..12 {
        assert_eq!(
            grpc_produce(&broker, 1, batch(&[record.as_str()], 0)).await,
            ErrorCode::None
        );
    }
    // Stopped cleanly, partition 1 loses the tail of a sealed (fsynced) segment:
    // damage below its recovery point, so it stays offline at the next start.
    let TestBroker { running, data, .. } = broker;
    running.unwrap().shutdown().await.unwrap();
    let logs = segment_logs(&data.path().join(format!("{TOPIC}-1")));
    assert!(logs.len() >= 3, "partition 1 rolled: {logs:?}");
    let len = std::fs::metadata(&logs[0]).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&logs[0])
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    let mut restarted = config(data.path().to_path_buf());
    restarted.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    let broker = TestBroker::start_with(restarted, data).await;
    let metrics = metrics_addr(&broker);

    let (status, body) = get(metrics, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains(&format!("topic \"{TOPIC}\" partition 1 is offline")),
        "{body}"
    );
    assert!(!body.contains("partition 0"), "{body}");
    assert_eq!(get(metrics, "/healthz").await, (200, "ok\n".to_string()));
    let exposition = get(metrics, "/metrics").await.1;
    let online = |partition: u32| {
        value(
            &exposition,
            "weir_partition_online",
            &format!("topic=\"{TOPIC}\",partition=\"{partition}\""),
        )
    };
    assert_eq!((online(0), online(1)), (1.0, 0.0));
    assert_eq!(
        sample(
            &exposition,
            "weir_partition_log_end_offset",
            &format!("topic=\"{TOPIC}\",partition=\"1\"")
        ),
        None,
        "an offline partition has no offsets to report"
    );
    assert_eq!(get(metrics, "/nowhere").await.0, 404);
    broker.shutdown().await;
}
