//! Small checkpoint files of a partition directory: `clean-shutdown` (written by a clean
//! close: open may skip recovery) and `recovery-point` (everything in segments below this
//! offset is fsynced: recovery scans only from the segment holding it). Both have the same
//! 60-byte little-endian layout with a CRC-32C, and are replaced atomically (temp file,
//! fsync, rename, directory fsync).

use std::fs;
use std::io;
use std::path::Path;

use crate::error::IoContext;
use crate::file_io;
use crate::file_name::{append_suffix, remove_if_exists, sync_dir, TEMP_SUFFIX};
use crate::LogError;

pub(crate) const CLEAN_SHUTDOWN_FILE: &str = "clean-shutdown";
pub(crate) const RECOVERY_POINT_FILE: &str = "recovery-point";

const MAGIC: [u8; 8] = *b"WEIRCKPT";
const VERSION: u32 = 1;
/// Size of a checkpoint file.
pub const CHECKPOINT_BYTES: usize = 60;
const CRC_AT: usize = 56;
const _: () = assert!(CRC_AT + 4 == CHECKPOINT_BYTES);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CheckpointKind {
    CleanShutdown = 1,
    RecoveryPoint = 2,
}

impl CheckpointKind {
    fn file_name(self) -> &'static str {
        match self {
            CheckpointKind::CleanShutdown => CLEAN_SHUTDOWN_FILE,
            CheckpointKind::RecoveryPoint => RECOVERY_POINT_FILE,
        }
    }
}

/// What a checkpoint file records. For a recovery point only `log_end_offset` (the
/// recovery point itself) and `log_start_offset` matter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    pub log_start_offset: u64,
    pub log_end_offset: u64,
    pub high_watermark: u64,
    pub active_base_offset: u64,
    pub active_size_bytes: u64,
}

impl Checkpoint {
    fn encode(&self, kind: CheckpointKind) -> [u8; CHECKPOINT_BYTES] {
        let mut out = [0u8; CHECKPOINT_BYTES];
        out[0..8].copy_from_slice(&MAGIC);
        out[8..12].copy_from_slice(&VERSION.to_le_bytes());
        out[12..16].copy_from_slice(&(kind as u32).to_le_bytes());
        out[16..24].copy_from_slice(&self.log_start_offset.to_le_bytes());
        out[24..32].copy_from_slice(&self.log_end_offset.to_le_bytes());
        out[32..40].copy_from_slice(&self.high_watermark.to_le_bytes());
        out[40..48].copy_from_slice(&self.active_base_offset.to_le_bytes());
        out[48..56].copy_from_slice(&self.active_size_bytes.to_le_bytes());
        let crc = crc32c::crc32c(&out[..CRC_AT]);
        out[CRC_AT..].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes a checkpoint; None for any file that is not a whole, intact checkpoint of `kind`.
    fn decode(bytes: &[u8], kind: CheckpointKind) -> Option<Checkpoint> {
        let bytes: &[u8; CHECKPOINT_BYTES] = bytes.try_into().ok()?;
        let u32_at = |at: usize| {
            bytes
                .get(at..at + 4)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_le_bytes)
        };
        let u64_at = |at: usize| {
            bytes
                .get(at..at + 8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_le_bytes)
        };
        if bytes[0..8] != MAGIC || u32_at(8)? != VERSION || u32_at(12)? != kind as u32 {
            return None;
        }
        if crc32c::crc32c(&bytes[..CRC_AT]) != u32_at(CRC_AT)? {
            return None;
        }
        Some(Checkpoint {
            log_start_offset: u64_at(16)?,
            log_end_offset: u64_at(24)?,
            high_watermark: u64_at(32)?,
            active_base_offset: u64_at(40)?,
            active_size_bytes: u64_at(48)?,
        })
    }

    /// Reads the checkpoint of `kind` in `dir`; Ok(None) when it is missing or damaged
    /// (a damaged checkpoint only costs a recovery scan).
    pub fn read(dir: &Path, kind: CheckpointKind) -> Result<Option<Checkpoint>, LogError> {
        let path = dir.join(kind.file_name());
        match fs::read(&path) {
            Ok(bytes) => Ok(Checkpoint::decode(&bytes, kind)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).io_ctx("read checkpoint", &path),
        }
    }

    /// Replaces the checkpoint of `kind` in `dir` atomically and durably.
    pub fn write(&self, dir: &Path, kind: CheckpointKind) -> Result<(), LogError> {
        let path = dir.join(kind.file_name());
        let temp = append_suffix(&path, TEMP_SUFFIX);
        let bytes = self.encode(kind);
        let mut file = file_io::create(&temp).io_ctx("create checkpoint", &temp)?;
        file_io::write_all(&mut file, &bytes, &temp).io_ctx("write checkpoint", &temp)?;
        file_io::sync_all(&file, &temp).io_ctx("fsync checkpoint", &temp)?;
        drop(file);
        file_io::rename(&temp, &path).io_ctx("rename checkpoint into place", &path)?;
        sync_dir(dir).io_ctx("fsync directory", dir)
    }

    /// Removes the checkpoint of `kind` durably (open removes `clean-shutdown` before it
    /// changes anything, so a later crash cannot be mistaken for a clean stop).
    pub fn remove(dir: &Path, kind: CheckpointKind) -> Result<(), LogError> {
        let path = dir.join(kind.file_name());
        remove_if_exists(&path).io_ctx("remove checkpoint", &path)?;
        sync_dir(dir).io_ctx("fsync directory", dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_damage() {
        let c = Checkpoint {
            log_start_offset: 5,
            log_end_offset: 99,
            high_watermark: 90,
            active_base_offset: 50,
            active_size_bytes: 4096,
        };
        let bytes = c.encode(CheckpointKind::CleanShutdown);
        assert_eq!(
            Checkpoint::decode(&bytes, CheckpointKind::CleanShutdown),
            Some(c)
        );
        assert_eq!(
            Checkpoint::decode(&bytes, CheckpointKind::RecoveryPoint),
            None
        );
        for i in 0..CHECKPOINT_BYTES {
            let mut damaged = bytes;
            damaged[i] ^= 0x40;
            assert_eq!(
                Checkpoint::decode(&damaged, CheckpointKind::CleanShutdown),
                None,
                "byte {i}"
            );
        }
        assert_eq!(
            Checkpoint::decode(&bytes[..59], CheckpointKind::CleanShutdown),
            None
        );
    }
}
