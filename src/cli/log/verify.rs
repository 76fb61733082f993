//! `weir log verify PATH`: checks every batch (framing, magic, CRC-32C, record
//! count, records decodable, offsets increasing and contiguous within and
//! across segments) and every index entry (offset index entries point at the
//! start of the batch with that offset, time index entries bound the max
//! timestamp of the batches they cover, both monotone). Stops at the first
//! problem with one line naming the file and the byte where it is.

use std::fmt;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use weir_log::batch::{validate, RecordDecoder};
use weir_log::inspect::{IndexLayoutError, OFFSET_INDEX_ENTRY_BYTES, TIME_INDEX_ENTRY_BYTES};

use super::segment_files::{
    find_segments, lock_for_reading, read_offset_index, read_time_index, BatchScanner, Scanned,
    SegmentFiles,
};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A partition directory, or one `<base offset>.log` segment file.
    path: PathBuf,
    /// Accept offset gaps between batches, as compaction leaves them.
    #[arg(long)]
    allow_gaps: bool,
}

/// The first thing found wrong: which file, which byte, what.
#[derive(Debug)]
struct Problem {
    file: PathBuf,
    position: u64,
    reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: byte {}: {}",
            self.file.display(),
            self.position,
            self.reason
        )
    }
}

impl std::error::Error for Problem {}

/// One batch of a segment as the index checks need it.
#[derive(Debug, Clone, Copy)]
struct BatchAt {
    position: u64,
    base_offset: i64,
    /// Max timestamp of this and every earlier batch of the segment.
    max_timestamp_so_far: i64,
}

/// What a checked `.log` holds.
struct LogSummary {
    batches: Vec<BatchAt>,
    record_count: u64,
    /// Offset after the last batch, or `None` for an empty segment.
    next_offset: Option<i64>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let _lock = lock_for_reading(&args.path)?;
    let segments = find_segments(&args.path)?;
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut decoder = RecordDecoder::new();
    let mut expected_base: Option<i64> = None;
    let (mut batch_total, mut record_total) = (0u64, 0u64);
    for segment in &segments {
        let summary = check_log(segment, expected_base, args.allow_gaps, &mut decoder)?;
        let offset_entries = check_offset_index(segment, &summary)?;
        let time_entries = check_time_index(segment, &summary)?;
        writeln!(
            out,
            "{}: ok: batches {}, records {}, offsets {}, offset index entries {}, time index entries {}",
            segment.log.display(),
            summary.batches.len(),
            summary.record_count,
            offset_range(segment, &summary),
            offset_entries.map_or("no".to_owned(), |n| n.to_string()),
            time_entries.map_or("no".to_owned(), |n| n.to_string()),
        )?;
        batch_total += summary.batches.len() as u64;
        record_total += summary.record_count;
        expected_base = summary
            .next_offset
            .or(segment.base_offset.and_then(|b| i64::try_from(b).ok()));
    }
    writeln!(
        out,
        "ok: segments {}, batches {batch_total}, records {record_total}",
        segments.len()
    )?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn offset_range(segment: &SegmentFiles, summary: &LogSummary) -> String {
    match (summary.batches.first(), summary.next_offset) {
        (Some(first), Some(next)) => format!("{}..{next}", first.base_offset),
        _ => format!("none (base {})", segment.base_offset.unwrap_or(0)),
    }
}

fn problem(file: &Path, position: u64, reason: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Problem {
        file: file.to_path_buf(),
        position,
        reason: reason.into(),
    })
}

/// Checks every batch of the segment's `.log`. `expected_base` is where the
/// previous segment ended.
fn check_log(
    segment: &SegmentFiles,
    expected_base: Option<i64>,
    allow_gaps: bool,
    decoder: &mut RecordDecoder,
) -> anyhow::Result<LogSummary> {
    let file = &segment.log;
    let name_base = segment.base_offset.and_then(|b| i64::try_from(b).ok());
    if let (Some(name_base), Some(expected)) = (name_base, expected_base) {
        if name_base < expected || (name_base > expected && !allow_gaps) {
            return Err(problem(
                file,
                0,
                format!("the segment's base offset {name_base} does not follow the previous segment, whose next offset is {expected}"),
            ));
        }
    }
    let mut scanner = BatchScanner::open(file)?;
    let mut summary = LogSummary {
        batches: Vec::new(),
        record_count: 0,
        next_offset: None,
    };
    let mut max_timestamp_so_far = i64::MIN;
    loop {
        let (position, bytes) = match scanner.next_batch()? {
            Scanned::End => return Ok(summary),
            Scanned::Broken { position, error } => {
                return Err(problem(file, position, error.to_string()))
            }
            Scanned::Batch { position, bytes } => (position, bytes),
        };
        let header =
            validate(bytes, usize::MAX).map_err(|e| problem(file, position, e.to_string()))?;
        let records = decoder
            .records(bytes)
            .map_err(|e| problem(file, position, e.to_string()))?;
        for record in records {
            record.map_err(|e| problem(file, position, e.to_string()))?;
        }
        let expected = summary.next_offset.or(name_base);
        check_base_offset(header.base_offset, expected, allow_gaps)
            .map_err(|reason| problem(file, position, reason))?;
        if let Some(name_base) = name_base {
            if header.last_offset() - name_base > i64::from(u32::MAX) {
                return Err(problem(
                    file,
                    position,
                    format!("last offset {} is too far above the segment's base offset {name_base} for its index", header.last_offset()),
                ));
            }
        }
        max_timestamp_so_far = max_timestamp_so_far.max(header.max_timestamp);
        summary.batches.push(BatchAt {
            position,
            base_offset: header.base_offset,
            max_timestamp_so_far,
        });
        summary.record_count += u64::try_from(header.record_count).unwrap_or(0);
        summary.next_offset = Some(header.next_offset());
    }
}

fn check_base_offset(
    base_offset: i64,
    expected: Option<i64>,
    allow_gaps: bool,
) -> Result<(), String> {
    if base_offset < 0 {
        return Err(format!(
            "the batch has a negative base offset {base_offset}"
        ));
    }
    let Some(expected) = expected else {
        return Ok(());
    };
    if base_offset < expected {
        return Err(format!(
            "the batch's base offset {base_offset} is below {expected}, the next offset after the previous batch (or the segment's base offset)"
        ));
    }
    if base_offset > expected && !allow_gaps {
        return Err(format!(
            "the batch's base offset {base_offset} leaves a gap after offset {} (use --allow-gaps for compacted partitions)",
            expected - 1
        ));
    }
    Ok(())
}

fn index_problem(file: &Path, problem_found: IndexLayoutError) -> anyhow::Error {
    problem(file, problem_found.position_bytes, problem_found.reason)
}

/// Checks the offset index; returns its entry count, or `None` when absent.
fn check_offset_index(
    segment: &SegmentFiles,
    summary: &LogSummary,
) -> anyhow::Result<Option<usize>> {
    let file = &segment.offset_index;
    let Some(entries) = read_offset_index(file)? else {
        return Ok(None);
    };
    let entries = entries.map_err(|p| index_problem(file, p))?;
    let base = segment_base(segment, summary);
    let mut previous: Option<(u32, u32)> = None;
    for (index, entry) in entries.iter().enumerate() {
        let at = (index * OFFSET_INDEX_ENTRY_BYTES) as u64;
        if let Some((relative, position)) = previous {
            if entry.relative_offset <= relative || entry.position <= position {
                return Err(problem(file, at, format!(
                    "entry ({}, {}) does not increase past the previous entry ({relative}, {position})",
                    entry.relative_offset, entry.position
                )));
            }
        }
        previous = Some((entry.relative_offset, entry.position));
        let target = u64::from(entry.position);
        let Ok(index) = summary
            .batches
            .binary_search_by_key(&target, |b| b.position)
        else {
            return Err(problem(file, at, format!(
                "entry for relative offset {} points to byte {target} of the log, which is not the start of a batch",
                entry.relative_offset
            )));
        };
        let offset = base + i64::from(entry.relative_offset);
        let batch_base = summary.batches[index].base_offset;
        if batch_base != offset {
            return Err(problem(file, at, format!(
                "entry says offset {offset} starts at byte {target}, but the batch there starts at offset {batch_base}"
            )));
        }
    }
    Ok(Some(entries.len()))
}

/// Checks the time index; returns its entry count, or `None` when absent.
fn check_time_index(segment: &SegmentFiles, summary: &LogSummary) -> anyhow::Result<Option<usize>> {
    let file = &segment.time_index;
    let Some(entries) = read_time_index(file)? else {
        return Ok(None);
    };
    let entries = entries.map_err(|p| index_problem(file, p))?;
    let base = segment_base(segment, summary);
    let mut previous: Option<(i64, u32)> = None;
    for (index, entry) in entries.iter().enumerate() {
        let at = (index * TIME_INDEX_ENTRY_BYTES) as u64;
        if let Some((timestamp, relative)) = previous {
            if entry.timestamp <= timestamp || entry.relative_offset < relative {
                return Err(problem(file, at, format!(
                    "entry ({}, {}) does not increase past the previous entry ({timestamp}, {relative})",
                    entry.timestamp, entry.relative_offset
                )));
            }
        }
        previous = Some((entry.timestamp, entry.relative_offset));
        let offset = base + i64::from(entry.relative_offset);
        if summary.next_offset.is_none_or(|next| offset >= next) {
            return Err(problem(
                file,
                at,
                format!("entry names offset {offset}, past the segment's last offset"),
            ));
        }
        // Every batch starting at or below the entry's offset must have a max
        // timestamp at or below the entry's timestamp, or a lookup by time
        // starting after the entry would skip records.
        let covered = summary.batches.partition_point(|b| b.base_offset <= offset);
        if let Some(last_covered) = covered.checked_sub(1).map(|i| summary.batches[i]) {
            if last_covered.max_timestamp_so_far > entry.timestamp {
                return Err(problem(file, at, format!(
                    "entry says offsets up to {offset} have timestamps at or below {}, but the log has {} there",
                    entry.timestamp, last_covered.max_timestamp_so_far
                )));
            }
        }
    }
    Ok(Some(entries.len()))
}

/// The offset relative index entries count from: the name's base offset, or
/// the first batch's for a file whose name is not a base offset.
fn segment_base(segment: &SegmentFiles, summary: &LogSummary) -> i64 {
    segment
        .base_offset
        .and_then(|b| i64::try_from(b).ok())
        .or(summary.batches.first().map(|b| b.base_offset))
        .unwrap_or(0)
}
