//! Bytes in, no panic: arbitrary gRPC messages to `Produce.Produce` and `Fetch.Fetch`
//! (raw bytes, and well-formed requests with arbitrary fields and damaged batches) are
//! each answered with a response or a refusal, never a dropped connection or an internal
//! error, and the broker afterwards stores and serves a healthy batch. Every request is
//! bounded by `request_bytes_max` before it is buffered, and its memory is back in the
//! pool once it is answered.
//!
//! Runs `PROPTEST_CASES` cases (proptest's default, 256, unless set): raise it to run
//! longer by hand, e.g. `PROPTEST_CASES=20000 cargo test -p weir-broker --test
//! request_fuzz`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use common::{batch, config, TestBroker};
use proptest::prelude::*;
use prost::Message;
use weir_client::proto::{
    ErrorCode, FetchRequest, PartitionFetchRequest, PartitionProduceData, ProduceRequest,
};
use weir_log::batch::compute_crc;

const TOPIC: &str = "fuzz";
const PRODUCE: &str = "/weir.v1.Produce/Produce";
const FETCH: &str = "/weir.v1.Fetch/Fetch";
const CALL_MAX: Duration = Duration::from_secs(30);

/// One request the fuzzer sends.
#[derive(Debug, Clone)]
enum Case {
    /// Arbitrary message bytes behind a correct gRPC prefix.
    Raw {
        path: &'static str,
        message: Vec<u8>,
    },
    /// A produce request of a valid batch with bytes overwritten (CRC fixed up or not).
    Produce {
        partition: u32,
        acks: i32,
        damage: Vec<(usize, u8)>,
        fix_crc: bool,
    },
    /// A fetch request with arbitrary fields.
    Fetch {
        partition: u32,
        offset: u64,
        max_bytes: u32,
        partition_max_bytes: u32,
        min_bytes: u32,
        max_wait_ms: u32,
    },
}

fn case_strategy() -> impl Strategy<Value = Case> {
    prop_oneof![
        (
            prop_oneof![Just(PRODUCE), Just(FETCH)],
            proptest::collection::vec(any::<u8>(), 0..512)
        )
            .prop_map(|(path, message)| Case::Raw { path, message }),
        (
            0u32..4,
            prop_oneof![0i32..3, any::<i32>()],
            proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
            any::<bool>()
        )
            .prop_map(|(partition, acks, damage, fix_crc)| Case::Produce {
                partition,
                acks,
                damage,
                fix_crc
            }),
        (
            0u32..4,
            prop_oneof![0u64..8, any::<u64>()],
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<u32>()
        )
            .prop_map(
                |(partition, offset, max_bytes, partition_max_bytes, min_bytes, max_wait_ms)| {
                    Case::Fetch {
                        partition,
                        offset,
                        max_bytes,
                        partition_max_bytes,
                        min_bytes,
                        max_wait_ms,
                    }
                }
            ),
    ]
}

fn message(case: &Case) -> (&'static str, Vec<u8>) {
    match case {
        Case::Raw { path, message } => (path, message.clone()),
        Case::Produce {
            partition,
            acks,
            damage,
            fix_crc,
        } => {
            let mut bytes = batch(&["fuzzed", "records"], 1_000).to_vec();
            for (at, value) in damage {
                let at = at % bytes.len();
                bytes[at] = *value;
            }
            if *fix_crc {
                if let Some(crc) = compute_crc(&bytes) {
                    bytes[17..21].copy_from_slice(&crc.to_be_bytes());
                }
            }
            let request = ProduceRequest {
                topic: TOPIC.to_string(),
                acks: *acks,
                timeout_ms: 1_000,
                partitions: vec![PartitionProduceData {
                    partition: *partition,
                    batches: Bytes::from(bytes),
                }],
            };
            (PRODUCE, request.encode_to_vec())
        }
        Case::Fetch {
            partition,
            offset,
            max_bytes,
            partition_max_bytes,
            min_bytes,
            max_wait_ms,
        } => {
            let request = FetchRequest {
                topic: TOPIC.to_string(),
                max_wait_ms: *max_wait_ms,
                min_bytes: *min_bytes,
                max_bytes: *max_bytes,
                partitions: vec![PartitionFetchRequest {
                    partition: *partition,
                    offset: *offset,
                    max_bytes: *partition_max_bytes,
                }],
            };
            (FETCH, request.encode_to_vec())
        }
    }
}

/// Sends one gRPC call on `client`'s connection and returns its grpc-status (0 is OK).
async fn call(
    client: &h2::client::SendRequest<Bytes>,
    addr: &str,
    path: &str,
    message: &[u8],
) -> u32 {
    let mut framed = BytesMut::with_capacity(5 + message.len());
    framed.put_u8(0);
    framed.put_u32(u32::try_from(message.len()).unwrap());
    framed.extend_from_slice(message);
    let request = http::Request::post(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let mut client = client
        .clone()
        .ready()
        .await
        .expect("the broker dropped the connection");
    let (response, mut body) = client.send_request(request, false).unwrap();
    body.send_data(framed.freeze(), true).unwrap();
    let response = response.await.expect("the broker reset the request");
    let status_of = |headers: &http::HeaderMap| {
        headers
            .get("grpc-status")
            .and_then(|v| v.to_str().ok()?.parse::<u32>().ok())
    };
    if let Some(status) = status_of(response.headers()) {
        return status;
    }
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("the response body broke off");
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let trailers = body.trailers().await.unwrap().expect("no trailers");
    status_of(&trailers).expect("no grpc-status in the trailers")
}

#[test]
fn arbitrary_produce_and_fetch_requests_are_answered_and_the_broker_keeps_serving() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (broker, client) = runtime.block_on(async {
        let data = tempfile::tempdir().unwrap();
        let config = weir_broker::BrokerConfig {
            // Long polls end at once: the cases are about bytes, not waiting.
            fetch_wait_ms_max: 1,
            ..config(data.path().to_path_buf())
        };
        let broker = TestBroker::start_with(config, data).await;
        broker.create_topic(TOPIC, 2).await;
        let tcp = tokio::net::TcpStream::connect(&broker.addr).await.unwrap();
        let (client, connection) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(connection);
        (broker, client)
    });
    let pool = Arc::clone(broker.running.as_ref().unwrap().broker().memory_pool());

    proptest!(|(case in case_strategy())| {
        let (path, message) = message(&case);
        let status = runtime.block_on(async {
            tokio::time::timeout(CALL_MAX, call(&client, &broker.addr, path, &message)).await
        });
        let status = status.expect("a request was not answered within the bound");
        // 2 UNKNOWN, 13 INTERNAL, 14 UNAVAILABLE: a handler failed rather than refused.
        prop_assert!(![2, 13, 14].contains(&status), "{case:?} answered grpc-status {status}");
        prop_assert_eq!(pool.in_use_bytes(), 0, "{:?} kept pool memory after its answer", case);
    });

    runtime.block_on(async {
        let mut producer = broker.produce_client().await;
        let produced = producer
            .produce(ProduceRequest {
                topic: TOPIC.to_string(),
                acks: 0,
                timeout_ms: 10_000,
                partitions: vec![PartitionProduceData {
                    partition: 1,
                    batches: batch(&["healthy"], 1_000),
                }],
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(produced.partitions[0].error_code(), ErrorCode::None);
        let offset = produced.partitions[0].base_offset;
        let records = common::consume_all(&broker.addr, TOPIC, &[1], offset as usize + 1).await;
        assert!(
            records
                .iter()
                .any(|r| r.offset == offset && r.value.as_deref() == Some(&b"healthy"[..])),
            "the healthy record was not served after the fuzzing"
        );
        broker.shutdown().await;
    });
}
