//! One Kafka connection: reads a frame (its size checked against
//! `request_bytes_max` and reserved from the broker's memory pool before the
//! body is read), decodes its header and body, serves it, writes the
//! response, and only then reads the next: Kafka answers a connection's
//! requests in order and reads one at a time.
//!
//! A frame that cannot be a request (a negative or oversized length, an
//! unknown API key, a version the broker does not serve, a body that does
//! not decode) closes the connection, as Kafka does, with a warning naming
//! the peer and the reason; other connections are not affected.
//!
//! The connection holds a slot and its deadlines as a gRPC one does
//! (`connection_limit.rs`, `connection.rs`): a request begins, and makes the
//! slot the connection's own, once a valid frame size has arrived, as a gRPC
//! request does once its headers have; a request being served is activity
//! for the idle clock, so only a connection silent between requests is
//! closed as idle.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    AlterConfigsRequest, ApiKey, ApiVersionsRequest, CreatePartitionsRequest, CreateTopicsRequest,
    DeleteTopicsRequest, DescribeConfigsRequest, FetchRequest, IncrementalAlterConfigsRequest,
    InitProducerIdRequest, ListOffsetsRequest, MetadataRequest, ProduceRequest, RequestHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};
use tokio::io::AsyncReadExt;
use tokio::time::Instant;
use tracing::Instrument;

use super::frame::{encode_response, Chunk, Shared, REQUEST_HEADER_BYTES_MIN};
use super::produce::Produced;
use super::send::write_chunks;
use super::{
    alter_configs, api_versions, create_partitions, describe_configs, fetch, groups,
    init_producer_id, list_offsets, metadata, produce, topics,
};
use crate::broker::Broker;
use crate::connection::{closed_by_broker, Connection};
use crate::group_service::GroupService;
use crate::memory_pool::Reservation;
use crate::metrics::{Listener, RequestMetrics};

/// How long a request waits for pool memory before the connection is
/// closed unread (the client then retries on a new one): half of Kafka's
/// default `request.timeout.ms`, as on gRPC.
pub const MEMORY_WAIT: Duration = Duration::from_millis(15_000);

/// What one connection's requests share.
pub struct Session {
    pub broker: Arc<Broker>,
    /// The address the client reached: what Metadata advertises, so a client
    /// that came through 127.0.0.1 is not sent to another interface.
    pub advertised: SocketAddr,
    pub groups: Arc<GroupService>,
    /// Fetches served so far; rotates the partitions' order (KIP-74).
    fetches: usize,
}

impl Session {
    pub fn next_fetch_rotation(&mut self) -> usize {
        let rotation = self.fetches;
        self.fetches = self.fetches.wrapping_add(1);
        rotation
    }
}

/// What to do after a request was served.
enum Outcome {
    /// Write these chunks; `memory` holds the fetched batches until then.
    Respond {
        chunks: VecDeque<Chunk>,
        memory: Option<Reservation>,
    },
    /// acks=0: Kafka sends nothing back.
    Silent,
}

pub async fn serve(mut connection: Connection, broker: Arc<Broker>, groups: Arc<GroupService>) {
    let stream = connection.stream();
    let (peer, advertised) = match (stream.peer_addr(), stream.local_addr()) {
        (Ok(peer), Ok(local)) => (peer, local),
        (Err(error), _) | (_, Err(error)) => {
            // A socket without its addresses is already gone.
            tracing::debug!(%error, "cannot read a Kafka connection's addresses");
            return;
        }
    };
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%peer, %error, "cannot set TCP_NODELAY");
    }
    let mut closing = broker.closing_signal();
    let mut session = Session {
        broker,
        advertised,
        groups,
        fetches: 0,
    };
    loop {
        // Between requests a shutdown closes the connection; a request
        // already read is served to the end.
        let read = tokio::select! {
            read = read_frame(&mut connection, &session.broker) => read,
            () = super::listener::closed(&mut closing) => return,
        };
        let (frame, request_memory) = match read {
            Ok(Some(read)) => read,
            Ok(None) => return,
            Err(reason) => {
                tracing::warn!(%peer, %reason, "closing a Kafka connection");
                return;
            }
        };
        let served = dispatch(&mut session, frame).await;
        // Produce batches are appended or dropped by now.
        drop(request_memory);
        connection.touch();
        match served {
            Ok(Outcome::Respond { chunks, memory }) => {
                if let Err(error) = write_chunks(&mut connection, chunks).await {
                    tracing::debug!(%peer, %error, "cannot write a Kafka response");
                    return;
                }
                drop(memory);
            }
            Ok(Outcome::Silent) => {}
            Err(reason) => {
                tracing::warn!(%peer, %reason, "closing a Kafka connection");
                return;
            }
        }
    }
}

/// The next request frame and the pool memory it holds, or `None` when the
/// client closed the connection between requests, or the broker did (a
/// deadline or a displacement, `connection.rs`, which logs why). The error is
/// why the connection must close.
async fn read_frame(
    connection: &mut Connection,
    broker: &Broker,
) -> Result<Option<(Bytes, Reservation)>, String> {
    let mut size = [0u8; 4];
    match connection.read_exact(&mut size).await {
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) if closed_by_broker(&error) => return Ok(None),
        Err(error) => return Err(format!("cannot read the next request: {error}")),
    }
    let size = i32::from_be_bytes(size);
    let Ok(len) = usize::try_from(size) else {
        return Err(format!("a request announced a negative size ({size})"));
    };
    if len < REQUEST_HEADER_BYTES_MIN {
        return Err(format!(
            "a request of {len} bytes is shorter than a request header"
        ));
    }
    let limit = broker.config().request_bytes_max;
    if len > limit {
        return Err(format!(
            "a request of {len} bytes is larger than the {limit} allowed (request_bytes_max)"
        ));
    }
    connection.mark_request();
    let memory = broker
        .memory_pool()
        .reserve(len, Instant::now() + MEMORY_WAIT, "a Kafka request")
        .await
        .map_err(|error| error.to_string())?;
    let body_timeout = Duration::from_millis(broker.config().request_body_timeout_ms);
    let mut buf = BytesMut::with_capacity(len);
    let read_body = async {
        while buf.len() < len {
            let left = len - buf.len();
            if connection.read_buf(&mut (&mut buf).limit(left)).await? == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
            }
        }
        Ok(())
    };
    match tokio::time::timeout(body_timeout, read_body).await {
        Ok(Ok(())) => Ok(Some((buf.freeze(), memory))),
        Ok(Err(error)) => Err(format!(
            "the connection ended inside a {len}-byte request: {error}"
        )),
        Err(_) => Err(format!(
            "a {len}-byte request did not arrive within request_body_timeout_ms ({} ms)",
            body_timeout.as_millis()
        )),
    }
}

/// Serves one frame. The error is why the connection must close.
async fn dispatch(session: &mut Session, frame: Bytes) -> Result<Outcome, String> {
    debug_assert!(frame.len() >= REQUEST_HEADER_BYTES_MIN);
    let mut fixed = &frame[..];
    let api_key_raw = fixed.get_i16();
    let version = fixed.get_i16();
    let correlation_id = fixed.get_i32();
    let Ok(api_key) = ApiKey::try_from(api_key_raw) else {
        return Err(format!("unknown API key {api_key_raw} (version {version})"));
    };
    if api_key == ApiKey::ApiVersions && !api_versions::serves(api_key, version) {
        // Kafka answers an ApiVersions it cannot parse with v0 and
        // UNSUPPORTED_VERSION, listing its versions, so the client can retry
        // with one it shares.
        return respond(
            api_key,
            0,
            correlation_id,
            &api_versions::unsupported_version(),
            Vec::new(),
            None,
        );
    }
    if !api_versions::serves(api_key, version) {
        return Err(match api_versions::range(api_key) {
            Some((min, max)) => {
                format!("{api_key:?} version {version} is not served; versions {min} to {max} are")
            }
            None => format!("{api_key:?} (API key {api_key_raw}) is not served by this broker"),
        });
    }
    let mut body = frame;
    let header = RequestHeader::decode(&mut body, api_key.request_header_version(version))
        .map_err(|e| format!("cannot decode the {api_key:?} v{version} request header: {e}"))?;
    // Its client id shares the frame's buffer, which produce wants alone.
    drop(header);
    let span = tracing::debug_span!("kafka", api = ?api_key, version, correlation_id);
    let timer = RequestMetrics::start(Listener::Kafka, api_name(api_key));
    let served = serve_request(session, api_key, version, correlation_id, body)
        .instrument(span)
        .await;
    timer.finish(&session.broker.metrics().requests);
    served
}

/// The API's name as Kafka's request metrics spell it, for the APIs served
/// (`api_versions::serves`); any other never reaches a handler.
fn api_name(api_key: ApiKey) -> &'static str {
    match api_key {
        ApiKey::ApiVersions => "ApiVersions",
        ApiKey::Metadata => "Metadata",
        ApiKey::Produce => "Produce",
        ApiKey::Fetch => "Fetch",
        ApiKey::ListOffsets => "ListOffsets",
        ApiKey::InitProducerId => "InitProducerId",
        ApiKey::CreateTopics => "CreateTopics",
        ApiKey::DeleteTopics => "DeleteTopics",
        ApiKey::DescribeConfigs => "DescribeConfigs",
        ApiKey::IncrementalAlterConfigs => "IncrementalAlterConfigs",
        ApiKey::AlterConfigs => "AlterConfigs",
        ApiKey::CreatePartitions => "CreatePartitions",
        ApiKey::FindCoordinator => "FindCoordinator",
        ApiKey::OffsetCommit => "OffsetCommit",
        ApiKey::OffsetFetch => "OffsetFetch",
        ApiKey::JoinGroup => "JoinGroup",
        ApiKey::SyncGroup => "SyncGroup",
        ApiKey::Heartbeat => "Heartbeat",
        ApiKey::LeaveGroup => "LeaveGroup",
        ApiKey::ListGroups => "ListGroups",
        ApiKey::DescribeGroups => "DescribeGroups",
        ApiKey::DeleteGroups => "DeleteGroups",
        ApiKey::OffsetDelete => "OffsetDelete",
        _ => "Other",
    }
}

async fn serve_request(
    session: &mut Session,
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: Bytes,
) -> Result<Outcome, String> {
    let reply = Reply {
        api_key,
        version,
        correlation_id,
    };
    match api_key {
        ApiKey::ApiVersions => {
            let _request: ApiVersionsRequest = decode(body, api_key, version)?;
            let response = api_versions::handle();
            reply.plain(&response)
        }
        ApiKey::AlterConfigs => {
            let request: AlterConfigsRequest = decode(body, api_key, version)?;
            let response = alter_configs::handle_replace(session, request).await;
            reply.plain(&response)
        }
        ApiKey::CreatePartitions => {
            let request: CreatePartitionsRequest = decode(body, api_key, version)?;
            let response = create_partitions::handle(session, request).await;
            reply.plain(&response)
        }
        ApiKey::IncrementalAlterConfigs => {
            let request: IncrementalAlterConfigsRequest = decode(body, api_key, version)?;
            let response = alter_configs::handle(session, request).await;
            reply.plain(&response)
        }
        ApiKey::Metadata => {
            let request: MetadataRequest = decode(body, api_key, version)?;
            let response = metadata::handle(session, request, version).await;
            reply.plain(&response)
        }
        ApiKey::Produce => {
            let request: ProduceRequest = decode(body, api_key, version)?;
            match produce::handle(session, request, version).await {
                Produced::Respond(response) => reply.plain(&response),
                Produced::Silent => Ok(Outcome::Silent),
                Produced::Close(reason) => Err(reason),
            }
        }
        ApiKey::Fetch => {
            let request: FetchRequest = decode(body, api_key, version)?;
            let fetched = fetch::handle(session, request, version).await;
            respond(
                api_key,
                version,
                correlation_id,
                &fetched.response,
                fetched.records,
                Some(fetched.memory),
            )
        }
        ApiKey::ListOffsets => {
            let request: ListOffsetsRequest = decode(body, api_key, version)?;
            let response = list_offsets::handle(session, request, version).await;
            reply.plain(&response)
        }
        ApiKey::InitProducerId => {
            let request: InitProducerIdRequest = decode(body, api_key, version)?;
            let response = init_producer_id::handle(session, request).await;
            reply.plain(&response)
        }
        ApiKey::CreateTopics => {
            let request: CreateTopicsRequest = decode(body, api_key, version)?;
            let response = topics::create(session, request, version).await;
            reply.plain(&response)
        }
        ApiKey::DeleteTopics => {
            let request: DeleteTopicsRequest = decode(body, api_key, version)?;
            let response = topics::delete(session, request, version).await;
            reply.plain(&response)
        }
        ApiKey::DescribeConfigs => {
            let request: DescribeConfigsRequest = decode(body, api_key, version)?;
            let response = describe_configs::handle(session, request, version);
            reply.plain(&response)
        }
        key if groups::is_group_api(key) => {
            let chunks = groups::serve(session, key, version, correlation_id, body).await?;
            Ok(Outcome::Respond {
                chunks,
                memory: None,
            })
        }
        other => Err(format!("{other:?} is listed as served but has no handler")),
    }
}

fn decode<T: Decodable>(mut body: Bytes, api_key: ApiKey, version: i16) -> Result<T, String> {
    T::decode(&mut body, version)
        .map_err(|e| format!("cannot decode the {api_key:?} v{version} request: {e}"))
}

/// How the request being served is answered: its API, version and correlation id.
struct Reply {
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
}

impl Reply {
    /// A response with no record batches to send from the log.
    fn plain<R: Encodable + HeaderVersion>(&self, response: &R) -> Result<Outcome, String> {
        respond(
            self.api_key,
            self.version,
            self.correlation_id,
            response,
            Vec::new(),
            None,
        )
    }
}

fn respond<R: Encodable + HeaderVersion>(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    response: &R,
    shared: Vec<Shared>,
    memory: Option<Reservation>,
) -> Result<Outcome, String> {
    let chunks = encode_response(api_key, version, correlation_id, response, shared)
        .map_err(|e| format!("cannot encode the {api_key:?} v{version} response: {}", e.0))?;
    Ok(Outcome::Respond { chunks, memory })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_served_api_has_its_own_metrics_label() {
        for key in api_versions::served() {
            assert_ne!(api_name(key), "Other", "{key:?} is counted as Other");
        }
    }
}
