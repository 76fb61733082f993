//! The exposition after traffic on both listeners, a consumer group and an
//! error passes `promtool check metrics`, and holds every metric the Grafana
//! dashboard (`docs/grafana-weir-broker.json`) names; each of the dashboard's
//! expressions parses (`promtool check rules`).

mod common;
mod kafka_support;
mod metrics_support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use weir_broker::group::{OffsetCommit, TopicPartition, NO_MEMBER_EPOCH};
use weir_client::proto::ErrorCode;

use common::batch;
use kafka_support::{tools, KafkaWire};
use metrics_support::{
    get, grpc_fetch, grpc_produce, join, kafka_fetch, kafka_produce, metrics_addr, promtool_check,
    TOPIC,
};

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
    let data = tempfile::tempdir().unwrap();
    let mut config = common::config(data.path().to_path_buf());
    config.kafka_listen = Some("127.0.0.1:0".parse().unwrap());
    config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    // No initial delay: the member's join ends its group's first rebalance, so the
    // rebalance histogram has a series too.
    config.groups.initial_rebalance_delay_ms = 0;
    let (broker, kafka) = kafka_support::start_broker_with(config, data).await;
    let metrics = metrics_addr(&broker);
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
        .mutate("dashboard", |coordinator, now_ms| {
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
        .mutate("dashboard", |coordinator, now_ms| {
            coordinator.heartbeat(&join("dashboard", TOPIC), now_ms)
        })
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
