//! Starts a broker in this process on 127.0.0.1:0 with a temporary data
//! directory, and builds raw clients and batches for tests.

#![allow(dead_code)]

pub mod cluster;

use std::collections::BTreeMap;
use std::path::PathBuf;

use bytes::Bytes;
use tempfile::TempDir;
use weir_broker::{BrokerConfig, RunningBroker};
use weir_client::proto::fetch_client::FetchClient;
use weir_client::proto::produce_client::ProduceClient;
use weir_client::{self as client, Admin};
use weir_log::batch::{BatchBuilder, Compression};

pub struct TestBroker {
    pub running: Option<RunningBroker>,
    pub addr: String,
    pub data: TempDir,
}

pub fn config(data_dir: PathBuf) -> BrokerConfig {
    BrokerConfig {
        data_dir,
        listen: "127.0.0.1:0".parse().unwrap(),
        ..BrokerConfig::default()
    }
}

impl TestBroker {
    pub async fn start() -> TestBroker {
        let data = tempfile::tempdir().unwrap();
        Self::start_with(config(data.path().to_path_buf()), data).await
    }

    pub async fn start_with(config: BrokerConfig, data: TempDir) -> TestBroker {
        let running = RunningBroker::start(config).await.unwrap();
        let addr = running.local_addr().to_string();
        TestBroker {
            running: Some(running),
            addr,
            data,
        }
    }

    /// Shuts down cleanly and starts again on the same data directory.
    pub async fn restart(mut self) -> TestBroker {
        self.running.take().unwrap().shutdown().await.unwrap();
        let config = config(self.data.path().to_path_buf());
        Self::start_with(config, self.data).await
    }

    /// Shuts down cleanly, lets `change` alter the data directory, and starts again.
    pub async fn restart_after(mut self, change: impl FnOnce(&std::path::Path)) -> TestBroker {
        self.running.take().unwrap().shutdown().await.unwrap();
        change(self.data.path());
        let config = config(self.data.path().to_path_buf());
        Self::start_with(config, self.data).await
    }

    pub async fn admin(&self) -> Admin {
        Admin::connect(&self.addr).await.unwrap()
    }

    pub async fn produce_client(&self) -> ProduceClient<tonic::transport::Channel> {
        ProduceClient::new(client::connect(&self.addr).await.unwrap())
    }

    pub async fn fetch_client(&self) -> FetchClient<tonic::transport::Channel> {
        FetchClient::new(client::connect(&self.addr).await.unwrap())
    }

    pub async fn create_topic(&self, topic: &str, partitions: u32) {
        self.admin()
            .await
            .create_topic(topic, partitions, 1, &BTreeMap::new())
            .await
            .unwrap();
    }

    pub async fn shutdown(mut self) {
        self.running.take().unwrap().shutdown().await.unwrap();
    }
}

/// One uncompressed batch of `values` (no key), timestamps from `timestamp_ms`.
pub fn batch(values: &[&str], timestamp_ms: i64) -> Bytes {
    let mut builder = BatchBuilder::new(Compression::None);
    for (i, value) in values.iter().enumerate() {
        builder.push(timestamp_ms + i as i64, None, Some(value.as_bytes()), &[]);
    }
    builder.build().unwrap()
}

/// One batch of an idempotent producer.
pub fn sequenced_batch(producer_id: i64, epoch: i16, sequence: i32, values: &[&str]) -> Bytes {
    let mut builder =
        BatchBuilder::new(Compression::None).with_producer(producer_id, epoch, sequence);
    for value in values {
        builder.push(1_000, None, Some(value.as_bytes()), &[]);
    }
    builder.build().unwrap()
}

/// Reads `partitions` of `topic` from the beginning until `count` records
/// arrived (or 200 polls came back short).
pub async fn consume_all(
    addr: &str,
    topic: &str,
    partitions: &[u32],
    count: usize,
) -> Vec<weir_client::ConsumerRecord> {
    let mut consumer = client::Consumer::connect(
        addr,
        client::ConsumerConfig {
            offset_reset: client::OffsetReset::Earliest,
            ..client::ConsumerConfig::default()
        },
    )
    .await
    .unwrap();
    consumer.assign(topic, partitions);
    let mut records = Vec::new();
    for _ in 0..200 {
        if records.len() >= count {
            break;
        }
        records.extend(
            consumer
                .poll(std::time::Duration::from_millis(200))
                .await
                .unwrap(),
        );
    }
    records
}
