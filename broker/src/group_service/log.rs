//! Group records in `__consumer_offsets`: appended as one batch per partition, read
//! back from each partition's start to rebuild the coordinator.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};

use bytes::BytesMut;
use weir_log::batch::{batches, decode_records, BatchBuilder, Compression};

use crate::broker::Broker;
use crate::error::BrokerError;
use crate::group::{
    offsets_partition_for, GroupConfig, GroupCoordinator, GroupRecord, CONSUMER_OFFSETS_TOPIC,
};

/// How much of a partition one read takes while replaying.
const REPLAY_READ_BYTES: usize = 1024 * 1024;

/// Appends `records` to the partitions of `__consumer_offsets` their groups live on,
/// one batch per partition, in order. Returns when every batch is appended (and
/// fsynced where the flush policy says so).
pub async fn append(
    broker: &Broker,
    records: Vec<GroupRecord>,
    now_ms: i64,
) -> Result<(), BrokerError> {
    // Created at the first group change, as Kafka creates it at the first group
    // request: a broker no group uses never opens its partitions.
    crate::internal_topics::ensure_offsets_topic(broker).await?;
    let topic = broker.topic(CONSUMER_OFFSETS_TOPIC)?;
    let partitions = topic.partition_count();
    let mut by_partition: BTreeMap<u32, BatchBuilder> = BTreeMap::new();
    for record in &records {
        let Some(group) = record.group_id() else {
            return Err(BrokerError::TaskFailed(
                "the group coordinator made a record with an unreadable key".to_string(),
            ));
        };
        let index = offsets_partition_for(&group, partitions);
        by_partition
            .entry(index)
            .or_insert_with(|| BatchBuilder::new(Compression::None))
            .push(now_ms, Some(&record.key), record.value.as_deref(), &[]);
    }
    for (index, mut builder) in by_partition {
        let batch = builder.build().map_err(|e| BrokerError::InvalidRequest {
            topic: CONSUMER_OFFSETS_TOPIC.to_string(),
            reason: format!("partition {index}: cannot build the group records' batch: {e}"),
        })?;
        let partition = std::sync::Arc::clone(topic.partition(index)?);
        let (appended, _) = broker.append(&partition, BytesMut::from(batch)).await?;
        appended?;
    }
    Ok(())
}

/// A coordinator rebuilt from every partition of `__consumer_offsets`, with member ids
/// drawn from a seed that differs at each start.
pub async fn replay(
    broker: &Broker,
    config: &GroupConfig,
) -> Result<GroupCoordinator, BrokerError> {
    // No topic yet: no group has ever changed.
    let partitions: Vec<_> = match broker.topic(CONSUMER_OFFSETS_TOPIC) {
        Ok(topic) => topic.partitions.clone(),
        Err(BrokerError::UnknownTopic { .. }) => Vec::new(),
        Err(error) => return Err(error),
    };
    let records = broker
        .run_io(move || {
            let mut records = Vec::new();
            for partition in partitions {
                read_partition(&partition, &mut records)?;
            }
            Ok(records)
        })
        .await?;
    GroupCoordinator::replay(config.clone(), random_seed(), &records, super::now_ms())
        .map_err(BrokerError::from)
}

/// Every keyed record of `partition`, from its log start to its high watermark.
fn read_partition(
    partition: &crate::partition::Partition,
    records: &mut Vec<GroupRecord>,
) -> Result<(), BrokerError> {
    let corrupt = |offset: i64, reason: String| BrokerError::InvalidRequest {
        topic: CONSUMER_OFFSETS_TOPIC.to_string(),
        reason: format!(
            "partition {} offset {offset}: cannot read the group records: {reason}",
            partition.index()
        ),
    };
    let mut offset = partition.log_start_offset();
    while offset < partition.high_watermark() {
        let read = partition.read(offset, REPLAY_READ_BYTES, false)?;
        if read.batches.is_empty() {
            break;
        }
        for batch in batches(&read.batches) {
            let (header, bytes) = batch.map_err(|e| corrupt(offset as i64, e.to_string()))?;
            let decoded =
                decode_records(bytes).map_err(|e| corrupt(header.base_offset, e.to_string()))?;
            for record in decoded {
                // Every record the coordinator writes has a key; a keyless one is not
                // a group record and compaction would drop it anyway.
                if let Some(key) = record.key {
                    records.push(GroupRecord {
                        key: key.to_vec(),
                        value: record.value.map(|v| v.to_vec()),
                    });
                }
            }
            offset = u64::try_from(header.next_offset()).unwrap_or(u64::MAX);
        }
    }
    Ok(())
}

/// 64 bits that differ from start to start (std's per-process random hash keys, mixed
/// with the time), so member ids of one start never repeat another's.
fn random_seed() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_i64(super::now_ms());
    hasher.write_u32(std::process::id());
    hasher.finish()
}
