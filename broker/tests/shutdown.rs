//! Shutdown has a deadline: a request still in flight after
//! `shutdown_timeout_ms` is cut with its connection, and the logs are still
//! closed cleanly.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{batch, TestBroker};
use weir_client::proto::{
    FetchRequest, PartitionFetchRequest, PartitionProduceData, ProduceRequest,
};

#[tokio::test]
async fn a_request_stalled_past_the_shutdown_deadline_is_cut_and_the_logs_close() {
    let data = tempfile::tempdir().unwrap();
    let config = weir_broker::BrokerConfig {
        shutdown_timeout_ms: 200,
        ..common::config(data.path().to_path_buf())
    };
    let mut broker = TestBroker::start_with(config, data).await;
    broker.create_topic("t", 1).await;
    broker
        .produce_client()
        .await
        .produce(ProduceRequest {
            topic: "t".to_string(),
            acks: 0,
            timeout_ms: 1000,
            partitions: vec![PartitionProduceData {
                partition: 0,
                batches: batch(&["kept"], 0),
            }],
        })
        .await
        .unwrap();

    // A client that announces a 256-byte produce request, sends 2 bytes of
    // it and then nothing: graceful shutdown alone would wait for it forever.
    let tcp = tokio::net::TcpStream::connect(&broker.addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    let connection = tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let request = http::Request::post(format!("http://{}/weir.v1.Produce/Produce", broker.addr))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (response, mut body) = client.send_request(request, false).unwrap();
    body.send_data(Bytes::from_static(&[0, 0, 0, 1, 0, 0x0a, 0x01]), false)
        .unwrap();

    let running = broker.running.take().unwrap();
    // Bounded, so a shutdown that waits for the stalled request fails here
    // instead of hanging the test run.
    tokio::time::timeout(Duration::from_secs(60), running.shutdown())
        .await
        .expect("shutdown finished after its deadline")
        .expect("the logs closed cleanly");
    // The stalled request got no answer: its connection was cut.
    let answered = response.await;
    assert!(answered.is_err(), "{answered:?}");
    let _ = connection.await;

    // The data written before the shutdown is all there after a restart.
    let config = common::config(broker.data.path().to_path_buf());
    let broker = TestBroker::start_with(config, broker.data).await;
    let fetched = broker
        .fetch_client()
        .await
        .fetch(FetchRequest {
            topic: "t".to_string(),
            max_wait_ms: 0,
            min_bytes: 0,
            max_bytes: 1 << 20,
            partitions: vec![PartitionFetchRequest {
                partition: 0,
                offset: 0,
                max_bytes: 0,
            }],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fetched.partitions[0].high_watermark, 1);
    broker.shutdown().await;
}
