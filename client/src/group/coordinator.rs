//! Finding and following a group's coordinator: the broker that leads the group's
//! partition of `__consumer_offsets`. A member, a commit and an admin call for a group all
//! go there; when it answers NOT_COORDINATOR or cannot be reached (it stopped leading, or
//! stopped), the coordinator is found again, as Kafka's clients do.

use std::sync::{Arc, Mutex, PoisonError};

use tonic::transport::Channel;

use crate::cluster_metadata::ClusterMetadata;
use crate::connection::{connect_lazy, RESPONSE_BYTES_MAX};
use crate::error::ClientError;
use crate::proto::group_client::GroupClient;
use crate::proto::{ErrorCode, FindCoordinatorRequest, OffsetCommitRequest};

/// How long a call retries while its group's coordinator moves: a leader election of
/// the group's `__consumer_offsets` partition takes a few seconds.
pub(crate) const COORDINATOR_RETRY: std::time::Duration = std::time::Duration::from_secs(15);
const COORDINATOR_RETRY_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);

/// The coordinator of one group, found on first use and again after [`Self::lost`].
/// Clones share what was found.
#[derive(Debug, Clone)]
pub struct Coordinator {
    group_id: String,
    /// The brokers asked where the coordinator is: the bootstrap broker first, then
    /// every broker of the cluster it names, so a stopped bootstrap broker does not
    /// leave the group with nowhere to ask.
    brokers: Arc<ClusterMetadata>,
    current: Arc<Mutex<Option<GroupClient<Channel>>>>,
}

impl Coordinator {
    pub(crate) fn new(bootstrap: Channel, bootstrap_addrs: Vec<String>, group_id: &str) -> Self {
        Coordinator::asking(
            Arc::new(ClusterMetadata::new(bootstrap, bootstrap_addrs)),
            group_id,
        )
    }

    /// A coordinator found by asking the brokers `brokers` knows.
    pub(crate) fn asking(brokers: Arc<ClusterMetadata>, group_id: &str) -> Self {
        Coordinator {
            group_id: group_id.to_string(),
            brokers,
            current: Arc::default(),
        }
    }

    /// The coordinator of `group_id`, found by asking the broker `channel` reaches (and
    /// the brokers of its cluster), for calls a [`crate::GroupConsumer`] does not make:
    /// commits with metadata, commits of another group.
    pub fn for_group(channel: Channel, group_id: &str) -> Self {
        Coordinator::new(channel, Vec::new(), group_id)
    }

    /// The coordinator, found first if it is not known.
    pub async fn client(&self) -> Result<GroupClient<Channel>, ClientError> {
        if let Some(client) = self.known() {
            return Ok(client);
        }
        let found = self.find().await?;
        *self.lock() = Some(found.clone());
        Ok(found)
    }

    /// The coordinator as last found, without asking (for a leave sent on drop).
    pub(crate) fn known(&self) -> Option<GroupClient<Channel>> {
        self.lock().clone()
    }

    /// The coordinator answered NOT_COORDINATOR or could not be reached: the next call
    /// finds it again.
    pub fn lost(&self) {
        *self.lock() = None;
    }

    /// Whether `error` means the request went to a broker that is not (or no longer
    /// reachable as) the coordinator, so that finding it again and retrying is the cure.
    pub fn is_lost(error: &ClientError) -> bool {
        match error {
            ClientError::Group { code, .. } => *code == ErrorCode::NotCoordinator,
            other => crate::cluster_metadata::is_unreachable(other),
        }
    }

    /// Acts on the outcome of a call to the coordinator: forgets it when the error says
    /// it is no longer the coordinator.
    pub fn check<T>(&self, outcome: Result<T, ClientError>) -> Result<T, ClientError> {
        if let Err(error) = &outcome {
            if Coordinator::is_lost(error) {
                self.lost();
            }
        }
        outcome
    }

    /// Runs `call` at the coordinator, and while the outcome says the coordinator moved
    /// (NOT_COORDINATOR, or unreachable: a broker stopped and the group's partition is
    /// being taken over), finds it again and runs it once more, for up to
    /// [`COORDINATOR_RETRY`], as Kafka's admin client retries retriable errors within
    /// `default.api.timeout.ms`. Only for calls that may be sent twice: lookups, and
    /// commits of the same offsets.
    pub async fn call<T, F, Fut>(&self, mut call: F) -> Result<T, ClientError>
    where
        F: FnMut(GroupClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<T, ClientError>>,
    {
        let deadline = tokio::time::Instant::now() + COORDINATOR_RETRY;
        loop {
            let outcome = match self.client().await {
                Ok(client) => call(client).await,
                Err(error) => Err(error),
            };
            match self.check(outcome) {
                Err(error)
                    if Coordinator::is_lost(&error) && tokio::time::Instant::now() < deadline =>
                {
                    tracing::debug!(group = %self.group_id, %error, "the group's coordinator moved; finding it again");
                    tokio::time::sleep(COORDINATOR_RETRY_BACKOFF).await;
                }
                other => return other,
            }
        }
    }

    /// Sends `request` to the coordinator (again at a new one while the group's moves)
    /// and returns a refusal, which the coordinator makes of the whole commit, as
    /// [`ClientError::Group`] with its sentence. For commits a member makes itself (with
    /// metadata, say) and commits from outside the group (member epoch -1).
    pub async fn commit(&self, request: OffsetCommitRequest) -> Result<(), ClientError> {
        let group = request.group_id.clone();
        self.call(|mut client| {
            let request = request.clone();
            let group = group.clone();
            async move {
                let answer = client.offset_commit(request).await?.into_inner();
                let refused = answer
                    .topics
                    .iter()
                    .flat_map(|t| &t.partitions)
                    .find(|p| p.error_code() != ErrorCode::None);
                match refused {
                    None => Ok(()),
                    Some(partition) => Err(ClientError::Group {
                        group,
                        code: partition.error_code(),
                        message: partition.error_message.clone(),
                    }),
                }
            }
        })
        .await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<GroupClient<Channel>>> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn find(&self) -> Result<GroupClient<Channel>, ClientError> {
        self.brokers.ensure_known().await;
        let mut last_error = None;
        for channel in self.brokers.any_brokers() {
            let mut client = group_client(channel);
            let request = FindCoordinatorRequest {
                group_id: self.group_id.clone(),
            };
            match client.find_coordinator(request).await {
                Ok(answer) => {
                    let answer = answer.into_inner();
                    if answer.error_code() != ErrorCode::None {
                        // No leader of the group's partition yet: retried by the caller.
                        return Err(ClientError::Group {
                            group: self.group_id.clone(),
                            code: answer.error_code(),
                            message: answer.error_message,
                        });
                    }
                    if answer.address.is_empty() {
                        return Ok(client);
                    }
                    return Ok(group_client(connect_lazy(&answer.address)?));
                }
                // A broker from before FindCoordinator coordinates every group itself.
                Err(status) if status.code() == tonic::Code::Unimplemented => return Ok(client),
                Err(status) => last_error = Some(ClientError::from(status)),
            }
        }
        Err(last_error.unwrap_or_else(|| ClientError::Group {
            group: self.group_id.clone(),
            code: ErrorCode::NotCoordinator,
            message: "no broker answered where the group's coordinator is".to_string(),
        }))
    }
}

/// A group client that takes the largest answers any client takes (a group's description
/// lists every member and partition).
pub(crate) fn group_client(channel: Channel) -> GroupClient<Channel> {
    GroupClient::new(channel).max_decoding_message_size(RESPONSE_BYTES_MAX)
}
