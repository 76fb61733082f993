//! The remote source: topics of a running broker, read over its gRPC API. A snapshot is
//! each partition's log start offset and high watermark from `DescribeTopic`; reads are
//! `Fetch` requests for one partition that never wait, so a query sees exactly what a
//! consumer could read when it started. Time predicates seek with `ListOffsets`.
//!
//! The broker hands back the batches as they are stored; they travel into the scan as
//! the response's own `Bytes`, cut (not copied) at the query's end offset.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use weir_client::proto::fetch_client::FetchClient;
use weir_client::proto::{
    ErrorCode, FetchRequest, ListOffsetsRequest, OffsetSpec, PartitionFetchRequest,
    PartitionOffsetQuery,
};
use weir_client::{connect, Admin, Channel, ClientError, Code, RESPONSE_BYTES_MAX};
use weir_log::batch;

use super::{BatchChunk, ByteCounter, PartitionSnapshot, TopicReader, TopicSource};
use crate::SqlError;

/// Bytes of a batch before its `batch_length` field counts: base offset and the length.
const BATCH_LOG_OVERHEAD: usize = 12;

/// Topics of one broker.
#[derive(Debug)]
pub struct RemoteSource {
    addr: String,
    admin: Admin,
    fetch: FetchClient<Channel>,
    bytes_read: ByteCounter,
}

impl RemoteSource {
    /// Connects to the broker at `addr` (`host:port`).
    pub async fn connect(addr: &str) -> Result<RemoteSource, SqlError> {
        let channel = connect(addr)
            .await
            .map_err(|e| SqlError::Remote(e.to_string()))?;
        Ok(RemoteSource {
            addr: addr.to_string(),
            admin: Admin::from_channel(channel.clone()),
            fetch: FetchClient::new(channel).max_decoding_message_size(RESPONSE_BYTES_MAX),
            bytes_read: ByteCounter::default(),
        })
    }

    fn remote_error(&self, error: ClientError) -> SqlError {
        SqlError::Remote(format!("{} ({})", error, self.addr))
    }
}

#[async_trait]
impl TopicSource for RemoteSource {
    async fn topic_names(&self) -> Result<Vec<String>, SqlError> {
        let topics = self
            .admin
            .list_topics()
            .await
            .map_err(|e| self.remote_error(e))?;
        let mut names: Vec<String> = topics.into_iter().map(|t| t.topic).collect();
        names.sort();
        Ok(names)
    }

    async fn open_topic(&self, topic: &str) -> Result<Option<Arc<dyn TopicReader>>, SqlError> {
        let info = match self.admin.describe_topic(topic).await {
            Ok(info) => info,
            Err(ClientError::Status {
                code: Code::NotFound,
                ..
            }) => return Ok(None),
            Err(e) => return Err(self.remote_error(e)),
        };
        Ok(Some(Arc::new(RemoteTopic {
            name: topic.to_string(),
            partitions: info.partitions.iter().map(|p| p.partition).collect(),
            configs: info.configs,
            admin: self.admin.clone(),
            fetch: self.fetch.clone(),
            bytes_read: self.bytes_read.clone(),
        })))
    }

    fn bytes_read(&self) -> &ByteCounter {
        &self.bytes_read
    }
}

/// One topic of a broker.
#[derive(Debug)]
struct RemoteTopic {
    name: String,
    partitions: Vec<u32>,
    configs: BTreeMap<String, String>,
    admin: Admin,
    fetch: FetchClient<Channel>,
    bytes_read: ByteCounter,
}

impl RemoteTopic {
    fn error(&self, partition: Option<u32>, reason: impl std::fmt::Display) -> SqlError {
        match partition {
            Some(partition) => SqlError::Topic {
                topic: self.name.clone(),
                reason: format!("partition {partition}: {reason}"),
            },
            None => SqlError::Topic {
                topic: self.name.clone(),
                reason: reason.to_string(),
            },
        }
    }
}

#[async_trait]
impl TopicReader for RemoteTopic {
    fn topic(&self) -> &str {
        &self.name
    }

    fn partitions(&self) -> Vec<u32> {
        self.partitions.clone()
    }

    fn configs(&self) -> BTreeMap<String, String> {
        self.configs.clone()
    }

    async fn snapshot(&self) -> Result<Vec<PartitionSnapshot>, SqlError> {
        let info = self
            .admin
            .describe_topic(&self.name)
            .await
            .map_err(|e| self.error(None, e))?;
        Ok(info
            .partitions
            .iter()
            .filter(|p| self.partitions.contains(&p.partition))
            .map(|p| PartitionSnapshot {
                partition: p.partition,
                start_offset: p.log_start_offset.min(p.high_watermark),
                end_offset: p.high_watermark,
            })
            .collect())
    }

    async fn offset_for_time(
        &self,
        partition: u32,
        timestamp_ms: i64,
    ) -> Result<Option<u64>, SqlError> {
        let request = ListOffsetsRequest {
            topic: self.name.clone(),
            partitions: vec![PartitionOffsetQuery {
                partition,
                spec: OffsetSpec::Timestamp.into(),
                timestamp_ms,
            }],
        };
        let response = self
            .fetch
            .clone()
            .list_offsets(request)
            .await
            .map_err(|status| self.error(Some(partition), ClientError::from(status)))?
            .into_inner();
        let result = response
            .partitions
            .into_iter()
            .find(|r| r.partition == partition)
            .ok_or_else(|| self.error(Some(partition), "the broker returned no offset"))?;
        Ok(result.found.then_some(result.offset))
    }

    async fn read(
        &self,
        partition: u32,
        offset: u64,
        end_offset: u64,
        max_bytes: usize,
    ) -> Result<BatchChunk, SqlError> {
        let max_bytes = u32::try_from(max_bytes).unwrap_or(u32::MAX).max(1);
        let request = FetchRequest {
            topic: self.name.clone(),
            max_wait_ms: 0,
            min_bytes: 0,
            max_bytes,
            partitions: vec![PartitionFetchRequest {
                partition,
                offset,
                max_bytes,
            }],
        };
        let response = self
            .fetch
            .clone()
            .fetch(request)
            .await
            .map_err(|status| self.error(Some(partition), ClientError::from(status)))?
            .into_inner();
        let result = response
            .partitions
            .into_iter()
            .find(|r| r.partition == partition)
            .ok_or_else(|| self.error(Some(partition), "the broker returned no data"))?;
        if result.error_code != i32::from(ErrorCode::None) {
            return Err(self.error(Some(partition), result.error_message));
        }
        let (bytes, next_offset) =
            cut_at(&result.batches, offset, end_offset).map_err(|source| SqlError::Batch {
                topic: self.name.clone(),
                partition,
                offset,
                source,
            })?;
        self.bytes_read.add(bytes.len());
        Ok(BatchChunk { bytes, next_offset })
    }
}

/// The batches of `fetched` that start below `end_offset`, and the offset after the last
/// of them (`offset` when there are none).
fn cut_at(
    fetched: &Bytes,
    offset: u64,
    end_offset: u64,
) -> Result<(Bytes, u64), weir_log::batch::BatchError> {
    let mut kept = 0usize;
    let mut next_offset = offset;
    for item in batch::batches(fetched) {
        let (header, _) = item?;
        let base = u64::try_from(header.base_offset).unwrap_or(0);
        if base >= end_offset {
            break;
        }
        kept += BATCH_LOG_OVERHEAD + usize::try_from(header.batch_length).unwrap_or(0);
        next_offset = u64::try_from(header.next_offset()).unwrap_or(next_offset);
    }
    debug_assert!(kept <= fetched.len());
    Ok((
        fetched.slice(..kept),
        next_offset.min(end_offset.max(offset)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_log::batch::{BatchBuilder, Compression};

    fn batch_at(base_offset: i64, records: usize) -> Vec<u8> {
        let mut builder = BatchBuilder::new(Compression::None);
        for i in 0..records {
            builder.push(i as i64, None, Some(b"v"), &[]);
        }
        let mut bytes = builder.build().unwrap().to_vec();
        bytes[..8].copy_from_slice(&base_offset.to_be_bytes());
        bytes
    }

    #[test]
    fn cut_keeps_only_batches_starting_below_the_end_offset() {
        let mut all = batch_at(0, 3);
        let first_len = all.len();
        all.extend(batch_at(3, 2));
        all.extend(batch_at(5, 4));
        let fetched = Bytes::from(all);

        let (bytes, next) = cut_at(&fetched, 0, 5).unwrap();
        assert_eq!(next, 5);
        assert_eq!(bytes.len(), fetched.len() - batch_at(5, 4).len());

        let (bytes, next) = cut_at(&fetched, 1, 2).unwrap();
        assert_eq!((bytes.len(), next), (first_len, 2));

        let (bytes, next) = cut_at(&fetched, 0, 100).unwrap();
        assert_eq!((bytes.len(), next), (fetched.len(), 9));

        let (bytes, next) = cut_at(&Bytes::new(), 7, 9).unwrap();
        assert_eq!((bytes.len(), next), (0, 7));
    }
}
