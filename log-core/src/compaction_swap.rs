//! Putting a compacted segment in place of the old one, crash-safely, the way Kafka does:
//!
//! 1. the cleaned log is written to `<base>.log.cleaned` and fsynced;
//! 2. it is renamed to `<base>.log.swap` (directory fsync): from here it is the segment;
//! 3. the old indexes are removed, `.swap` is renamed over `<base>.log` (directory fsync);
//! 4. the indexes are rebuilt from the new log and the new segment replaces the old one
//!    in the segments map (the only moment anything is locked, and only the map).
//!
//! A crash before 2 leaves the old log and a `.cleaned` file that open removes; from 2 on,
//! open finishes steps 3 (`finish_interrupted_swaps`) and rebuilds the missing indexes.
//! Either way the log is the old segment or the new one, never a mix. Readers holding the
//! old segment keep reading its file and its index mappings, whose inodes live on.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use crate::config::LogConfig;
use crate::error::IoContext;
use crate::file_io;
use crate::file_name::{
    append_suffix, parse_segment_file_name, remove_if_exists, sync_dir, SegmentFileKind,
    SegmentPaths, CLEANED_SUFFIX, SWAP_SUFFIX,
};
use crate::load::rebuild;
use crate::recovery::ScanMode;
use crate::segment::Segment;
use crate::{LogError, PartitionLog};

impl PartitionLog {
    /// Writes `bytes` as the cleaned copy of `segment` (steps 1-2). Until the rename
    /// nothing the log relies on changed: a failure (a full disk) removes the `.cleaned`
    /// file and leaves the log writable.
    pub(crate) fn write_cleaned(&self, segment: &Segment, bytes: &[u8]) -> Result<(), LogError> {
        let cleaned = append_suffix(&segment.paths.log, CLEANED_SUFFIX);
        let swap = append_suffix(&segment.paths.log, SWAP_SUFFIX);
        let written = file_io::create(&cleaned)
            .io_ctx("create compacted segment", &cleaned)
            .and_then(|mut file| {
                file_io::write_all(&mut file, bytes, &cleaned)
                    .io_ctx("write compacted segment", &cleaned)?;
                file_io::sync_all(&file, &cleaned).io_ctx("fsync compacted segment", &cleaned)
            })
            .and_then(|()| {
                file_io::rename(&cleaned, &swap).io_ctx("rename compacted segment to .swap", &swap)
            });
        if let Err(error) = written {
            let _ = remove_if_exists(&cleaned);
            return Err(error);
        }
        // From here a restart would swap the new log in, while this process still serves
        // the old one: any failure is final until a reopen settles it.
        sync_dir(&self.dir)
            .io_ctx("fsync directory", &self.dir)
            .map_err(|e| self.poison(e))
    }

    /// Steps 3-4 for a segment whose `.swap` file is written: renames it over the log,
    /// rebuilds the indexes and installs the new segment for readers.
    pub(crate) fn swap_in(
        &self,
        segment: &Arc<Segment>,
        next_base: u64,
        config: &LogConfig,
    ) -> Result<(), LogError> {
        let paths = &segment.paths;
        let swap = append_suffix(&paths.log, SWAP_SUFFIX);
        let renamed = remove_old_indexes(paths)
            .and_then(|()| {
                file_io::rename(&swap, &paths.log)
                    .io_ctx("rename compacted segment into place", &paths.log)
            })
            .and_then(|()| sync_dir(&self.dir).io_ctx("fsync directory", &self.dir));
        renamed.map_err(|e| self.poison(e))?;
        let (fresh, _) = rebuild(&self.dir, segment.base_offset, config, ScanMode::Strict)
            .map_err(|e| self.poison(e))?;
        // Batches that lost every record are gone: the segment still ends where the next
        // one begins, and reads skip the gap.
        let mut end = fresh.end();
        debug_assert!(
            end.size_bytes <= segment.size_bytes(),
            "a compacted segment grew"
        );
        end.next_offset = next_base;
        fresh.publish(end);
        fresh.seal_indexes().map_err(|e| self.poison(e))?;
        self.write_segments()
            .insert(segment.base_offset, Arc::new(fresh));
        Ok(())
    }
}

/// The old indexes go before the rename: new ones are created under the same names, and
/// must be new files, not the old ones (which readers may still have mapped) truncated.
fn remove_old_indexes(paths: &SegmentPaths) -> Result<(), LogError> {
    remove_if_exists(&paths.offset_index).io_ctx("remove offset index", &paths.offset_index)?;
    remove_if_exists(&paths.time_index).io_ctx("remove time index", &paths.time_index)
}

/// Open's part: finishes every swap a crash interrupted (a `<base>.log.swap` is complete
/// and fsynced, so it replaces `<base>.log`); the indexes, removed here, are rebuilt by
/// the load that follows. A `.swap` without its log (nothing can delete a segment while a
/// pass holds it, so this is damage) is removed.
pub(crate) fn finish_interrupted_swaps(dir: &Path) -> Result<(), LogError> {
    let mut changed = false;
    for entry in fs::read_dir(dir).io_ctx("list partition directory", dir)? {
        let entry = entry.io_ctx("list partition directory", dir)?;
        let name = entry.file_name();
        let Some(log_name) = name.to_str().and_then(|n| n.strip_suffix(SWAP_SUFFIX)) else {
            continue;
        };
        let Some((base, SegmentFileKind::Log)) = parse_segment_file_name(log_name) else {
            continue;
        };
        let paths = SegmentPaths::new(dir, base);
        let swap = entry.path();
        if paths.log.exists() {
            remove_old_indexes(&paths)?;
            file_io::rename(&swap, &paths.log)
                .io_ctx("rename compacted segment into place", &paths.log)?;
        } else {
            remove_if_exists(&swap).io_ctx("remove leftover file", &swap)?;
        }
        changed = true;
    }
    if changed {
        sync_dir(dir).io_ctx("fsync directory", dir)?;
    }
    Ok(())
}
