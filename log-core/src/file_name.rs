//! The one mapping between a segment's base offset and its file names, used by roll,
//! recovery, retention, truncation and compaction alike.

use std::path::{Path, PathBuf};

pub(crate) use crate::file_io::{remove_if_exists, sync_dir};

pub(crate) const LOG_EXTENSION: &str = "log";
pub(crate) const OFFSET_INDEX_EXTENSION: &str = "index";
pub(crate) const TIME_INDEX_EXTENSION: &str = "timeindex";
/// Suffix of files being written by compaction; never valid after a crash.
pub(crate) const CLEANED_SUFFIX: &str = ".cleaned";
/// Suffix of a compacted segment log that is complete and fsynced and replaces the
/// segment's log; open finishes the replacement.
pub(crate) const SWAP_SUFFIX: &str = ".swap";
/// Suffix of any file being written before an atomic rename; never valid after a crash.
pub(crate) const TEMP_SUFFIX: &str = ".tmp";
/// Width of the zero-padded base offset in file names (u64::MAX has 20 digits).
const BASE_OFFSET_DIGITS: usize = 20;

/// What a segment file in a partition directory is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SegmentFileKind {
    /// `<base>.log`: the batches.
    Log,
    /// `<base>.index`: the sparse offset index.
    OffsetIndex,
    /// `<base>.timeindex`: the sparse time index.
    TimeIndex,
}

impl SegmentFileKind {
    fn extension(self) -> &'static str {
        match self {
            SegmentFileKind::Log => LOG_EXTENSION,
            SegmentFileKind::OffsetIndex => OFFSET_INDEX_EXTENSION,
            SegmentFileKind::TimeIndex => TIME_INDEX_EXTENSION,
        }
    }
}

/// The file name of a segment file: `<base offset, 20 digits>.<extension>`. The one
/// mapping from base offset to name, for roll, recovery, retention and compaction alike.
pub fn segment_file_name(base_offset: u64, kind: SegmentFileKind) -> String {
    format!(
        "{base_offset:0width$}.{}",
        kind.extension(),
        width = BASE_OFFSET_DIGITS
    )
}

/// Parses a segment file name back into its base offset and kind; None for any other file.
pub fn parse_segment_file_name(name: &str) -> Option<(u64, SegmentFileKind)> {
    let (stem, extension) = name.split_once('.')?;
    let kind = match extension {
        LOG_EXTENSION => SegmentFileKind::Log,
        OFFSET_INDEX_EXTENSION => SegmentFileKind::OffsetIndex,
        TIME_INDEX_EXTENSION => SegmentFileKind::TimeIndex,
        _ => return None,
    };
    if stem.len() != BASE_OFFSET_DIGITS || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let base_offset = stem.parse::<u64>().ok()?;
    Some((base_offset, kind))
}

/// The three paths of one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentPaths {
    pub log: PathBuf,
    pub offset_index: PathBuf,
    pub time_index: PathBuf,
}

impl SegmentPaths {
    pub fn new(dir: &Path, base_offset: u64) -> SegmentPaths {
        SegmentPaths {
            log: dir.join(segment_file_name(base_offset, SegmentFileKind::Log)),
            offset_index: dir.join(segment_file_name(base_offset, SegmentFileKind::OffsetIndex)),
            time_index: dir.join(segment_file_name(base_offset, SegmentFileKind::TimeIndex)),
        }
    }
}

pub(crate) fn append_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut os = path.as_os_str().to_os_string();
    os.push(suffix);
    PathBuf::from(os)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for base in [0, 1, 42, u64::MAX] {
            for kind in [
                SegmentFileKind::Log,
                SegmentFileKind::OffsetIndex,
                SegmentFileKind::TimeIndex,
            ] {
                let name = segment_file_name(base, kind);
                assert_eq!(name.split_once('.').map(|(s, _)| s.len()), Some(20));
                assert_eq!(parse_segment_file_name(&name), Some((base, kind)));
            }
        }
    }

    #[test]
    fn rejects_other_files() {
        for name in [
            "clean-shutdown",
            "00000000000000000000.log.cleaned",
            "0.log",
            "0000000000000000000a.log",
            "00000000000000000000.txt",
        ] {
            assert_eq!(parse_segment_file_name(name), None, "{name}");
        }
    }
}
