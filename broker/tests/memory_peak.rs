//! 200 clients each sending a 15 MB produce request at once keep the broker within its
//! stated bound on request memory (`BrokerConfig::request_memory_bytes_max`: the pool plus
//! every connection's HTTP/2 buffering) plus a fixed overhead, and a normal client is
//! served meanwhile. Memory used to follow the attacker: HTTP/2 windows of 8 MiB per
//! request let 200 such clients take a broker from 24 MiB to 3.2 GiB resident.
//!
//! Alone in its file: the peak is the process's resident peak (`VmHWM`, reset through
//! `/proc/self/clear_refs` before the load), and the clients send one shared buffer, so
//! what grows is the broker. glibc's allocator is told to map every allocation of 1 MiB
//! or more on its own, so freed request buffers leave the process at once instead of
//! staying in whichever thread's arena freed them: the peak is then live memory, which
//! the bound is about, not the allocator's retention.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use common::{batch, config, TestBroker};
use prost::Message;
use weir_client::proto::{ErrorCode, PartitionProduceData, ProduceRequest};

const CLIENTS: usize = 200;
const REQUEST_BYTES: usize = 15_000_000;
const MIB: usize = 1024 * 1024;
/// What the test process holds besides request memory while the load runs: the
/// runtime, 200 HTTP/2 connections on each side, the log, the allocator's slack.
const FIXED_OVERHEAD_BYTES: usize = 128 * MIB;
const PHASE_MAX: Duration = Duration::from_secs(120);

/// A kB field of `/proc/self/status`, in bytes.
fn status_bytes(field: &str) -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    let kb: usize = line
        .split_whitespace()
        .nth(1)
        .and_then(|kb| kb.parse().ok())
        .unwrap();
    kb * 1024
}

/// A gRPC-framed produce request of about 15 MB whose batch bytes no log takes: the
/// broker must receive it whole before it can refuse it.
fn framed_request() -> Bytes {
    let request = ProduceRequest {
        topic: "load".to_string(),
        acks: 0,
        timeout_ms: 60_000,
        partitions: vec![PartitionProduceData {
            partition: 0,
            batches: Bytes::from(vec![0u8; REQUEST_BYTES]),
        }],
    };
    let message = request.encode_to_vec();
    let mut framed = BytesMut::with_capacity(5 + message.len());
    framed.put_u8(0);
    framed.put_u32(u32::try_from(message.len()).unwrap());
    framed.extend_from_slice(&message);
    framed.freeze()
}

/// Sends `body` as one `Produce` call on its own connection and waits for the answer,
/// whatever it is.
async fn send(addr: String, body: Bytes) {
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    let connection = tokio::spawn(connection);
    let request = http::Request::post(format!("http://{addr}/weir.v1.Produce/Produce"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let mut client = client.ready().await.unwrap();
    let (response, mut stream) = client.send_request(request, false).unwrap();
    stream.send_data(body, true).unwrap();
    if let Ok(response) = response.await {
        let mut body = response.into_body();
        while let Some(Ok(chunk)) = body.data().await {
            let _ = body.flow_control().release_capacity(chunk.len());
        }
        let _ = body.trailers().await;
    }
    drop(client);
    connection.abort();
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn map_large_allocations_alone() {
    extern "C" {
        fn mallopt(param: i32, value: i32) -> i32;
    }
    const M_MMAP_THRESHOLD: i32 = -3;
    // SAFETY: mallopt only changes glibc's allocation policy; it is called
    // before the test allocates anything large.
    let set = unsafe { mallopt(M_MMAP_THRESHOLD, 1 << 20) };
    assert_eq!(set, 1, "glibc refused M_MMAP_THRESHOLD");
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn map_large_allocations_alone() {}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_clients_of_15_mb_stay_within_the_memory_bound_and_a_normal_client_is_served() {
    map_large_allocations_alone();
    let data = tempfile::tempdir().unwrap();
    let config = config(data.path().to_path_buf());
    let bound = config.queued_request_bytes_max + CLIENTS * config.connection_buffer_bytes_max();
    let broker = TestBroker::start_with(config, data).await;
    let admin = broker.admin().await;
    admin
        .create_topic("load", 1, 1, &BTreeMap::new())
        .await
        .unwrap();
    admin
        .create_topic("normal", 1, 1, &BTreeMap::new())
        .await
        .unwrap();
    let mut normal = broker.produce_client().await;
    let body = framed_request();
    let pool = std::sync::Arc::clone(broker.running.as_ref().unwrap().broker().memory_pool());

    let baseline = status_bytes("VmRSS:");
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let load: Vec<_> = (0..CLIENTS)
        .map(|_| tokio::spawn(send(broker.addr.clone(), body.clone())))
        .collect();
    // Served while the load is on: the pool is in use from the first request on.
    tokio::time::timeout(PHASE_MAX, async {
        while pool.in_use_bytes() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the load never reached the memory pool");
    let listed = tokio::time::timeout(PHASE_MAX, admin.list_topics())
        .await
        .expect("a normal client was not served during the load")
        .unwrap();
    assert_eq!(listed.len(), 2);
    let produced = tokio::time::timeout(
        PHASE_MAX,
        normal.produce(ProduceRequest {
            topic: "normal".to_string(),
            acks: 0,
            timeout_ms: 60_000,
            partitions: vec![PartitionProduceData {
                partition: 0,
                batches: batch(&["served"], 1_000),
            }],
        }),
    )
    .await
    .expect("a normal produce was not served during the load")
    .unwrap()
    .into_inner();
    assert_eq!(produced.partitions[0].error_code(), ErrorCode::None);
    for client in load {
        tokio::time::timeout(PHASE_MAX, client)
            .await
            .expect("a loading client never got its answer")
            .unwrap();
    }
    let peak = status_bytes("VmHWM:");
    let growth = peak.saturating_sub(baseline);
    eprintln!(
        "baseline {} MiB, peak {} MiB (growth {} MiB), bound {} MiB + {} MiB overhead, pool peak {} MiB, resident after {} MiB",
        baseline / MIB,
        peak / MIB,
        growth / MIB,
        bound / MIB,
        FIXED_OVERHEAD_BYTES / MIB,
        pool.in_use_bytes_max() / MIB,
        status_bytes("VmRSS:") / MIB,
    );
    assert!(
        growth <= bound + FIXED_OVERHEAD_BYTES,
        "resident memory grew by {growth} bytes under the load, more than the bound of {bound} bytes plus {FIXED_OVERHEAD_BYTES}"
    );
    assert!(pool.in_use_bytes_max() <= pool.capacity_bytes());
    broker.shutdown().await;
}
