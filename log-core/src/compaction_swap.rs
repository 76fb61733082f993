//! Putting a compacted segment in place of the old one, crash-safely, the way Kafka does:
//!
//! 1. the cleaned log is streamed to `<base>.log.cleaned` ([`CleanedFile`], through a
//!    bounded buffer, never whole in memory) and fsynced, without any lock of the log;
//! 2. under the maintenance lock, it is renamed to `<base>.log.swap` (directory fsync):
//!    from here it is the segment;
//! 3. the old indexes are removed, `.swap` is renamed over `<base>.log` (directory fsync);
//! 4. the indexes are rebuilt from the new log and the new segment replaces the old one
//!    in the segments map (steps 2-4 run under the maintenance lock, held for this one
//!    segment only).
//!
//! A crash before 2 leaves the old log and a `.cleaned` file that open removes; from 2 on,
//! open finishes steps 3 (`finish_interrupted_swaps`) and rebuilds the missing indexes.
//! Either way the log is the old segment or the new one, never a mix. Readers holding the
//! old segment keep reading its file and its index mappings, whose inodes live on.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
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

/// Bytes gathered before one write to a `.cleaned` file (Kafka's cleaner writes through an
/// I/O buffer too, `log.cleaner.io.buffer.size`): the output of many small batches goes in
/// one call, and a pass never holds more of its output than this plus one batch.
const CLEANED_WRITE_BUFFER_BYTES: usize = 256 * 1024;

/// A `<base>.log.cleaned` being written (step 1). Dropped before [`PartitionLog::install_cleaned`]
/// took it, it removes the file: a failed or abandoned rewrite leaves nothing the log relies on.
pub(crate) struct CleanedFile {
    path: PathBuf,
    file: File,
    buffer: Vec<u8>,
    size_bytes: u64,
    installed: bool,
}

impl CleanedFile {
    /// Creates (or truncates a leftover) `.cleaned` file for `segment`, writing through `buffer`
    /// (emptied here; handed back by [`CleanedFile::into_buffer`] for the next segment).
    pub fn create(segment: &Segment, mut buffer: Vec<u8>) -> Result<CleanedFile, LogError> {
        let path = append_suffix(&segment.paths.log, CLEANED_SUFFIX);
        let file = file_io::create(&path).io_ctx("create compacted segment", &path)?;
        buffer.clear();
        Ok(CleanedFile {
            path,
            file,
            buffer,
            size_bytes: 0,
            installed: false,
        })
    }

    /// Appends `bytes` (whole batches).
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), LogError> {
        if self.buffer.len() + bytes.len() > CLEANED_WRITE_BUFFER_BYTES {
            self.flush()?;
        }
        if bytes.len() >= CLEANED_WRITE_BUFFER_BYTES {
            file_io::write_all(&mut self.file, bytes, &self.path)
                .io_ctx("write compacted segment", &self.path)?;
        } else {
            self.buffer.extend_from_slice(bytes);
        }
        self.size_bytes += bytes.len() as u64;
        Ok(())
    }

    /// Bytes written so far.
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    fn flush(&mut self) -> Result<(), LogError> {
        if !self.buffer.is_empty() {
            file_io::write_all(&mut self.file, &self.buffer, &self.path)
                .io_ctx("write compacted segment", &self.path)?;
            self.buffer.clear();
        }
        Ok(())
    }

    /// Writes what is buffered and fsyncs the file: it is complete.
    pub fn finish(&mut self) -> Result<(), LogError> {
        self.flush()?;
        file_io::sync_all(&self.file, &self.path).io_ctx("fsync compacted segment", &self.path)
    }

    /// The write buffer, for the next segment's file.
    pub fn into_buffer(mut self) -> Vec<u8> {
        std::mem::take(&mut self.buffer)
    }
}

impl Drop for CleanedFile {
    fn drop(&mut self) {
        if !self.installed {
            // Best effort: a leftover `.cleaned` file is removed by the next open anyway.
            let _ = remove_if_exists(&self.path);
        }
    }
}

impl PartitionLog {
    /// Step 2 for a finished `.cleaned` file: renames it to `.swap`. Until the rename nothing
    /// the log relies on changed: a failure leaves the log writable (the drop of `cleaned`
    /// removes the file).
    pub(crate) fn install_cleaned(
        &self,
        segment: &Segment,
        cleaned: &mut CleanedFile,
    ) -> Result<(), LogError> {
        let swap = append_suffix(&segment.paths.log, SWAP_SUFFIX);
        file_io::rename(&cleaned.path, &swap).io_ctx("rename compacted segment to .swap", &swap)?;
        cleaned.installed = true;
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
