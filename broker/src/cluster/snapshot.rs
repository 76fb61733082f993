//! The metadata snapshot: `<data>/cluster/snapshot`, the applied
//! `ClusterMetadata` as of one log index, so that the log up to that index can
//! be dropped (`RaftFile::compact`) and a member too far behind can be sent
//! the state instead of the entries it missed.
//!
//! The snapshot's data (what Raft carries in `eraftpb.Snapshot.data`, and so
//! what a leader sends a follower): `u32 version` ([`DATA_VERSION`]), `u32
//! CRC-32C` of the rest, then `ClusterMetadata` as JSON. It is checked by the
//! follower before Raft sees it, so a damaged snapshot from the network is
//! dropped like a lost message.
//!
//! The file: magic `WEIRSNAP`, `u32 version` ([`FILE_VERSION`]), `u32 length`
//! of the payload, `u32 CRC-32C` of the payload, then the payload: the
//! protobuf `eraftpb.Snapshot` (index, term, ConfState and the data above).
//! Integers are little-endian. It is written to `snapshot.tmp`, fsynced,
//! renamed over `snapshot`, and the directory fsynced: a crash leaves the old
//! snapshot or the new one, whole. A file that is there but does not check
//! out is an error, never an empty state: the log before it may be gone.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use protobuf::Message as _;
use raft::eraftpb::Snapshot;

use super::metadata::{ClusterMetadata, NodeId};
use super::ClusterError;

pub(super) const SNAPSHOT_FILE: &str = "snapshot";
pub(super) const SNAPSHOT_TMP_FILE: &str = "snapshot.tmp";
const MAGIC: &[u8; 8] = b"WEIRSNAP";
const FILE_VERSION: u32 = 1;
const DATA_VERSION: u32 = 1;
const HEADER_BYTES: usize = 8 + 4 + 4 + 4;
/// No snapshot is larger: a bound on what a damaged length field (or a peer)
/// can make this broker allocate. The metadata of 100,000 partitions is a few
/// MiB of JSON.
pub(super) const SNAPSHOT_BYTES_MAX: usize = 256 << 20;

/// A snapshot as read back: Raft's part and the metadata its data decodes to.
#[derive(Debug, Clone)]
pub struct LoadedSnapshot {
    pub raft: Snapshot,
    pub metadata: ClusterMetadata,
}

impl LoadedSnapshot {
    pub fn index(&self) -> u64 {
        self.raft.get_metadata().index
    }

    pub fn term(&self) -> u64 {
        self.raft.get_metadata().term
    }
}

/// The snapshot data for `metadata`.
pub(super) fn encode_data(metadata: &ClusterMetadata) -> Result<Vec<u8>, ClusterError> {
    let json = serde_json::to_vec(metadata).map_err(|e| ClusterError::Encode(e.to_string()))?;
    let mut data = Vec::with_capacity(8 + json.len());
    data.extend_from_slice(&DATA_VERSION.to_le_bytes());
    data.extend_from_slice(&crc32c::crc32c(&json).to_le_bytes());
    data.extend_from_slice(&json);
    Ok(data)
}

/// Checks a snapshot (from the file or from a leader) and decodes its
/// metadata: the data's version and checksum, the metadata's applied index
/// against the snapshot's index, and the voters against `voters` when given.
/// The error is a sentence fragment saying what is wrong.
pub(super) fn decode(
    snapshot: &Snapshot,
    voters: Option<&[NodeId]>,
) -> Result<ClusterMetadata, String> {
    let data: &[u8] = &snapshot.data;
    if data.len() < 8 {
        return Err(format!("its data is {} bytes, too short", data.len()));
    }
    let version = u32::from_le_bytes(data[0..4].try_into().expect("4 bytes"));
    if version != DATA_VERSION {
        return Err(format!(
            "its data is version {version}, and this broker reads version {DATA_VERSION}"
        ));
    }
    let crc = u32::from_le_bytes(data[4..8].try_into().expect("4 bytes"));
    if crc32c::crc32c(&data[8..]) != crc {
        return Err("its data fails its checksum".into());
    }
    let metadata: ClusterMetadata =
        serde_json::from_slice(&data[8..]).map_err(|e| format!("its data does not decode: {e}"))?;
    let meta = snapshot.get_metadata();
    if metadata.applied_index != meta.index {
        return Err(format!(
            "it says index {} but holds the metadata applied to {}",
            meta.index, metadata.applied_index
        ));
    }
    if meta.index == 0 {
        return Err("it is at index 0".into());
    }
    if let Some(voters) = voters {
        let mut ours = voters.to_vec();
        ours.sort_unstable();
        let mut theirs = meta.get_conf_state().get_voters().to_vec();
        theirs.sort_unstable();
        if ours != theirs {
            return Err(format!(
                "its voters {theirs:?} are not this broker's {ours:?}"
            ));
        }
    }
    Ok(metadata)
}

/// Reads `<dir>/snapshot`: `None` if there is none, an error if it is there
/// and damaged.
pub(super) fn read(dir: &Path) -> Result<Option<LoadedSnapshot>, ClusterError> {
    let path = dir.join(SNAPSHOT_FILE);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ClusterError::io("read", &path, e)),
    };
    let corrupt = |reason: String| ClusterError::CorruptSnapshot {
        path: path.clone(),
        reason,
    };
    if bytes.len() < HEADER_BYTES || &bytes[0..8] != MAGIC {
        return Err(corrupt(format!(
            "it is {} bytes and does not start with a snapshot header",
            bytes.len()
        )));
    }
    let field = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    let version = field(8);
    if version != FILE_VERSION {
        return Err(corrupt(format!(
            "it is version {version}, and this broker reads version {FILE_VERSION}"
        )));
    }
    let length = field(12) as usize;
    let payload = &bytes[HEADER_BYTES..];
    if payload.len() != length {
        return Err(corrupt(format!(
            "its header says {length} bytes follow, and {} do",
            payload.len()
        )));
    }
    if crc32c::crc32c(payload) != field(16) {
        return Err(corrupt("it fails its checksum".into()));
    }
    let raft = Snapshot::parse_from_bytes(payload)
        .map_err(|e| corrupt(format!("it does not decode: {e}")))?;
    let metadata = decode(&raft, None).map_err(corrupt)?;
    Ok(Some(LoadedSnapshot { raft, metadata }))
}

/// Writes `snapshot` to `<dir>/snapshot.tmp` and fsyncs it; [`install`]
/// makes it the snapshot.
pub(super) fn write_tmp(dir: &Path, snapshot: &Snapshot) -> Result<(), ClusterError> {
    let payload = snapshot.write_to_bytes()?;
    if payload.len() > SNAPSHOT_BYTES_MAX {
        return Err(ClusterError::SnapshotTooLarge {
            bytes: payload.len(),
        });
    }
    let mut bytes = Vec::with_capacity(HEADER_BYTES + payload.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&FILE_VERSION.to_le_bytes());
    bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    bytes.extend_from_slice(&payload);
    let path = dir.join(SNAPSHOT_TMP_FILE);
    let mut file = File::create(&path).map_err(|e| ClusterError::io("create", &path, e))?;
    file.write_all(&bytes)
        .map_err(|e| ClusterError::io("write", &path, e))?;
    file.sync_all()
        .map_err(|e| ClusterError::io("fsync", &path, e))
}

/// Renames `snapshot.tmp` over `snapshot` and fsyncs the directory: from
/// here on a restart loads the new snapshot.
pub(super) fn install(dir: &Path) -> Result<(), ClusterError> {
    let path = dir.join(SNAPSHOT_FILE);
    fs::rename(dir.join(SNAPSHOT_TMP_FILE), &path)
        .map_err(|e| ClusterError::io("rename", &path, e))?;
    sync_dir(dir)
}

pub(super) fn sync_dir(dir: &Path) -> Result<(), ClusterError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ClusterError::io("fsync", dir, e))
}

pub(super) fn path(dir: &Path) -> PathBuf {
    dir.join(SNAPSHOT_FILE)
}
