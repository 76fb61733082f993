//! `Fetch.Fetch`: stored batches as they are on disk, never past the high
//! watermark, with Kafka's long poll.
//!
//! A fetch subscribes to each partition's high-watermark signal before it
//! reads, so an append that lands between the read and the wait still wakes
//! it. It holds no partition while it waits: a delete or reconfiguration never
//! waits for a long poll, and the poll finds out on its next round.

use std::sync::Arc;

use futures_util::future::select_all;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::broker::{Broker, Topic};
use crate::error::BrokerError;
use crate::partition::Partition;
use crate::proto::{
    ErrorCode, FetchRequest, FetchResponse, PartitionFetchRequest, PartitionFetchResult,
};

#[tracing::instrument(name = "fetch", skip_all, fields(topic = %request.topic, partitions = request.partitions.len()))]
pub async fn handle(broker: &Broker, request: FetchRequest) -> Result<FetchResponse, BrokerError> {
    let config = broker.config();
    let wait_ms = request.max_wait_ms.min(config.fetch_wait_ms_max);
    let deadline = Instant::now() + std::time::Duration::from_millis(u64::from(wait_ms));
    let max_bytes = match usize::try_from(request.max_bytes).unwrap_or(usize::MAX) {
        0 => config.fetch_bytes_max,
        n => n.min(config.fetch_bytes_max),
    };
    let min_bytes = usize::try_from(request.min_bytes).unwrap_or(usize::MAX);
    let mut shutdown = broker.closing_signal();
    loop {
        let topic = broker.topic(&request.topic)?;
        let partitions = requested_partitions(&topic, &request.partitions)?;
        drop(topic);
        let mut signals: Vec<watch::Receiver<u64>> =
            partitions.iter().map(|p| p.subscribe()).collect();
        let queries: Vec<PartitionFetchRequest> = request.partitions.clone();
        let results = broker
            .run_io(move || Ok(read_all(&partitions, &queries, max_bytes)))
            .await?;
        let bytes: usize = results.iter().map(|r| r.batches.len()).sum();
        let failed = results
            .iter()
            .any(|r| r.error_code != i32::from(ErrorCode::None));
        if bytes >= min_bytes || failed || signals.is_empty() || Instant::now() >= deadline {
            return Ok(FetchResponse {
                partitions: results,
            });
        }
        let appended = select_all(signals.iter_mut().map(|s| Box::pin(s.changed())));
        tokio::select! {
            _ = appended => {}
            _ = tokio::time::sleep_until(deadline) => {}
            // Shutting down: answer with what there is rather than an error.
            _ = shutdown.changed() => return Ok(FetchResponse { partitions: results }),
        }
    }
}

/// The requested partitions, each existing and named once.
fn requested_partitions(
    topic: &Topic,
    requested: &[PartitionFetchRequest],
) -> Result<Vec<Arc<Partition>>, BrokerError> {
    let mut partitions = Vec::with_capacity(requested.len());
    for (i, query) in requested.iter().enumerate() {
        if requested[..i]
            .iter()
            .any(|earlier| earlier.partition == query.partition)
        {
            return Err(BrokerError::DuplicatePartition {
                topic: topic.name.clone(),
                partition: query.partition,
            });
        }
        partitions.push(Arc::clone(topic.partition(query.partition)?));
    }
    Ok(partitions)
}

/// Reads every partition within the byte budgets. Only the first partition
/// that returns data may exceed them (by one batch), as in Kafka.
fn read_all(
    partitions: &[Arc<Partition>],
    queries: &[PartitionFetchRequest],
    max_bytes: usize,
) -> Vec<PartitionFetchResult> {
    let mut remaining = max_bytes;
    let mut first = true;
    partitions
        .iter()
        .zip(queries)
        .map(|(partition, query)| {
            let partition_max = match usize::try_from(query.max_bytes).unwrap_or(usize::MAX) {
                0 => remaining,
                n => n.min(remaining),
            };
            match partition.read(query.offset, partition_max, !first) {
                Ok(read) => {
                    if !read.batches.is_empty() {
                        first = false;
                        remaining = remaining.saturating_sub(read.batches.len());
                    }
                    PartitionFetchResult {
                        partition: query.partition,
                        error_code: ErrorCode::None.into(),
                        error_message: String::new(),
                        high_watermark: read.high_watermark,
                        log_start_offset: read.log_start_offset,
                        log_end_offset: read.log_end_offset,
                        batches: read.batches,
                    }
                }
                Err(error) => {
                    let status = partition.status();
                    PartitionFetchResult {
                        partition: query.partition,
                        error_code: error.error_code().into(),
                        error_message: error.to_string(),
                        high_watermark: status.high_watermark,
                        log_start_offset: status.log_start_offset,
                        log_end_offset: status.log_end_offset,
                        batches: bytes::Bytes::new(),
                    }
                }
            }
        })
        .collect()
}
