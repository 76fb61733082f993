//! A broker with its Kafka listener on 127.0.0.1:0, and a minimal Kafka
//! client speaking the protocol through `kafka-protocol`, for tests that
//! check the wire itself.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{config, TestBroker};

pub mod tools;

/// How long a test waits for a response before failing.
pub const RESPONSE_WAIT: Duration = Duration::from_secs(30);

/// A broker serving gRPC and Kafka, and the Kafka listener's address.
pub async fn start_broker() -> (TestBroker, SocketAddr) {
    let data = tempfile::tempdir().unwrap();
    let mut config = config(data.path().to_path_buf());
    config.kafka_listen = Some("127.0.0.1:0".parse().unwrap());
    start_broker_with(config, data).await
}

pub async fn start_broker_with(
    config: weir_broker::BrokerConfig,
    data: tempfile::TempDir,
) -> (TestBroker, SocketAddr) {
    let broker = TestBroker::start_with(config, data).await;
    let kafka = broker.running.as_ref().unwrap().kafka_addr().unwrap();
    (broker, kafka)
}

/// A Produce (acks=all) of `records` to partition 0 of `topic`.
pub fn produce_to(topic: &str, records: Bytes) -> kafka_protocol::messages::ProduceRequest {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    kafka_protocol::messages::ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(kafka_protocol::messages::TopicName(StrBytes::from_string(
                topic.to_string(),
            )))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])])
}

/// A TCP connection to `addr` from `source`, port chosen by the kernel.
pub async fn connect_from(source: std::net::IpAddr, addr: SocketAddr) -> TcpStream {
    let socket = match source {
        std::net::IpAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
        std::net::IpAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
    }
    .unwrap();
    socket.bind(SocketAddr::new(source, 0)).unwrap();
    socket.connect(addr).await.unwrap()
}

/// One Kafka connection.
pub struct KafkaWire {
    stream: TcpStream,
    correlation_id: i32,
}

impl KafkaWire {
    pub async fn connect(addr: SocketAddr) -> KafkaWire {
        KafkaWire::over(TcpStream::connect(addr).await.unwrap())
    }

    /// A connection from `source` (another loopback address, say), so the
    /// broker counts it against that address's connection limit.
    pub async fn connect_from(source: std::net::IpAddr, addr: SocketAddr) -> KafkaWire {
        KafkaWire::over(connect_from(source, addr).await)
    }

    fn over(stream: TcpStream) -> KafkaWire {
        stream.set_nodelay(true).unwrap();
        KafkaWire {
            stream,
            correlation_id: 0,
        }
    }

    /// Sends `request` at `version` and reads its response.
    pub async fn call<R: Request>(&mut self, version: i16, request: &R) -> R::Response {
        let correlation_id = self.send(version, request).await;
        self.response::<R>(version, correlation_id).await
    }

    /// Sends `request` without reading a response; returns its correlation id.
    pub async fn send<R: Request>(&mut self, version: i16, request: &R) -> i32 {
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("weir-test")));
        let header_version = R::header_version(version);
        let mut body = BytesMut::new();
        header.encode(&mut body, header_version).unwrap();
        request.encode(&mut body, version).unwrap();
        let mut frame = BytesMut::with_capacity(4 + body.len());
        frame.put_i32(i32::try_from(body.len()).unwrap());
        frame.extend_from_slice(&body);
        self.send_raw(&frame).await;
        self.correlation_id
    }

    /// Reads the response to the request with `correlation_id`.
    pub async fn response<R: Request>(&mut self, version: i16, correlation_id: i32) -> R::Response {
        let mut frame = self
            .read_frame()
            .await
            .expect("the broker closed the connection instead of answering");
        let header_version = if R::KEY == 18 {
            0
        } else {
            <R::Response as HeaderVersion>::header_version(version)
        };
        let header = ResponseHeader::decode(&mut frame, header_version).unwrap();
        assert_eq!(header.correlation_id, correlation_id);
        let response = R::Response::decode(&mut frame, version).unwrap();
        assert_eq!(frame.remaining(), 0, "bytes left after the response");
        response
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// The next frame, or `None` once the broker closed the connection.
    pub async fn read_frame(&mut self) -> Option<Bytes> {
        tokio::time::timeout(RESPONSE_WAIT, async {
            let mut size = [0u8; 4];
            if self.stream.read_exact(&mut size).await.is_err() {
                return None;
            }
            let len = usize::try_from(i32::from_be_bytes(size)).unwrap();
            let mut frame = vec![0u8; len];
            self.stream.read_exact(&mut frame).await.ok()?;
            Some(Bytes::from(frame))
        })
        .await
        .expect("no response and no close within the test's bound")
    }
}
