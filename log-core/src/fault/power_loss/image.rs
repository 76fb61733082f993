//! The crash-image builder of the power-loss simulator: from what [`Tracker`] recorded
//! (each file's durable content and its pending changes, the directory's durable names and
//! its changes since the last directory fsync), the files a disk could hold after a power
//! cut, every choice drawn from a seed so an image replays.

use std::fs;
use std::io;
use std::path::Path;

use super::{CrashImage, DirOp, FileOp, Tracker, SECTOR_BYTES};
use crate::file_name::{OFFSET_INDEX_EXTENSION, TIME_INDEX_EXTENSION};

/// How an image treats what is pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The disk had written everything (a process crash looks like this).
    KeepAll,
    /// Nothing reached the disk since the last syncs.
    LoseAll,
    /// Each pending change is decided on its own.
    Independent,
}

impl Tracker {
    pub(super) fn crash_image(
        &self,
        dir: &Path,
        seed: u64,
        dest: &Path,
    ) -> Result<CrashImage, String> {
        let context = |e: io::Error| format!("crash image of {}: {e}", dir.display());
        let mut problems = self.problems.clone();
        let mut foreign = Vec::new();
        for entry in fs::read_dir(dir).map_err(context)? {
            let entry = entry.map_err(context)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // The lock file holds no data (a flock does not outlive the process, and the
            // pid in it is only shown to a refused reader): an image starts without it.
            if name == crate::LOCK_FILE {
                continue;
            }
            if entry.file_type().map_err(context)?.is_file() && !self.names.contains_key(&name) {
                if self.copy_foreign {
                    foreign.push((name, entry.path()));
                } else {
                    problems.push(format!("{name} was created without file_io::create"));
                }
            }
        }
        let mut rng = SplitMix64(seed);
        let mode = match rng.below(4) {
            0 => Mode::KeepAll,
            1 => Mode::LoseAll,
            _ => Mode::Independent,
        };
        let mut choices = vec![format!("{mode:?}")];
        let kept_dir_ops = match mode {
            Mode::KeepAll => self.dir_ops.len(),
            Mode::LoseAll => 0,
            Mode::Independent => rng.below(self.dir_ops.len() as u64 + 1) as usize,
        };
        let mut names = self.durable_names.clone();
        for op in self.dir_ops.iter().take(kept_dir_ops) {
            match op {
                DirOp::Link { name, inode } => {
                    names.insert(name.clone(), *inode);
                }
                DirOp::Unlink { name } => {
                    names.remove(name);
                }
                DirOp::Rename { from, to } => {
                    if let Some(inode) = names.remove(from) {
                        names.insert(to.clone(), inode);
                    }
                }
            }
        }
        if !self.dir_ops.is_empty() {
            let undone: Vec<String> = self.dir_ops[kept_dir_ops..]
                .iter()
                .map(|op| match op {
                    DirOp::Link { name, .. } => format!("create {name}"),
                    DirOp::Unlink { name } => format!("remove {name}"),
                    DirOp::Rename { from, to } => format!("rename {from} -> {to}"),
                })
                .collect();
            choices.push(format!(
                "directory: {kept_dir_ops} of {} changes kept; undone: [{}]",
                self.dir_ops.len(),
                undone.join(", ")
            ));
        }
        fs::create_dir_all(dest).map_err(context)?;
        for (name, path) in &foreign {
            fs::copy(path, dest.join(name)).map_err(context)?;
            choices.push(format!(
                "{name}: not written through file_io, copied as it is"
            ));
        }
        for (name, &id) in &names {
            let content = self.image_of(dir, id, mode, &mut rng, &mut choices, &mut problems)?;
            fs::write(dest.join(name), content).map_err(context)?;
        }
        if !problems.is_empty() {
            return Err(format!(
                "the power-loss model of {} cannot follow: {}",
                dir.display(),
                problems.join("; ")
            ));
        }
        Ok(CrashImage {
            seed,
            after_events: self.history.len() as u64,
            choices,
        })
    }

    /// The content the disk holds for one file.
    fn image_of(
        &self,
        dir: &Path,
        id: usize,
        mode: Mode,
        rng: &mut SplitMix64,
        choices: &mut Vec<String>,
        problems: &mut Vec<String>,
    ) -> Result<Vec<u8>, String> {
        let inode = &self.inodes[id];
        let mut everything = inode.durable.clone();
        for op in &inode.pending {
            apply(&mut everything, op, Fate::Kept);
        }
        // A file still in the directory may have changed through a mapping: compare.
        if let Some(name) = self.names.iter().find(|(_, &i)| i == id).map(|(n, _)| n) {
            let actual = fs::read(dir.join(name)).map_err(|e| format!("read {name}: {e}"))?;
            if actual != everything {
                if !is_index(name) {
                    problems.push(format!("{name} changed without a write through file_io"));
                    return Ok(actual);
                }
                return Ok(mapped_image(
                    name,
                    &inode.durable,
                    actual,
                    mode,
                    rng,
                    choices,
                ));
            }
        }
        let mut content = inode.durable.clone();
        let mut told = Vec::new();
        for op in &inode.pending {
            let fate = match mode {
                Mode::KeepAll => Fate::Kept,
                Mode::LoseAll => Fate::Lost,
                Mode::Independent => draw_fate(op, rng),
            };
            if fate != Fate::Kept {
                told.push(format!("{} {fate:?}", describe(op)));
            }
            apply(&mut content, op, fate);
        }
        if !told.is_empty() {
            let name = self.names_of(id);
            choices.push(format!("{name}: {}", told.join(", ")));
        }
        Ok(content)
    }

    fn names_of(&self, id: usize) -> String {
        self.names
            .iter()
            .chain(self.durable_names.iter())
            .find(|(_, &i)| i == id)
            .map_or_else(|| format!("inode {id}"), |(n, _)| n.clone())
    }
}

fn is_index(name: &str) -> bool {
    Path::new(name)
        .extension()
        .is_some_and(|e| e == OFFSET_INDEX_EXTENSION || e == TIME_INDEX_EXTENSION)
}

/// A mapped file's content since its last msync, taken as a whole.
fn mapped_image(
    name: &str,
    durable: &[u8],
    actual: Vec<u8>,
    mode: Mode,
    rng: &mut SplitMix64,
    choices: &mut Vec<String>,
) -> Vec<u8> {
    let sectors = (actual.len() as u64).div_ceil(SECTOR_BYTES);
    let pick = match mode {
        Mode::KeepAll => 0,
        Mode::LoseAll => 1,
        Mode::Independent => rng.below(3),
    };
    match pick {
        0 => actual,
        1 => {
            choices.push(format!("{name}: mapped pages Lost"));
            durable.to_vec()
        }
        _ => {
            // Pages up to a sector reached the disk; after it the file reads as it was durable.
            let from = (rng.below(sectors.max(1)) * SECTOR_BYTES) as usize;
            let mut content = actual;
            for (at, byte) in content.iter_mut().enumerate().skip(from) {
                *byte = durable.get(at).copied().unwrap_or(0);
            }
            choices.push(format!("{name}: mapped pages kept below byte {from}"));
            content
        }
    }
}

/// What became of one pending change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Kept,
    Lost,
    /// The write reached the disk up to this file position.
    TornAt(u64),
    /// As `TornAt`, and the file grew to the write's end with zeros after it.
    TornZeroFilledAt(u64),
}

fn draw_fate(op: &FileOp, rng: &mut SplitMix64) -> Fate {
    let FileOp::Write { offset, bytes } = op else {
        return if rng.below(2) == 0 {
            Fate::Kept
        } else {
            Fate::Lost
        };
    };
    let end = offset + bytes.len() as u64;
    // Sector boundaries strictly inside the write: a write within one sector is atomic.
    let first = (offset / SECTOR_BYTES + 1) * SECTOR_BYTES;
    let inner = if first < end {
        (end - 1 - first) / SECTOR_BYTES + 1
    } else {
        0
    };
    match rng.below(8) {
        0..=2 => Fate::Kept,
        3 | 4 => Fate::Lost,
        5 | 6 if inner > 0 => Fate::TornAt(first + rng.below(inner) * SECTOR_BYTES),
        5 | 6 => Fate::Lost,
        _ => {
            // Nothing, or a sector prefix, of the data; the size made it.
            let cut = rng.below(inner + 1);
            let at = if cut == 0 {
                *offset
            } else {
                first + (cut - 1) * SECTOR_BYTES
            };
            Fate::TornZeroFilledAt(at)
        }
    }
}

fn apply(content: &mut Vec<u8>, op: &FileOp, fate: Fate) {
    match op {
        FileOp::SetLen(len) => {
            if fate == Fate::Kept {
                content.resize(*len as usize, 0);
            }
        }
        FileOp::Write { offset, bytes } => {
            let offset = *offset as usize;
            let (landed, grows_to) = match fate {
                Fate::Kept => (bytes.len(), offset + bytes.len()),
                Fate::Lost => return,
                Fate::TornAt(at) => (at as usize - offset, at as usize),
                Fate::TornZeroFilledAt(at) => (at as usize - offset, offset + bytes.len()),
            };
            if content.len() < grows_to {
                content.resize(grows_to, 0);
            }
            content[offset..offset + landed].copy_from_slice(&bytes[..landed]);
        }
    }
}

fn describe(op: &FileOp) -> String {
    match op {
        FileOp::Write { offset, bytes } => format!("write@{offset}+{}", bytes.len()),
        FileOp::SetLen(len) => format!("set_len({len})"),
    }
}

/// A small deterministic generator (SplitMix64): images replay from their seed.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when n is 0).
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
}
