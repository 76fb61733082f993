//! The metadata log on disk: `<data>/cluster/raft.log`, the Raft entries and
//! hard state of this broker, appended as frames and fsynced before the Raft
//! core is told they are persisted (so before any vote or acknowledgement
//! that depends on them leaves the broker).
//!
//! Frame: `u32 length` (little-endian, of what follows the CRC), `u32 CRC-32C`
//! of the payload, then the payload: kind `1` and the entries (`u32 count`,
//! then `u32 length` + protobuf `eraftpb.Entry` each), or kind `2` and a
//! protobuf `eraftpb.HardState`. An entries frame whose first index is at or
//! below entries already read replaces them from there on, as Raft overwrites
//! a follower's conflicting suffix; the last hard state wins.
//!
//! A crash can tear only the last frame (written after the last fsync): the
//! reader stops at the first frame that is short or fails its CRC and cuts
//! the file there. Everything before it was fsynced, or was never promised.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use protobuf::Message as _;
use raft::eraftpb::{Entry, HardState};

use super::ClusterError;

const LOG_FILE: &str = "raft.log";
const KIND_ENTRIES: u8 = 1;
const KIND_HARD_STATE: u8 = 2;
/// No frame is larger: a bound on what a damaged length field can make the reader allocate.
const FRAME_BYTES_MAX: u32 = 64 << 20;

/// What a restart finds on disk.
#[derive(Debug, Default)]
pub struct Recovered {
    pub entries: Vec<Entry>,
    pub hard_state: HardState,
    /// Bytes cut from a torn tail.
    pub cut_bytes: u64,
}

/// The open metadata log file, appended to by the quorum task alone.
#[derive(Debug)]
pub struct RaftFile {
    path: PathBuf,
    file: File,
    /// Frames written since the last fsync.
    dirty: bool,
}

impl RaftFile {
    /// Opens (creating) `<dir>/raft.log`, reads it back and cuts a torn tail.
    pub fn open(dir: &Path) -> Result<(RaftFile, Recovered), ClusterError> {
        fs::create_dir_all(dir).map_err(|e| ClusterError::io("create", dir, e))?;
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
        let (recovered, valid_len) = replay(&bytes, &path)?;
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
        let recovered = Recovered {
            cut_bytes: (bytes.len() - valid_len) as u64,
            ..recovered
        };
        Ok((
            RaftFile {
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
        let mut payload = vec![KIND_ENTRIES];
        payload.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        for entry in entries {
            let encoded = entry.write_to_bytes()?;
            payload.extend_from_slice(&(encoded.len() as u32).to_le_bytes());
            payload.extend_from_slice(&encoded);
        }
        self.write_frame(&payload)
    }

    pub fn write_hard_state(&mut self, hard_state: &HardState) -> Result<(), ClusterError> {
        let mut payload = vec![KIND_HARD_STATE];
        payload.extend_from_slice(&hard_state.write_to_bytes()?);
        self.write_frame(&payload)
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

    fn write_frame(&mut self, payload: &[u8]) -> Result<(), ClusterError> {
        let length = u32::try_from(payload.len())
            .ok()
            .filter(|&l| l <= FRAME_BYTES_MAX)
            .ok_or(ClusterError::EntryTooLarge {
                bytes: payload.len(),
            })?;
        let mut frame = Vec::with_capacity(8 + payload.len());
        frame.extend_from_slice(&length.to_le_bytes());
        frame.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
        frame.extend_from_slice(payload);
        self.file
            .write_all(&frame)
            .map_err(|e| ClusterError::io("write", &self.path, e))?;
        self.dirty = true;
        Ok(())
    }
}

/// Reads frames until the end or the first damaged one; returns what they say
/// and the length of the undamaged prefix.
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
