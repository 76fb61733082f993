//! `leader-epoch-checkpoint`: the leader-epoch cache on disk, in Kafka's text format (a
//! version line `0`, a count line, then one `epoch start_offset` line per entry), so a
//! Kafka tool reads it as its own. Replaced whole, atomically, like the other checkpoints
//! (temp file, fsync, rename, directory fsync), and only when the cache changes.
//!
//! A missing file (a directory from before the cache existed) or a damaged one is rebuilt
//! from the batch headers of the segments: no record is decoded.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;

use crate::error::IoContext;
use crate::file_io;
use crate::file_name::{append_suffix, sync_dir, TEMP_SUFFIX};
use crate::leader_epoch::{EpochEntry, LeaderEpochCache};
use crate::segment::Segment;
use crate::LogError;

pub(crate) const LEADER_EPOCH_CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";
/// Kafka's only version of the format.
const VERSION: &str = "0";
/// A larger file is damage, not a cache: an entry line is at most 32 bytes, so this holds
/// two million epochs, far more than any partition sees.
const FILE_BYTES_MAX: u64 = 64 << 20;

/// What reading the file found.
#[derive(Debug)]
pub(crate) enum CheckpointRead {
    Found(LeaderEpochCache),
    Missing,
    /// Why it cannot be used.
    Damaged(String),
}

pub(crate) fn encode(cache: &LeaderEpochCache) -> String {
    let mut text = format!("{VERSION}\n{}\n", cache.entries().len());
    for entry in cache.entries() {
        text.push_str(&format!("{} {}\n", entry.epoch, entry.start_offset));
    }
    text
}

/// Parses the file's text; Err says what is wrong, naming the line.
pub(crate) fn decode(text: &str) -> Result<LeaderEpochCache, String> {
    let mut lines = text.lines().enumerate().map(|(i, line)| (i + 1, line));
    match lines.next() {
        Some((_, VERSION)) => {}
        Some((_, other)) => return Err(format!("line 1: version {other:?}, not {VERSION}")),
        None => return Err("the file is empty".to_string()),
    }
    let count: usize = match lines.next() {
        Some((_, line)) => line
            .parse()
            .map_err(|_| format!("line 2: entry count {line:?} is not a number"))?,
        None => return Err("no entry count line".to_string()),
    };
    // Not sized from `count`: it is not checked against the lines yet.
    let mut entries = Vec::new();
    for (number, line) in lines.by_ref().take(count) {
        entries.push(parse_entry(line).map_err(|why| format!("line {number}: {why}"))?);
    }
    if entries.len() < count {
        return Err(format!(
            "the count line says {count} entries, the file holds {}",
            entries.len()
        ));
    }
    if let Some((number, _)) = lines.find(|(_, line)| !line.trim().is_empty()) {
        return Err(format!(
            "line {number}: more entries than the count line's {count}"
        ));
    }
    LeaderEpochCache::from_entries(entries)
}

fn parse_entry(line: &str) -> Result<EpochEntry, String> {
    let mut fields = line.split_ascii_whitespace();
    let (Some(epoch), Some(start), None) = (fields.next(), fields.next(), fields.next()) else {
        return Err(format!("{line:?} is not `epoch start_offset`"));
    };
    let epoch = epoch
        .parse::<i32>()
        .map_err(|_| format!("epoch {epoch:?} is not a 32-bit number"))?;
    // Kafka writes a signed 64-bit offset; a negative one is damage here.
    let start_offset = start
        .parse::<u64>()
        .map_err(|_| format!("start offset {start:?} is not an offset"))?;
    Ok(EpochEntry {
        epoch,
        start_offset,
    })
}

/// Reads the file in `dir`.
pub(crate) fn read(dir: &Path) -> Result<CheckpointRead, LogError> {
    let path = dir.join(LEADER_EPOCH_CHECKPOINT_FILE);
    let file = match fs::File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(CheckpointRead::Missing),
        Err(e) => return Err(e).io_ctx("open leader-epoch checkpoint", &path),
    };
    let mut bytes = Vec::new();
    file.take(FILE_BYTES_MAX + 1)
        .read_to_end(&mut bytes)
        .io_ctx("read leader-epoch checkpoint", &path)?;
    if bytes.len() as u64 > FILE_BYTES_MAX {
        return Ok(CheckpointRead::Damaged(format!(
            "it is larger than {FILE_BYTES_MAX} bytes"
        )));
    }
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return Ok(CheckpointRead::Damaged("it is not text".to_string()));
    };
    Ok(match decode(text) {
        Ok(cache) => CheckpointRead::Found(cache),
        Err(why) => CheckpointRead::Damaged(why),
    })
}

/// Replaces the file in `dir` with `cache`, atomically and durably.
pub(crate) fn write(dir: &Path, cache: &LeaderEpochCache) -> Result<(), LogError> {
    let path = dir.join(LEADER_EPOCH_CHECKPOINT_FILE);
    let temp = append_suffix(&path, TEMP_SUFFIX);
    let mut file = file_io::create(&temp).io_ctx("create leader-epoch checkpoint", &temp)?;
    file_io::write_all(&mut file, encode(cache).as_bytes(), &temp)
        .io_ctx("write leader-epoch checkpoint", &temp)?;
    file_io::sync_all(&file, &temp).io_ctx("fsync leader-epoch checkpoint", &temp)?;
    drop(file);
    file_io::rename(&temp, &path).io_ctx("rename leader-epoch checkpoint into place", &path)?;
    sync_dir(dir).io_ctx("fsync directory", dir)
}

/// The cache the segments' batches describe: every batch header, oldest first, assigned
/// as an append would. Headers only; a header that does not parse is damage the open did
/// not check (it trusts segments below the recovery point), named with its segment and
/// the offset where the readable log ends.
pub(crate) fn rebuild(
    segments: &BTreeMap<u64, Arc<Segment>>,
    recovery_point: u64,
) -> Result<LeaderEpochCache, LogError> {
    let mut cache = LeaderEpochCache::new();
    for segment in segments.values() {
        let size_bytes = segment.size_bytes();
        let mut position = 0u64;
        let mut next_offset = segment.base_offset;
        while position < size_bytes {
            let header = segment
                .header_at(position, size_bytes)
                .map_err(|e| match e {
                    LogError::Corrupt {
                        segment, reason, ..
                    } => LogError::DamagedBelowRecoveryPoint {
                        segment,
                        position,
                        offset: next_offset,
                        recovery_point,
                        reason: format!("{reason} (found rebuilding the leader-epoch checkpoint)"),
                    },
                    other => other,
                })?;
            // `header_at` checked the base offset is within 2^32 above the segment base.
            let base_offset = u64::try_from(header.base_offset).unwrap_or(next_offset);
            cache.assign(header.partition_leader_epoch, base_offset);
            next_offset = u64::try_from(header.next_offset()).unwrap_or(next_offset);
            position += header.size_bytes() as u64;
        }
    }
    Ok(cache)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_kafkas_format() {
        let cache = decode("0\n3\n0 0\n4 150\n9 1200\n").expect("Kafka's format");
        let pairs: Vec<(i32, u64)> = cache
            .entries()
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .collect();
        assert_eq!(pairs, vec![(0, 0), (4, 150), (9, 1200)]);
        assert_eq!(encode(&cache), "0\n3\n0 0\n4 150\n9 1200\n");
        assert_eq!(encode(&LeaderEpochCache::new()), "0\n0\n");
        assert!(decode("0\n0\n").expect("empty").is_empty());
    }

    #[test]
    fn names_what_is_damaged() {
        let cases = [
            ("", "empty"),
            ("1\n0\n", "version"),
            ("0\nx\n", "count"),
            ("0\n2\n0 0\n", "holds 1"),
            ("0\n1\n0 0\n3 10\n", "more entries"),
            ("0\n1\n0\n", "line 3"),
            ("0\n1\n0 -5\n", "start offset"),
            ("0\n2\n3 0\n2 10\n", "epochs must increase"),
            ("0\n2\n1 10\n2 10\n", "not after"),
            ("0\n1\n-1 0\n", "negative"),
        ];
        for (text, says) in cases {
            let why = decode(text).expect_err(text);
            assert!(why.contains(says), "{text:?}: {why}");
        }
    }
}
