//! The cleaner checkpoint, `cleaner-checkpoint` in the partition directory: how far the log
//! is clean (offsets below it were deduplicated against a key map that covered them), and
//! when each stretch of it was first cleaned, so that
//!
//! - the dirty ratio (`min.cleanable.dirty.ratio`) is computable after a restart, and
//! - a tombstone is kept for `delete.retention.ms` after the pass that first cleaned it
//!   (Kafka's rule: a consumer reading from the clean point has that long to see it).
//!
//! Layout (little-endian): magic `WEIRCLN1`, version u32, mark count u32, per mark its
//! clean end offset u64 and the wall-clock ms of its pass i64, then the earliest time a
//! kept tombstone becomes removable i64 (`i64::MAX`: none), then a CRC-32C of all that.
//! Replaced atomically like the other checkpoints (temp file, fsync, rename, dir fsync).

use std::fs;
use std::io;
use std::path::Path;

use crate::error::IoContext;
use crate::file_io;
use crate::file_name::{append_suffix, sync_dir, TEMP_SUFFIX};
use crate::LogError;

pub(crate) const CLEANER_CHECKPOINT_FILE: &str = "cleaner-checkpoint";
const MAGIC: [u8; 8] = *b"WEIRCLN1";
const VERSION: u32 = 1;
/// Marks kept at most; older ones merge (which only keeps tombstones longer).
const MARKS_MAX: usize = 1024;

/// Offsets below `end_offset` (and above the previous mark's) were first cleaned at
/// `cleaned_at_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CleanMark {
    pub end_offset: u64,
    pub cleaned_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct CleanerCheckpoint {
    /// Increasing in offset and time.
    pub marks: Vec<CleanMark>,
    /// When the oldest kept tombstone may go; `i64::MAX` when none is kept.
    pub tombstones_due_ms: i64,
}

impl CleanerCheckpoint {
    fn empty() -> CleanerCheckpoint {
        CleanerCheckpoint {
            marks: Vec::new(),
            tombstones_due_ms: i64::MAX,
        }
    }

    /// Offsets below it are clean.
    pub fn clean_offset(&self) -> u64 {
        self.marks.last().map_or(0, |m| m.end_offset)
    }

    /// When `offset` was first cleaned, if it was.
    pub fn cleaned_at_ms(&self, offset: u64) -> Option<i64> {
        self.marks
            .iter()
            .find(|m| m.end_offset > offset)
            .map(|m| m.cleaned_at_ms)
    }

    /// Tombstones below it were cleaned at least `delete_retention_ms` before `now_ms`.
    pub fn tombstones_removable_below(&self, now_ms: i64, delete_retention_ms: i64) -> u64 {
        self.marks
            .iter()
            .take_while(|m| m.cleaned_at_ms.saturating_add(delete_retention_ms) <= now_ms)
            .last()
            .map_or(0, |m| m.end_offset)
    }

    /// Forgets marks above `log_end_offset` (the log was truncated below them).
    pub fn cut_to(&mut self, log_end_offset: u64) {
        let Some(cut) = self
            .marks
            .iter()
            .position(|m| m.end_offset > log_end_offset)
        else {
            return;
        };
        // The offsets left of the cut stretch were cleaned when the whole stretch was.
        let cleaned_at_ms = self.marks.get(cut).map_or(i64::MAX, |m| m.cleaned_at_ms);
        self.marks.truncate(cut);
        if self.clean_offset() < log_end_offset {
            self.marks.push(CleanMark {
                end_offset: log_end_offset,
                cleaned_at_ms,
            });
        }
    }

    /// Records that a pass at `now_ms` cleaned everything below `end_offset`; marks whose
    /// tombstones are all removable already merge into one.
    pub fn advance(&mut self, end_offset: u64, now_ms: i64, delete_retention_ms: i64) {
        if end_offset > self.clean_offset() {
            self.marks.push(CleanMark {
                end_offset,
                cleaned_at_ms: now_ms,
            });
        }
        let expired = self
            .marks
            .iter()
            .take_while(|m| m.cleaned_at_ms.saturating_add(delete_retention_ms) <= now_ms)
            .count();
        if expired > 1 {
            self.marks.drain(..expired - 1);
        }
        while self.marks.len() > MARKS_MAX {
            // Merging the two oldest dates the first stretch later: its tombstones stay longer.
            self.marks.remove(0);
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(28 + self.marks.len() * 16);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&(self.marks.len() as u32).to_le_bytes());
        for mark in &self.marks {
            out.extend_from_slice(&mark.end_offset.to_le_bytes());
            out.extend_from_slice(&mark.cleaned_at_ms.to_le_bytes());
        }
        out.extend_from_slice(&self.tombstones_due_ms.to_le_bytes());
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<CleanerCheckpoint> {
        let (body, crc) = bytes.split_last_chunk::<4>()?;
        if crc32c::crc32c(body) != u32::from_le_bytes(*crc) {
            return None;
        }
        let (magic, rest) = body.split_first_chunk::<8>()?;
        let (version, rest) = rest.split_first_chunk::<4>()?;
        let (count, mut rest) = rest.split_first_chunk::<4>()?;
        if *magic != MAGIC || u32::from_le_bytes(*version) != VERSION {
            return None;
        }
        let count = usize::try_from(u32::from_le_bytes(*count)).ok()?;
        if rest.len() != count.checked_mul(16)?.checked_add(8)? {
            return None;
        }
        let mut marks = Vec::with_capacity(count);
        for _ in 0..count {
            let (end, after) = rest.split_first_chunk::<8>()?;
            let (at, after) = after.split_first_chunk::<8>()?;
            marks.push(CleanMark {
                end_offset: u64::from_le_bytes(*end),
                cleaned_at_ms: i64::from_le_bytes(*at),
            });
            rest = after;
        }
        let due = rest.first_chunk::<8>()?;
        Some(CleanerCheckpoint {
            marks,
            tombstones_due_ms: i64::from_le_bytes(*due),
        })
    }

    /// Reads the checkpoint; a missing or damaged one means "nothing is clean" (which
    /// costs one full pass, never a wrong removal).
    pub fn read(dir: &Path) -> Result<CleanerCheckpoint, LogError> {
        let path = dir.join(CLEANER_CHECKPOINT_FILE);
        match fs::read(&path) {
            Ok(bytes) => Ok(CleanerCheckpoint::decode(&bytes).unwrap_or_else(Self::empty)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Self::empty()),
            Err(e) => Err(e).io_ctx("read cleaner checkpoint", &path),
        }
    }

    /// Replaces the checkpoint atomically and durably.
    pub fn write(&self, dir: &Path) -> Result<(), LogError> {
        let path = dir.join(CLEANER_CHECKPOINT_FILE);
        let temp = append_suffix(&path, TEMP_SUFFIX);
        let mut file = file_io::create(&temp).io_ctx("create cleaner checkpoint", &temp)?;
        file_io::write_all(&mut file, &self.encode(), &temp)
            .io_ctx("write cleaner checkpoint", &temp)?;
        file_io::sync_all(&file, &temp).io_ctx("fsync cleaner checkpoint", &temp)?;
        drop(file);
        file_io::rename(&temp, &path).io_ctx("rename cleaner checkpoint into place", &path)?;
        sync_dir(dir).io_ctx("fsync directory", dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_rejects_damage_and_dates_tombstones() {
        let mut c = CleanerCheckpoint::empty();
        c.advance(10, 1_000, 500);
        c.advance(25, 2_000, 500);
        c.tombstones_due_ms = 2_500;
        let bytes = c.encode();
        assert_eq!(CleanerCheckpoint::decode(&bytes), Some(c.clone()));
        for i in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x10;
            assert_eq!(CleanerCheckpoint::decode(&damaged), None, "byte {i}");
        }
        assert_eq!(c.clean_offset(), 25);
        assert_eq!(c.cleaned_at_ms(9), Some(1_000));
        assert_eq!(c.cleaned_at_ms(10), Some(2_000));
        assert_eq!(c.cleaned_at_ms(25), None);
        assert_eq!(c.tombstones_removable_below(1_499, 500), 0);
        assert_eq!(c.tombstones_removable_below(1_500, 500), 10);
        assert_eq!(c.tombstones_removable_below(2_500, 500), 25);
        c.advance(30, 3_000, 500);
        assert_eq!(c.marks.len(), 2, "the expired marks merged: {c:?}");
        assert_eq!(c.tombstones_removable_below(3_000, 500), 25);
        c.cut_to(27);
        assert_eq!(c.clean_offset(), 27);
    }
}
