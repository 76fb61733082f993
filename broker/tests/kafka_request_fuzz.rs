//! Bytes in, no panic, on the Kafka listener: random frames, and valid frames
//! of the served APIs (encoded by `kafka-protocol`) with bits flipped, cut
//! short, given a lying length prefix or an unknown API key or version, one
//! to three of them on a connection. Each connection is answered with whole
//! response frames or closed, within a bound, and no handler panics; the
//! request memory is back in the pool after each; after the run the broker
//! still produces and fetches over Kafka, and its resident memory grew by
//! less than a bound.
//!
//! Runs `PROPTEST_CASES` cases (256 unless set), as `request_fuzz.rs` does:
//! `PROPTEST_CASES=20000 cargo test -p weir-broker --test kafka_request_fuzz`
//! runs longer. The seed is random and printed; `WEIR_FUZZ_SEED=<seed>`
//! replays a run.

mod common;
mod kafka_support;

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiVersionsRequest, DeleteGroupsRequest, DescribeGroupsRequest, FetchRequest,
    FindCoordinatorRequest, GroupId, HeartbeatRequest, InitProducerIdRequest, JoinGroupRequest,
    LeaveGroupRequest, ListGroupsRequest, ListOffsetsRequest, MetadataRequest, OffsetCommitRequest,
    OffsetDeleteRequest, OffsetFetchRequest, ProduceRequest, RequestHeader, SyncGroupRequest,
    TopicName,
};
use kafka_protocol::protocol::{Encodable, Request, StrBytes};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestError, TestRng, TestRunner};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::{batch, config};
use kafka_support::{start_broker_with, KafkaWire};

const TOPIC: &str = "fuzz";
/// A connection must be answered and closed within this.
const CONNECTION_MAX: Duration = Duration::from_secs(30);
/// The pool must be empty again this long after a connection closed.
const POOL_RELEASE_MAX: Duration = Duration::from_secs(10);
/// Requests larger than this close their connection unread.
const REQUEST_BYTES_MAX: usize = 1 << 20;
/// The resident growth allowed over the whole run: a few of the largest
/// requests, far below what one leaked request per case would keep.
const RESIDENT_GROWTH_BYTES_MAX: u64 = 64 << 20;

/// Panics anywhere in the process (a handler's panic only closes its
/// connection, so it is counted here).
static PANICS: AtomicUsize = AtomicUsize::new(0);

/// One change to a valid frame.
#[derive(Debug, Clone)]
enum Damage {
    None,
    /// XOR the byte at each index (modulo the length) with the mask.
    Flips(Vec<(usize, u8)>),
    /// Keep this many bytes; with `fix_length` the length prefix says so.
    Truncate {
        keep: usize,
        fix_length: bool,
    },
    /// A length prefix that lies.
    Length(i32),
    /// Another API key and version in the header.
    Api {
        key: i16,
        version: i16,
    },
}

/// One frame of a case.
#[derive(Debug, Clone)]
enum Frame {
    /// Arbitrary bytes, with or without a length prefix that matches them.
    Raw { bytes: Vec<u8>, prefixed: bool },
    /// Valid frame `seed` of [`seed_frames`], damaged.
    Seeded { seed: usize, damage: Damage },
}

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

fn group() -> GroupId {
    GroupId(StrBytes::from_static_str("fuzz-group"))
}

/// `request` framed as a client sends it.
fn framed<R: Request + Encodable>(version: i16, request: &R) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("fuzz")));
    let mut body = BytesMut::new();
    header
        .encode(&mut body, R::header_version(version))
        .unwrap();
    request.encode(&mut body, version).unwrap();
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.put_i32(i32::try_from(body.len()).unwrap());
    frame.extend_from_slice(&body);
    frame
}

/// Valid frames of the served APIs, at their lowest and highest versions.
fn seed_frames() -> &'static [Vec<u8>] {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let produce = ProduceRequest::default()
            .with_acks(1)
            .with_timeout_ms(1_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(name(TOPIC))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(batch(&["a", "bb"], 1_000)))])]);
        let fetch = FetchRequest::default()
            .with_max_wait_ms(1)
            .with_max_bytes(1 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic(name(TOPIC))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(0)
                    .with_partition_max_bytes(1 << 20)])]);
        let metadata = MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(name(TOPIC))),
        ]));
        let list_offsets =
            ListOffsetsRequest::default().with_topics(vec![ListOffsetsTopic::default()
                .with_name(name(TOPIC))
                .with_partitions(vec![ListOffsetsPartition::default().with_timestamp(-1)])]);
        let commit = OffsetCommitRequest::default()
            .with_group_id(group())
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(name(TOPIC))
                .with_partitions(vec![
                    OffsetCommitRequestPartition::default().with_committed_offset(1)
                ])]);
        let join = JoinGroupRequest::default()
            .with_group_id(group())
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(10_000)
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(StrBytes::from_static_str("range"))
                .with_metadata(Bytes::from_static(&[
                    0, 1, 0, 0, 0, 1, 0, 4, b'f', b'u', b'z', b'z', 0, 0, 0, 0,
                ]))]);
        vec![
            framed(3, &produce),
            framed(9, &produce),
            framed(4, &fetch),
            framed(12, &fetch),
            framed(0, &metadata),
            framed(12, &metadata),
            framed(0, &ApiVersionsRequest::default()),
            framed(3, &ApiVersionsRequest::default()),
            framed(1, &list_offsets),
            framed(6, &list_offsets),
            framed(
                4,
                &FindCoordinatorRequest::default()
                    .with_coordinator_keys(vec![StrBytes::from_static_str("fuzz-group")]),
            ),
            framed(2, &commit),
            framed(9, &commit),
            framed(1, &OffsetFetchRequest::default().with_group_id(group())),
            framed(0, &join),
            framed(9, &join),
            framed(4, &HeartbeatRequest::default().with_group_id(group())),
            framed(5, &ListGroupsRequest::default()),
            framed(
                4,
                &InitProducerIdRequest::default().with_transaction_timeout_ms(1_000),
            ),
            framed(
                5,
                &SyncGroupRequest::default()
                    .with_group_id(group())
                    .with_member_id(StrBytes::from_static_str("fuzz-member")),
            ),
            framed(
                5,
                &LeaveGroupRequest::default()
                    .with_group_id(group())
                    .with_members(vec![MemberIdentity::default()
                        .with_member_id(StrBytes::from_static_str("fuzz-member"))]),
            ),
            framed(
                5,
                &DescribeGroupsRequest::default().with_groups(vec![group()]),
            ),
            framed(
                2,
                &DeleteGroupsRequest::default().with_groups_names(vec![group()]),
            ),
            framed(
                0,
                &OffsetDeleteRequest::default()
                    .with_group_id(group())
                    .with_topics(vec![OffsetDeleteRequestTopic::default()
                        .with_name(name(TOPIC))
                        .with_partitions(vec![OffsetDeleteRequestPartition::default()])]),
            ),
        ]
    })
}

fn damage_strategy() -> impl Strategy<Value = Damage> {
    prop_oneof![
        Just(Damage::None),
        proptest::collection::vec((any::<usize>(), 1u8..=255), 1..8).prop_map(Damage::Flips),
        (any::<usize>(), any::<bool>())
            .prop_map(|(keep, fix_length)| Damage::Truncate { keep, fix_length }),
        prop_oneof![
            any::<i32>(),
            -1i32..64,
            (REQUEST_BYTES_MAX as i32 - 64)..(REQUEST_BYTES_MAX as i32 + 64)
        ]
        .prop_map(Damage::Length),
        (
            prop_oneof![any::<i16>(), 0i16..80],
            prop_oneof![any::<i16>(), -1i16..20]
        )
            .prop_map(|(key, version)| Damage::Api { key, version }),
    ]
}

fn frame_strategy() -> impl Strategy<Value = Frame> {
    prop_oneof![
        1 => (proptest::collection::vec(any::<u8>(), 0..256), any::<bool>())
            .prop_map(|(bytes, prefixed)| Frame::Raw { bytes, prefixed }),
        4 => (0..seed_frames().len(), damage_strategy())
            .prop_map(|(seed, damage)| Frame::Seeded { seed, damage }),
    ]
}

/// The bytes `frame` puts on the wire.
fn bytes_of(frame: &Frame) -> Vec<u8> {
    match frame {
        Frame::Raw { bytes, prefixed } => {
            let mut out = Vec::with_capacity(4 + bytes.len());
            if *prefixed {
                out.put_i32(bytes.len() as i32);
            }
            out.extend_from_slice(bytes);
            out
        }
        Frame::Seeded { seed, damage } => {
            let mut out = seed_frames()[*seed].clone();
            match damage {
                Damage::None => {}
                Damage::Flips(flips) => {
                    let len = out.len();
                    for (index, mask) in flips {
                        out[index % len] ^= mask;
                    }
                }
                Damage::Truncate { keep, fix_length } => {
                    out.truncate(keep % out.len());
                    if *fix_length && out.len() >= 4 {
                        let body = (out.len() - 4) as i32;
                        out[..4].copy_from_slice(&body.to_be_bytes());
                    }
                }
                Damage::Length(length) => out[..4].copy_from_slice(&length.to_be_bytes()),
                Damage::Api { key, version } => {
                    out[4..6].copy_from_slice(&key.to_be_bytes());
                    out[6..8].copy_from_slice(&version.to_be_bytes());
                }
            }
            out
        }
    }
}

/// Sends the frames on a new connection, closes the sending side, and reads
/// until the broker closes: the responses, or what went wrong.
async fn exchange(addr: SocketAddr, frames: &[Frame]) -> Result<usize, String> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let mut sent = Vec::new();
    for frame in frames {
        sent.extend_from_slice(&bytes_of(frame));
    }
    // The broker may close on a bad frame before it reads the rest.
    let _ = stream.write_all(&sent).await;
    let _ = stream.shutdown().await;
    let mut received = Vec::new();
    let read = tokio::time::timeout(CONNECTION_MAX, stream.read_to_end(&mut received)).await;
    match read {
        Err(_) => return Err("the broker neither answered nor closed in time".to_string()),
        // A reset after a refused frame is a close.
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Ok(Err(e)) => return Err(format!("reading the answer failed: {e}")),
        Ok(Ok(_)) => {}
    }
    let mut rest = &received[..];
    let mut responses = 0;
    while rest.has_remaining() {
        if rest.len() < 8 {
            return Err(format!("{} bytes of a response header", rest.len()));
        }
        let len = rest.get_i32();
        let len = usize::try_from(len).map_err(|_| format!("a response of size {len}"))?;
        if len < 4 || rest.len() < len {
            return Err(format!(
                "a response of {len} bytes with {} left",
                rest.len()
            ));
        }
        rest.advance(len);
        responses += 1;
    }
    if responses > frames.len() {
        return Err(format!("{responses} responses to {} frames", frames.len()));
    }
    Ok(responses)
}

/// Waits, bounded, for `held` to read 0.
async fn released(held: impl Fn() -> usize) -> Result<(), String> {
    let deadline = Instant::now() + POOL_RELEASE_MAX;
    while held() != 0 {
        if Instant::now() > deadline {
            return Err(format!("{} bytes of pool memory kept", held()));
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

fn seed() -> u64 {
    match std::env::var("WEIR_FUZZ_SEED") {
        Ok(seed) => seed.parse().expect("WEIR_FUZZ_SEED is a u64"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    }
}

fn runner(seed: u64) -> TestRunner {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let config = Config {
        failure_persistence: None,
        ..Config::default()
    };
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &bytes))
}

#[test]
fn damaged_kafka_frames_close_or_are_answered_and_the_broker_keeps_serving() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        default_hook(info);
    }));
    let seed = seed();
    // Straight to stderr, past the test harness's capture: an abort (an
    // allocation failure) would lose captured output, and the seed with it.
    let _ = writeln!(
        std::io::stderr(),
        "kafka_request_fuzz seed {seed} (WEIR_FUZZ_SEED={seed} replays it)"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (broker, kafka) = runtime.block_on(async {
        let data = tempfile::tempdir().unwrap();
        let mut config = config(data.path().to_path_buf());
        config.kafka_listen = Some("127.0.0.1:0".parse().unwrap());
        config.request_bytes_max = REQUEST_BYTES_MAX;
        // Long polls end at once: the cases are about bytes, not waiting.
        config.fetch_wait_ms_max = 1;
        let (broker, kafka) = start_broker_with(config, data).await;
        broker.create_topic(TOPIC, 2).await;
        (broker, kafka)
    });
    let pool = Arc::clone(broker.running.as_ref().unwrap().broker().memory_pool());
    let resident_before = resident_bytes();

    let strategy = proptest::collection::vec(frame_strategy(), 1..=3);
    let (cases, answered) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let result = runner(seed).run(&strategy, |frames| {
        let outcome = runtime.block_on(async {
            let responses = exchange(kafka, &frames).await?;
            answered.fetch_add(responses, Ordering::Relaxed);
            released(|| pool.in_use_bytes()).await
        });
        cases.fetch_add(1, Ordering::Relaxed);
        prop_assert!(outcome.is_ok(), "{}", outcome.unwrap_err());
        prop_assert_eq!(PANICS.load(Ordering::SeqCst), 0, "the broker panicked");
        Ok(())
    });
    if let Err(error) = result {
        let detail = match error {
            TestError::Fail(reason, frames) => format!("{reason}; smallest case: {frames:?}"),
            TestError::Abort(reason) => format!("aborted: {reason}"),
        };
        panic!("kafka_request_fuzz failed with seed {seed} (WEIR_FUZZ_SEED={seed}): {detail}");
    }

    let resident_after = resident_bytes();
    println!(
        "{} connections, {} responses; resident {} -> {} MiB",
        cases.into_inner(),
        answered.into_inner(),
        resident_before >> 20,
        resident_after >> 20
    );
    assert!(
        resident_after.saturating_sub(resident_before) < RESIDENT_GROWTH_BYTES_MAX,
        "seed {seed}: resident memory grew from {resident_before} to {resident_after} bytes"
    );
    runtime.block_on(async {
        // A topic of its own: a damaged frame cannot have changed it.
        broker.create_topic("after-fuzz", 1).await;
        let mut wire = KafkaWire::connect(kafka).await;
        let healthy = batch(&["healthy"], 1_000);
        let produced = wire
            .call(
                9,
                &ProduceRequest::default()
                    .with_acks(1)
                    .with_timeout_ms(5_000)
                    .with_topic_data(vec![TopicProduceData::default()
                        .with_name(name("after-fuzz"))
                        .with_partition_data(vec![PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(healthy.clone()))])]),
            )
            .await;
        assert_eq!(produced.responses[0].partition_responses[0].error_code, 0);
        let fetched = wire
            .call(
                12,
                &FetchRequest::default()
                    .with_max_wait_ms(0)
                    .with_max_bytes(1 << 20)
                    .with_topics(vec![FetchTopic::default()
                        .with_topic(name("after-fuzz"))
                        .with_partitions(vec![FetchPartition::default()
                            .with_partition(0)
                            .with_partition_max_bytes(1 << 20)])]),
            )
            .await;
        let partition = &fetched.responses[0].partitions[0];
        assert_eq!(partition.error_code, 0);
        // The same batch, but for the leader epoch the broker stamped in it.
        let records = partition.records.as_ref().expect("no records");
        assert_eq!(records.len(), healthy.len(), "seed {seed}");
        assert_eq!(records[61..], healthy[61..], "seed {seed}");
        drop(wire);
        broker.shutdown().await;
    });
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "seed {seed}: a panic");
}
