//! Removing a deleted topic's partition directories, including when the disk
//! is full and after a crash in the middle of a deletion.
//!
//! The normal order is: `topics.json` without the topic first, then the
//! directories, so a crash in between leaves orphaned directories that the
//! next start removes ([`remove_orphaned_partition_dirs`]).
//!
//! On a full disk that order is stuck: rewriting `topics.json` needs a few
//! kilobytes, and deleting a topic is how a user gets space back. Then, as
//! Kafka renames a deleted log's directory to `<dir>.<id>-delete` before it
//! updates any metadata, the partition directories are renamed to
//! `<topic>-<partition>.delete` (a rename takes no space) and emptied, and
//! only then is `topics.json` rewritten. A marked directory is the record
//! that the deletion was requested: a start that finds one while the topic is
//! still registered finishes the deletion ([`finish_interrupted_deletions`]).

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::BrokerError;
use crate::registry::{partition_dir, Registry};
use crate::topic_name::TopicName;

/// Appended to a partition directory's name once its topic is being deleted.
/// Partition directories end in `-<digits>`, so no live one ends in this.
const DELETION_SUFFIX: &str = ".delete";

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BrokerError {
    let path = path.to_path_buf();
    move |source| BrokerError::Io { op, path, source }
}

fn sync_dir(dir: &Path) -> Result<(), BrokerError> {
    File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(io("fsync", dir))
}

/// True when `error` is the disk running out of space.
pub(crate) fn is_storage_full(error: &BrokerError) -> bool {
    matches!(error, BrokerError::Io { source, .. } if source.kind() == std::io::ErrorKind::StorageFull)
}

fn marked_dir(data_dir: &Path, topic: &str, partition: u32) -> PathBuf {
    let mut name = partition_dir(data_dir, topic, partition).into_os_string();
    name.push(DELETION_SUFFIX);
    PathBuf::from(name)
}

/// Marks every partition directory of `topic` as deleted and frees its space,
/// keeping the (empty) marked directories until `topics.json` no longer lists
/// the topic. The partitions' logs must be closed. Safe to repeat.
pub(crate) fn mark_and_empty(
    data_dir: &Path,
    topic: &str,
    partitions: u32,
) -> Result<(), BrokerError> {
    for partition in 0..partitions {
        let live = partition_dir(data_dir, topic, partition);
        match std::fs::rename(&live, marked_dir(data_dir, topic, partition)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io("mark deleted", &live)(e));
            }
            _ => {}
        }
    }
    // The marks must be durable before any data goes: a start that finds the
    // topic registered and its data gone without a mark would take that as damage.
    sync_dir(data_dir)?;
    for partition in 0..partitions {
        let marked = marked_dir(data_dir, topic, partition);
        let entries = match std::fs::read_dir(&marked) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io("list", &marked)(e)),
        };
        for entry in entries {
            let path = entry.map_err(io("list", &marked))?.path();
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.map_err(io("remove", &path))?;
        }
    }
    Ok(())
}

/// Removes the marked directories of `topic` (all of them, whatever
/// partition count the topic had), once `topics.json` no longer lists it, or
/// before a topic of that name is created again (a leftover mark would
/// otherwise make the next start delete the new topic).
pub(crate) fn remove_marked(data_dir: &Path, topic: &str) -> Result<(), BrokerError> {
    let mut removed_any = false;
    for entry in std::fs::read_dir(data_dir).map_err(io("list data directory", data_dir))? {
        let entry = entry.map_err(io("list data directory", data_dir))?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if parse_marked(&name).is_some_and(|(marked, _)| marked == topic) {
            let path = entry.path();
            std::fs::remove_dir_all(&path).map_err(io("remove", &path))?;
            removed_any = true;
        }
    }
    if removed_any {
        sync_dir(data_dir)?;
    }
    Ok(())
}

/// The topic and partition of a marked directory's name.
fn parse_marked(name: &str) -> Option<(&str, u32)> {
    let (topic, partition) = name.strip_suffix(DELETION_SUFFIX)?.rsplit_once('-')?;
    topic.parse::<TopicName>().ok()?;
    Some((topic, partition.parse().ok()?))
}

/// At start: every topic with a marked directory was being deleted when the
/// broker stopped. Drops those topics from `registry` (and `topics.json`) and
/// removes every marked directory. Returns the topics it dropped.
pub(crate) fn finish_interrupted_deletions(
    data_dir: &Path,
    registry: &mut Registry,
) -> Result<Vec<String>, BrokerError> {
    let mut marked = Vec::new();
    for entry in std::fs::read_dir(data_dir).map_err(io("list data directory", data_dir))? {
        let entry = entry.map_err(io("list data directory", data_dir))?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if let Some((topic, _)) = parse_marked(&name) {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                marked.push((topic.to_string(), entry.path()));
            }
        }
    }
    let mut dropped: Vec<String> = marked
        .iter()
        .filter(|(topic, _)| registry.topics.contains_key(topic))
        .map(|(topic, _)| topic.clone())
        .collect();
    dropped.sort();
    dropped.dedup();
    if !dropped.is_empty() {
        let mut next = registry.clone();
        for topic in &dropped {
            next.topics.remove(topic);
            tracing::info!(topic = %topic, "finished deleting a topic whose deletion was interrupted");
        }
        next.store(data_dir)?;
        *registry = next;
    }
    for (_, path) in &marked {
        std::fs::remove_dir_all(path).map_err(io("remove", path))?;
    }
    if !marked.is_empty() {
        sync_dir(data_dir)?;
    }
    Ok(dropped)
}

/// Removes the directory of partition `index` of `topic` if one is there: left by
/// a deletion or a growth that did not finish, it holds no partition of the topic
/// about to be opened there.
pub(crate) fn remove_stale_partition_dir(
    data_dir: &Path,
    topic: &str,
    index: u32,
) -> Result<(), BrokerError> {
    let dir = crate::registry::partition_dir(data_dir, topic, index);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(io("remove stale partition directory", &dir))?;
    }
    Ok(())
}

/// Removes partition directories `registry` does not count: left by a crash
/// between rewriting `topics.json` and removing a deleted topic's directories,
/// or between opening added partitions and recording them.
pub(crate) fn remove_orphaned_partition_dirs(
    data_dir: &Path,
    registry: &Registry,
) -> Result<(), BrokerError> {
    let entries = std::fs::read_dir(data_dir).map_err(io("list data directory", data_dir))?;
    let mut removed_any = false;
    for entry in entries {
        let entry = entry.map_err(io("list data directory", data_dir))?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let Some((topic, partition)) = name.rsplit_once('-') else {
            continue;
        };
        let is_partition_dir = partition.parse::<u32>().is_ok()
            && topic.parse::<TopicName>().is_ok()
            && entry.file_type().is_ok_and(|t| t.is_dir());
        let known = registry.topics.get(topic).is_some_and(|record| {
            partition
                .parse::<u32>()
                .is_ok_and(|p| p < record.partition_count())
        });
        if is_partition_dir && !known {
            let path = entry.path();
            std::fs::remove_dir_all(&path)
                .map_err(io("remove orphaned partition directory", &path))?;
            tracing::info!(dir = %path.display(), "removed a partition directory no topic counts");
            removed_any = true;
        }
    }
    if removed_any {
        sync_dir(data_dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marked_names_parse_and_live_names_do_not() {
        assert_eq!(parse_marked("clicks-3.delete"), Some(("clicks", 3)));
        assert_eq!(parse_marked("a.delete-0.delete"), Some(("a.delete", 0)));
        assert_eq!(parse_marked("clicks-3"), None);
        assert_eq!(parse_marked("a.delete-0"), None);
        assert_eq!(parse_marked("clicks-x.delete"), None);
    }
}
