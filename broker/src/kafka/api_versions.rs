//! ApiVersions (v0-v3): the APIs and versions this listener serves. Every
//! range lies inside what `kafka-protocol` encodes; a field a version lacks
//! is never set by the handlers, since the codec refuses or drops it.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};
use kafka_protocol::ResponseError;

/// API, lowest and highest version served. Produce from v3 and Fetch from v4
/// (RecordBatch v2 only, as in Kafka 4); Fetch stops at v12, the last that
/// names topics rather than topic ids.
const SERVED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 6),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::CreatePartitions, 0, 3),
    // Consumer groups, at Kafka 4.0's ranges (OffsetCommit from v2, JoinGroup from v0
    // as clients still send it; FindCoordinator and DescribeGroups up to the last
    // version without fields this broker has no answer for).
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
];

/// The versions of `api_key` served, if any.
pub fn range(api_key: ApiKey) -> Option<(i16, i16)> {
    SERVED
        .iter()
        .find(|(key, _, _)| *key == api_key)
        .map(|&(_, min, max)| (min, max))
}

/// Every API served.
#[cfg(test)]
pub fn served() -> impl Iterator<Item = ApiKey> {
    SERVED.iter().map(|&(key, _, _)| key)
}

pub fn serves(api_key: ApiKey, version: i16) -> bool {
    range(api_key).is_some_and(|(min, max)| (min..=max).contains(&version))
}

fn api_keys() -> Vec<ApiVersion> {
    SERVED
        .iter()
        .map(|&(key, min, max)| {
            debug_assert!({
                let codec = key.valid_versions();
                codec.min <= min && max <= codec.max
            });
            ApiVersion::default()
                .with_api_key(key as i16)
                .with_min_version(min)
                .with_max_version(max)
        })
        .collect()
}

pub fn handle() -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(api_keys())
}

/// The v0 answer to an ApiVersions version the broker does not serve.
pub fn unsupported_version() -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(api_keys())
}
