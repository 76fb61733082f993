//! The topic registry file `<data>/topics.json`: which topics exist, their
//! partition count, replication factor, config overrides and per-partition
//! leader epochs, and the next free producer id.
//!
//! Written whole to a temporary file, fsynced, renamed over the old one and the
//! directory fsynced, so a crash leaves either the old or the new registry.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::BrokerError;

const REGISTRY_FILE: &str = "topics.json";
const REGISTRY_TMP_FILE: &str = "topics.json.tmp";
/// Format version written into the file; a reader refuses newer versions.
const REGISTRY_VERSION: u32 = 1;

/// What the registry stores about one topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    pub name: String,
    pub replication_factor: u32,
    /// Topic config overrides (Kafka names).
    pub configs: BTreeMap<String, String>,
    /// One entry per partition: the leader epoch.
    pub leader_epochs: Vec<i32>,
    /// In a cluster: one entry per partition, whether this broker holds a
    /// replica of it. Absent on a broker in no cluster (it holds them all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosted: Option<Vec<bool>>,
}

impl TopicRecord {
    pub fn partition_count(&self) -> u32 {
        u32::try_from(self.leader_epochs.len()).unwrap_or(u32::MAX)
    }
}

/// The whole registry file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registry {
    pub version: u32,
    pub next_producer_id: i64,
    pub topics: BTreeMap<String, TopicRecord>,
}

impl Registry {
    /// True when `<data_dir>/topics.json` exists: a broker has created a topic here.
    pub fn exists(data_dir: &Path) -> bool {
        data_dir.join(REGISTRY_FILE).is_file()
    }

    /// Reads `<data_dir>/topics.json`, or an empty registry if there is none.
    pub fn load(data_dir: &Path) -> Result<Registry, BrokerError> {
        let path = data_dir.join(REGISTRY_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Registry {
                    version: REGISTRY_VERSION,
                    ..Registry::default()
                })
            }
            Err(source) => {
                return Err(BrokerError::Io {
                    op: "read",
                    path,
                    source,
                })
            }
        };
        let registry: Registry =
            serde_json::from_str(&text).map_err(|e| BrokerError::CorruptRegistry {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        if registry.version > REGISTRY_VERSION {
            return Err(BrokerError::CorruptRegistry {
                path,
                reason: format!(
                    "format version {} is newer than this broker's {REGISTRY_VERSION}",
                    registry.version
                ),
            });
        }
        Ok(registry)
    }

    /// Replaces `<data_dir>/topics.json` atomically and durably.
    pub fn store(&self, data_dir: &Path) -> Result<(), BrokerError> {
        let tmp = data_dir.join(REGISTRY_TMP_FILE);
        let path = data_dir.join(REGISTRY_FILE);
        let io = |op: &'static str, path: &Path| {
            let path: PathBuf = path.to_path_buf();
            move |source| BrokerError::Io { op, path, source }
        };
        let text = serde_json::to_vec_pretty(self).map_err(|e| BrokerError::CorruptRegistry {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let mut file = File::create(&tmp).map_err(io("create", &tmp))?;
        file.write_all(&text).map_err(io("write", &tmp))?;
        file.sync_all().map_err(io("fsync", &tmp))?;
        drop(file);
        fs::rename(&tmp, &path).map_err(io("rename", &tmp))?;
        File::open(data_dir)
            .and_then(|dir| dir.sync_all())
            .map_err(io("fsync", data_dir))?;
        Ok(())
    }
}

/// The config overrides of `topic` as recorded in `<data_dir>/topics.json`, for tools
/// that read a stopped broker's data (`weir sql --data-dir`); empty when the directory
/// has no registry or the registry has no such topic.
pub fn recorded_topic_configs(
    data_dir: &Path,
    topic: &str,
) -> Result<BTreeMap<String, String>, BrokerError> {
    Ok(Registry::load(data_dir)?
        .topics
        .remove(topic)
        .map(|record| record.configs)
        .unwrap_or_default())
}

/// The directory of one partition: `<data>/<topic>-<partition>`.
pub fn partition_dir(data_dir: &Path, topic: &str, partition: u32) -> PathBuf {
    data_dir.join(format!("{topic}-{partition}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_then_load_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let mut registry = Registry::load(dir.path()).unwrap();
        assert!(registry.topics.is_empty());
        registry.next_producer_id = 7;
        registry.topics.insert(
            "clicks".to_string(),
            TopicRecord {
                name: "clicks".to_string(),
                replication_factor: 1,
                configs: BTreeMap::from([("retention.ms".to_string(), "1000".to_string())]),
                leader_epochs: vec![0, 0, 3],
                hosted: Some(vec![true, false, true]),
            },
        );
        registry.store(dir.path()).unwrap();
        assert_eq!(Registry::load(dir.path()).unwrap(), registry);
        assert!(!dir.path().join(REGISTRY_TMP_FILE).exists());
    }

    #[test]
    fn garbage_registry_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(REGISTRY_FILE), b"{not json").unwrap();
        let err = Registry::load(dir.path()).unwrap_err();
        assert!(err.to_string().contains("topics.json"), "{err}");
    }
}
