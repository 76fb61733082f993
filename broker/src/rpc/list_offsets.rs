//! `Fetch.ListOffsets`: earliest, latest (the high watermark) or the first
//! offset at or after a timestamp, per partition.

use std::sync::Arc;

use crate::broker::Broker;
use crate::error::BrokerError;
use crate::proto::{
    ListOffsetsRequest, ListOffsetsResponse, OffsetSpec, PartitionOffsetQuery,
    PartitionOffsetResult,
};

#[tracing::instrument(name = "list_offsets", skip_all, fields(topic = %request.topic))]
pub async fn handle(
    broker: &Broker,
    request: ListOffsetsRequest,
) -> Result<ListOffsetsResponse, BrokerError> {
    let topic = broker.topic(&request.topic)?;
    let mut results = Vec::with_capacity(request.partitions.len());
    for query in request.partitions {
        let partition = Arc::clone(topic.partition(query.partition)?);
        let result = broker
            .run_io(move || {
                let leader_epoch = partition.leader_epoch();
                let (offset, found) = lookup(&partition, &query)?;
                Ok(PartitionOffsetResult {
                    partition: query.partition,
                    offset,
                    found,
                    leader_epoch,
                })
            })
            .await?;
        results.push(result);
    }
    Ok(ListOffsetsResponse {
        partitions: results,
    })
}

fn lookup(
    partition: &crate::partition::Partition,
    query: &PartitionOffsetQuery,
) -> Result<(u64, bool), BrokerError> {
    Ok(match query.spec() {
        OffsetSpec::Earliest => (partition.log_start_offset(), true),
        OffsetSpec::Latest => (partition.high_watermark(), true),
        OffsetSpec::Timestamp => match partition.offset_for_time(query.timestamp_ms)? {
            Some(offset) => (offset, true),
            // Nothing that late yet: the end, where such a record would go.
            None => (partition.high_watermark(), false),
        },
    })
}
