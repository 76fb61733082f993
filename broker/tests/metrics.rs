//! The metrics listener: `/metrics` after produce and fetch over gRPC and
//! over the Kafka listener shows counters moved by exactly the records and
//! bytes sent, partition gauges and consumer-group lag, members and
//! rebalances as they are; every metric the Grafana dashboard names is in a
//! scrape and its expressions parse; the
//! exposition passes `promtool check metrics`; with `fsync = always` every
//! acknowledged produce shows in the fsync histogram; `/healthz` answers while the
//! broker runs and `/readyz` answers 503 naming an offline partition.

mod common;
mod kafka_support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::OpenOptions;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{FetchRequest, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weir_broker::group::{HeartbeatRequest, OffsetCommit, TopicPartition, NO_MEMBER_EPOCH};
use weir_client::proto::{
    ErrorCode, FetchRequest as GrpcFetch, PartitionFetchRequest, PartitionProduceData as GrpcData,
    ProduceRequest as GrpcProduce,
};
use weir_log::FsyncPolicy;

use common::{batch, config, TestBroker};
use kafka_support::{start_broker_with, tools, KafkaWire};

const TOPIC: &str = "metered";

/// A broker serving gRPC, Kafka and metrics, each on 127.0.0.1:0.
async fn start() -> (TestBroker, SocketAddr, SocketAddr) {
    let data = tempfile::tempdir().unwrap();
    let mut config = config(data.path().to_path_buf());
    config.kafka_listen = Some("127.0.0.1:0".parse().unwrap());
    config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    let (broker, kafka) = start_broker_with(config, data).await;
    let metrics = metrics_addr(&broker);
    (broker, kafka, metrics)
}

fn metrics_addr(broker: &TestBroker) -> SocketAddr {
    broker.running.as_ref().unwrap().metrics_addr().unwrap()
}

/// GET `path` with HTTP/1.1: (status, body).
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    get_accepting(addr, path, "*/*").await
}

/// GET `path` with an `Accept` header.
async fn get_accepting(addr: SocketAddr, path: &str, accept: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: weir\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(
        kafka_support::RESPONSE_WAIT,
        stream.read_to_string(&mut response),
    )
    .await
    .expect("no response within the test's bound")
    .unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

/// The value of the sample named `name` with exactly `labels`, if present.
fn sample(exposition: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = if labels.is_empty() {
        format!("{name} ")
    } else {
        format!("{name}{{{labels}}} ")
    };
    exposition
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map(|value| value.trim().parse().unwrap())
}

fn value(exposition: &str, name: &str, labels: &str) -> f64 {
    sample(exposition, name, labels)
        .unwrap_or_else(|| panic!("no sample {name}{{{labels}}} in:\n{exposition}"))
}

fn kafka_name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

async fn grpc_produce(broker: &TestBroker, partition: u32, batches: Bytes) -> ErrorCode {
    let response = broker
        .produce_client()
        .await
        .produce(GrpcProduce {
            topic: TOPIC.to_string(),
            acks: 0,
            timeout_ms: 5_000,
            partitions: vec![GrpcData { partition, batches }],
        })
        .await
        .unwrap()
        .into_inner();
    response.partitions[0].error_code()
}

/// Fetches partition 0 from `offset`: (error code, batch bytes).
async fn grpc_fetch(broker: &TestBroker, offset: u64) -> (ErrorCode, usize) {
    let response = broker
        .fetch_client()
        .await
        .fetch(GrpcFetch {
            topic: TOPIC.to_string(),
            max_wait_ms: 0,
            min_bytes: 0,
            max_bytes: 1 << 20,
            partitions: vec![PartitionFetchRequest {
                partition: 0,
                offset,
                max_bytes: 1 << 20,
            }],
        })
        .await
        .unwrap()
        .into_inner();
    let result = &response.partitions[0];
    (result.error_code(), result.batches.len())
}

fn kafka_produce(partition: i32, records: Bytes) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(5_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(kafka_name(TOPIC))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records))])])
}

fn kafka_fetch(offset: i64) -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(kafka_name(TOPIC))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])])
}

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
        .mutate(|coordinator, now_ms| {
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
async fn a_member_joining_counts_one_rebalance_and_shows_in_the_members() {
    let (broker, _kafka, metrics) = start().await;
    broker.create_topic(TOPIC, 2).await;
    let groups = broker.running.as_ref().unwrap().groups();
    let group = "rebalancing";
    let labels = format!("group=\"{group}\"");
    groups
        .mutate(|coordinator, now_ms| coordinator.heartbeat(&join(group, TOPIC), now_ms))
        .await
        .unwrap();
    let first = get(metrics, "/metrics").await.1;
    let rebalances =
        |exposition: &str| value(exposition, "weir_consumer_group_rebalances_total", &labels);
    assert_eq!(value(&first, "weir_consumer_group_members", &labels), 1.0);
    assert!(rebalances(&first) >= 1.0, "the first join is a rebalance");

    groups
        .mutate(|coordinator, now_ms| coordinator.heartbeat(&join(group, TOPIC), now_ms))
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

/// Runs `promtool check metrics` on `exposition` and fails with its output.
fn promtool_check(exposition: &str) {
    use std::io::Write;
    let mut child = Command::new(tools::promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics failed:\n{}{}\n{exposition}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The Grafana dashboard's (`docs/grafana-weir-broker.json`) queries: panel
/// expressions and variable queries, each under the key it has.
fn dashboard_queries() -> Vec<(String, String)> {
    fn walk(value: &serde_json::Value, queries: &mut Vec<(String, String)>) {
        match value {
            serde_json::Value::Object(fields) => {
                for (key, field) in fields {
                    if let (true, Some(query)) = (
                        ["expr", "definition", "query"].contains(&key.as_str()),
                        field.as_str(),
                    ) {
                        queries.push((key.clone(), query.to_string()));
                    }
                    walk(field, queries);
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|item| walk(item, queries)),
            _ => {}
        }
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/grafana-weir-broker.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut queries = Vec::new();
    walk(&dashboard, &mut queries);
    queries
}

/// Runs `promtool check rules` on the dashboard's panel expressions, as
/// recording rules with Grafana's variables filled in: each must parse.
fn promtool_check_expressions(queries: &[(String, String)]) {
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (index, (_, expr)) in queries.iter().filter(|(key, _)| key == "expr").enumerate() {
        let filled = expr
            .replace("$__rate_interval", "1m")
            .replace("$instance", ".*")
            .replace("$topic", ".*")
            .replace("$group", ".*");
        let quoted = serde_json::to_string(&filled).unwrap();
        rules.push_str(&format!(
            "      - record: dashboard:expr{index}\n        expr: {quoted}\n"
        ));
    }
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), rules).unwrap();
    let output = Command::new(tools::promtool())
        .args(["check", "rules"])
        .arg(file.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "a dashboard expression does not parse:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn metric_names_in(query: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = query;
    while let Some(start) = rest.find("weir_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

#[tokio::test]
async fn the_exposition_after_traffic_passes_promtool_and_has_every_metric_the_dashboard_names() {
    let (broker, kafka, metrics) = start().await;
    broker.create_topic(TOPIC, 2).await;
    assert_eq!(
        grpc_produce(&broker, 1, batch(&["x"], 0)).await,
        ErrorCode::None
    );
    let mut wire = KafkaWire::connect(kafka).await;
    wire.call(9, &kafka_produce(0, batch(&["y", "z"], 0))).await;
    wire.call(12, &kafka_fetch(0)).await;
    grpc_fetch(&broker, 0).await;
    // An error, and a group with a commit and a member: every family has a series.
    let refused = wire.call(9, &kafka_produce(5, batch(&["w"], 0))).await;
    assert_eq!(refused.responses[0].partition_responses[0].error_code, 3);
    let groups = broker.running.as_ref().unwrap().groups();
    groups
        .mutate(|coordinator, now_ms| {
            coordinator.commit_offsets(
                "dashboard",
                "",
                NO_MEMBER_EPOCH,
                &[OffsetCommit {
                    partition: TopicPartition::new(TOPIC, 0),
                    offset: 1,
                    metadata: String::new(),
                }],
                now_ms,
            )
        })
        .await
        .unwrap();
    groups
        .mutate(|coordinator, now_ms| coordinator.heartbeat(&join("dashboard", TOPIC), now_ms))
        .await
        .unwrap();
    let (status, exposition) = get(metrics, "/metrics").await;
    assert_eq!(status, 200);
    promtool_check(&exposition);

    let sampled: BTreeSet<&str> = exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split(['{', ' ']).next())
        .collect();
    let queries = dashboard_queries();
    promtool_check_expressions(&queries);
    let named: BTreeSet<String> = queries
        .iter()
        .flat_map(|(_, query)| metric_names_in(query))
        .collect();
    assert!(named.len() >= 20, "the dashboard names {named:?}");
    let missing: Vec<&String> = named
        .iter()
        .filter(|name| !sampled.contains(name.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "the dashboard names metrics the broker does not expose: {missing:?}"
    );
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
