//! The consumer's requests in a cluster: one fetch or offset lookup per
//! partition leader (see `cluster_metadata`), the fetches sent together.

use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::FutureExt;
use tonic::transport::Channel;

use super::cluster_metadata::ClusterMetadata;
use super::connection::RESPONSE_BYTES_MAX;
use super::error::ClientError;
use crate::proto::fetch_client::FetchClient;
use crate::proto::{ErrorCode, FetchRequest, FetchResponse};

/// What one round of fetches brought: the answers of the leaders that
/// answered, and the partitions whose leader could not be reached.
#[derive(Debug, Default)]
pub(crate) struct Fetched {
    pub(crate) response: FetchResponse,
    pub(crate) unreachable: Vec<(u32, ClientError)>,
}

/// The partitions grouped by the channel of their leader, in first-seen order.
pub(crate) fn by_leader(
    metadata: &ClusterMetadata,
    topic: &str,
    partitions: &[u32],
) -> Vec<(Channel, Vec<u32>)> {
    let mut groups: Vec<(u64, Channel, Vec<u32>)> = Vec::new();
    for partition in partitions {
        let (channel, leader) = metadata.leader(topic, *partition);
        match groups.iter_mut().find(|(id, _, _)| *id == leader) {
            Some((_, _, group)) => group.push(*partition),
            None => groups.push((leader, channel, vec![*partition])),
        }
    }
    groups
        .into_iter()
        .map(|(_, channel, partitions)| (channel, partitions))
        .collect()
}

pub(crate) fn fetch_client(channel: Channel) -> FetchClient<Channel> {
    FetchClient::new(channel).max_decoding_message_size(RESPONSE_BYTES_MAX)
}

/// Sends the fetches together and returns once one brings records or an
/// error, with the answers already in; the others are cancelled (their
/// partitions are fetched again from the same positions). A broker in no
/// cluster gets the one request as always, and its failure fails the poll;
/// in a cluster, a leader that cannot be reached fails only its partitions.
pub(crate) async fn fetch_from_leaders(
    requests: Vec<(Channel, FetchRequest)>,
    in_cluster: bool,
) -> Result<Fetched, ClientError> {
    if !in_cluster && requests.len() == 1 {
        let (channel, request) = requests.into_iter().next().expect("one request");
        let response = fetch_client(channel).fetch(request).await?.into_inner();
        return Ok(Fetched {
            response,
            unreachable: Vec::new(),
        });
    }
    let mut pending: FuturesUnordered<_> = requests
        .into_iter()
        .map(|(channel, request)| async move {
            let partitions: Vec<u32> = request.partitions.iter().map(|p| p.partition).collect();
            (partitions, fetch_client(channel).fetch(request).await)
        })
        .collect();
    let mut fetched = Fetched::default();
    let take = |fetched: &mut Fetched,
                (partitions, answer): (
        Vec<u32>,
        Result<tonic::Response<FetchResponse>, tonic::Status>,
    )|
     -> Result<bool, ClientError> {
        match answer {
            Ok(response) => {
                let response = response.into_inner();
                let news = response
                    .partitions
                    .iter()
                    .any(|r| !r.batches.is_empty() || r.error_code() != ErrorCode::None);
                fetched.response.partitions.extend(response.partitions);
                Ok(news)
            }
            Err(status) if in_cluster => {
                let error = ClientError::from(status);
                fetched
                    .unreachable
                    .extend(partitions.into_iter().map(|p| (p, error.clone())));
                Ok(true)
            }
            Err(status) => Err(status.into()),
        }
    };
    while let Some(answer) = pending.next().await {
        if take(&mut fetched, answer)? {
            break;
        }
    }
    while let Some(Some(answer)) = pending.next().now_or_never() {
        take(&mut fetched, answer)?;
    }
    Ok(fetched)
}
