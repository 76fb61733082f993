//! Followers pull: one fetcher task per other broker copies, in one request
//! per round, every partition this broker follows from that broker, asking
//! from each replica's log end offset (which is how the leader learns how
//! far the follower got). The leader's side is [`ReplicaService`].

use std::sync::Arc;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

use super::role::RoleKind;
use crate::broker::{Broker, Topic};
use crate::cluster::{ClusterConfig, NodeId};
use crate::error::BrokerError;
use crate::partition::Partition;
use crate::proto;
use crate::proto::replica_client::ReplicaClient;

/// How long a leader holds a fetch that finds nothing new.
const FETCH_WAIT_MS: u32 = 500;
/// Bytes per partition per round (a larger first batch still comes whole).
const PARTITION_MAX_BYTES: u32 = 1 << 20;
/// Pause between rounds when there is nothing to follow or the leader fails.
const IDLE: Duration = Duration::from_millis(100);

/// Starts one fetcher per other broker of the cluster.
pub(crate) fn start(broker: Arc<Broker>, cluster: &ClusterConfig) {
    for (&leader, address) in &cluster.peers {
        if leader == cluster.node_id {
            continue;
        }
        let endpoint = match Endpoint::from_shared(format!("http://{address}")) {
            Ok(endpoint) => endpoint
                .connect_timeout(Duration::from_secs(1))
                .timeout(Duration::from_millis(u64::from(FETCH_WAIT_MS) + 5_000))
                .tcp_nodelay(true),
            Err(error) => {
                tracing::error!(leader, %address, %error, "peer address is not usable");
                continue;
            }
        };
        let client = ReplicaClient::new(endpoint.connect_lazy())
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX);
        tokio::spawn(follow(Arc::clone(&broker), cluster.node_id, leader, client));
    }
}

/// The partitions this broker follows from `leader`, as (topic, partition).
fn followed(broker: &Broker, leader: NodeId) -> Vec<(Arc<Topic>, Arc<Partition>)> {
    let Ok(topics) = broker.topics() else {
        return Vec::new();
    };
    topics
        .into_iter()
        .flat_map(|topic| {
            topic
                .partitions
                .iter()
                .filter(|p| p.role_kind() == RoleKind::Follower && p.leader_id() == Some(leader))
                .map(|p| (Arc::clone(&topic), Arc::clone(p)))
                .collect::<Vec<_>>()
        })
        .collect()
}

async fn follow(broker: Arc<Broker>, me: NodeId, leader: NodeId, client: ReplicaClient<Channel>) {
    let mut closing = broker.closing_signal();
    loop {
        if *closing.borrow() {
            return;
        }
        let mut partitions = followed(&broker, leader);
        let pending: Vec<_> = partitions
            .iter()
            .filter(|(_, p)| p.truncation_pending() && p.leader_id() == Some(leader))
            .cloned()
            .collect();
        if !pending.is_empty() {
            let mut call = client.clone();
            tokio::select! {
                () = truncate(&broker, me, &mut call, pending) => {}
                _ = closing.changed() => return,
            }
        }
        // Each partition as asked, taken after any truncation: one that moved to
        // another leader, or still has to truncate, is left to that round. An
        // answer is stored only if its epoch still holds and the log still ends
        // where it was asked from (see `store`).
        let mut asked = Vec::with_capacity(partitions.len());
        partitions.retain(|(_, p)| {
            let (epoch, fetch_offset) = (p.leader_epoch(), p.log_end_offset());
            let follows = p.leader_id() == Some(leader) && !p.truncation_pending();
            if follows {
                asked.push((epoch, fetch_offset));
            }
            follows
        });
        if partitions.is_empty() {
            tokio::select! {
                () = tokio::time::sleep(IDLE) => continue,
                _ = closing.changed() => return,
            }
        }
        let request = proto::ReplicaFetchRequest {
            replica_id: me,
            max_wait_ms: FETCH_WAIT_MS,
            partition_max_bytes: PARTITION_MAX_BYTES,
            partitions: partitions
                .iter()
                .zip(&asked)
                .map(
                    |((topic, p), &(leader_epoch, fetch_offset))| proto::ReplicaFetchPartition {
                        topic: topic.name.clone(),
                        partition: p.index(),
                        fetch_offset,
                        leader_epoch,
                    },
                )
                .collect(),
        };
        let mut call = client.clone();
        let answer = tokio::select! {
            answer = call.replica_fetch(request) => answer,
            _ = closing.changed() => return,
        };
        let results = match answer {
            Ok(response) => response.into_inner().partitions,
            Err(status) => {
                tracing::debug!(leader, %status, "replica fetch failed");
                tokio::select! {
                    () = tokio::time::sleep(IDLE) => continue,
                    _ = closing.changed() => return,
                }
            }
        };
        for result in results {
            let Some(at) = partitions
                .iter()
                .position(|(t, p)| t.name == result.topic && p.index() == result.partition)
            else {
                continue;
            };
            let partition = Arc::clone(&partitions[at].1);
            if let Err(error) = store(&broker, partition, leader, asked[at], result).await {
                tracing::warn!(leader, %error, "cannot store what the leader sent");
            }
        }
    }
}

/// One KIP-279 round for the partitions that just started following: ask the
/// leader where each one's latest epoch ended, and cut there.
async fn truncate(
    broker: &Arc<Broker>,
    me: NodeId,
    client: &mut ReplicaClient<Channel>,
    pending: Vec<(Arc<Topic>, Arc<Partition>)>,
) {
    let mut queries = Vec::new();
    for (topic, partition) in &pending {
        match partition.latest_log_epoch() {
            Some(epoch) => queries.push(proto::EpochQuery {
                topic: topic.name.clone(),
                partition: partition.index(),
                current_leader_epoch: partition.leader_epoch(),
                requested_epoch: epoch,
            }),
            None => {
                // No epoch in this log: nothing to compare; the high watermark decides.
                let partition = Arc::clone(partition);
                if let Err(error) = broker
                    .run_io(move || partition.truncate_by_leader_epoch(None))
                    .await
                {
                    tracing::warn!(%error, "cannot truncate a new follower");
                }
            }
        }
    }
    if queries.is_empty() {
        return;
    }
    let answer = client
        .offsets_for_leader_epoch(proto::OffsetsForLeaderEpochRequest {
            replica_id: me,
            partitions: queries,
        })
        .await;
    let ends = match answer {
        Ok(response) => response.into_inner().partitions,
        Err(status) => {
            tracing::debug!(%status, "OffsetsForLeaderEpoch failed");
            tokio::time::sleep(IDLE).await;
            return;
        }
    };
    for end in ends {
        if end.error_code != proto::ErrorCode::None as i32 {
            // A leader change in flight: the applier sets the new role.
            continue;
        }
        let Some((_, partition)) = pending
            .iter()
            .find(|(t, p)| t.name == end.topic && p.index() == end.partition)
        else {
            continue;
        };
        let answer = (end.leader_epoch >= 0).then_some((end.leader_epoch, end.end_offset));
        let partition = Arc::clone(partition);
        if let Err(error) = broker
            .run_io(move || partition.truncate_by_leader_epoch(answer).map(|_| ()))
            .await
        {
            tracing::warn!(%error, "cannot truncate a follower to its leader's history");
        }
    }
}

/// Appends one partition's answer, or acts on its error.
async fn store(
    broker: &Broker,
    partition: Arc<Partition>,
    leader: NodeId,
    (asked_at_epoch, fetch_offset): (i32, u64),
    result: proto::ReplicaFetchResult,
) -> Result<(), BrokerError> {
    if partition.leader_epoch() != asked_at_epoch
        || partition.leader_id() != Some(leader)
        || partition.truncation_pending()
    {
        // The leadership changed while the fetch was out: what it brought
        // belongs to the old epoch, and the new one starts with a truncation.
        return Ok(());
    }
    let code = proto::ErrorCode::try_from(result.error_code).unwrap_or(proto::ErrorCode::Storage);
    match code {
        proto::ErrorCode::None => {
            broker
                .run_io(move || {
                    partition.append_from_leader(
                        fetch_offset,
                        &result.batches,
                        result.high_watermark,
                    )
                })
                .await
        }
        proto::ErrorCode::OffsetOutOfRange
            if partition.log_end_offset() > result.log_end_offset =>
        {
            // This replica holds more than the leader: a suffix from an older
            // epoch that the leader never had. Cut it and copy the leader's.
            let end = result.log_end_offset;
            broker
                .run_io(move || partition.truncate_for_leader(end))
                .await
        }
        // A leader change in flight: the metadata applier sets the new role.
        _ => {
            tracing::debug!(
                topic = %result.topic,
                partition = result.partition,
                error = %result.error_message,
                "the leader refused a replica fetch"
            );
            Ok(())
        }
    }
}

/// The leader's side of replica fetches, served on the gRPC listener.
pub struct ReplicaService {
    broker: Arc<Broker>,
}

impl ReplicaService {
    pub fn new(broker: Arc<Broker>) -> ReplicaService {
        ReplicaService { broker }
    }

    /// Reads every requested partition once.
    async fn read_all(
        &self,
        request: &proto::ReplicaFetchRequest,
    ) -> Vec<proto::ReplicaFetchResult> {
        let mut results = Vec::with_capacity(request.partitions.len());
        for wanted in &request.partitions {
            let read = self.read_one(request.replica_id, wanted, request.partition_max_bytes);
            results.push(match read.await {
                Ok(read) => proto::ReplicaFetchResult {
                    topic: wanted.topic.clone(),
                    partition: wanted.partition,
                    error_code: proto::ErrorCode::None as i32,
                    error_message: String::new(),
                    high_watermark: read.high_watermark,
                    log_start_offset: read.log_start_offset,
                    log_end_offset: read.log_end_offset,
                    batches: read.batches,
                },
                Err((error, log_end_offset)) => proto::ReplicaFetchResult {
                    topic: wanted.topic.clone(),
                    partition: wanted.partition,
                    error_code: error.error_code() as i32,
                    error_message: error.to_string(),
                    log_end_offset,
                    ..Default::default()
                },
            });
        }
        results
    }

    async fn read_one(
        &self,
        follower: NodeId,
        wanted: &proto::ReplicaFetchPartition,
        max_bytes: u32,
    ) -> Result<super::ReplicaRead, (BrokerError, u64)> {
        let partition = self
            .broker
            .topic(&wanted.topic)
            .and_then(|t| t.partition(wanted.partition).cloned())
            .map_err(|e| (e, 0))?;
        let log_end_offset = partition.log_end_offset();
        if wanted.leader_epoch != partition.leader_epoch() {
            // One of the two has not applied the latest leader change yet.
            return Err((partition.not_leader(), log_end_offset));
        }
        let offset = wanted.fetch_offset;
        self.broker
            .run_io(move || partition.read_for_follower(follower, offset, max_bytes as usize))
            .await
            .map_err(|e| (e, log_end_offset))
    }
}

#[tonic::async_trait]
impl proto::replica_server::Replica for ReplicaService {
    async fn offsets_for_leader_epoch(
        &self,
        request: Request<proto::OffsetsForLeaderEpochRequest>,
    ) -> Result<Response<proto::OffsetsForLeaderEpochResponse>, Status> {
        let request = request.into_inner();
        let mut ends = Vec::with_capacity(request.partitions.len());
        for query in request.partitions {
            let answer = self
                .broker
                .topic(&query.topic)
                .and_then(|t| t.partition(query.partition).cloned())
                .and_then(|p| {
                    p.epoch_end_for_follower(query.current_leader_epoch, query.requested_epoch)
                });
            ends.push(match answer {
                Ok(end) => proto::EpochEnd {
                    topic: query.topic,
                    partition: query.partition,
                    error_code: proto::ErrorCode::None as i32,
                    error_message: String::new(),
                    leader_epoch: end.map_or(-1, |(epoch, _)| epoch),
                    end_offset: end.map_or(0, |(_, offset)| offset),
                },
                Err(error) => proto::EpochEnd {
                    topic: query.topic,
                    partition: query.partition,
                    error_code: error.error_code() as i32,
                    error_message: error.to_string(),
                    leader_epoch: -1,
                    end_offset: 0,
                },
            });
        }
        Ok(Response::new(proto::OffsetsForLeaderEpochResponse {
            partitions: ends,
        }))
    }

    async fn replica_fetch(
        &self,
        request: Request<proto::ReplicaFetchRequest>,
    ) -> Result<Response<proto::ReplicaFetchResponse>, Status> {
        let mut request = request.into_inner();
        request.max_wait_ms = request
            .max_wait_ms
            .min(self.broker.config().fetch_wait_ms_max);
        let mut waits = Vec::new();
        for wanted in &request.partitions {
            if let Ok(partition) = self
                .broker
                .topic(&wanted.topic)
                .and_then(|t| t.partition(wanted.partition).cloned())
            {
                waits.push(partition);
            }
        }
        // Registered before the first read, so an append between the read
        // and the wait still wakes it.
        let mut appended: Vec<_> = waits
            .iter()
            .map(|p| Box::pin(p.appended().notified()))
            .collect();
        for notified in &mut appended {
            notified.as_mut().enable();
        }
        let results = self.read_all(&request).await;
        let nothing_new = results
            .iter()
            .all(|r| r.error_code == proto::ErrorCode::None as i32 && r.batches.is_empty());
        if !nothing_new || request.max_wait_ms == 0 {
            return Ok(Response::new(proto::ReplicaFetchResponse {
                partitions: results,
            }));
        }
        // Hold the fetch until any partition takes an append, or the wait ends.
        let any_appended = async move {
            if appended.is_empty() {
                std::future::pending::<()>().await;
            }
            futures_util::future::select_all(appended).await;
        };
        let mut closing = self.broker.closing_signal();
        tokio::select! {
            () = any_appended => {}
            () = tokio::time::sleep(Duration::from_millis(u64::from(request.max_wait_ms))) => {}
            _ = closing.changed() => {}
        }
        let results = self.read_all(&request).await;
        Ok(Response::new(proto::ReplicaFetchResponse {
            partitions: results,
        }))
    }
}
