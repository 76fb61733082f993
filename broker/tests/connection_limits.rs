//! The broker cannot be exhausted by clients: connections past
//! `connections_max` are closed at once (and admitted again once others
//! close), and each connection advertises `requests_per_connection_max` as
//! its HTTP/2 concurrent-stream limit, so a client queues requests past it.
//! Refusals are counted per listener in `weir_connections_refused_total`.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use common::{config, TestBroker};
use weir_client::Admin;

async fn start(configure: impl FnOnce(&mut weir_broker::BrokerConfig)) -> TestBroker {
    let data = tempfile::tempdir().unwrap();
    let mut config = config(data.path().to_path_buf());
    configure(&mut config);
    TestBroker::start_with(config, data).await
}

async fn works(addr: &str) -> bool {
    match Admin::connect(addr).await {
        Ok(admin) => admin.list_topics().await.is_ok(),
        Err(_) => false,
    }
}

#[tokio::test]
async fn connections_past_the_cap_are_closed_until_one_is_freed() {
    let broker = start(|config| config.connections_max = 2).await;
    let first = Admin::connect(&broker.addr).await.unwrap();
    let second = Admin::connect(&broker.addr).await.unwrap();
    first.list_topics().await.unwrap();
    second.list_topics().await.unwrap();

    assert!(
        !works(&broker.addr).await,
        "a third connection was served while two were open"
    );
    first.list_topics().await.unwrap();

    drop(first);
    // The broker notices the close asynchronously; poll until it admits one.
    let mut admitted = false;
    for _ in 0..500 {
        if works(&broker.addr).await {
            admitted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(admitted, "a freed connection slot was never reused");
    second.list_topics().await.unwrap();
    broker.shutdown().await;
}

#[tokio::test]
async fn each_connection_advertises_the_request_limit() {
    let broker = start(|config| config.requests_per_connection_max = 7).await;
    let tcp = tokio::net::TcpStream::connect(&broker.addr).await.unwrap();
    let (send, mut connection) = h2::client::handshake(tcp).await.unwrap();
    // Drive the connection until the server's SETTINGS frame is applied.
    let advertised = tokio::time::timeout(
        Duration::from_secs(30),
        std::future::poll_fn(|cx| {
            let polled = Pin::new(&mut connection).poll(cx);
            if connection.max_concurrent_send_streams() == 7 {
                Poll::Ready(Ok(()))
            } else if let Poll::Ready(result) = polled {
                Poll::Ready(
                    result
                        .map_err(|e| e.to_string())
                        .and(Err("closed".to_string())),
                )
            } else {
                Poll::Pending
            }
        }),
    )
    .await;
    assert_eq!(advertised, Ok(Ok(())));
    // Graceful shutdown waits for open connections: close this one first.
    drop((send, connection));
    broker.shutdown().await;
}

/// `weir_connections_refused_total` of `listener` in a scrape of `metrics`.
async fn refused(metrics: std::net::SocketAddr, listener: &str) -> f64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(metrics).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: weir\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    tokio::time::timeout(
        Duration::from_secs(30),
        stream.read_to_string(&mut response),
    )
    .await
    .expect("no scrape within the test's bound")
    .unwrap();
    let prefix = format!("weir_connections_refused_total{{listener=\"{listener}\"}} ");
    response
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map_or(0.0, |value| value.trim().parse().unwrap())
}

#[tokio::test]
async fn connections_refused_for_want_of_a_slot_are_counted_per_listener() {
    let broker = start(|config| {
        config.connections_max = 1;
        config.kafka_listen = Some("127.0.0.1:0".parse().unwrap());
        config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let running = broker.running.as_ref().unwrap();
    let (kafka, metrics) = (
        running.kafka_addr().unwrap(),
        running.metrics_addr().unwrap(),
    );
    assert_eq!(refused(metrics, "grpc").await, 0.0);

    let held = Admin::connect(&broker.addr).await.unwrap();
    held.list_topics().await.unwrap();
    assert!(
        !works(&broker.addr).await,
        "a second gRPC connection was served"
    );
    assert!(refused(metrics, "grpc").await >= 1.0);

    // The Kafka listener draws on the same pool, whose one slot is held by a
    // connection that made requests: a Kafka connection is closed unread.
    let mut turned_away = tokio::net::TcpStream::connect(kafka).await.unwrap();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::io::AsyncReadExt::read(&mut turned_away, &mut byte),
    )
    .await
    .expect("the refused Kafka connection was not closed");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert_eq!(refused(metrics, "kafka").await, 1.0);
    drop(held);
    broker.shutdown().await;
}
