//! Sockets that never speak cannot lock working clients out: 1,100 of them held open
//! used to take every one of the 1,024 slots, and `weir produce` failed until they
//! went away. Now a connection that has made no request gives way to a new one, is
//! closed at `connection_first_request_timeout_ms`, and any connection silent for
//! `connections_max_idle_ms` is closed; one address holds at most
//! `connections_max_per_ip` connections that made requests.

mod common;

use std::time::Duration;

use common::{batch, config, TestBroker};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use weir_client::proto::{ErrorCode, PartitionProduceData, ProduceRequest};
use weir_client::Admin;

/// Generous: each phase is expected to take milliseconds.
const PHASE_MAX: Duration = Duration::from_secs(30);

async fn start(configure: impl FnOnce(&mut weir_broker::BrokerConfig)) -> TestBroker {
    let data = tempfile::tempdir().unwrap();
    let mut config = config(data.path().to_path_buf());
    configure(&mut config);
    TestBroker::start_with(config, data).await
}

/// True once the broker has closed `socket` (end of stream or a reset); what it
/// sent before (its HTTP/2 settings) is read and dropped.
async fn closed_by_broker(socket: &mut TcpStream) -> bool {
    let mut sink = [0u8; 1024];
    let closed = tokio::time::timeout(PHASE_MAX, async {
        loop {
            match socket.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    });
    closed.await.is_ok()
}

async fn works(addr: &str) -> bool {
    match Admin::connect(addr).await {
        Ok(admin) => admin.list_topics().await.is_ok(),
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_gets_through_while_1100_silent_sockets_are_held_open() {
    let broker = start(|_| {}).await;
    broker.create_topic("busy", 1).await;
    let mut silent = Vec::with_capacity(1_100);
    for _ in 0..1_100 {
        silent.push(TcpStream::connect(&broker.addr).await.unwrap());
    }
    let produced = tokio::time::timeout(PHASE_MAX, async {
        let mut client = broker.produce_client().await;
        client
            .produce(ProduceRequest {
                topic: "busy".to_string(),
                acks: 0,
                timeout_ms: 10_000,
                partitions: vec![PartitionProduceData {
                    partition: 0,
                    batches: batch(&["through"], 1_000),
                }],
            })
            .await
    })
    .await
    .expect("the producer did not get through within the phase bound")
    .expect("the producer's request failed while silent sockets were open")
    .into_inner();
    assert_eq!(produced.partitions[0].error_code(), ErrorCode::None);
    // The silent sockets are still open (some were displaced): the produce did
    // not wait for them to go.
    assert_eq!(silent.len(), 1_100);
    drop(silent);
    broker.shutdown().await;
}

#[tokio::test]
async fn a_socket_that_sends_nothing_is_closed_at_the_first_request_deadline() {
    let broker = start(|config| config.connection_first_request_timeout_ms = 50).await;
    let mut socket = TcpStream::connect(&broker.addr).await.unwrap();
    assert!(closed_by_broker(&mut socket).await);
    broker.shutdown().await;
}

#[tokio::test]
async fn a_connection_idle_past_connections_max_idle_ms_is_closed() {
    let broker = start(|config| {
        config.fetch_wait_ms_max = 10;
        config.connections_max_idle_ms = 100;
        // Only the idle timeout can close it within the phase bound.
        config.connection_first_request_timeout_ms = 3_600_000;
    })
    .await;
    let tcp = TcpStream::connect(&broker.addr).await.unwrap();
    let (mut send, connection) = h2::client::handshake(tcp).await.unwrap();
    let connection = tokio::spawn(connection);
    // One request, answered: the connection is established, then says nothing.
    let request = http::Request::post(format!("http://{}/weir.v1.Admin/ListTopics", broker.addr))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (response, mut body) = send.send_request(request, false).unwrap();
    body.send_data(bytes::Bytes::from_static(&[0, 0, 0, 0, 0]), true)
        .unwrap();
    let response = response.await.unwrap();
    assert_eq!(response.status(), 200);
    let ended = tokio::time::timeout(PHASE_MAX, connection).await;
    assert!(ended.is_ok(), "the idle connection was not closed");
    broker.shutdown().await;
}

#[tokio::test]
async fn one_address_holds_at_most_its_connections_max_per_ip() {
    let broker = start(|config| config.connections_max_per_ip = 2).await;
    let first = Admin::connect(&broker.addr).await.unwrap();
    let second = Admin::connect(&broker.addr).await.unwrap();
    first.list_topics().await.unwrap();
    second.list_topics().await.unwrap();
    assert!(
        !works(&broker.addr).await,
        "a third connection from 127.0.0.1 was served"
    );
    drop((first, second));
    broker.shutdown().await;

    let broker = start(|config| {
        config.connections_max_per_ip = 2;
        config.connections_max_per_ip_overrides =
            weir_broker::parse_per_ip_overrides("127.0.0.1:3").unwrap();
    })
    .await;
    let kept: Vec<Admin> = {
        let mut kept = Vec::new();
        for _ in 0..2 {
            let admin = Admin::connect(&broker.addr).await.unwrap();
            admin.list_topics().await.unwrap();
            kept.push(admin);
        }
        kept
    };
    assert!(works(&broker.addr).await, "the override allows a third");
    drop(kept);
    broker.shutdown().await;
}
