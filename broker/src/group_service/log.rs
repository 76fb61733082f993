//! Group records in `__consumer_offsets`: a coordinator's changes appended as one batch to
//! its partition, and read back from the partition's start to rebuild it.

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

/// How long an append waits for the in-sync replicas of its partition (Kafka's
/// `offsets.commit.timeout.ms`).
const REPLICATION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Appends `records`, all of groups of partition `index`, to it as one batch, as its
/// leader at `epoch` (`None` in no cluster). Returns when the batch is appended (and
/// fsynced where the flush policy says so) and, in a cluster, held by every in-sync
/// replica: an answer built on it survives the loss of this broker.
pub async fn append(
    broker: &Broker,
    index: u32,
    epoch: Option<i32>,
    records: Vec<GroupRecord>,
    now_ms: i64,
) -> Result<(), BrokerError> {
    // Created at the first group change, as Kafka creates it at the first group
    // request: a broker no group uses never opens its partitions.
    let partitions = crate::internal_topics::ensure_offsets_topic(broker).await?;
    let topic = broker.topic(CONSUMER_OFFSETS_TOPIC)?;
    let mut builder = BatchBuilder::new(Compression::None);
    for record in &records {
        let Some(group) = record.group_id() else {
            return Err(BrokerError::TaskFailed(
                "the group coordinator made a record with an unreadable key".to_string(),
            ));
        };
        debug_assert_eq!(
            offsets_partition_for(&group, partitions),
            index,
            "a coordinator writes only the groups of its own partition"
        );
        builder.push(now_ms, Some(&record.key), record.value.as_deref(), &[]);
    }
    let batch = builder.build().map_err(|e| BrokerError::InvalidRequest {
        topic: CONSUMER_OFFSETS_TOPIC.to_string(),
        reason: format!("partition {index}: cannot build the group records' batch: {e}"),
    })?;
    let partition = std::sync::Arc::clone(topic.partition(index)?);
    let (appended, _) = broker.append(&partition, BytesMut::from(batch)).await?;
    let appended = appended?;
    let Some(epoch) = epoch else {
        return Ok(());
    };
    if appended.leader_epoch != epoch {
        // Leadership moved and came back since the coordinator was rebuilt: another
        // leader may have written groups this one does not know.
        return Err(partition.not_leader());
    }
    partition
        .wait_replicated(
            appended.last_offset,
            appended.leader_epoch,
            tokio::time::Instant::now() + REPLICATION_TIMEOUT,
            broker.closing_signal(),
        )
        .await
}

/// A coordinator rebuilt from partition `index` of `__consumer_offsets` (empty before the
/// first group change creates the topic), with member ids drawn from a seed that differs
/// at each rebuild. Read to the log end, not the high watermark: as a new leader, the
/// records past it were acknowledged by the leader before (it waited for the ISR, this
/// broker among them) and are kept by this one.
pub async fn replay(
    broker: &Broker,
    config: &GroupConfig,
    index: u32,
) -> Result<GroupCoordinator, BrokerError> {
    let partition = match broker.topic(CONSUMER_OFFSETS_TOPIC) {
        Ok(topic) => Some(std::sync::Arc::clone(topic.partition(index)?)),
        Err(BrokerError::UnknownTopic { .. }) => None,
        Err(error) => return Err(error),
    };
    let records = broker
        .run_io(move || {
            let mut records = Vec::new();
            if let Some(partition) = partition {
                read_partition(&partition, &mut records)?;
            }
            Ok(records)
        })
        .await?;
    GroupCoordinator::replay(config.clone(), random_seed(), &records, super::now_ms())
        .map_err(BrokerError::from)
}

/// Every keyed record of `partition`, from its log start to its log end.
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
    loop {
        let read = partition.read_to_log_end(offset, REPLAY_READ_BYTES)?;
        if read.is_empty() {
            break;
        }
        for batch in batches(&read) {
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
