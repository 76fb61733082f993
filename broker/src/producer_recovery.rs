//! Rebuilding a partition's idempotent-producer state when it opens, from
//! batch headers only (records are never read).
//!
//! - With a usable `producer-state` snapshot (see `producer_snapshot`) taken
//!   at offset X: load it, then replay the headers of every batch from X to
//!   the log end. Exact. After a clean shutdown X is the log end and nothing
//!   is replayed; after a crash only what was appended since the last
//!   periodic snapshot is.
//! - Without one (a damaged file, or a log older than snapshots): walk the
//!   segments newest first, each from its start, merging each older segment
//!   under the newer state, until the log start or until
//!   [`TAIL_SCAN_BYTES_MAX`] bytes of log were walked. A producer whose last
//!   batch lies before that bound is forgotten: the broker treats it as new,
//!   so only a retry of a batch older than the bound could be stored twice.
//!
//! A batch replayed from the log carries no broker time of its append (only
//! record timestamps, which the client chose), so its producer is dated to
//! the time of the open. Kafka dates it by the batch's max timestamp; a
//! timestamp far in the past would then expire a producer that is still
//! writing, and forgetting a live producer can store a retry twice, whereas
//! dating it late only keeps an idle producer up to one expiration longer.
//!
//! Segments are reached through `PartitionLog::read`: the slice it returns
//! names the segment file, and a segment file is batches back to back from
//! position 0 (`log-core/FORMAT.md`). Nothing appends while a partition
//! opens, so the walk reads a stable file.

use std::fs::File;
use std::os::unix::fs::FileExt;

use weir_log::batch::{BatchHeader, BATCH_HEADER_BYTES};
use weir_log::PartitionLog;

use crate::producer_snapshot::{self, SnapshotError};
use crate::producer_state::ProducerStates;

/// How much log (in bytes of batches, not bytes read: only headers are) the
/// tail walk covers when there is no snapshot.
pub const TAIL_SCAN_BYTES_MAX: u64 = 256 * 1024 * 1024;
/// Bytes read per refill while batches are small; larger batches are
/// stepped over with one header read each.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// How the state was rebuilt, for the open log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rebuilt {
    /// From a snapshot at `snapshot_offset`, then `batches_replayed` headers.
    Snapshot {
        snapshot_offset: u64,
        batches_replayed: u64,
    },
    /// From the log tail alone: `segments` walked, `log_bytes` of batches.
    TailScan {
        segments: u64,
        log_bytes: u64,
        reached_log_start: bool,
        /// Why a snapshot file present was not used.
        snapshot_refused: Option<String>,
    },
}

/// Why the walk failed: reading the log.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error(transparent)]
    Log(#[from] weir_log::LogError),
    #[error("cannot read batch headers of a segment at position {position}: {source}")]
    Read {
        position: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("batch header at position {position} of a segment is invalid: {reason}")]
    Header { position: u64, reason: String },
}

/// Rebuilds the producer state of `log` (freshly opened, not yet shared);
/// `loaded_ms` (the broker's clock now) dates what is replayed.
pub fn rebuild(
    log: &PartitionLog,
    loaded_ms: i64,
) -> Result<(ProducerStates, Rebuilt), RebuildError> {
    let log_end = log.log_end_offset();
    let refused = match producer_snapshot::read(log.dir(), loaded_ms) {
        Ok(Some(snapshot)) if snapshot.offset <= log_end => {
            let mut states = snapshot.states;
            let from = snapshot.offset.max(log.log_start_offset());
            let batches_replayed = replay_forward(log, from, &mut states, loaded_ms)?;
            return Ok((
                states,
                Rebuilt::Snapshot {
                    snapshot_offset: snapshot.offset,
                    batches_replayed,
                },
            ));
        }
        Ok(Some(snapshot)) => Some(format!(
            "its offset {} is past the log end {log_end}",
            snapshot.offset
        )),
        Ok(None) => None,
        Err(SnapshotError::Invalid { reason, .. }) => Some(reason),
        Err(error @ SnapshotError::Io { .. }) => Some(error.to_string()),
    };
    let (states, mut rebuilt) = scan_tail(log, loaded_ms)?;
    if let Rebuilt::TailScan {
        snapshot_refused, ..
    } = &mut rebuilt
    {
        *snapshot_refused = refused;
    }
    Ok((states, rebuilt))
}

/// Replays every batch from `from` to the log end into `states`; returns
/// the number of batches seen.
fn replay_forward(
    log: &PartitionLog,
    from: u64,
    states: &mut ProducerStates,
    loaded_ms: i64,
) -> Result<u64, RebuildError> {
    let log_end = log.log_end_offset();
    let mut offset = from;
    let mut replayed = 0;
    while offset < log_end {
        let slice = log.read(offset, 1, log_end)?;
        if slice.is_empty() {
            break;
        }
        let walked = walk_segment(slice.file(), slice.position(), log_end, |header| {
            if header.last_offset() >= i64::try_from(offset).unwrap_or(i64::MAX) {
                record(states, header, loaded_ms);
            }
        })?;
        replayed += walked.batches;
        match walked.next_offset {
            Some(next) if next > offset => offset = next,
            // No batch at or after `offset` in that segment: nothing more to read.
            _ => break,
        }
    }
    Ok(replayed)
}

/// Walks whole segments newest first (see the module doc for the bound).
fn scan_tail(
    log: &PartitionLog,
    loaded_ms: i64,
) -> Result<(ProducerStates, Rebuilt), RebuildError> {
    let log_end = log.log_end_offset();
    let log_start = log.log_start_offset();
    let mut states = ProducerStates::default();
    let mut segments = 0;
    let mut log_bytes = 0;
    let mut upper = log_end;
    let mut reached_log_start = upper <= log_start;
    while upper > log_start && log_bytes < TAIL_SCAN_BYTES_MAX {
        // The segment holding the batch just below `upper`, walked from its start.
        let slice = log.read(upper - 1, 1, log_end)?;
        let mut older = ProducerStates::default();
        let walked = walk_segment(slice.file(), 0, upper, |header| {
            record(&mut older, header, loaded_ms);
        })?;
        states.merge_older(older);
        segments += 1;
        log_bytes += walked.bytes;
        match walked.first_offset {
            Some(first) if first < upper => {
                upper = first;
                reached_log_start = first <= log_start;
            }
            // A compaction gap hides the older segments from this walk: stop.
            _ => break,
        }
    }
    Ok((
        states,
        Rebuilt::TailScan {
            segments,
            log_bytes,
            reached_log_start,
            snapshot_refused: None,
        },
    ))
}

fn record(states: &mut ProducerStates, header: &BatchHeader, loaded_ms: i64) {
    if let Some(sequenced) = crate::partition::sequenced(header) {
        let base = u64::try_from(header.base_offset).unwrap_or(0);
        let last = u64::try_from(header.last_offset()).unwrap_or(base);
        states.record(&sequenced, base, last, loaded_ms);
    }
}

/// What one segment walk saw.
#[derive(Debug, Default)]
struct Walked {
    batches: u64,
    bytes: u64,
    first_offset: Option<u64>,
    next_offset: Option<u64>,
}

/// Calls `on_header` for each batch of `file` from `position` whose base
/// offset is below `end_offset`, in order, until the end of the file.
fn walk_segment(
    file: &File,
    position: u64,
    end_offset: u64,
    mut on_header: impl FnMut(&BatchHeader),
) -> Result<Walked, RebuildError> {
    let mut reader = HeaderReader::new(file);
    let mut walked = Walked::default();
    let mut position = position;
    while let Some(bytes) = reader.header_at(position)? {
        let header = BatchHeader::parse(bytes).map_err(|e| RebuildError::Header {
            position,
            reason: e.to_string(),
        })?;
        let base = u64::try_from(header.base_offset).map_err(|_| RebuildError::Header {
            position,
            reason: format!("negative base offset {}", header.base_offset),
        })?;
        if base >= end_offset {
            break;
        }
        on_header(&header);
        walked.batches += 1;
        let size = header.size_bytes() as u64;
        walked.bytes += size;
        walked.first_offset.get_or_insert(base);
        walked.next_offset = u64::try_from(header.next_offset()).ok();
        reader.last_batch_bytes = size;
        position += size;
    }
    Ok(walked)
}

/// Reads batch headers at increasing positions: small batches through a
/// 64 KiB buffer, large ones with one 61-byte read each.
struct HeaderReader<'f> {
    file: &'f File,
    buf: Vec<u8>,
    buf_position: u64,
    buf_len: usize,
    last_batch_bytes: u64,
}

impl<'f> HeaderReader<'f> {
    fn new(file: &'f File) -> Self {
        HeaderReader {
            file,
            buf: vec![0; READ_CHUNK_BYTES],
            buf_position: 0,
            buf_len: 0,
            last_batch_bytes: 0,
        }
    }

    /// The header bytes at `position`, or `None` at the end of the file.
    fn header_at(&mut self, position: u64) -> Result<Option<&[u8]>, RebuildError> {
        let header_bytes = BATCH_HEADER_BYTES as u64;
        let buffered_end = self.buf_position + self.buf_len as u64;
        if position < self.buf_position || position + header_bytes > buffered_end {
            let want = if self.last_batch_bytes >= (READ_CHUNK_BYTES / 2) as u64 {
                BATCH_HEADER_BYTES
            } else {
                READ_CHUNK_BYTES
            };
            self.fill(position, want)?;
        }
        let start = usize::try_from(position - self.buf_position).unwrap_or(usize::MAX);
        Ok(self
            .buf
            .get(start..self.buf_len)
            .and_then(|rest| rest.get(..BATCH_HEADER_BYTES)))
    }

    fn fill(&mut self, position: u64, want: usize) -> Result<(), RebuildError> {
        self.buf_position = position;
        self.buf_len = 0;
        let want = want.min(self.buf.len());
        while self.buf_len < want {
            let Some(target) = self.buf.get_mut(self.buf_len..want) else {
                break;
            };
            match self.file.read_at(target, position + self.buf_len as u64) {
                Ok(0) => break,
                Ok(n) => self.buf_len += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(source) => return Err(RebuildError::Read { position, source }),
            }
        }
        Ok(())
    }
}
