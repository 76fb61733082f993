//! The Kafka listener holds the limits the gRPC listener holds, from the same
//! pool of slots: sockets that never send a byte cannot lock a Kafka client
//! out (the oldest of them gives way), a host past `connections_max_per_ip`
//! (counted over both listeners) is refused while other addresses are served,
//! and a connection is closed at the first-request deadline or once idle for
//! `connections_max_idle_ms`.

mod common;
mod kafka_support;
mod metrics_support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiVersionsRequest, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use weir_broker::Listener;

use common::{batch, config, TestBroker};
use kafka_support::{connect_from, start_broker_with, KafkaWire};

/// Generous: each phase is expected to take milliseconds.
const PHASE_MAX: Duration = Duration::from_secs(30);

const LOOPBACK_2: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const LOOPBACK_3: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));

async fn start(configure: impl FnOnce(&mut weir_broker::BrokerConfig)) -> (TestBroker, SocketAddr) {
    let data = tempfile::tempdir().unwrap();
    let mut config = config(data.path().to_path_buf());
    config.kafka_listen = Some("127.0.0.1:0".parse().unwrap());
    configure(&mut config);
    start_broker_with(config, data).await
}

/// True once the broker has closed `socket` (end of stream or a reset): a
/// Kafka broker sends nothing a client did not ask for.
async fn closed_by_broker(socket: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match tokio::time::timeout(PHASE_MAX, socket.read(&mut byte)).await {
        Ok(Ok(0) | Err(_)) => true,
        Ok(Ok(_)) => panic!("the broker sent bytes nobody asked for"),
        Err(_) => false,
    }
}

/// An ApiVersions round trip: the connection is served.
async fn served(wire: &mut KafkaWire) -> bool {
    let versions = wire.call(3, &ApiVersionsRequest::default()).await;
    versions.error_code == 0
}

fn produce(topic: &str, values: &[&str]) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(5_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch(values, 1_000)))])])
}

fn open_kafka_connections(broker: &TestBroker) -> i64 {
    let running = broker.running.as_ref().unwrap();
    running.broker().metrics().open_connections(Listener::Kafka)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_producer_gets_through_while_silent_sockets_exceed_both_connection_limits() {
    let (broker, kafka) = start(|config| {
        config.connections_max = 6;
        config.connections_max_per_ip = 4;
        // Only giving way can make room within the phase bound.
        config.connection_first_request_timeout_ms = 3_600_000;
    })
    .await;
    broker.create_topic("busy", 1).await;
    // 20 silent sockets: 10 past 127.0.0.2's limit, then 10 from the
    // client's own address, past its limit and the broker's.
    let mut silent = Vec::with_capacity(20);
    for source in [LOOPBACK_2, IpAddr::from(Ipv4Addr::LOCALHOST)] {
        for _ in 0..10 {
            silent.push(connect_from(source, kafka).await);
        }
    }
    let produced = tokio::time::timeout(PHASE_MAX, async {
        let mut wire = KafkaWire::connect(kafka).await;
        assert!(served(&mut wire).await);
        wire.call(7, &produce("busy", &["through"])).await
    })
    .await
    .expect("the Kafka producer did not get through within the phase bound");
    let partition = &produced.responses[0].partition_responses[0];
    assert_eq!(partition.error_code, 0);
    assert_eq!(partition.base_offset, 0);
    assert!(open_kafka_connections(&broker) <= 6);
    // The silent sockets are still open on this side: the produce did not
    // wait for them to go.
    assert_eq!(silent.len(), 20);
    drop(silent);
    broker.shutdown().await;
}

#[tokio::test]
async fn a_host_past_its_per_ip_limit_is_refused_while_other_addresses_are_served() {
    let (broker, kafka) = start(|config| {
        config.connections_max_per_ip = 2;
        config.connections_max_per_ip_overrides =
            weir_broker::parse_per_ip_overrides("127.0.0.3:3").unwrap();
        config.connection_first_request_timeout_ms = 3_600_000;
        config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let metrics = metrics_support::metrics_addr(&broker);
    let refused = || async move {
        let (_, exposition) = metrics_support::get(metrics, "/metrics").await;
        metrics_support::value(
            &exposition,
            "weir_connections_refused_total",
            "listener=\"kafka\"",
        )
    };
    // 127.0.0.1's two slots: a working gRPC connection and a working Kafka
    // one; the listeners count an address's connections together.
    let admin = broker.admin().await;
    admin.list_topics().await.unwrap();
    let mut working = KafkaWire::connect(kafka).await;
    assert!(served(&mut working).await);
    let mut third = TcpStream::connect(kafka).await.unwrap();
    assert!(
        closed_by_broker(&mut third).await,
        "a third connection from 127.0.0.1 was kept"
    );
    assert_eq!(refused().await, 1.0);

    // Another address has its own slots, and an overridden one its own limit.
    let mut other = KafkaWire::connect_from(LOOPBACK_2, kafka).await;
    assert!(served(&mut other).await);
    let mut overridden = Vec::new();
    for _ in 0..3 {
        let mut wire = KafkaWire::connect_from(LOOPBACK_3, kafka).await;
        assert!(served(&mut wire).await);
        overridden.push(wire);
    }
    let mut fourth = connect_from(LOOPBACK_3, kafka).await;
    assert!(
        closed_by_broker(&mut fourth).await,
        "a fourth connection from 127.0.0.3 was kept"
    );
    assert_eq!(refused().await, 2.0);
    // The refusals closed only the connections past the limits.
    assert!(served(&mut working).await);
    admin.list_topics().await.unwrap();
    drop((admin, working, other, overridden));
    broker.shutdown().await;
}

#[tokio::test]
async fn a_kafka_socket_that_sends_nothing_is_closed_at_the_first_request_deadline() {
    let (broker, kafka) = start(|config| config.connection_first_request_timeout_ms = 50).await;
    let mut socket = TcpStream::connect(kafka).await.unwrap();
    assert!(closed_by_broker(&mut socket).await);
    broker.shutdown().await;
}

#[tokio::test]
async fn a_kafka_connection_silent_past_connections_max_idle_ms_is_closed() {
    let (broker, kafka) = start(|config| {
        config.fetch_wait_ms_max = 10;
        config.connections_max_idle_ms = 100;
        // Only the idle deadline can close it within the phase bound.
        config.connection_first_request_timeout_ms = 3_600_000;
    })
    .await;
    let mut wire = KafkaWire::connect(kafka).await;
    assert!(served(&mut wire).await);
    // `read_frame` fails the test if neither a frame nor the close arrives
    // within its bound.
    assert!(
        wire.read_frame().await.is_none(),
        "the broker sent a frame nobody asked for"
    );
    broker.shutdown().await;
}
