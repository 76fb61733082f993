//! The validation half of an append: every batch of the buffer split, size-checked and
//! validated (see [`batch::RecordValidator`]) with the appending thread's validator,
//! before any lock of the log is taken.

use std::cell::RefCell;

use crate::batch::{self, BatchHeader, TimestampType};
use crate::config::LogConfig;
use crate::segment::NO_TIMESTAMP;
use crate::LogError;

/// What the validation pass learned about an append buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BufferSummary {
    pub(crate) batch_count: usize,
    pub(crate) record_count: u32,
    pub(crate) max_timestamp: i64,
}

/// The validation pass of an append: every batch whole and within
/// `checks.batch_bytes_max`, then `validate` (CRC and records).
pub(crate) fn summarize(
    buf: &[u8],
    checks: &batch::ProduceChecks,
    mut validate: impl FnMut(&[u8]) -> Result<BatchHeader, batch::BatchError>,
) -> Result<BufferSummary, LogError> {
    let mut summary = BufferSummary {
        batch_count: 0,
        record_count: 0,
        max_timestamp: NO_TIMESTAMP,
    };
    let mut splitter = batch::batches(buf);
    while let Some(item) = splitter.next() {
        let (_, bytes) = item.map_err(|source| LogError::BatchAt {
            position: splitter.position(),
            source,
        })?;
        let position = splitter.position() - bytes.len();
        if bytes.len() > checks.batch_bytes_max {
            return Err(LogError::MessageTooLarge {
                position,
                size_bytes: bytes.len(),
                max_bytes: checks.batch_bytes_max,
            });
        }
        let header = validate(bytes).map_err(|source| LogError::BatchAt { position, source })?;
        if header.last_offset_delta < 0 {
            return Err(LogError::InvalidOffsetDelta {
                position,
                last_offset_delta: header.last_offset_delta,
            });
        }
        summary.batch_count += 1;
        summary.record_count = summary
            .record_count
            .saturating_add(u32::try_from(header.record_count).unwrap_or(0));
        summary.max_timestamp = summary.max_timestamp.max(header.max_timestamp);
    }
    if summary.batch_count == 0 {
        return Err(LogError::EmptyAppend);
    }
    Ok(summary)
}

/// What `config` asks of a produced batch, with the clock read at `now_ms`.
pub(crate) fn produce_checks(config: &LogConfig, now_ms: i64) -> batch::ProduceChecks {
    let batch_bytes_max = config.max_message_bytes as usize;
    // Kafka bounds timestamps of CreateTime topics only: LogAppendTime ones are stamped.
    let timestamp_bounds =
        (config.timestamp_type == TimestampType::CreateTime).then_some(batch::TimestampBounds {
            now_ms,
            before_max_ms: config.timestamp_before_max_ms,
            after_max_ms: config.timestamp_after_max_ms,
        });
    batch::ProduceChecks {
        batch_bytes_max,
        decompressed_bytes_max: batch::decompressed_bytes_max_for(batch_bytes_max),
        timestamp_bounds,
        keys_required: config.cleanup_policy.compacts(),
    }
}

thread_local! {
    /// One validator per thread that appends: its decompression buffer and codec state
    /// are reused by every append on that thread, whatever partition it is for.
    static VALIDATOR: RefCell<batch::RecordValidator> =
        RefCell::new(batch::RecordValidator::new());
}

/// Runs `f` with this thread's validator.
pub(crate) fn with_validator<R>(f: impl FnOnce(&mut batch::RecordValidator) -> R) -> R {
    VALIDATOR.with(|cell| match cell.try_borrow_mut() {
        Ok(mut validator) => f(&mut validator),
        // Only a re-entrant call could find it borrowed; stay correct regardless.
        Err(_) => f(&mut batch::RecordValidator::new()),
    })
}
