//! The `producer-state` file of a partition directory: a snapshot of the
//! idempotent-producer state as of one log offset, so that an open replays
//! only the batch headers written after it.
//!
//! Layout, little-endian, replaced atomically (write `producer-state.tmp`,
//! rename; at clean shutdown also fsync file and directory):
//!
//! | byte | size | field |
//! |-----:|-----:|-------|
//! | 0    | 8    | magic `WEIRPSTA` |
//! | 8    | 4    | version (u32) = 3 |
//! | 12   | 4    | producer count N (u32) |
//! | 16   | 8    | offset (u64): the log end offset the state covers |
//! | 24   | 140 × N | producers, below |
//! | end-4 | 4   | CRC-32C (u32) of every byte before it |
//!
//! A producer: id (i64), epoch (i16), batch count (u16, at most 5), last
//! append (i64, ms since the epoch by the broker's clock: its age for
//! expiry), then five 24-byte slots (first sequence i32, last sequence i32,
//! base offset u64, last offset u64), oldest first, unused slots zero.
//!
//! Version 2 has the same layout, but its time is the largest record
//! timestamp the producer wrote, which the client chose: it is still read
//! (the sequences are exact), and its producers are dated to the time of the
//! load, as replayed batches are (see `producer_recovery`). Version 1 (no
//! time) is not read: the state is rebuilt from the log.
//!
//! A snapshot that is missing, of the wrong size, version or CRC, or whose
//! offset is past the log end (the log lost an unsynced tail) is not used:
//! the state is then rebuilt from the log tail alone.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::producer_state::{ProducerStates, StoredRange, BATCHES_REMEMBERED};

/// The snapshot's file name in the partition directory.
pub const PRODUCER_STATE_FILE: &str = "producer-state";
/// The temporary name it is written under; `weir-log` removes leftover
/// `*.tmp` files when it opens the directory.
const PRODUCER_STATE_TMP_FILE: &str = "producer-state.tmp";

const MAGIC: &[u8; 8] = b"WEIRPSTA";
const VERSION: u32 = 3;
/// Same layout, record timestamps instead of append times.
const VERSION_RECORD_TIMESTAMPS: u32 = 2;
const HEADER_BYTES: usize = 24;
const SLOT_BYTES: usize = 24;
const ENTRY_BYTES: usize = 20 + BATCHES_REMEMBERED * SLOT_BYTES;
const CRC_BYTES: usize = 4;
/// Bounds the read: a longer file is refused before it is buffered.
const PRODUCERS_MAX: usize = 4_000_000;

const _: () = assert!(ENTRY_BYTES == 140);
const _: () = assert!(BATCHES_REMEMBERED <= u16::MAX as usize);

/// A snapshot read back: the state as of `offset`.
#[derive(Debug)]
pub struct Snapshot {
    pub offset: u64,
    pub states: ProducerStates,
}

/// Why a snapshot file was not used.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a valid producer-state snapshot: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
}

/// The snapshot's path in `dir`.
pub fn snapshot_path(dir: &Path) -> PathBuf {
    dir.join(PRODUCER_STATE_FILE)
}

/// Serializes `states` as of `offset`.
pub fn encode(states: &ProducerStates, offset: u64) -> Vec<u8> {
    let count = states.len();
    let mut out = Vec::with_capacity(HEADER_BYTES + count * ENTRY_BYTES + CRC_BYTES);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&u32::try_from(count).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(&offset.to_le_bytes());
    for (producer_id, epoch, last_append_ms, batches) in states.iter() {
        debug_assert!(batches.len() <= BATCHES_REMEMBERED);
        out.extend_from_slice(&producer_id.to_le_bytes());
        out.extend_from_slice(&epoch.to_le_bytes());
        let used = batches.len().min(BATCHES_REMEMBERED);
        out.extend_from_slice(&u16::try_from(used).unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&last_append_ms.to_le_bytes());
        for stored in batches.iter().take(used) {
            out.extend_from_slice(&stored.first_sequence.to_le_bytes());
            out.extend_from_slice(&stored.last_sequence.to_le_bytes());
            out.extend_from_slice(&stored.base_offset.to_le_bytes());
            out.extend_from_slice(&stored.last_offset.to_le_bytes());
        }
        out.resize(out.len() + (BATCHES_REMEMBERED - used) * SLOT_BYTES, 0);
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    debug_assert_eq!(out.len(), HEADER_BYTES + count * ENTRY_BYTES + CRC_BYTES);
    out
}

/// Writes the snapshot into `dir`, atomically. With `durable`, the file and
/// the directory are fsynced (clean shutdown); otherwise a crash may leave
/// the old snapshot, which only makes the next open replay more.
pub fn write(
    dir: &Path,
    states: &ProducerStates,
    offset: u64,
    durable: bool,
) -> std::io::Result<()> {
    write_encoded(dir, &encode(states, offset), durable)
}

/// [`write`] of a snapshot already encoded.
pub fn write_encoded(dir: &Path, bytes: &[u8], durable: bool) -> std::io::Result<()> {
    let tmp = dir.join(PRODUCER_STATE_TMP_FILE);
    let mut file = File::create(&tmp)?;
    file.write_all(bytes)?;
    if durable {
        file.sync_all()?;
    }
    drop(file);
    std::fs::rename(&tmp, snapshot_path(dir))?;
    if durable {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Reads the snapshot in `dir`; `Ok(None)` when there is none. `loaded_ms`
/// (the broker's clock now) dates the producers of a version 2 snapshot.
pub fn read(dir: &Path, loaded_ms: i64) -> Result<Option<Snapshot>, SnapshotError> {
    let path = snapshot_path(dir);
    let io = |source| SnapshotError::Io {
        path: path.clone(),
        source,
    };
    let size = match std::fs::metadata(&path) {
        Ok(meta) => meta.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    let size_max = HEADER_BYTES + PRODUCERS_MAX * ENTRY_BYTES + CRC_BYTES;
    if usize::try_from(size).map_or(true, |size| size > size_max) {
        return Err(invalid(
            &path,
            format!("{size} bytes is more than the {size_max} bytes allowed"),
        ));
    }
    let bytes = std::fs::read(&path).map_err(io)?;
    decode(&bytes, loaded_ms)
        .map(Some)
        .map_err(|reason| invalid(&path, reason))
}

fn invalid(path: &Path, reason: String) -> SnapshotError {
    SnapshotError::Invalid {
        path: path.to_path_buf(),
        reason,
    }
}

/// Parses a whole snapshot file, checking size, magic, version and CRC
/// before trusting any field. `loaded_ms` dates a version 2 snapshot's producers.
pub fn decode(bytes: &[u8], loaded_ms: i64) -> Result<Snapshot, String> {
    let Some((body, crc)) = bytes.split_last_chunk::<CRC_BYTES>() else {
        return Err(format!("{} bytes is too short", bytes.len()));
    };
    if body.len() < HEADER_BYTES {
        return Err(format!("{} bytes is too short", bytes.len()));
    }
    let stored_crc = u32::from_le_bytes(*crc);
    let computed_crc = crc32c::crc32c(body);
    if stored_crc != computed_crc {
        return Err(format!(
            "CRC-32C {stored_crc:#010x} does not match the contents ({computed_crc:#010x})"
        ));
    }
    let mut reader = Reader { bytes: body };
    if reader.take::<8>()? != *MAGIC {
        return Err("bad magic".to_string());
    }
    let version = u32::from_le_bytes(reader.take()?);
    if version != VERSION && version != VERSION_RECORD_TIMESTAMPS {
        return Err(format!(
            "version {version} is not supported (only {VERSION_RECORD_TIMESTAMPS} and {VERSION})"
        ));
    }
    let count = u32::from_le_bytes(reader.take()?);
    let offset = u64::from_le_bytes(reader.take()?);
    let count = usize::try_from(count).map_err(|_| "producer count overflows".to_string())?;
    if reader.bytes.len() != count.saturating_mul(ENTRY_BYTES) {
        return Err(format!(
            "{count} producers need {} bytes of entries, found {}",
            count.saturating_mul(ENTRY_BYTES),
            reader.bytes.len()
        ));
    }
    let mut states = ProducerStates::default();
    let mut batches = Vec::with_capacity(BATCHES_REMEMBERED);
    for index in 0..count {
        let producer_id = i64::from_le_bytes(reader.take()?);
        let epoch = i16::from_le_bytes(reader.take()?);
        let used = usize::from(u16::from_le_bytes(reader.take()?));
        let stored_ms = i64::from_le_bytes(reader.take()?);
        let last_append_ms = if version == VERSION {
            stored_ms
        } else {
            loaded_ms
        };
        if used > BATCHES_REMEMBERED {
            return Err(format!(
                "producer {index} claims {used} batches, at most {BATCHES_REMEMBERED} are kept"
            ));
        }
        batches.clear();
        for slot in 0..BATCHES_REMEMBERED {
            let stored = StoredRange {
                first_sequence: i32::from_le_bytes(reader.take()?),
                last_sequence: i32::from_le_bytes(reader.take()?),
                base_offset: u64::from_le_bytes(reader.take()?),
                last_offset: u64::from_le_bytes(reader.take()?),
            };
            if slot < used {
                if stored.base_offset > stored.last_offset || stored.last_offset >= offset {
                    return Err(format!(
                        "producer {producer_id} has a batch at offsets {}..={} outside the log below {offset}",
                        stored.base_offset, stored.last_offset
                    ));
                }
                batches.push(stored);
            }
        }
        states.restore(producer_id, epoch, last_append_ms, &batches);
    }
    Ok(Snapshot { offset, states })
}

/// Checked little-endian reads over a byte slice.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let Some((head, rest)) = self.bytes.split_first_chunk::<N>() else {
            return Err("truncated".to_string());
        };
        self.bytes = rest;
        Ok(*head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::producer_state::SequencedBatch;

    fn sample() -> ProducerStates {
        let mut states = ProducerStates::default();
        for producer_id in 1..4i64 {
            for sequence in 0..(producer_id as i32 * 3) {
                let batch = SequencedBatch {
                    producer_id,
                    producer_epoch: 2,
                    first_sequence: sequence,
                    last_sequence: sequence,
                };
                let offset = (producer_id * 100) as u64 + sequence as u64;
                states.record(
                    &batch,
                    offset,
                    offset,
                    1_700_000_000_000 + i64::from(sequence),
                );
            }
        }
        states
    }

    #[test]
    fn round_trips_through_bytes_and_files() {
        let states = sample();
        let decoded = decode(&encode(&states, 1000), 0).unwrap();
        assert_eq!((decoded.offset, &decoded.states), (1000, &states));

        let dir = tempfile::tempdir().unwrap();
        assert!(read(dir.path(), 0).unwrap().is_none());
        write(dir.path(), &states, 1000, true).unwrap();
        let read_back = read(dir.path(), 0).unwrap().unwrap();
        assert_eq!(read_back.states, states);
        assert!(!dir.path().join(PRODUCER_STATE_TMP_FILE).exists());
    }

    #[test]
    fn any_flipped_byte_or_cut_is_refused() {
        let bytes = encode(&sample(), 1000);
        for at in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x40;
            assert!(
                decode(&damaged, 0).is_err(),
                "flip at byte {at} went unnoticed"
            );
        }
        for len in 0..bytes.len() {
            assert!(
                decode(&bytes[..len], 0).is_err(),
                "cut at {len} went unnoticed"
            );
        }
    }

    #[test]
    fn a_version_2_snapshot_keeps_its_sequences_and_is_dated_to_the_load() {
        let states = sample();
        let mut bytes = encode(&states, 1000);
        bytes[8..12].copy_from_slice(&VERSION_RECORD_TIMESTAMPS.to_le_bytes());
        let body = bytes.len() - CRC_BYTES;
        let crc = crc32c::crc32c(&bytes[..body]);
        bytes[body..].copy_from_slice(&crc.to_le_bytes());
        let loaded_ms = 42;
        let decoded = decode(&bytes, loaded_ms).unwrap();
        let mut expected = ProducerStates::default();
        for (producer_id, epoch, _, batches) in states.iter() {
            let batches: Vec<StoredRange> = batches.iter().copied().collect();
            expected.restore(producer_id, epoch, loaded_ms, &batches);
        }
        assert_eq!(decoded.states, expected);
    }

    #[test]
    fn batches_past_the_snapshot_offset_are_refused() {
        let error = decode(&encode(&sample(), 200), 0).unwrap_err();
        assert!(error.contains("outside the log below 200"), "{error}");
    }

    #[test]
    fn a_file_over_the_bound_is_refused_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let file = File::create(snapshot_path(dir.path())).unwrap();
        file.set_len((HEADER_BYTES + (PRODUCERS_MAX + 1) * ENTRY_BYTES) as u64)
            .unwrap();
        let error = read(dir.path(), 0).unwrap_err();
        assert!(error.to_string().contains("bytes allowed"), "{error}");
    }
}
