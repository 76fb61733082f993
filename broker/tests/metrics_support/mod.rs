//! What the metrics tests share: a broker serving gRPC, Kafka and metrics,
//! scrapes, sample lookups, `promtool check metrics`, and the requests the
//! tests send.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::{Command, Stdio};

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{FetchRequest, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use std::collections::BTreeSet;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weir_broker::group::HeartbeatRequest;
use weir_client::proto::{
    ErrorCode, FetchRequest as GrpcFetch, PartitionFetchRequest, PartitionProduceData as GrpcData,
    ProduceRequest as GrpcProduce,
};

use crate::common::{config, TestBroker};
use crate::kafka_support::{self, start_broker_with, tools};

pub const TOPIC: &str = "metered";

/// A broker serving gRPC, Kafka and metrics, each on 127.0.0.1:0.
pub async fn start() -> (TestBroker, SocketAddr, SocketAddr) {
    let data = tempfile::tempdir().unwrap();
    let mut config = config(data.path().to_path_buf());
    config.kafka_listen = Some("127.0.0.1:0".parse().unwrap());
    config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    let (broker, kafka) = start_broker_with(config, data).await;
    let metrics = metrics_addr(&broker);
    (broker, kafka, metrics)
}

pub fn metrics_addr(broker: &TestBroker) -> SocketAddr {
    broker.running.as_ref().unwrap().metrics_addr().unwrap()
}

/// GET `path` with HTTP/1.1: (status, body).
pub async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    get_accepting(addr, path, "*/*").await
}

/// GET `path` with an `Accept` header.
pub async fn get_accepting(addr: SocketAddr, path: &str, accept: &str) -> (u16, String) {
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
pub fn sample(exposition: &str, name: &str, labels: &str) -> Option<f64> {
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

pub fn value(exposition: &str, name: &str, labels: &str) -> f64 {
    sample(exposition, name, labels)
        .unwrap_or_else(|| panic!("no sample {name}{{{labels}}} in:\n{exposition}"))
}

pub fn kafka_name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

pub async fn grpc_produce(broker: &TestBroker, partition: u32, batches: Bytes) -> ErrorCode {
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
pub async fn grpc_fetch(broker: &TestBroker, offset: u64) -> (ErrorCode, usize) {
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

pub fn kafka_produce(partition: i32, records: Bytes) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(5_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(kafka_name(TOPIC))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records))])])
}

pub fn kafka_fetch(offset: i64) -> FetchRequest {
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

pub fn join(group: &str, topic: &str) -> HeartbeatRequest {
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

/// Runs `promtool check metrics` on `exposition` and fails with its output.
pub fn promtool_check(exposition: &str) {
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
