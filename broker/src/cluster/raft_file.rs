//! The metadata log on disk: `<data>/cluster/raft.log`, the Raft entries and
//! hard state of this broker, appended as frames and fsynced before the Raft
//! core is told they are persisted (so before any vote or acknowledgement
//! that depends on them leaves the broker).
//!
//! Frame: `u32 length` (little-endian, of what follows the CRC), `u32 CRC-32C`
//! of the payload, then the payload: kind `1` and the entries (`u32 count`,
//! then `u32 length` + protobuf `eraftpb.Entry` each), or kind `2` and a
//! protobuf `eraftpb.HardState`, or kind `3` and the `u64 index` and `u64
//! term` of the snapshot the file was compacted to (only as its first frame).
//! An entries frame whose first index is at or below entries already read
//! replaces them from there on, as Raft overwrites a follower's conflicting
//! suffix; the last hard state wins.
//!
//! A crash can tear only the last frame (written after the last fsync): the
//! reader stops at the first frame that is short or fails its CRC and cuts
//! the file there. Everything before it was fsynced, or was never promised.
//!
//! Compaction ([`RaftFile::compact`]) drops the entries up to a snapshot's
//! index in four steps, each fsynced before the next begins: the snapshot is
//! written to `snapshot.tmp`; renamed to `snapshot` (and the directory
//! fsynced); the hard state and the entries after the snapshot are written to
//! `raft.log.tmp` behind a kind-`3` frame; that is renamed to `raft.log` (and
//! the directory fsynced). A crash after any step opens to the same metadata:
//! before the first rename the old snapshot and the whole log are there;
//! after it, the new snapshot and a log whose entries up to its index are
//! skipped at open (all of them after it too if the log's entry at that index
//! is of another term: a follower's suffix that the leader's snapshot
//! replaced). A log whose kind-`3` frame names an index past the snapshot
//! that is there (the snapshot deleted, or replaced by an older one) is
//! refused, never read as a shorter history.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use protobuf::Message as _;
use raft::eraftpb::{Entry, HardState, Snapshot};

use super::snapshot::{self, LoadedSnapshot};
use super::ClusterError;

const LOG_FILE: &str = "raft.log";
const LOG_TMP_FILE: &str = "raft.log.tmp";
const KIND_ENTRIES: u8 = 1;
const KIND_HARD_STATE: u8 = 2;
const KIND_COMPACTED: u8 = 3;
/// No frame is larger: a bound on what a damaged length field can make the reader allocate.
const FRAME_BYTES_MAX: u32 = 64 << 20;

/// What a restart finds on disk.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The last snapshot; `entries` follow it.
    pub snapshot: Option<LoadedSnapshot>,
    pub entries: Vec<Entry>,
    pub hard_state: HardState,
    /// The index the log says it was compacted to (its kind-`3` frame).
    pub compacted_to: Option<u64>,
    /// Bytes cut from a torn tail.
    pub cut_bytes: u64,
}

/// The steps of [`RaftFile::compact`], in order; a test stops after one to
/// leave what a crash there would.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum CompactStep {
    SnapshotWritten,
    SnapshotInstalled,
    LogWritten,
    LogInstalled,
}

/// The open metadata log file, appended to by the quorum task alone.
#[derive(Debug)]
pub struct RaftFile {
    dir: PathBuf,
    path: PathBuf,
    file: File,
    /// Frames written since the last fsync.
    dirty: bool,
}

impl RaftFile {
    /// Opens (creating) `<dir>/raft.log` and loads `<dir>/snapshot`, reads
    /// the log back, cuts a torn tail and skips what the snapshot covers.
    pub fn open(dir: &Path) -> Result<(RaftFile, Recovered), ClusterError> {
        fs::create_dir_all(dir).map_err(|e| ClusterError::io("create", dir, e))?;
        // What a compaction cut short left behind; the renamed files are whole.
        for tmp in [snapshot::SNAPSHOT_TMP_FILE, LOG_TMP_FILE] {
            let tmp = dir.join(tmp);
            match fs::remove_file(&tmp) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(ClusterError::io("remove", &tmp, e)),
            }
        }
        let loaded = snapshot::read(dir)?;
        let path = dir.join(LOG_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| ClusterError::io("open", &path, e))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| ClusterError::io("read", &path, e))?;
        let (mut recovered, valid_len) = replay(&bytes, &path)?;
        if valid_len < bytes.len() {
            file.set_len(valid_len as u64)
                .map_err(|e| ClusterError::io("truncate", &path, e))?;
            file.sync_all()
                .map_err(|e| ClusterError::io("fsync", &path, e))?;
        }
        // A new file's directory entry must be durable before anything in it counts.
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| ClusterError::io("fsync", dir, e))?;
        recovered.cut_bytes = (bytes.len() - valid_len) as u64;
        skip_snapshotted(&mut recovered, loaded, dir)?;
        Ok((
            RaftFile {
                dir: dir.to_path_buf(),
                path,
                file,
                dirty: false,
            },
            recovered,
        ))
    }

    pub fn append_entries(&mut self, entries: &[Entry]) -> Result<(), ClusterError> {
        if entries.is_empty() {
            return Ok(());
        }
        self.write_frame(&entries_payload(entries)?)
    }

    pub fn write_hard_state(&mut self, hard_state: &HardState) -> Result<(), ClusterError> {
        self.write_frame(&hard_state_payload(hard_state)?)
    }

    /// Makes every frame written so far durable.
    pub fn sync(&mut self) -> Result<(), ClusterError> {
        if self.dirty {
            self.file
                .sync_data()
                .map_err(|e| ClusterError::io("fsync", &self.path, e))?;
            self.dirty = false;
        }
        Ok(())
    }

    /// Makes `snapshot` the snapshot and drops the entries up to its index,
    /// keeping `later` (the entries after it, as the Raft storage holds them)
    /// and `hard_state`. Everything is durable when this returns; see the
    /// module's comment for what a crash in between leaves.
    pub fn compact(
        &mut self,
        snapshot: &Snapshot,
        later: &[Entry],
        hard_state: &HardState,
    ) -> Result<(), ClusterError> {
        self.compact_through(snapshot, later, hard_state, CompactStep::LogInstalled)
    }

    pub(super) fn compact_through(
        &mut self,
        snapshot: &Snapshot,
        later: &[Entry],
        hard_state: &HardState,
        last_step: CompactStep,
    ) -> Result<(), ClusterError> {
        let meta = snapshot.get_metadata();
        debug_assert!(later
            .iter()
            .enumerate()
            .all(|(i, e)| e.index == meta.index + 1 + i as u64));
        snapshot::write_tmp(&self.dir, snapshot)?;
        if last_step == CompactStep::SnapshotWritten {
            return Ok(());
        }
        // The snapshot is durable under its name before any entry it covers
        // leaves the log.
        snapshot::install(&self.dir)?;
        if last_step == CompactStep::SnapshotInstalled {
            return Ok(());
        }
        let tmp = self.dir.join(LOG_TMP_FILE);
        let mut bytes = Vec::new();
        let mut marker = vec![KIND_COMPACTED];
        marker.extend_from_slice(&meta.index.to_le_bytes());
        marker.extend_from_slice(&meta.term.to_le_bytes());
        push_frame(&mut bytes, &marker)?;
        push_frame(&mut bytes, &hard_state_payload(hard_state)?)?;
        if !later.is_empty() {
            push_frame(&mut bytes, &entries_payload(later)?)?;
        }
        let mut file = File::create(&tmp).map_err(|e| ClusterError::io("create", &tmp, e))?;
        file.write_all(&bytes)
            .map_err(|e| ClusterError::io("write", &tmp, e))?;
        file.sync_all()
            .map_err(|e| ClusterError::io("fsync", &tmp, e))?;
        if last_step == CompactStep::LogWritten {
            return Ok(());
        }
        fs::rename(&tmp, &self.path).map_err(|e| ClusterError::io("rename", &self.path, e))?;
        snapshot::sync_dir(&self.dir)?;
        self.file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| ClusterError::io("open", &self.path, e))?;
        self.dirty = false;
        Ok(())
    }

    fn write_frame(&mut self, payload: &[u8]) -> Result<(), ClusterError> {
        let mut frame = Vec::with_capacity(8 + payload.len());
        push_frame(&mut frame, payload)?;
        self.file
            .write_all(&frame)
            .map_err(|e| ClusterError::io("write", &self.path, e))?;
        self.dirty = true;
        Ok(())
    }
}

fn push_frame(out: &mut Vec<u8>, payload: &[u8]) -> Result<(), ClusterError> {
    let length = u32::try_from(payload.len())
        .ok()
        .filter(|&l| l <= FRAME_BYTES_MAX)
        .ok_or(ClusterError::EntryTooLarge {
            bytes: payload.len(),
        })?;
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

fn entries_payload(entries: &[Entry]) -> Result<Vec<u8>, ClusterError> {
    let mut payload = vec![KIND_ENTRIES];
    payload.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for entry in entries {
        let encoded = entry.write_to_bytes()?;
        payload.extend_from_slice(&(encoded.len() as u32).to_le_bytes());
        payload.extend_from_slice(&encoded);
    }
    Ok(payload)
}

fn hard_state_payload(hard_state: &HardState) -> Result<Vec<u8>, ClusterError> {
    let mut payload = vec![KIND_HARD_STATE];
    payload.extend_from_slice(&hard_state.write_to_bytes()?);
    Ok(payload)
}

/// Drops the entries `snapshot` covers from `recovered`, and refuses a log
/// compacted past the snapshot that is there.
fn skip_snapshotted(
    recovered: &mut Recovered,
    snapshot: Option<LoadedSnapshot>,
    dir: &Path,
) -> Result<(), ClusterError> {
    let (index, term) = snapshot.as_ref().map_or((0, 0), |s| (s.index(), s.term()));
    if let Some(compacted) = recovered.compacted_to {
        if compacted > index {
            return Err(ClusterError::SnapshotMissing {
                path: snapshot::path(dir),
                compacted,
                found: index,
            });
        }
    }
    let entries = &mut recovered.entries;
    match entries.iter().find(|e| e.index == index) {
        // The log holds the snapshot's own entry: what follows it follows the
        // snapshot too (Raft's log matching).
        Some(e) if e.term == term => entries.retain(|e| e.index > index),
        // A follower crashed while installing a leader's snapshot: its
        // entries from there on were a suffix the leader's log replaced.
        Some(_) => entries.clear(),
        None => entries.retain(|e| e.index > index),
    }
    if let Some(first) = entries.first() {
        if first.index != index + 1 {
            return Err(ClusterError::SnapshotMissing {
                path: snapshot::path(dir),
                compacted: first.index - 1,
                found: index,
            });
        }
    }
    recovered.snapshot = snapshot;
    Ok(())
}

/// Reads frames until the end or the first damaged one; returns what they
/// say and the length of the undamaged prefix.
fn replay(bytes: &[u8], path: &Path) -> Result<(Recovered, usize), ClusterError> {
    let mut recovered = Recovered::default();
    let mut at = 0usize;
    while let Some(payload) = next_frame(&bytes[at..]) {
        let frame_len = 8 + payload.len();
        let decoded = match payload[0] {
            KIND_ENTRIES => decode_entries(&payload[1..]).map(|entries| {
                if let Some(first) = entries.first() {
                    // Raft overwrote from `first.index` on: drop what it replaced.
                    recovered.entries.retain(|e| e.index < first.index);
                    debug_assert!(recovered
                        .entries
                        .last()
                        .is_none_or(|last| last.index + 1 == first.index));
                }
                recovered.entries.extend(entries);
            }),
            KIND_HARD_STATE => HardState::parse_from_bytes(&payload[1..])
                .ok()
                .map(|hs| recovered.hard_state = hs),
            // Only a compacted file's first frame.
            KIND_COMPACTED if at == 0 && payload.len() == 17 => {
                let index = u64::from_le_bytes(payload[1..9].try_into().expect("8 bytes"));
                recovered.compacted_to = Some(index);
                Some(())
            }
            _ => None,
        };
        if decoded.is_none() {
            // The CRC held but the payload does not decode: not a torn write
            // but a file this version cannot read. Refuse rather than guess.
            return Err(ClusterError::Corrupt {
                path: path.to_path_buf(),
                position: at as u64,
            });
        }
        at += frame_len;
    }
    Ok((recovered, at))
}

/// The payload of the frame at the start of `bytes`, if it is whole and intact.
fn next_frame(bytes: &[u8]) -> Option<&[u8]> {
    let length = u32::from_le_bytes(bytes.get(0..4)?.try_into().ok()?);
    if length == 0 || length > FRAME_BYTES_MAX {
        return None;
    }
    let crc = u32::from_le_bytes(bytes.get(4..8)?.try_into().ok()?);
    let payload = bytes.get(8..8 + length as usize)?;
    (crc32c::crc32c(payload) == crc).then_some(payload)
}

fn decode_entries(mut bytes: &[u8]) -> Option<Vec<Entry>> {
    let count = u32::from_le_bytes(bytes.get(0..4)?.try_into().ok()?);
    bytes = &bytes[4..];
    let mut entries = Vec::with_capacity((count as usize).min(1024));
    for _ in 0..count {
        let length = u32::from_le_bytes(bytes.get(0..4)?.try_into().ok()?) as usize;
        let entry = Entry::parse_from_bytes(bytes.get(4..4 + length)?).ok()?;
        entries.push(entry);
        bytes = &bytes[4 + length..];
    }
    bytes.is_empty().then_some(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64, data: &[u8]) -> Entry {
        Entry {
            index,
            term,
            data: data.to_vec().into(),
            ..Default::default()
        }
    }

    #[test]
    fn entries_and_hard_state_survive_reopen_and_overwrites_replace_the_suffix() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut file, recovered) = RaftFile::open(dir.path()).unwrap();
            assert!(recovered.entries.is_empty());
            file.append_entries(&[entry(1, 1, b"a"), entry(2, 1, b"b"), entry(3, 1, b"c")])
                .unwrap();
            let hs = HardState {
                term: 2,
                vote: 3,
                commit: 1,
                ..Default::default()
            };
            file.write_hard_state(&hs).unwrap();
            // A new leader overwrote entries 2 and 3.
            file.append_entries(&[entry(2, 2, b"x")]).unwrap();
            file.sync().unwrap();
        }
        let (_, recovered) = RaftFile::open(dir.path()).unwrap();
        let got: Vec<_> = recovered
            .entries
            .iter()
            .map(|e| (e.index, e.term, e.data.to_vec()))
            .collect();
        assert_eq!(got, vec![(1, 1, b"a".to_vec()), (2, 2, b"x".to_vec())]);
        assert_eq!(
            (recovered.hard_state.term, recovered.hard_state.vote),
            (2, 3)
        );
    }

    #[test]
    fn a_torn_last_frame_is_cut_and_everything_before_it_kept() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut file, _) = RaftFile::open(dir.path()).unwrap();
            file.append_entries(&[entry(1, 1, b"kept")]).unwrap();
            file.append_entries(&[entry(2, 1, b"torn")]).unwrap();
            file.sync().unwrap();
        }
        let path = dir.path().join(LOG_FILE);
        let full = fs::metadata(&path).unwrap().len();
        for cut in 1..20 {
            let copy = tempfile::tempdir().unwrap();
            let bytes = fs::read(&path).unwrap();
            fs::write(copy.path().join(LOG_FILE), &bytes[..(full - cut) as usize]).unwrap();
            let (_, recovered) = RaftFile::open(copy.path()).unwrap();
            assert_eq!(recovered.entries.len(), 1, "cut {cut}");
            assert!(recovered.cut_bytes > 0);
            // The cut is durable: a second open finds nothing more to cut.
            let (_, again) = RaftFile::open(copy.path()).unwrap();
            assert_eq!((again.entries.len(), again.cut_bytes), (1, 0));
        }
    }

    #[test]
    fn a_flipped_bit_in_the_last_frame_is_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut file, _) = RaftFile::open(dir.path()).unwrap();
            file.append_entries(&[entry(1, 1, b"kept")]).unwrap();
            file.append_entries(&[entry(2, 1, b"flipped")]).unwrap();
            file.sync().unwrap();
        }
        let path = dir.path().join(LOG_FILE);
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 2;
        bytes[last] ^= 0x10;
        fs::write(&path, &bytes).unwrap();
        let (_, recovered) = RaftFile::open(dir.path()).unwrap();
        assert_eq!(recovered.entries.len(), 1);
    }
}
