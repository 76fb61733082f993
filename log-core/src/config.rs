//! Per-partition log settings, their defaults, and parsing from Kafka topic-config names.

use std::fmt;
use std::str::FromStr;

use crate::batch::{Compression, TimestampType};
use crate::LogError;

/// What happens to old data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CleanupPolicy {
    /// Whole old segments are deleted by time and size.
    Delete,
    /// The newest record per key is kept; retention by time and size does not apply.
    Compact,
    /// Both: compaction, then deletion of whole old segments.
    CompactDelete,
}

impl CleanupPolicy {
    pub fn deletes(self) -> bool {
        matches!(self, CleanupPolicy::Delete | CleanupPolicy::CompactDelete)
    }
    pub fn compacts(self) -> bool {
        matches!(self, CleanupPolicy::Compact | CleanupPolicy::CompactDelete)
    }
}

impl FromStr for CleanupPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut delete = false;
        let mut compact = false;
        for part in s.split(',').map(str::trim) {
            match part {
                "delete" => delete = true,
                "compact" => compact = true,
                other => {
                    return Err(format!(
                    "unknown cleanup policy {other:?}; expected delete, compact or compact,delete"
                ))
                }
            }
        }
        match (compact, delete) {
            (true, true) => Ok(CleanupPolicy::CompactDelete),
            (true, false) => Ok(CleanupPolicy::Compact),
            (false, true) => Ok(CleanupPolicy::Delete),
            (false, false) => Err("empty cleanup policy".to_string()),
        }
    }
}

impl fmt::Display for CleanupPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CleanupPolicy::Delete => "delete",
            CleanupPolicy::Compact => "compact",
            CleanupPolicy::CompactDelete => "compact,delete",
        })
    }
}

/// When appended bytes are forced to stable storage. Replication is the main durability,
/// as in Kafka; the policy decides what a power loss (not a process crash) can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Every append is fsynced before it returns: an acknowledged append survives power loss.
    Always,
    /// The active segment is fsynced when at least this many ms passed since the last fsync,
    /// by the append that notices it: a power loss loses at most about that window.
    IntervalMs(u64),
    /// No fsync on the append path; segments are fsynced when they roll and on close, so a
    /// power loss loses at most the active segment's unsynced tail.
    Never,
}

impl FromStr for FsyncPolicy {
    type Err = String;
    /// `always`, `never`, or a number of milliseconds (`0` means always).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "always" => Ok(FsyncPolicy::Always),
            "never" => Ok(FsyncPolicy::Never),
            other => {
                let ms = other
                    .strip_suffix("ms")
                    .unwrap_or(other)
                    .parse::<u64>()
                    .map_err(|_| {
                        "expected always, never or a number of milliseconds".to_string()
                    })?;
                Ok(if ms == 0 {
                    FsyncPolicy::Always
                } else {
                    FsyncPolicy::IntervalMs(ms)
                })
            }
        }
    }
}

impl fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsyncPolicy::Always => f.write_str("always"),
            FsyncPolicy::Never => f.write_str("never"),
            FsyncPolicy::IntervalMs(ms) => write!(f, "{ms}ms"),
        }
    }
}

/// Settings of one partition log. Field names follow the Kafka topic configs in [`LogConfig::apply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `segment.bytes`: the active segment rolls before it would grow past this.
    pub segment_bytes: u64,
    /// `segment.ms`: the active segment rolls once it is this old (and not empty).
    pub segment_ms: u64,
    /// `index.interval.bytes`: about this many log bytes between two offset index entries.
    pub index_interval_bytes: u32,
    /// `segment.index.bytes`: size of each preallocated index file; a full index rolls the segment.
    pub index_bytes_max: u32,
    /// `max.message.bytes`: the largest batch an append accepts.
    pub max_message_bytes: u32,
    /// `retention.ms`: segments whose newest timestamp is older are deleted; None keeps forever.
    pub retention_ms: Option<u64>,
    /// `retention.bytes`: oldest segments are deleted while the log is larger; None means no limit.
    pub retention_bytes: Option<u64>,
    /// `cleanup.policy`.
    pub cleanup_policy: CleanupPolicy,
    /// `delete.retention.ms`: how long compaction keeps tombstones (records with a null
    /// value) after the pass that first cleaned them.
    pub delete_retention_ms: u64,
    /// `min.cleanable.dirty.ratio`, in parts per million: a compaction pass runs only when
    /// the not yet cleaned share of the cleanable bytes reaches it (Kafka's default 0.5).
    pub min_cleanable_dirty_ratio_ppm: u32,
    /// `min.compaction.lag.ms`: a record stays uncompacted at least this long (Kafka's
    /// default 0).
    pub min_compaction_lag_ms: u64,
    /// Bytes of the key map of one compaction pass (24 bytes a key); a pass whose dirty
    /// part holds more keys cleans in several passes. Broker-wide in Kafka
    /// (`log.cleaner.dedupe.buffer.size`); here per pass, set by the broker for all logs.
    pub compaction_key_map_bytes: u64,
    /// `flush.policy` / `fsync` / `flush.ms`.
    pub fsync: FsyncPolicy,
    /// `message.timestamp.type`: `CreateTime` keeps the producer's timestamps;
    /// `LogAppendTime` makes `append` stamp each batch with the wall clock.
    pub timestamp_type: TimestampType,
    /// `message.timestamp.before.max.ms`: a CreateTime record may be at most this much older
    /// than the broker's clock when appended. Kafka's default, `i64::MAX`, means no bound.
    pub timestamp_before_max_ms: u64,
    /// `message.timestamp.after.max.ms`: a CreateTime record may be at most this much newer
    /// than the broker's clock, so one timestamp far in the future cannot hold time
    /// retention back for its segment. Kafka 4.0's default: one hour.
    pub timestamp_after_max_ms: u64,
    /// `compression.type`: the codec batches are stored in, a produced batch in another
    /// being recompressed on append; `None` (Kafka's `producer`, the default) stores each
    /// batch as the producer compressed it.
    pub compression: Option<Compression>,
}

/// Segment positions are stored as u32 in the offset index.
pub const SEGMENT_BYTES_LIMIT: u64 = u32::MAX as u64;
/// Smallest `segment.bytes`. Kafka 3.x accepts 14 bytes and Kafka 4.0 (KIP-1030) 1 MiB;
/// below a few batches a segment rolls on nearly every append, a file set per request.
/// 1 KiB refuses the absurd values (1 byte, a typo) and keeps small segments possible
/// where they are wanted: tests of roll, retention and recovery.
pub const SEGMENT_BYTES_MIN: u64 = 1024;
/// Largest timestamp bound, Kafka's `Long.MAX_VALUE`: no bound.
pub const TIMESTAMP_BOUND_MS_MAX: u64 = i64::MAX as u64;
/// Smallest index file: room for two time-index entries (12 bytes each).
pub const INDEX_BYTES_MIN: u32 = 24;

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3_600_000,
            index_interval_bytes: 4096,
            index_bytes_max: 10 * 1024 * 1024,
            max_message_bytes: 1024 * 1024 + 12,
            retention_ms: Some(7 * 24 * 3_600_000),
            retention_bytes: None,
            cleanup_policy: CleanupPolicy::Delete,
            delete_retention_ms: 24 * 3_600_000,
            min_cleanable_dirty_ratio_ppm: 500_000,
            min_compaction_lag_ms: 0,
            compaction_key_map_bytes: crate::COMPACTION_KEY_MAP_BYTES_DEFAULT,
            fsync: FsyncPolicy::Never,
            timestamp_type: TimestampType::CreateTime,
            timestamp_before_max_ms: TIMESTAMP_BOUND_MS_MAX,
            timestamp_after_max_ms: 3_600_000,
            compression: None,
        }
    }
}

impl LogConfig {
    /// Every Kafka-named topic setting [`LogConfig::apply`] takes, with the value in force
    /// written as Kafka writes it (`-1` for no limit, `9223372036854775807` for never), in an
    /// order that [`LogConfig::apply`] turns back into this config (`flush.messages` before
    /// `flush.ms`, which both set the fsync policy). Weir's own aliases (`fsync`,
    /// `flush.policy`) are not listed.
    pub fn kafka_values(&self) -> Vec<(&'static str, String)> {
        let optional = |v: Option<u64>| v.map_or_else(|| "-1".to_string(), |v| v.to_string());
        let never = i64::MAX.to_string();
        let (flush_messages, flush_ms) = match self.fsync {
            FsyncPolicy::Always => ("1".to_string(), "0".to_string()),
            FsyncPolicy::Never => (never.clone(), never.clone()),
            FsyncPolicy::IntervalMs(ms) => (never.clone(), ms.to_string()),
        };
        let timestamp_type = match self.timestamp_type {
            TimestampType::CreateTime => "CreateTime",
            TimestampType::LogAppendTime => "LogAppendTime",
        };
        let compression = match self.compression {
            None => "producer",
            Some(Compression::None) => "uncompressed",
            Some(codec) => codec.name(),
        };
        vec![
            ("cleanup.policy", self.cleanup_policy.to_string()),
            ("compression.type", compression.to_string()),
            ("delete.retention.ms", self.delete_retention_ms.to_string()),
            ("flush.messages", flush_messages),
            ("flush.ms", flush_ms),
            (
                "index.interval.bytes",
                self.index_interval_bytes.to_string(),
            ),
            ("max.message.bytes", self.max_message_bytes.to_string()),
            (
                "message.timestamp.after.max.ms",
                self.timestamp_after_max_ms.to_string(),
            ),
            (
                "message.timestamp.before.max.ms",
                self.timestamp_before_max_ms.to_string(),
            ),
            ("message.timestamp.type", timestamp_type.to_string()),
            (
                "min.cleanable.dirty.ratio",
                (f64::from(self.min_cleanable_dirty_ratio_ppm) / 1_000_000.0).to_string(),
            ),
            (
                "min.compaction.lag.ms",
                self.min_compaction_lag_ms.to_string(),
            ),
            ("retention.bytes", optional(self.retention_bytes)),
            ("retention.ms", optional(self.retention_ms)),
            ("segment.bytes", self.segment_bytes.to_string()),
            ("segment.index.bytes", self.index_bytes_max.to_string()),
            ("segment.ms", self.segment_ms.to_string()),
        ]
    }

    /// Applies one Kafka-named setting. Unknown keys and bad values leave the config unchanged
    /// and return [`LogError::Config`] naming the key and value.
    pub fn apply(&mut self, key: &str, value: &str) -> Result<(), LogError> {
        let bad = |reason: String| LogError::Config {
            key: key.to_string(),
            value: value.to_string(),
            reason,
        };
        match key {
            "segment.bytes" => {
                let v = parse_u64(value).map_err(bad)?;
                if !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_LIMIT).contains(&v) {
                    return Err(bad(format!(
                        "must be between {SEGMENT_BYTES_MIN} and {SEGMENT_BYTES_LIMIT}"
                    )));
                }
                self.segment_bytes = v;
            }
            "segment.ms" => self.segment_ms = parse_positive(value).map_err(bad)?,
            "index.interval.bytes" => {
                self.index_interval_bytes = parse_u32(value).map_err(bad)?;
            }
            "segment.index.bytes" => {
                let v = parse_u32(value).map_err(bad)?;
                if v < INDEX_BYTES_MIN {
                    return Err(bad(format!("must be at least {INDEX_BYTES_MIN}")));
                }
                self.index_bytes_max = v;
            }
            "max.message.bytes" => {
                let v = parse_u32(value).map_err(bad)?;
                if v == 0 || v > i32::MAX as u32 {
                    return Err(bad(format!("must be between 1 and {}", i32::MAX)));
                }
                self.max_message_bytes = v;
            }
            "retention.ms" => self.retention_ms = parse_optional(value).map_err(bad)?,
            "retention.bytes" => self.retention_bytes = parse_optional(value).map_err(bad)?,
            "cleanup.policy" => self.cleanup_policy = value.parse().map_err(bad)?,
            "delete.retention.ms" => self.delete_retention_ms = parse_u64(value).map_err(bad)?,
            "min.cleanable.dirty.ratio" => {
                self.min_cleanable_dirty_ratio_ppm = parse_ratio_ppm(value).map_err(bad)?;
            }
            "min.compaction.lag.ms" => self.min_compaction_lag_ms = parse_u64(value).map_err(bad)?,
            "flush.policy" | "fsync" => self.fsync = value.parse().map_err(bad)?,
            "flush.ms" => {
                let v = parse_u64(value).map_err(bad)?;
                self.fsync = match v {
                    0 => FsyncPolicy::Always,
                    v if v >= i64::MAX as u64 => FsyncPolicy::Never,
                    v => FsyncPolicy::IntervalMs(v),
                };
            }
            "flush.messages" => {
                let v = parse_u64(value).map_err(bad)?;
                self.fsync = match v {
                    1 => FsyncPolicy::Always,
                    v if v >= i64::MAX as u64 => FsyncPolicy::Never,
                    _ => {
                        return Err(bad(
                            "only 1 (fsync every append) or 9223372036854775807 (never) are supported; use flush.ms for a time interval".to_string(),
                        ))
                    }
                };
            }
            "message.timestamp.type" => {
                self.timestamp_type = match value.trim() {
                    "CreateTime" => TimestampType::CreateTime,
                    "LogAppendTime" => TimestampType::LogAppendTime,
                    _ => return Err(bad("expected CreateTime or LogAppendTime".to_string())),
                };
            }
            "message.timestamp.before.max.ms" => {
                self.timestamp_before_max_ms = parse_timestamp_bound(value).map_err(bad)?;
            }
            "message.timestamp.after.max.ms" => {
                self.timestamp_after_max_ms = parse_timestamp_bound(value).map_err(bad)?;
            }
            "compression.type" => {
                self.compression = match value.trim() {
                    "producer" => None,
                    "uncompressed" => Some(Compression::None),
                    name => Some(
                        name.parse::<Compression>()
                            .ok()
                            .filter(|codec| *codec != Compression::None)
                            .ok_or_else(|| {
                                bad("expected producer, uncompressed, gzip, snappy, lz4 or zstd"
                                    .to_string())
                            })?,
                    ),
                };
            }
            _ => {
                return Err(bad(
                    "unknown log config key; expected one of segment.bytes, segment.ms, index.interval.bytes, segment.index.bytes, max.message.bytes, retention.ms, retention.bytes, cleanup.policy, delete.retention.ms, min.cleanable.dirty.ratio, min.compaction.lag.ms, flush.policy, fsync, flush.ms, flush.messages, message.timestamp.type, message.timestamp.before.max.ms, message.timestamp.after.max.ms, compression.type".to_string(),
                ))
            }
        }
        Ok(())
    }
}

fn parse_u64(value: &str) -> Result<u64, String> {
    value
        .trim()
        .parse::<u64>()
        .map_err(|_| "expected a non-negative integer".to_string())
}

fn parse_positive(value: &str) -> Result<u64, String> {
    match parse_u64(value)? {
        0 => Err("must be at least 1".to_string()),
        v => Ok(v),
    }
}

fn parse_u32(value: &str) -> Result<u32, String> {
    value
        .trim()
        .parse::<u32>()
        .map_err(|_| format!("expected an integer between 0 and {}", u32::MAX))
}

/// A ratio between 0 and 1 (Kafka writes `0.5`), as parts per million.
fn parse_ratio_ppm(value: &str) -> Result<u32, String> {
    let ratio = value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|r| (0.0..=1.0).contains(r))
        .ok_or_else(|| "expected a number between 0 and 1".to_string())?;
    Ok((ratio * 1_000_000.0).round() as u32)
}

/// Kafka takes 0 to `Long.MAX_VALUE` (no bound) for the timestamp bounds.
fn parse_timestamp_bound(value: &str) -> Result<u64, String> {
    match value.trim().parse::<u64>() {
        Ok(ms) if ms <= TIMESTAMP_BOUND_MS_MAX => Ok(ms),
        _ => Err(format!(
            "expected milliseconds between 0 and {TIMESTAMP_BOUND_MS_MAX} (no bound)"
        )),
    }
}

/// Kafka's convention: -1 means no limit.
fn parse_optional(value: &str) -> Result<Option<u64>, String> {
    match value.trim() {
        "-1" => Ok(None),
        other => other
            .parse::<u64>()
            .map(Some)
            .map_err(|_| "expected -1 (no limit) or a non-negative integer".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `kafka_values` writes, `apply` reads back as the same config, for the default
    /// and for a config with every setting moved off its default.
    #[test]
    fn kafka_values_are_read_back_as_the_same_config() {
        let mut changed = LogConfig::default();
        for (key, value) in [
            ("cleanup.policy", "compact,delete"),
            ("compression.type", "zstd"),
            ("delete.retention.ms", "1000"),
            ("flush.ms", "250"),
            ("index.interval.bytes", "512"),
            ("max.message.bytes", "2048"),
            ("message.timestamp.after.max.ms", "5"),
            ("message.timestamp.before.max.ms", "6"),
            ("message.timestamp.type", "LogAppendTime"),
            ("min.cleanable.dirty.ratio", "0.25"),
            ("min.compaction.lag.ms", "7"),
            ("retention.bytes", "4096"),
            ("retention.ms", "-1"),
            ("segment.bytes", "65536"),
            ("segment.index.bytes", "4096"),
            ("segment.ms", "60000"),
        ] {
            changed.apply(key, value).unwrap();
        }
        let mut always = LogConfig::default();
        always.apply("flush.messages", "1").unwrap();
        always.apply("compression.type", "uncompressed").unwrap();
        for config in [LogConfig::default(), changed, always] {
            let mut read_back = LogConfig::default();
            let values = config.kafka_values();
            for (key, value) in &values {
                read_back.apply(key, value).unwrap();
            }
            assert_eq!(read_back, config, "{values:?}");
        }
    }
}
