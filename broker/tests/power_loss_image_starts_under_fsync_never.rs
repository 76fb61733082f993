//! A broker starts on what a power cut leaves of a `flush.policy = never` partition: crash
//! images of the partition directory (taken by `weir_log::fault::power_loss` while the
//! broker appended) each start a fresh broker, which serves a prefix of what was produced.

mod common;

use std::collections::BTreeMap;

use bytes::Bytes;
use common::{batch, config, TestBroker};
use weir_broker::partition_dir;
use weir_client::proto::{
    ErrorCode, FetchRequest, PartitionFetchRequest, PartitionProduceData, ProduceRequest,
};
use weir_log::batch;
use weir_log::fault::power_loss;

fn produce_request(batches: Bytes) -> ProduceRequest {
    ProduceRequest {
        topic: "t".to_string(),
        acks: 1,
        timeout_ms: 1000,
        partitions: vec![PartitionProduceData {
            partition: 0,
            batches,
        }],
    }
}

fn fetch_request(offset: u64) -> FetchRequest {
    FetchRequest {
        topic: "t".to_string(),
        max_wait_ms: 0,
        min_bytes: 0,
        max_bytes: 1 << 20,
        partitions: vec![PartitionFetchRequest {
            partition: 0,
            offset,
            max_bytes: 1 << 20,
        }],
    }
}

/// Every value `broker` serves for t-0, from the log start to the high watermark.
async fn served_values(broker: &TestBroker) -> Vec<String> {
    let mut fetch = broker.fetch_client().await;
    let mut values = Vec::new();
    let mut offset = 0;
    loop {
        let response = fetch
            .fetch(fetch_request(offset))
            .await
            .unwrap()
            .into_inner();
        let p = &response.partitions[0];
        assert_eq!(p.error_code(), ErrorCode::None, "{p:?}");
        if p.batches.is_empty() {
            return values;
        }
        for item in batch::batches(&p.batches) {
            let (_, bytes) = item.unwrap();
            for record in batch::decode_records(bytes).unwrap() {
                let value = record.value.unwrap();
                values.push(String::from_utf8(value.to_vec()).unwrap());
                offset = record.offset as u64 + 1;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_starts_on_power_loss_images_and_serves_a_prefix() {
    let broker = TestBroker::start().await;
    let mut configs = BTreeMap::new();
    configs.insert("flush.policy".to_string(), "never".to_string());
    configs.insert("segment.bytes".to_string(), "2048".to_string());
    broker
        .admin()
        .await
        .create_topic("t", 1, 1, &configs)
        .await
        .unwrap();
    let dir = partition_dir(broker.data.path(), "t", 0);
    let guard = power_loss::arm_copying_foreign_files(&dir).unwrap();
    let mut produce = broker.produce_client().await;
    let mut produced = Vec::new();
    for i in 0..60 {
        let value = format!("v{i}");
        let response = produce
            .produce(produce_request(batch(&[value.as_str()], i)))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(response.partitions[0].error_code(), ErrorCode::None);
        produced.push(value);
    }
    let mut lost_any = false;
    for seed in 0..6u64 {
        let image = tempfile::tempdir().unwrap();
        // The broker's own files (topic registry) are written and fsynced at creation.
        for entry in std::fs::read_dir(broker.data.path()).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_file() {
                std::fs::copy(entry.path(), image.path().join(entry.file_name())).unwrap();
            }
        }
        let taken = guard
            .crash_image(seed, &partition_dir(image.path(), "t", 0))
            .unwrap();
        let restarted = TestBroker::start_with(config(image.path().to_path_buf()), image).await;
        let served = served_values(&restarted).await;
        assert!(
            served.len() <= produced.len() && served[..] == produced[..served.len()],
            "{taken}\nserves {served:?}"
        );
        lost_any |= served.len() < produced.len();
        restarted.shutdown().await;
    }
    assert!(lost_any, "some image lost the unsynced tail");
    drop(guard);
    broker.shutdown().await;
}
