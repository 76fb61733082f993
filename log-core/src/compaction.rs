//! Compaction (`cleanup.policy=compact`): keep only the newest record of each key, and
//! tombstones (null value) for `delete.retention.ms` after they were first cleaned.
//! Offsets are preserved; reads skip the gaps.
//!
//! A pass never holds the writer lock (appends go on meanwhile) and never looks at or past
//! the cleanable bound: min(base of the active segment, high watermark, the first segment
//! younger than `min.compaction.lag.ms`); only whole sealed segments below it are cleaned.
//! Passes run one at a time (the cleaner lock). The maintenance lock (retention,
//! truncation) is held only while the pass plans, while it swaps in one segment, and while
//! it writes the checkpoint; reading, building the key map and writing a cleaned segment
//! hold no lock of the log, so retention and truncation run in between. Under the lock
//! before each swap the pass checks what may have changed: a segment retention deleted is
//! left alone; after a truncation (which can remove the newest value of a key the map
//! holds) the pass stops, swapping nothing more and leaving the checkpoint as it was.
//!
//! As Kafka's cleaner:
//! 1. the cleaner checkpoint ([`CleanerCheckpoint`]) says up to where the log is clean; the
//!    pass runs only when the dirty share of the cleanable bytes reaches
//!    `min.cleanable.dirty.ratio` (or a kept tombstone became removable);
//! 2. the key map ([`KeyMap`], `compaction_key_map_bytes`) is built from the dirty part;
//!    when it fills, the pass cleans only up to where it reaches and the next pass goes on;
//! 3. every segment from the log start up to that point is rewritten
//!    ([`compaction_rewrite`]) and swapped in ([`compaction_swap`]);
//! 4. the checkpoint moves to where the map reached.
//!
//! Transactions: records of a transaction take part only once its COMMIT marker is in the
//! scanned dirty range (`compaction_keys`); markers, and batches of aborted or undecided
//! transactions, are kept whole.
//!
//! A segment holding a damaged batch (CRC or record checks fail) is left as it is and
//! reported in [`CompactionReport::skipped`]; the pass goes on with the others, and
//! retention (which never reads batches) is not affected.
//!
//! [`compaction_rewrite`]: crate::compaction_rewrite
//! [`compaction_swap`]: crate::compaction_swap

use std::collections::{BTreeSet, HashMap};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::batch::RecordDecoder;
use crate::compaction_checkpoint::CleanerCheckpoint;
use crate::compaction_keys::KeyScan;
use crate::compaction_map::{KeyMap, KEY_MAP_SLOT_BYTES};
use crate::compaction_rewrite::{KeepPolicy, RewriteCounts, Rewriter, Rewritten};
use crate::config::LogConfig;
use crate::error::IoContext;
use crate::segment::Segment;
use crate::{LogError, PartitionLog};

/// What one compaction pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactionReport {
    /// False when the pass found too little to clean (dirty ratio, nothing sealed below
    /// the high watermark) and read nothing.
    pub ran: bool,
    pub segments_rewritten: usize,
    pub records_kept: u64,
    pub records_removed: u64,
    pub tombstones_removed: u64,
    /// Batches in the segments read, and in what replaced them.
    pub batches_before: u64,
    pub batches_after: u64,
    /// Bytes of the rewritten segments before and after.
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// Dirty share of the cleanable bytes when the pass started, in parts per million.
    pub dirty_ratio_ppm: u64,
    /// The log is clean below this offset (the cleaner checkpoint).
    pub clean_offset: u64,
    /// Segments left as they are because a batch in them is damaged.
    pub skipped: Vec<SkippedSegment>,
    /// A truncation ran during the pass, which then stopped (what it swapped in before
    /// stays; the clean point did not move).
    pub stopped_by_truncation: bool,
}

/// A segment compaction left alone, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedSegment {
    pub segment: PathBuf,
    /// Byte position and base offset (-1 if unreadable) of the damaged batch.
    pub position: u64,
    pub offset: i64,
    pub reason: String,
}

/// A sealed segment below the cleanable bound and where it ends.
struct Cleanable {
    segment: Arc<Segment>,
    next_base: u64,
}

impl PartitionLog {
    /// Runs one compaction pass at `now_ms` (wall-clock ms: tombstone ages and
    /// `min.compaction.lag.ms` are measured against it). Does nothing unless the cleanup
    /// policy includes compact. See the module docs.
    pub fn compact(&self, now_ms: i64) -> Result<CompactionReport, LogError> {
        let config = self.config();
        let mut report = CompactionReport::default();
        self.check_writable()?;
        if !config.cleanup_policy.compacts() {
            return Ok(report);
        }
        let _pass = self.lock_cleaner()?;
        let (truncations, mut checkpoint, first_dirty, cleanable) = {
            let _maintenance = self.lock_maintenance()?;
            let segments = self.segment_snapshot();
            let mut checkpoint = CleanerCheckpoint::read(&self.dir)?;
            checkpoint.cut_to(self.log_end_offset());
            let first_dirty = checkpoint.clean_offset().max(self.log_start_offset());
            let cleanable = self.cleanable(&segments, first_dirty, &config, now_ms);
            let truncations = self.truncations.load(Ordering::Acquire);
            (truncations, checkpoint, first_dirty, cleanable)
        };
        report.clean_offset = checkpoint.clean_offset();
        let total_bytes: u64 = cleanable.iter().map(|c| c.segment.size_bytes()).sum();
        let dirty_bytes: u64 = cleanable
            .iter()
            .filter(|c| c.next_base > first_dirty)
            .map(|c| c.segment.size_bytes())
            .sum();
        report.dirty_ratio_ppm = (u128::from(dirty_bytes) * 1_000_000)
            .checked_div(u128::from(total_bytes))
            .map_or(0, |r| r as u64);
        let dirty_enough = dirty_bytes > 0
            && report.dirty_ratio_ppm >= u64::from(config.min_cleanable_dirty_ratio_ppm);
        let tombstones_due = checkpoint.tombstones_due_ms <= now_ms;
        if cleanable.is_empty() || !(dirty_enough || tombstones_due) {
            return Ok(report);
        }
        report.ran = true;
        let mut skipped = BTreeSet::new();
        let planned = self
            .survey(&cleanable, first_dirty, &mut skipped, &mut report)
            .and_then(|(producer_last_batch, dirty_records)| {
                let map = KeyMap::new(config.compaction_key_map_bytes, dirty_records);
                let mut keys = KeyScan::new(map);
                let map_end = self.build_key_map(
                    &cleanable,
                    first_dirty,
                    &mut keys,
                    &mut skipped,
                    &mut report,
                    &config,
                )?;
                Ok((producer_last_batch, keys, map_end))
            });
        if self.truncations.load(Ordering::Acquire) != truncations {
            // What was read may have been cut under the reads: nothing of it is used.
            return Ok(stopped(report));
        }
        let (producer_last_batch, keys, map_end) = planned?;
        let delete_retention_ms = i64::try_from(config.delete_retention_ms).unwrap_or(i64::MAX);
        let policy = KeepPolicy {
            keys: &keys,
            map_end,
            // A segment left as it is (a damaged batch) may hold an older value of a key
            // whose tombstone lies above it: removing that tombstone would bring the value
            // back. Tombstones above the first such segment stay.
            tombstones_removable_below: checkpoint
                .tombstones_removable_below(now_ms, delete_retention_ms)
                .min(skipped.first().copied().unwrap_or(u64::MAX)),
            checkpoint: &checkpoint,
            now_ms,
            delete_retention_ms,
            producer_last_batch: &producer_last_batch,
        };
        let pass = Pass {
            truncations,
            policy: &policy,
            skipped: &skipped,
            config: &config,
        };
        let due = match self.clean_segments(&cleanable, &pass, &mut report)? {
            Some(due) => due,
            None => return Ok(stopped(report)),
        };
        let _maintenance = self.lock_maintenance()?;
        if self.truncations.load(Ordering::Acquire) != truncations {
            // The truncation cut the checkpoint to its new end: it stays that way.
            return Ok(stopped(report));
        }
        checkpoint.advance(map_end, now_ms, delete_retention_ms);
        checkpoint.tombstones_due_ms = due;
        checkpoint.write(&self.dir)?;
        report.clean_offset = checkpoint.clean_offset();
        Ok(report)
    }

    /// The sealed segments wholly below the cleanable bound.
    fn cleanable(
        &self,
        segments: &[Arc<Segment>],
        first_dirty: u64,
        config: &LogConfig,
        now_ms: i64,
    ) -> Vec<Cleanable> {
        let Some((active, _)) = segments.split_last() else {
            return Vec::new();
        };
        // Offsets at or above the high watermark may still be truncated away (a follower
        // catching up to a new leader): they are never read for the map nor rewritten.
        // Nor above the recovery point the file records (recovery scans from there after a
        // crash): recovery reads a scanned segment that ends short of the next one as a lost
        // tail, so a compacted one must never be scanned.
        let mut bound = active
            .base_offset
            .min(self.high_watermark())
            .min(self.recovery_point_on_disk.load(Ordering::Acquire));
        if config.min_compaction_lag_ms > 0 {
            // Kafka's rule: the first dirty segment with a record younger than the lag ends
            // the cleanable range.
            let lag_ms = i64::try_from(config.min_compaction_lag_ms).unwrap_or(i64::MAX);
            let young = segments.windows(2).find(|pair| {
                pair[1].base_offset > first_dirty
                    && pair[0].max_timestamp() > now_ms.saturating_sub(lag_ms)
            });
            if let Some(pair) = young {
                bound = bound.min(pair[0].base_offset);
            }
        }
        segments
            .windows(2)
            .map(|pair| Cleanable {
                segment: Arc::clone(&pair[0]),
                next_base: pair[1].base_offset,
            })
            .take_while(|c| c.next_base <= bound)
            .collect()
    }

    /// Walks every batch header of the cleanable segments: the last batch of each producer
    /// (kept even when emptied) and how many records the dirty part holds (to size the
    /// map). A segment whose headers do not walk is skipped from here on.
    fn survey(
        &self,
        cleanable: &[Cleanable],
        first_dirty: u64,
        skipped: &mut BTreeSet<u64>,
        report: &mut CompactionReport,
    ) -> Result<(HashMap<i64, i64>, u64), LogError> {
        let mut last_batch = HashMap::new();
        let mut dirty_records = 0u64;
        for c in cleanable {
            let size = c.segment.size_bytes();
            let mut position = 0;
            while position < size {
                let header = match c.segment.header_at(position, size) {
                    Ok(header) => header,
                    Err(LogError::Corrupt { reason, .. }) => {
                        skip(c, skipped, report, position, -1, reason);
                        break;
                    }
                    Err(other) => return Err(other),
                };
                if header.producer_id >= 0 {
                    last_batch.insert(header.producer_id, header.base_offset);
                }
                if u64::try_from(header.last_offset()).is_ok_and(|l| l >= first_dirty) {
                    dirty_records += u64::try_from(header.record_count).unwrap_or(0);
                }
                position += header.size_bytes() as u64;
            }
        }
        Ok((last_batch, dirty_records))
    }

    /// Fills the key map from the dirty part, in log order, until it is full; returns the
    /// offset the map reaches (exclusive): a batch boundary.
    fn build_key_map(
        &self,
        cleanable: &[Cleanable],
        first_dirty: u64,
        keys: &mut KeyScan,
        skipped: &mut BTreeSet<u64>,
        report: &mut CompactionReport,
        config: &LogConfig,
    ) -> Result<u64, LogError> {
        let mut decoder = RecordDecoder::new();
        let mut buf = Vec::new();
        for c in cleanable.iter().filter(|c| c.next_base > first_dirty) {
            if skipped.contains(&c.segment.base_offset) {
                continue;
            }
            let size = c.segment.size_bytes();
            let mut position = 0;
            while position < size {
                let header = c.segment.header_at(position, size)?;
                let last = u64::try_from(header.last_offset()).unwrap_or(0);
                position += header.size_bytes() as u64;
                if last < first_dirty {
                    continue;
                }
                let base = u64::try_from(header.base_offset).unwrap_or(0);
                if !keys.fits(&header) {
                    if base <= first_dirty {
                        return Err(LogError::CompactionKeyMapTooSmall {
                            dir: self.dir.clone(),
                            offset: base,
                            record_count: header.record_count,
                            keys_max: keys.latest.len() + keys.latest.room(),
                            key_map_bytes: config.compaction_key_map_bytes,
                        });
                    }
                    return Ok(base);
                }
                buf.resize(header.size_bytes(), 0);
                let at = position - header.size_bytes() as u64;
                c.segment
                    .log
                    .read_exact_at(&mut buf, at)
                    .io_ctx("read segment", &c.segment.paths.log)?;
                if let Err(e) = keys.visit(&header, &buf, &mut decoder) {
                    // The batch's keys are unknown: its older versions elsewhere stay.
                    skip(c, skipped, report, at, header.base_offset, e.to_string());
                    break;
                }
            }
        }
        Ok(cleanable.last().map_or(first_dirty, |c| c.next_base))
    }

    /// Rewrites and swaps in every segment the map reaches into; returns when the oldest
    /// kept tombstone may go, or None when a truncation stopped the pass.
    fn clean_segments(
        &self,
        cleanable: &[Cleanable],
        pass: &Pass<'_>,
        report: &mut CompactionReport,
    ) -> Result<Option<i64>, LogError> {
        let mut rewriter = Rewriter::default();
        let mut counts = RewriteCounts::default();
        let mut paused = false;
        for c in cleanable {
            let segment = &c.segment;
            if segment.base_offset >= pass.policy.map_end
                || pass.skipped.contains(&segment.base_offset)
            {
                continue;
            }
            let mut segment_counts = counts;
            let rewritten = rewriter.rewrite(segment, pass.policy, &mut segment_counts);
            let rewritten = match rewritten {
                Err(_) if self.truncations.load(Ordering::Acquire) != pass.truncations => {
                    // The segment was cut under the read.
                    return Ok(None);
                }
                other => other?,
            };
            match rewritten {
                Rewritten::Unchanged => counts = segment_counts,
                Rewritten::Corrupt(bad) => {
                    // Counts of a skipped segment would describe nothing that happened.
                    skip(
                        c,
                        &mut BTreeSet::new(),
                        report,
                        bad.position,
                        bad.offset,
                        bad.reason,
                    );
                }
                Rewritten::Cleaned(mut cleaned) => {
                    if !paused {
                        paused = true;
                        #[cfg(feature = "fault-injection")]
                        crate::pause_point::reached(
                            &self.dir,
                            crate::pause_point::PausePoint::BeforeSwap,
                        );
                    }
                    let before = segment.size_bytes();
                    let after = cleaned.size_bytes();
                    assert!(after <= before, "a cleaned segment grew");
                    let _maintenance = self.lock_maintenance()?;
                    self.check_writable()?;
                    if self.truncations.load(Ordering::Acquire) != pass.truncations {
                        return Ok(None);
                    }
                    let current = self.read_segments().get(&segment.base_offset).cloned();
                    if !current.is_some_and(|s| Arc::ptr_eq(&s, segment)) {
                        // Retention deleted it meanwhile: nothing to swap (the file goes
                        // with `cleaned`).
                        continue;
                    }
                    counts = segment_counts;
                    self.install_cleaned(segment, &mut cleaned)?;
                    self.swap_in(segment, c.next_base, pass.config)?;
                    rewriter.recycle(cleaned);
                    report.segments_rewritten += 1;
                    report.bytes_before += before;
                    report.bytes_after += after;
                }
            }
        }
        report.records_kept = counts.records_kept;
        report.records_removed = counts.records_removed;
        report.tombstones_removed = counts.tombstones_removed;
        report.batches_before = counts.batches_before;
        report.batches_after = counts.batches_after;
        Ok(Some(counts.tombstones_due_ms))
    }
}

/// What every segment of a pass is cleaned with.
struct Pass<'a> {
    /// `PartitionLog::truncations` when the pass planned: a change stops it.
    truncations: u64,
    policy: &'a KeepPolicy<'a>,
    skipped: &'a BTreeSet<u64>,
    config: &'a LogConfig,
}

/// The report of a pass a truncation stopped: what it swapped in so far stays, and what it
/// read about damage may have been the cut, so it is not reported.
fn stopped(mut report: CompactionReport) -> CompactionReport {
    report.stopped_by_truncation = true;
    report.skipped.clear();
    report
}

fn skip(
    c: &Cleanable,
    skipped: &mut BTreeSet<u64>,
    report: &mut CompactionReport,
    position: u64,
    offset: i64,
    reason: String,
) {
    skipped.insert(c.segment.base_offset);
    if !report
        .skipped
        .iter()
        .any(|s| s.segment == c.segment.paths.log)
    {
        report.skipped.push(SkippedSegment {
            segment: c.segment.paths.log.clone(),
            position,
            offset,
            reason,
        });
    }
}

/// Bytes of key map a pass may use by default (Kafka's `log.cleaner.dedupe.buffer.size`).
pub const COMPACTION_KEY_MAP_BYTES_DEFAULT: u64 = 128 * 1024 * 1024;
const _: () = assert!(COMPACTION_KEY_MAP_BYTES_DEFAULT / KEY_MAP_SLOT_BYTES > 1_000_000);
