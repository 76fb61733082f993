//! Window state saved to, and restored from, compacted changelog topics.
//!
//! Each window stage with a changelog (by default after `key_by`; see `super::windowed`)
//! has a topic `<group>-<stage>-changelog`
//! (Kafka Streams' `<application.id>-<store>-changelog`), compacted, as wide as the
//! widest input. At each commit, the state of every owned input partition that
//! changed is written there as one snapshot: chunk records keyed
//! `<topic>/<partition>/<snapshot id>/<chunk>`, in the changelog partition of the
//! input partition's number. Only once every chunk is acknowledged is the input
//! offset committed, with the snapshot's id and chunk count in the commit metadata.
//! So the commit is the one atomic step: a worker that dies between writing a
//! snapshot and committing leaves chunks no commit names, and its partition's next
//! owner restores the snapshot the last commit names and reads the input from that
//! commit, counting each record once.
//!
//! A snapshot's keys hold its id, so a newer snapshot never replaces an older one's
//! records in compaction: the older is deleted (tombstones) only after a commit
//! naming the newer succeeded, and a restore deletes chunks no commit names.
//!
//! Does not own: what a snapshot holds (`crate::window::Snapshot`), nor when
//! commits are made (`super::runtime`).

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use weir_client::{
    Admin, ClientError, Consumer, ConsumerConfig, DeliveryFuture, OffsetReset, Producer,
    ProducerRecord,
};

use super::chain::{Chain, Restored, SnapshotRef};

/// Replaced snapshots of one partition kept for deletion at its next commit while the
/// changelog refuses their tombstones; older ones are left to the next restore.
const RETRIED_SNAPSHOTS_MAX: usize = 8;

/// A chunk fits in one record batch of the broker's default `max.message.bytes`
/// (1 MiB) with room to spare, and in the producer's default batch.
const CHUNK_BYTES: usize = 240 * 1024;

/// How long a restore waits on a changelog partition that yields nothing below its
/// end offset (offsets compaction removed at its end) before taking what it read.
const RESTORE_STALL_POLLS: u32 = 10;

/// The changelog topic of `stage` in `group`.
pub(crate) fn topic_name(group: &str, stage: &str) -> String {
    format!("{group}-{stage}-changelog")
}

fn chunk_key(topic: &str, partition: u32, id: u64, chunk: u32) -> String {
    format!("{topic}/{partition}/{id:016x}/{chunk}")
}

/// (input topic, input partition, snapshot id, chunk) of a chunk's key.
fn parse_chunk_key(key: &[u8]) -> Option<(String, u32, u64, u32)> {
    let key = std::str::from_utf8(key).ok()?;
    let mut parts = key.rsplitn(4, '/');
    let chunk = parts.next()?.parse().ok()?;
    let id = u64::from_str_radix(parts.next()?, 16).ok()?;
    let partition = parts.next()?.parse().ok()?;
    Some((parts.next()?.to_string(), partition, id, chunk))
}

/// A snapshot id no other worker picks: a random hash of the time and a counter.
fn new_snapshot_id() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    hasher.finish()
}

/// Why a changelog could not be written or read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ChangelogError {
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The commit names a snapshot the changelog does not hold whole.
    #[error("{0}")]
    Missing(String),
    /// A stage's state cannot be written (a key JSON cannot hold).
    #[error("{0}")]
    Unwritable(String),
    /// A snapshot's chunk was not stored: refused by the broker (a batch over the
    /// changelog's `max.message.bytes`), or not acknowledged. `snapshot` says whose
    /// and where.
    #[error("{snapshot}: {source}")]
    Write {
        snapshot: String,
        #[source]
        source: ClientError,
    },
}

/// (input topic, input partition): the unit state is kept, saved and moved by.
type InputPartition = (String, u32);

/// A snapshot to delete: which stage's, in which changelog, of which partition.
struct Doomed {
    stage: String,
    changelog: String,
    topic: String,
    partition: u32,
    snapshot: SnapshotRef,
}

/// The changelogs of a worker's window stages, and which snapshot each owned
/// partition's state is at.
pub(crate) struct Changelogs {
    /// (stage, changelog topic), upstream first.
    stages: Vec<(String, String)>,
    /// Partitions of each changelog topic.
    widths: HashMap<String, u32>,
    /// The latest snapshot written (and acknowledged) of each partition and stage.
    current: HashMap<InputPartition, BTreeMap<String, SnapshotRef>>,
    /// Snapshots a newer one replaced, deleted once a commit names the newer.
    superseded: HashMap<InputPartition, Vec<(String, SnapshotRef)>>,
}

impl Changelogs {
    /// Creates each stage's changelog topic that does not exist, compacted, with
    /// `partitions` partitions.
    pub(crate) async fn create(
        admin: &Admin,
        group: &str,
        stages: Vec<String>,
        partitions: u32,
    ) -> Result<Changelogs, ClientError> {
        let mut widths = HashMap::new();
        let mut named = Vec::new();
        for stage in stages {
            let topic = topic_name(group, &stage);
            let width = match admin.describe_topic(&topic).await {
                Ok(info) => info.partition_count,
                Err(error) if error.is_not_found() => {
                    let configs =
                        BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]);
                    match admin.create_topic(&topic, partitions, 1, &configs).await {
                        Ok(()) => partitions,
                        // Another worker of the group made it first.
                        Err(error) => match admin.describe_topic(&topic).await {
                            Ok(info) => info.partition_count,
                            Err(_) => return Err(error),
                        },
                    }
                }
                Err(error) => return Err(error),
            };
            widths.insert(topic.clone(), width.max(1));
            named.push((stage, topic));
        }
        Ok(Changelogs {
            stages: named,
            widths,
            current: HashMap::new(),
            superseded: HashMap::new(),
        })
    }

    /// The changelogs of a pipeline whose stages keep none.
    pub(crate) fn none() -> Changelogs {
        Changelogs {
            stages: Vec::new(),
            widths: HashMap::new(),
            current: HashMap::new(),
            superseded: HashMap::new(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.stages.is_empty()
    }

    /// Whether `stage` keeps its state here.
    pub(crate) fn keeps(&self, stage: &str) -> bool {
        self.topic_of(stage).is_some()
    }

    fn topic_of(&self, stage: &str) -> Option<&str> {
        self.stages
            .iter()
            .find(|(name, _)| name == stage)
            .map(|(_, topic)| topic.as_str())
    }

    fn changelog_partition(&self, changelog: &str, partition: u32) -> u32 {
        partition % self.widths.get(changelog).copied().unwrap_or(1)
    }

    /// Writes a snapshot of each owned partition's state that changed since its last
    /// one, and waits until every chunk is acknowledged.
    pub(crate) async fn save<T>(
        &mut self,
        producer: &Producer,
        chain: &mut Box<dyn Chain<T>>,
        owned: &[(String, u32, u64)],
    ) -> Result<(), ChangelogError> {
        let started = std::time::Instant::now();
        let (mut snapshots, mut bytes_written) = (0usize, 0usize);
        // Each chunk's delivery, with the sentence naming its snapshot should it fail.
        let mut deliveries: Vec<(DeliveryFuture, usize)> = Vec::new();
        let mut whose: Vec<String> = Vec::new();
        let mut states = Vec::new();
        for (topic, partition, _) in owned {
            chain
                .snapshot(topic, *partition, &mut states)
                .map_err(ChangelogError::Unwritable)?;
            for (stage, bytes) in states.drain(..) {
                let Some(changelog) = self.topic_of(&stage).map(str::to_string) else {
                    continue;
                };
                let target = self.changelog_partition(&changelog, *partition);
                let id = new_snapshot_id();
                snapshots += 1;
                bytes_written += bytes.len();
                let pieces: Vec<&[u8]> = if bytes.is_empty() {
                    vec![&[]]
                } else {
                    bytes.chunks(CHUNK_BYTES).collect()
                };
                let chunks = u32::try_from(pieces.len()).expect("under 4 G chunks");
                whose.push(format!(
                    "the snapshot of stage {stage:?}, partition {partition} of {topic:?} \
                     ({} bytes in {chunks} chunk{}) was not stored in partition {target} \
                     of {changelog:?}; nothing was committed",
                    bytes.len(),
                    if chunks == 1 { "" } else { "s" }
                ));
                let snapshot = whose.len() - 1;
                for (i, piece) in (0..chunks).zip(pieces) {
                    let key = chunk_key(topic, *partition, id, i);
                    let record = ProducerRecord::new(&changelog, piece)
                        .with_key(key.as_bytes())
                        .with_partition(target);
                    match producer.send(record).await {
                        Ok(delivery) => deliveries.push((delivery, snapshot)),
                        Err(source) => {
                            let snapshot = whose.swap_remove(snapshot);
                            return Err(ChangelogError::Write { snapshot, source });
                        }
                    }
                }
                let previous = self
                    .current
                    .entry((topic.clone(), *partition))
                    .or_default()
                    .insert(stage.clone(), SnapshotRef { id, chunks });
                if let Some(previous) = previous {
                    self.superseded
                        .entry((topic.clone(), *partition))
                        .or_default()
                        .push((stage, previous));
                }
            }
        }
        for (delivery, snapshot) in deliveries {
            if let Err(source) = delivery.await {
                let snapshot = std::mem::take(&mut whose[snapshot]);
                return Err(ChangelogError::Write { snapshot, source });
            }
        }
        if snapshots > 0 {
            tracing::debug!(
                snapshots,
                bytes_written,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "window state saved to changelogs"
            );
        }
        Ok(())
    }

    /// The snapshot each stage's state of the partition is at, for its commit.
    pub(crate) fn refs(&self, topic: &str, partition: u32) -> Vec<(String, SnapshotRef)> {
        self.current
            .get(&(topic.to_string(), partition))
            .map(|refs| refs.iter().map(|(s, r)| (s.clone(), *r)).collect())
            .unwrap_or_default()
    }

    /// A commit naming the current snapshots of `committed` succeeded: the
    /// snapshots they replaced are deleted. A snapshot whose tombstones are not
    /// stored stays queued for the next commit of its partition (and a restore deletes
    /// every snapshot no commit names): it is only space, the commit already stands.
    pub(crate) async fn committed(&mut self, producer: &Producer, committed: &[(String, u32)]) {
        let mut doomed = Vec::new();
        for (topic, partition) in committed {
            let Some(old) = self.superseded.remove(&(topic.clone(), *partition)) else {
                continue;
            };
            for (stage, snapshot) in old {
                if let Some(changelog) = self.topic_of(&stage).map(str::to_string) {
                    doomed.push(Doomed {
                        stage,
                        changelog,
                        topic: topic.clone(),
                        partition: *partition,
                        snapshot,
                    });
                }
            }
        }
        let retry = "it is tried again at the partition's next commit";
        for kept in self.delete(producer, doomed, retry).await {
            let queued = self
                .superseded
                .entry((kept.topic.clone(), kept.partition))
                .or_default();
            queued.push((kept.stage, kept.snapshot));
            // A changelog that keeps refusing would have every commit send more; what
            // is dropped here is deleted at the next restore, which no commit names.
            if queued.len() > RETRIED_SNAPSHOTS_MAX {
                let dropped = queued.len() - RETRIED_SNAPSHOTS_MAX;
                queued.drain(..dropped);
                tracing::warn!(
                    changelog = %kept.changelog,
                    topic = %kept.topic,
                    partition = kept.partition,
                    dropped,
                    "replaced snapshots the changelog will not delete are left for the next restore"
                );
            }
        }
    }

    /// Writes the tombstones of every chunk of `doomed`, then waits for them; the
    /// snapshots some tombstone of which was not stored are logged (with `retry`, what
    /// becomes of them) and returned.
    async fn delete(
        &self,
        producer: &Producer,
        doomed: Vec<Doomed>,
        retry: &'static str,
    ) -> Vec<Doomed> {
        let mut deliveries: Vec<(usize, DeliveryFuture)> = Vec::new();
        let mut failed: Vec<Option<ClientError>> = (0..doomed.len()).map(|_| None).collect();
        for (index, snapshot) in doomed.iter().enumerate() {
            let target = self.changelog_partition(&snapshot.changelog, snapshot.partition);
            for i in 0..snapshot.snapshot.chunks {
                let key = chunk_key(&snapshot.topic, snapshot.partition, snapshot.snapshot.id, i);
                let tombstone = ProducerRecord {
                    value: None,
                    ..ProducerRecord::new(&snapshot.changelog, &[])
                        .with_key(key.as_bytes())
                        .with_partition(target)
                };
                match producer.send(tombstone).await {
                    Ok(delivery) => deliveries.push((index, delivery)),
                    Err(error) => {
                        failed[index].get_or_insert(error);
                        break;
                    }
                }
            }
        }
        for (index, delivery) in deliveries {
            if let Err(error) = delivery.await {
                failed[index].get_or_insert(error);
            }
        }
        doomed
            .into_iter()
            .zip(failed)
            .filter_map(|(snapshot, failed)| {
                let error = failed?;
                tracing::warn!(
                    stage = %snapshot.stage,
                    changelog = %snapshot.changelog,
                    topic = %snapshot.topic,
                    partition = snapshot.partition,
                    id = format!("{:016x}", snapshot.snapshot.id),
                    %error,
                    retry,
                    "a snapshot could not be deleted from its changelog"
                );
                Some(snapshot)
            })
            .collect()
    }

    /// The partition moved to another worker: its snapshots are the next owner's
    /// to keep or delete.
    pub(crate) fn forget(&mut self, topic: &str, partition: u32) {
        let key = (topic.to_string(), partition);
        self.current.remove(&key);
        self.superseded.remove(&key);
    }

    /// Reads the snapshot each of `assigned`'s commits names into its
    /// `snapshot_bytes`, and deletes the partitions' chunks no commit names (left by
    /// a worker that died between writing a snapshot and committing).
    pub(crate) async fn restore(
        &mut self,
        addr: &str,
        producer: &Producer,
        assigned: &mut [(String, u32, Restored)],
    ) -> Result<(), ChangelogError> {
        let stages = self.stages.clone();
        for (stage, changelog) in &stages {
            let mut partitions: Vec<u32> = assigned
                .iter()
                .map(|(_, partition, _)| self.changelog_partition(changelog, *partition))
                .collect();
            partitions.sort_unstable();
            partitions.dedup();
            let chunks = read_chunks(addr, changelog, &partitions).await?;
            let mut garbage = Vec::new();
            for (topic, partition, restored) in assigned.iter_mut() {
                let named = restored.snapshots.get(stage).copied();
                let mut pieces: BTreeMap<u32, &[u8]> = BTreeMap::new();
                // Snapshot id -> chunks to delete, of snapshots no commit names.
                let mut unnamed: BTreeMap<u64, u32> = BTreeMap::new();
                let mine = chunks
                    .iter()
                    .filter(|((t, p, _, _), _)| t == topic && p == partition);
                for ((_, _, id, chunk), bytes) in mine {
                    if named.is_some_and(|named| named.id == *id) {
                        pieces.insert(*chunk, bytes);
                    } else {
                        let count = unnamed.entry(*id).or_default();
                        *count = (*count).max(chunk + 1);
                    }
                }
                garbage.extend(
                    unnamed.into_iter().map(|(id, chunks)| {
                        (topic.clone(), *partition, SnapshotRef { id, chunks })
                    }),
                );
                let Some(named) = named else {
                    continue;
                };
                let whole = pieces.len() == named.chunks as usize
                    && pieces.keys().last() == named.chunks.checked_sub(1).as_ref();
                if !whole {
                    return Err(ChangelogError::Missing(format!(
                        "the commit of partition {partition} of {topic:?} names snapshot \
                         {:016x} of stage {stage:?} in {} chunks, and {changelog:?} holds \
                         {} of them: the changelog lost data (deleted or truncated); \
                         delete the group's commits to start the stage afresh",
                        named.id,
                        named.chunks,
                        pieces.len()
                    )));
                }
                let bytes: Vec<u8> = pieces.values().flat_map(|b| b.iter().copied()).collect();
                restored.snapshot_bytes.insert(stage.clone(), bytes);
                self.current
                    .entry((topic.clone(), *partition))
                    .or_default()
                    .insert(stage.clone(), named);
            }
            let garbage = garbage
                .into_iter()
                .map(|(topic, partition, snapshot)| {
                    tracing::debug!(%changelog, %topic, partition, id = snapshot.id, "deleting a snapshot no commit names");
                    Doomed {
                        stage: stage.clone(),
                        changelog: changelog.clone(),
                        topic,
                        partition,
                        snapshot,
                    }
                })
                .collect();
            // What is not deleted now is deleted by the next restore: no commit
            // names it, so it is never read.
            self.delete(
                producer,
                garbage,
                "it is deleted at the partition's next restore",
            )
            .await;
        }
        Ok(())
    }
}

/// Every live chunk in `partitions` of `changelog`, read from the start to the end
/// offset they have now, by (topic, partition, snapshot id, chunk).
async fn read_chunks(
    addr: &str,
    changelog: &str,
    partitions: &[u32],
) -> Result<BTreeMap<(String, u32, u64, u32), Vec<u8>>, ClientError> {
    let mut chunks = BTreeMap::new();
    if partitions.is_empty() {
        return Ok(chunks);
    }
    let mut consumer = Consumer::connect(
        addr,
        ConsumerConfig {
            offset_reset: OffsetReset::Earliest,
            fetch_max_wait: Duration::from_millis(100),
            ..ConsumerConfig::default()
        },
    )
    .await?;
    consumer.assign(changelog, partitions);
    let ends: HashMap<u32, u64> = consumer.end_offsets().await?.into_iter().collect();
    for partition in partitions {
        consumer.position(*partition).await?;
    }
    let behind = |consumer: &Consumer| {
        consumer
            .consumed_positions()
            .iter()
            .any(|(p, position)| ends.get(p).is_some_and(|end| position < end))
    };
    let mut stalled = 0;
    while behind(&consumer) {
        let records = consumer.poll(Duration::from_millis(200)).await?;
        if records.is_empty() {
            stalled += 1;
            if stalled >= RESTORE_STALL_POLLS {
                tracing::warn!(%changelog, "a changelog partition yields nothing below its end offset; restoring from what was read");
                break;
            }
            continue;
        }
        stalled = 0;
        for record in records {
            let Some(key) = record.key.as_deref().and_then(parse_chunk_key) else {
                continue;
            };
            match record.value {
                Some(value) => chunks.insert(key, value.to_vec()),
                None => chunks.remove(&key),
            };
        }
    }
    Ok(chunks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_key_names_its_partition_snapshot_and_chunk_even_with_dots_in_the_topic() {
        let key = chunk_key("clicks.v2-x", 7, 0xabc, 3);
        assert_eq!(key, "clicks.v2-x/7/0000000000000abc/3");
        assert_eq!(
            parse_chunk_key(key.as_bytes()),
            Some(("clicks.v2-x".to_string(), 7, 0xabc, 3))
        );
        assert_eq!(parse_chunk_key(b"not a chunk"), None);
        assert_eq!(parse_chunk_key(b"t/1/zz/0"), None);
    }

    #[test]
    fn snapshot_ids_do_not_repeat() {
        let ids: std::collections::HashSet<u64> = (0..10_000).map(|_| new_snapshot_id()).collect();
        assert_eq!(ids.len(), 10_000);
    }
}

#[cfg(test)]
mod deletion_tests {
    use std::collections::BTreeMap;

    use weir_broker::{BrokerConfig, RunningBroker};
    use weir_client::{Admin, Producer, ProducerConfig};

    use super::super::chain::SnapshotRef;
    use super::Changelogs;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replaced_snapshot_the_changelog_will_not_delete_waits_for_the_next_commit() {
        let data = tempfile::tempdir().unwrap();
        let broker = RunningBroker::start(BrokerConfig {
            data_dir: data.path().to_path_buf(),
            listen: "127.0.0.1:0".parse().unwrap(),
            ..BrokerConfig::default()
        })
        .await
        .unwrap();
        let addr = broker.local_addr().to_string();
        let admin = Admin::connect(&addr).await.unwrap();
        let mut changelogs = Changelogs::create(&admin, "g", vec!["counts".to_string()], 1)
            .await
            .unwrap();
        let changelog = "g-counts-changelog";
        let producer = Producer::connect(&addr, ProducerConfig::default())
            .await
            .unwrap();
        let replaced = ("counts".to_string(), SnapshotRef { id: 7, chunks: 2 });
        changelogs
            .superseded
            .insert(("t".to_string(), 0), vec![replaced.clone()]);

        // Every batch is over 64 bytes: the tombstones are refused. The commit stands,
        // nothing fails, and the snapshot stays queued.
        let tiny = BTreeMap::from([("max.message.bytes".to_string(), "64".to_string())]);
        admin.alter_configs(changelog, &tiny).await.unwrap();
        changelogs
            .committed(&producer, &[("t".to_string(), 0)])
            .await;
        assert_eq!(
            changelogs.superseded.get(&("t".to_string(), 0)),
            Some(&vec![replaced.clone()])
        );
        let before = admin.describe_topic(changelog).await.unwrap();
        assert!(before.partitions.iter().all(|p| p.log_end_offset == 0));

        // The next commit of the partition deletes it: two tombstones.
        let back = BTreeMap::from([("max.message.bytes".to_string(), String::new())]);
        admin.alter_configs(changelog, &back).await.unwrap();
        changelogs
            .committed(&producer, &[("t".to_string(), 0)])
            .await;
        assert_eq!(changelogs.superseded.get(&("t".to_string(), 0)), None);
        let after = admin.describe_topic(changelog).await.unwrap();
        assert_eq!(after.partitions[0].log_end_offset, 2);
        producer.close().await.unwrap();
        broker.shutdown().await.unwrap();
    }
}
