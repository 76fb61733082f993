//! The local source: topics in a data directory laid out as the broker lays it out (one
//! directory `<topic>-<partition>` per partition), read with `weir_log::PartitionLog`, or
//! partition logs already open in this process.
//!
//! Opening a partition log writes to its directory (it removes the clean-shutdown
//! checkpoint, and after an unclean stop it runs crash recovery, which may cut a tail).
//! For offline analysis that is safe only when nothing else has the directory open, so by
//! default only partitions that were closed cleanly are opened (a running broker has
//! removed that checkpoint), and they are closed again, restoring it, when the source is
//! closed or dropped. `LocalOptions::allow_recovery` opens the others too.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use weir_log::{DirLock, LogConfig, PartitionLog};

use super::{BatchChunk, ByteCounter, PartitionSnapshot, TopicReader, TopicSource};
use crate::SqlError;

/// The checkpoint file a partition log writes on a clean close (see log-core FORMAT.md).
const CLEAN_SHUTDOWN_FILE: &str = "clean-shutdown";

/// How a data directory is opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LocalOptions {
    /// Open partitions that were not closed cleanly, running crash recovery on them.
    /// Only safe when no broker has the data directory open.
    pub allow_recovery: bool,
}

/// Which offset a query reads up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadBound {
    /// The log end offset: everything written (what a restarted broker serves).
    LogEnd,
    /// The high watermark: what consumers of a live broker see.
    HighWatermark,
}

#[derive(Debug)]
enum TopicEntry {
    /// Found in the data directory, not opened yet.
    OnDisk {
        partitions: Vec<u32>,
    },
    Open(Arc<LocalTopic>),
}

/// Topics from a data directory and from logs registered by the application.
#[derive(Debug)]
pub struct LocalSource {
    data_dir: Option<PathBuf>,
    options: LocalOptions,
    topics: Mutex<BTreeMap<String, TopicEntry>>,
    bytes_read: ByteCounter,
    /// A shared lock of the data directory: no broker starts on it while it is read, and
    /// opening one a broker holds is refused, naming the broker.
    _data_dir_lock: Option<DirLock>,
}

impl LocalSource {
    /// Lists the topics of `data_dir` (directories named `<topic>-<partition>`); partitions
    /// are opened when a query first uses their topic.
    pub fn open(data_dir: &Path, options: LocalOptions) -> Result<LocalSource, SqlError> {
        let data_dir_lock = DirLock::acquire_shared_if_present(data_dir)
            .map_err(|source| SqlError::DataDirInUse { source })?;
        let topics = list_topics(data_dir)?
            .into_iter()
            .map(|(name, partitions)| (name, TopicEntry::OnDisk { partitions }))
            .collect();
        Ok(LocalSource {
            data_dir: Some(data_dir.to_path_buf()),
            options,
            topics: Mutex::new(topics),
            bytes_read: ByteCounter::default(),
            _data_dir_lock: data_dir_lock,
        })
    }

    /// A source with no data directory; topics come from [`LocalSource::add_topic`].
    pub fn new() -> LocalSource {
        LocalSource {
            data_dir: None,
            options: LocalOptions::default(),
            topics: Mutex::new(BTreeMap::new()),
            bytes_read: ByteCounter::default(),
            _data_dir_lock: None,
        }
    }

    /// Registers partition logs this process already has open (for instance a broker's),
    /// replacing a topic of the same name. They are never closed by this source.
    pub fn add_topic(
        &self,
        topic: &str,
        partitions: Vec<(u32, Arc<PartitionLog>)>,
        bound: ReadBound,
    ) {
        let mut partitions = partitions;
        partitions.sort_by_key(|(p, _)| *p);
        let reader = LocalTopic {
            name: topic.to_string(),
            logs: partitions,
            owned: false,
            bound,
            configs: BTreeMap::new(),
            bytes_read: self.bytes_read.clone(),
        };
        self.lock()
            .insert(topic.to_string(), TopicEntry::Open(Arc::new(reader)));
    }

    /// Closes every partition log this source opened, restoring their clean-shutdown
    /// checkpoints. Logs still used by a live query plan are closed when it is dropped.
    pub fn close(&self) -> Result<(), SqlError> {
        let entries = std::mem::take(&mut *self.lock());
        let mut first_error = None;
        for entry in entries.into_values() {
            if let TopicEntry::Open(topic) = entry {
                if let Ok(mut topic) = Arc::try_unwrap(topic) {
                    if let Err(e) = topic.close_logs() {
                        first_error.get_or_insert(e);
                    }
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, TopicEntry>> {
        // The map is only changed by whole inserts: still consistent after a panic.
        self.topics.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn open_partitions(&self, topic: &str, partitions: &[u32]) -> Result<LocalTopic, SqlError> {
        let data_dir = self.data_dir.as_deref().ok_or_else(|| SqlError::Topic {
            topic: topic.to_string(),
            reason: "no data directory to open it from".to_string(),
        })?;
        let mut reader = LocalTopic {
            name: topic.to_string(),
            logs: Vec::with_capacity(partitions.len()),
            owned: true,
            bound: ReadBound::LogEnd,
            configs: topic_configs(data_dir, topic)?,
            bytes_read: self.bytes_read.clone(),
        };
        for &partition in partitions {
            let dir = weir_broker::partition_dir(data_dir, topic, partition);
            if !self.options.allow_recovery && !dir.join(CLEAN_SHUTDOWN_FILE).is_file() {
                // `reader` closes the partitions opened so far when dropped.
                return Err(SqlError::NotClosedCleanly { dir });
            }
            let log =
                PartitionLog::open(&dir, LogConfig::default()).map_err(|source| SqlError::Log {
                    topic: topic.to_string(),
                    partition,
                    source,
                })?;
            reader.logs.push((partition, Arc::new(log)));
        }
        Ok(reader)
    }
}

impl Default for LocalSource {
    fn default() -> Self {
        LocalSource::new()
    }
}

#[async_trait]
impl TopicSource for LocalSource {
    async fn topic_names(&self) -> Result<Vec<String>, SqlError> {
        Ok(self.lock().keys().cloned().collect())
    }

    async fn open_topic(&self, topic: &str) -> Result<Option<Arc<dyn TopicReader>>, SqlError> {
        let partitions = match self.lock().get(topic) {
            None => return Ok(None),
            Some(TopicEntry::Open(reader)) => {
                return Ok(Some(Arc::clone(reader) as Arc<dyn TopicReader>))
            }
            Some(TopicEntry::OnDisk { partitions }) => partitions.clone(),
        };
        // Opened outside the lock: recovery of a large partition may take a while.
        let opened = Arc::new(self.open_partitions(topic, &partitions)?);
        let mut topics = self.lock();
        let reader = match topics.get(topic) {
            // Another query opened it meanwhile; ours closes when dropped.
            Some(TopicEntry::Open(existing)) => Arc::clone(existing),
            _ => {
                topics.insert(topic.to_string(), TopicEntry::Open(Arc::clone(&opened)));
                opened
            }
        };
        Ok(Some(reader as Arc<dyn TopicReader>))
    }

    fn bytes_read(&self) -> &ByteCounter {
        &self.bytes_read
    }
}

/// One topic's partition logs.
struct LocalTopic {
    name: String,
    logs: Vec<(u32, Arc<PartitionLog>)>,
    /// Opened by this source, so closed by it.
    owned: bool,
    bound: ReadBound,
    /// Config overrides from the topic registry.
    configs: BTreeMap<String, String>,
    bytes_read: ByteCounter,
}

impl std::fmt::Debug for LocalTopic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalTopic")
            .field("name", &self.name)
            .field(
                "partitions",
                &self.logs.iter().map(|(p, _)| *p).collect::<Vec<_>>(),
            )
            .field("owned", &self.owned)
            .field("bound", &self.bound)
            .finish()
    }
}

impl LocalTopic {
    fn log(&self, partition: u32) -> Result<&PartitionLog, SqlError> {
        self.logs
            .iter()
            .find(|(p, _)| *p == partition)
            .map(|(_, log)| log.as_ref())
            .ok_or_else(|| SqlError::Topic {
                topic: self.name.clone(),
                reason: format!("no partition {partition}"),
            })
    }

    fn log_error(&self, partition: u32) -> impl Fn(weir_log::LogError) -> SqlError + '_ {
        move |source| SqlError::Log {
            topic: self.name.clone(),
            partition,
            source,
        }
    }

    fn close_logs(&mut self) -> Result<(), SqlError> {
        if !self.owned {
            return Ok(());
        }
        let mut first_error = None;
        for (partition, log) in std::mem::take(&mut self.logs) {
            if let Ok(log) = Arc::try_unwrap(log) {
                if let Err(source) = log.close() {
                    first_error.get_or_insert(SqlError::Log {
                        topic: self.name.clone(),
                        partition,
                        source,
                    });
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for LocalTopic {
    fn drop(&mut self) {
        // Best effort: a failed close only costs a recovery scan at the next open.
        let _ = self.close_logs();
    }
}

#[async_trait]
impl TopicReader for LocalTopic {
    fn topic(&self) -> &str {
        &self.name
    }

    fn partitions(&self) -> Vec<u32> {
        self.logs.iter().map(|(p, _)| *p).collect()
    }

    fn configs(&self) -> BTreeMap<String, String> {
        self.configs.clone()
    }

    async fn snapshot(&self) -> Result<Vec<PartitionSnapshot>, SqlError> {
        Ok(self
            .logs
            .iter()
            .map(|(partition, log)| {
                let end_offset = match self.bound {
                    ReadBound::LogEnd => log.log_end_offset(),
                    ReadBound::HighWatermark => log.high_watermark(),
                };
                PartitionSnapshot {
                    partition: *partition,
                    start_offset: log.log_start_offset().min(end_offset),
                    end_offset,
                }
            })
            .collect())
    }

    async fn offset_for_time(
        &self,
        partition: u32,
        timestamp_ms: i64,
    ) -> Result<Option<u64>, SqlError> {
        self.log(partition)?
            .offset_for_time(timestamp_ms)
            .map_err(self.log_error(partition))
    }

    async fn read(
        &self,
        partition: u32,
        offset: u64,
        end_offset: u64,
        max_bytes: usize,
    ) -> Result<BatchChunk, SqlError> {
        let slice = self
            .log(partition)?
            .read(offset, max_bytes, end_offset)
            .map_err(self.log_error(partition))?;
        let bytes = slice.to_bytes().map_err(self.log_error(partition))?;
        self.bytes_read.add(bytes.len());
        Ok(BatchChunk {
            bytes,
            next_offset: slice.next_offset(),
        })
    }
}

/// The config overrides of `topic` from the broker's topic registry, or none when the
/// directory has no registry (partition directories copied on their own).
fn topic_configs(data_dir: &Path, topic: &str) -> Result<BTreeMap<String, String>, SqlError> {
    weir_broker::recorded_topic_configs(data_dir, topic).map_err(|e| SqlError::NotADataDir {
        path: data_dir.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Topics of a data directory and their partition numbers, from directory names
/// `<topic>-<partition>` (the topic may itself contain `-`), without the broker's
/// internal topics.
fn list_topics(data_dir: &Path) -> Result<BTreeMap<String, Vec<u32>>, SqlError> {
    let io = |source| SqlError::Io {
        op: "list data directory",
        path: data_dir.to_path_buf(),
        source,
    };
    if !data_dir.is_dir() {
        return Err(SqlError::NotADataDir {
            path: data_dir.to_path_buf(),
            reason: "no such directory".to_string(),
        });
    }
    let mut topics: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for entry in std::fs::read_dir(data_dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        if !entry.file_type().map_err(io)?.is_dir() {
            continue;
        }
        let name = entry.file_name();
        let Some((topic, partition)) = name.to_str().and_then(parse_partition_dir) else {
            continue;
        };
        // The broker's own topics (group records) are not user data; the broker's
        // topic list hides them the same way.
        if weir_broker::is_internal(topic) {
            continue;
        }
        topics.entry(topic.to_string()).or_default().push(partition);
    }
    for partitions in topics.values_mut() {
        partitions.sort_unstable();
    }
    Ok(topics)
}

/// `clicks-3` → `("clicks", 3)`; the number must be canonical decimal.
fn parse_partition_dir(name: &str) -> Option<(&str, u32)> {
    let (topic, digits) = name.rsplit_once('-')?;
    if topic.is_empty() || topic.starts_with('.') || digits.is_empty() {
        return None;
    }
    if !digits.bytes().all(|b| b.is_ascii_digit()) || (digits.len() > 1 && digits.starts_with('0'))
    {
        return None;
    }
    Some((topic, digits.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::parse_partition_dir;

    #[test]
    fn partition_directories_split_at_the_last_dash() {
        assert_eq!(parse_partition_dir("clicks-0"), Some(("clicks", 0)));
        assert_eq!(
            parse_partition_dir("page-views-12"),
            Some(("page-views", 12))
        );
        assert_eq!(parse_partition_dir("clicks-01"), None);
        assert_eq!(parse_partition_dir("clicks-"), None);
        assert_eq!(parse_partition_dir("-3"), None);
        assert_eq!(parse_partition_dir("clicks"), None);
        assert_eq!(parse_partition_dir("clicks-+1"), None);
    }
}
