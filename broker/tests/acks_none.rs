//! acks=0: a record's delivery future resolves once its request has been
//! written to the connection, while the broker has not answered yet; with
//! acks=1 it waits for the answer. A stand-in broker holds every produce
//! answer until the test releases it, which makes the order observable.

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::sync::{mpsc, oneshot};
use tonic::{Request, Response, Status};
use weir_client::proto::admin_server::{Admin, AdminServer};
use weir_client::proto::produce_server::{Produce, ProduceServer};
use weir_client::proto::*;
use weir_client::{Acks, Producer, ProducerConfig, ProducerRecord};

/// Answers describe with one partition; holds each produce until released.
#[derive(Clone)]
struct HeldBroker {
    received: Arc<mpsc::UnboundedSender<oneshot::Sender<()>>>,
}

#[tonic::async_trait]
impl Produce for HeldBroker {
    async fn produce(
        &self,
        request: Request<ProduceRequest>,
    ) -> Result<Response<ProduceResponse>, Status> {
        let (release, released) = oneshot::channel();
        let _ = self.received.send(release);
        let _ = released.await;
        let partitions = request
            .into_inner()
            .partitions
            .iter()
            .map(|data| PartitionProduceResult {
                partition: data.partition,
                base_offset: 40,
                last_offset: 40,
                ..Default::default()
            })
            .collect();
        Ok(Response::new(ProduceResponse { partitions }))
    }

    async fn init_producer_id(
        &self,
        _: Request<InitProducerIdRequest>,
    ) -> Result<Response<InitProducerIdResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }
}

#[tonic::async_trait]
impl Admin for HeldBroker {
    async fn describe_topic(
        &self,
        request: Request<DescribeTopicRequest>,
    ) -> Result<Response<DescribeTopicResponse>, Status> {
        Ok(Response::new(DescribeTopicResponse {
            topic: request.into_inner().topic,
            replication_factor: 1,
            configs: Default::default(),
            partitions: vec![PartitionDescription::default()],
            internal: false,
        }))
    }
    async fn create_topic(
        &self,
        _: Request<CreateTopicRequest>,
    ) -> Result<Response<CreateTopicResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }
    async fn list_topics(
        &self,
        _: Request<ListTopicsRequest>,
    ) -> Result<Response<ListTopicsResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }
    async fn delete_topic(
        &self,
        _: Request<DeleteTopicRequest>,
    ) -> Result<Response<DeleteTopicResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }
    async fn alter_configs(
        &self,
        _: Request<AlterConfigsRequest>,
    ) -> Result<Response<AlterConfigsResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }
    async fn create_partitions(
        &self,
        _: Request<CreatePartitionsRequest>,
    ) -> Result<Response<CreatePartitionsResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }
}

async fn held_broker() -> (String, mpsc::UnboundedReceiver<oneshot::Sender<()>>) {
    let (received, requests) = mpsc::unbounded_channel();
    let service = HeldBroker {
        received: Arc::new(received),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(AdminServer::new(service.clone()))
            .add_service(ProduceServer::new(service))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    (addr, requests)
}

async fn producer(addr: &str, acks: Acks) -> Producer {
    let config = ProducerConfig {
        acks,
        idempotent: false,
        linger: Duration::ZERO,
        ..ProducerConfig::default()
    };
    Producer::connect(addr, config).await.unwrap()
}

/// A hang guard only: the awaited event has no deadline of its own.
const HANG_GUARD: Duration = Duration::from_secs(60);

#[tokio::test]
async fn acks_none_resolves_once_written_before_the_answer() {
    let (addr, mut requests) = held_broker().await;
    let producer = producer(&addr, Acks::None).await;
    let delivery = producer
        .send(ProducerRecord::new("t", b"v").with_partition(0))
        .await
        .unwrap();
    let release = tokio::time::timeout(HANG_GUARD, requests.recv())
        .await
        .unwrap()
        .unwrap();
    // The broker holds its answer; the future still resolves, with no offset.
    let metadata = tokio::time::timeout(HANG_GUARD, delivery)
        .await
        .expect("acks=0 delivery waited for the broker's answer")
        .unwrap();
    assert_eq!((metadata.partition, metadata.offset), (0, None));
    let _ = release.send(());
    producer.close().await.unwrap();
}

#[tokio::test]
async fn acks_leader_waits_for_the_answer() {
    let (addr, mut requests) = held_broker().await;
    let producer = producer(&addr, Acks::Leader).await;
    let mut delivery = producer
        .send(ProducerRecord::new("t", b"v").with_partition(0))
        .await
        .unwrap();
    let release = tokio::time::timeout(HANG_GUARD, requests.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        (&mut delivery).now_or_never().is_none(),
        "acks=1 resolved before the broker answered"
    );
    let _ = release.send(());
    let metadata = delivery.await.unwrap();
    assert_eq!(metadata.offset, Some(40));
    producer.close().await.unwrap();
}
