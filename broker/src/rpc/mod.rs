//! The gRPC services. Each RPC is one file with one `handle` function; the
//! service structs here only route to them. Handlers return [`BrokerError`]s,
//! which become statuses naming topic, partition and cause.

mod alter_configs;
mod create_partitions;
mod create_topic;
mod delete_topic;
mod describe_topic;
pub(crate) mod fetch;
pub(crate) mod fetch_route;
mod group;
mod grpc_message;
mod init_producer_id;
mod list_offsets;
mod list_topics;
pub(crate) mod produce;
pub(crate) mod produce_route;
mod raw_route;

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::broker::Broker;
use crate::error::BrokerError;
use crate::proto;

pub use group::GroupRpc;

/// Serves `weir.v1.Admin`.
#[derive(Debug, Clone)]
pub struct AdminService {
    broker: Arc<Broker>,
}

/// Serves `weir.v1.Produce`.
#[derive(Debug, Clone)]
pub struct ProduceService {
    broker: Arc<Broker>,
}

/// Serves `weir.v1.Fetch`.
#[derive(Debug, Clone)]
pub struct FetchService {
    broker: Arc<Broker>,
}

impl AdminService {
    pub fn new(broker: Arc<Broker>) -> Self {
        AdminService { broker }
    }
}

impl ProduceService {
    pub fn new(broker: Arc<Broker>) -> Self {
        ProduceService { broker }
    }
}

impl FetchService {
    pub fn new(broker: Arc<Broker>) -> Self {
        FetchService { broker }
    }
}

/// Turns a handler's result into a gRPC reply, logging failures.
fn reply<T>(result: Result<T, BrokerError>) -> Result<Response<T>, Status> {
    match result {
        Ok(message) => Ok(Response::new(message)),
        Err(error) => {
            tracing::debug!(%error, "request failed");
            Err(error.into())
        }
    }
}

#[tonic::async_trait]
impl proto::admin_server::Admin for AdminService {
    async fn create_topic(
        &self,
        request: Request<proto::CreateTopicRequest>,
    ) -> Result<Response<proto::CreateTopicResponse>, Status> {
        reply(create_topic::handle(&self.broker, request.into_inner()).await)
    }

    async fn list_topics(
        &self,
        request: Request<proto::ListTopicsRequest>,
    ) -> Result<Response<proto::ListTopicsResponse>, Status> {
        reply(list_topics::handle(&self.broker, request.into_inner()))
    }

    async fn describe_topic(
        &self,
        request: Request<proto::DescribeTopicRequest>,
    ) -> Result<Response<proto::DescribeTopicResponse>, Status> {
        reply(describe_topic::handle(&self.broker, request.into_inner()))
    }

    async fn delete_topic(
        &self,
        request: Request<proto::DeleteTopicRequest>,
    ) -> Result<Response<proto::DeleteTopicResponse>, Status> {
        reply(delete_topic::handle(&self.broker, request.into_inner()).await)
    }

    async fn alter_configs(
        &self,
        request: Request<proto::AlterConfigsRequest>,
    ) -> Result<Response<proto::AlterConfigsResponse>, Status> {
        reply(alter_configs::handle(&self.broker, request.into_inner()).await)
    }

    async fn create_partitions(
        &self,
        request: Request<proto::CreatePartitionsRequest>,
    ) -> Result<Response<proto::CreatePartitionsResponse>, Status> {
        reply(create_partitions::handle(&self.broker, request.into_inner()).await)
    }
}

#[tonic::async_trait]
impl proto::produce_server::Produce for ProduceService {
    async fn produce(
        &self,
        request: Request<proto::ProduceRequest>,
    ) -> Result<Response<proto::ProduceResponse>, Status> {
        // Served by `ProduceRoute`, which bounds its memory; kept for the
        // generated server's completeness.
        reply(produce::handle(&self.broker, request.into_inner()).await)
    }

    async fn init_producer_id(
        &self,
        request: Request<proto::InitProducerIdRequest>,
    ) -> Result<Response<proto::InitProducerIdResponse>, Status> {
        reply(init_producer_id::handle(&self.broker, request.into_inner()).await)
    }
}

#[tonic::async_trait]
impl proto::fetch_server::Fetch for FetchService {
    async fn fetch(
        &self,
        request: Request<proto::FetchRequest>,
    ) -> Result<Response<proto::FetchResponse>, Status> {
        // Served by `FetchRoute`; kept for the generated server's completeness.
        let memory_wait = grpc_message::memory_wait(&request.metadata().clone().into_headers());
        let fetched = fetch::handle(
            &self.broker,
            request.into_inner(),
            memory_wait,
            0,
            crate::partition::ReadInto::Copy,
        )
        .await;
        reply(fetched.map(|fetched| fetched.response))
    }

    async fn list_offsets(
        &self,
        request: Request<proto::ListOffsetsRequest>,
    ) -> Result<Response<proto::ListOffsetsResponse>, Status> {
        reply(list_offsets::handle(&self.broker, request.into_inner()).await)
    }
}
