//! The second pass of compaction: the cleaned copy of one segment, one output batch per
//! input batch (or none), streamed to its `.cleaned` file as it is made: the pass holds one
//! input batch, its output and a bounded write buffer, never a whole segment. The file is
//! created at the first batch that changes (the unchanged batches before it are copied
//! from the segment), so a segment that stays as it is costs no write.
//!
//! - A batch whose records all stay is copied byte for byte.
//! - A batch that loses records is rebuilt ([`RetainedBuilder`]): same base offset, last
//!   offset delta, producer fields, attributes and base timestamp; the kept records keep
//!   their offset deltas; recompressed with its codec, CRC recomputed.
//! - A batch that loses every record disappears, unless it is the last batch of its
//!   producer in the cleaned range: then it stays as an empty batch, as Kafka keeps it, so
//!   the producer's last sequence (what idempotence checks retries against) survives.
//! - Markers, batches of aborted or undecided transactions, and batches at or past the end
//!   of the key map's reach are copied as they are.
//! - An output batch is never bigger than its input (a recompression that came out bigger
//!   keeps the input as it is), so a cleaned segment never grows.

use std::collections::HashMap;
use std::os::unix::fs::FileExt;

use crate::batch::{BatchHeader, RecordDecoder, RetainedBuilder};
use crate::compaction_checkpoint::CleanerCheckpoint;
use crate::compaction_keys::KeyScan;
use crate::compaction_map::hash_key;
use crate::compaction_swap::CleanedFile;
use crate::error::IoContext;
use crate::segment::Segment;
use crate::LogError;

/// What decides the fate of each record in a pass.
pub(crate) struct KeepPolicy<'a> {
    pub keys: &'a KeyScan,
    /// The key map covers offsets below it; batches from it on are copied as they are.
    pub map_end: u64,
    /// Tombstones below it were first cleaned at least `delete.retention.ms` ago.
    pub tombstones_removable_below: u64,
    pub checkpoint: &'a CleanerCheckpoint,
    pub now_ms: i64,
    pub delete_retention_ms: i64,
    /// Producer id -> base offset of its last batch in the cleaned range.
    pub producer_last_batch: &'a HashMap<i64, i64>,
}

/// Counts of one segment's rewrite, and when its oldest kept tombstone may go.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RewriteCounts {
    pub records_kept: u64,
    pub records_removed: u64,
    pub tombstones_removed: u64,
    pub batches_before: u64,
    pub batches_after: u64,
    pub tombstones_due_ms: i64,
}

impl Default for RewriteCounts {
    fn default() -> Self {
        RewriteCounts {
            records_kept: 0,
            records_removed: 0,
            tombstones_removed: 0,
            batches_before: 0,
            batches_after: 0,
            tombstones_due_ms: i64::MAX,
        }
    }
}

/// A batch that failed its CRC or record checks: the segment is left as it is.
#[derive(Debug)]
pub(crate) struct BadBatch {
    pub position: u64,
    pub offset: i64,
    pub reason: String,
}

/// Reusable state of the rewrite.
#[derive(Default)]
pub(crate) struct Rewriter {
    decoder: RecordDecoder,
    builder: RetainedBuilder,
    batch: Vec<u8>,
    /// The cleaned form of the current batch.
    out: Vec<u8>,
    keep: Vec<bool>,
    /// Write buffer of the `.cleaned` files, passed from one to the next.
    write_buffer: Vec<u8>,
}

pub(crate) enum Rewritten {
    /// Every batch stays as it is: nothing written.
    Unchanged,
    /// The cleaned log, written and fsynced.
    Cleaned(CleanedFile),
    Corrupt(BadBatch),
}

/// Bytes of unchanged batches copied per read when a `.cleaned` file starts late.
const COPY_CHUNK_BYTES: u64 = 1 << 20;

impl Rewriter {
    /// The cleaned copy of `segment` under `policy`, written to its `.cleaned` file.
    pub fn rewrite(
        &mut self,
        segment: &Segment,
        policy: &KeepPolicy<'_>,
        counts: &mut RewriteCounts,
    ) -> Result<Rewritten, LogError> {
        let size = segment.size_bytes();
        let mut cleaned: Option<CleanedFile> = None;
        let mut position = 0u64;
        while position < size {
            let header = match segment.header_at(position, size) {
                Ok(header) => header,
                Err(LogError::Corrupt { reason, .. }) => {
                    return Ok(Rewritten::Corrupt(BadBatch {
                        position,
                        offset: -1,
                        reason,
                    }))
                }
                Err(other) => return Err(other),
            };
            let mut batch = std::mem::take(&mut self.batch);
            let mut out = std::mem::take(&mut self.out);
            batch.resize(header.size_bytes(), 0);
            out.clear();
            let read = segment
                .log
                .read_exact_at(&mut batch, position)
                .io_ctx("read segment", &segment.paths.log);
            let outcome = read.map(|()| {
                self.rewrite_batch(&header, &batch, policy, &mut out, counts)
                    .map_err(|reason| BadBatch {
                        position,
                        offset: header.base_offset,
                        reason,
                    })
            });
            self.batch = batch;
            self.out = out;
            let same = match outcome? {
                Ok(same) => same,
                Err(bad) => return Ok(Rewritten::Corrupt(bad)),
            };
            if !same && cleaned.is_none() {
                cleaned = Some(self.start_cleaned(segment, position)?);
            }
            if let Some(file) = cleaned.as_mut() {
                file.write(&self.out)?;
            }
            position += header.size_bytes() as u64;
        }
        let Some(mut file) = cleaned else {
            return Ok(Rewritten::Unchanged);
        };
        debug_assert!(file.size_bytes() <= size, "a cleaned segment never grows");
        file.finish()?;
        Ok(Rewritten::Cleaned(file))
    }

    /// Creates the `.cleaned` file of `segment` at the first batch that changes, at
    /// `position`: the batches before it stay as they are, copied from the segment.
    fn start_cleaned(&mut self, segment: &Segment, position: u64) -> Result<CleanedFile, LogError> {
        let mut file = CleanedFile::create(segment, std::mem::take(&mut self.write_buffer))?;
        let mut chunk = std::mem::take(&mut self.batch);
        let mut at = 0u64;
        while at < position {
            let len = (position - at).min(COPY_CHUNK_BYTES);
            chunk.resize(usize::try_from(len).unwrap_or(0), 0);
            segment
                .log
                .read_exact_at(&mut chunk, at)
                .io_ctx("read segment", &segment.paths.log)?;
            file.write(&chunk)?;
            at += len;
        }
        self.batch = chunk;
        Ok(file)
    }

    /// Takes back the write buffer of a `.cleaned` file that is done with.
    pub fn recycle(&mut self, file: CleanedFile) {
        self.write_buffer = file.into_buffer();
    }

    /// Appends the cleaned form of one batch to `out`; Ok(true) when it is the input as it
    /// was, Err(reason) when the batch is damaged.
    fn rewrite_batch(
        &mut self,
        header: &BatchHeader,
        bytes: &[u8],
        policy: &KeepPolicy<'_>,
        out: &mut Vec<u8>,
        counts: &mut RewriteCounts,
    ) -> Result<bool, String> {
        counts.batches_before += 1;
        // Decoding checks the CRC and every record: nothing damaged is ever copied.
        let records = self.decoder.records(bytes).map_err(|e| e.to_string())?;
        let decided =
            !header.is_transactional() || policy.keys.committed.contains(&header.base_offset);
        let in_reach = u64::try_from(header.last_offset()).is_ok_and(|l| l < policy.map_end);
        self.keep.clear();
        let mut kept = 0u64;
        let mut tombstones_removed = 0u64;
        for record in records {
            let record = record.map_err(|e| e.to_string())?;
            let keep = if header.is_control() || !decided || !in_reach {
                true
            } else {
                decide(policy, &record, counts, &mut tombstones_removed)
            };
            kept += u64::from(keep);
            self.keep.push(keep);
        }
        let total = self.keep.len() as u64;
        counts.records_kept += kept;
        counts.records_removed += total - kept;
        counts.tombstones_removed += tombstones_removed;
        if kept == total {
            out.extend_from_slice(bytes);
            counts.batches_after += 1;
            return Ok(true);
        }
        let last_of_producer = header.producer_id >= 0
            && policy.producer_last_batch.get(&header.producer_id) == Some(&header.base_offset);
        if kept == 0 && !last_of_producer {
            return Ok(false);
        }
        let start = out.len();
        self.builder.clear();
        let records = self.decoder.records(bytes).map_err(|e| e.to_string())?;
        for (record, keep) in records.zip(&self.keep) {
            let record = record.map_err(|e| e.to_string())?;
            if *keep {
                self.builder
                    .push(header, &record)
                    .map_err(|e| e.to_string())?;
            }
        }
        self.builder
            .finish(header, out)
            .map_err(|e| e.to_string())?;
        counts.batches_after += 1;
        if out.len() - start > bytes.len() {
            // Recompressing fewer records came out bigger: keep the batch as it was.
            out.truncate(start);
            out.extend_from_slice(bytes);
            counts.records_kept += total - kept;
            counts.records_removed -= total - kept;
            counts.tombstones_removed -= tombstones_removed;
            return Ok(true);
        }
        Ok(false)
    }
}

/// Whether a record of a decided data batch within the map's reach stays.
fn decide(
    policy: &KeepPolicy<'_>,
    record: &crate::batch::RecordView<'_>,
    counts: &mut RewriteCounts,
    tombstones_removed: &mut u64,
) -> bool {
    // Keyless records cannot be superseded.
    let Some(key) = record.key else { return true };
    let Ok(offset) = u64::try_from(record.offset) else {
        return true;
    };
    let superseded = policy
        .keys
        .latest
        .get(&hash_key(key))
        .is_some_and(|newest| offset < newest);
    if superseded {
        return false;
    }
    if record.value.is_some() {
        return true;
    }
    // A tombstone stays for delete.retention.ms after the pass that first cleaned it.
    if offset < policy.tombstones_removable_below {
        *tombstones_removed += 1;
        return false;
    }
    let cleaned_at_ms = policy
        .checkpoint
        .cleaned_at_ms(offset)
        .unwrap_or(policy.now_ms);
    counts.tombstones_due_ms = counts
        .tombstones_due_ms
        .min(cleaned_at_ms.saturating_add(policy.delete_retention_ms));
    true
}
