//! Random damage to a partition directory — any file cut at any length, bytes flipped
//! anywhere, an index or checkpoint deleted — followed by open never panics: open either
//! fails with a typed `Corrupt` or `DamagedBelowRecoveryPoint` error or succeeds, and then every batch it serves with a
//! valid CRC is one that was appended, in order (damage is refused or caught by the CRC,
//! never served as a good batch), and the log takes appends after its end.

mod log_support;

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use log_support::*;
use proptest::prelude::*;
use weir_log::batch;
use weir_log::{LogError, PartitionLog};

#[derive(Debug, Clone)]
enum Damage {
    Cut { file: usize, at_per_mille: u16 },
    Flip { file: usize, at: u32, mask: u8 },
    DeleteNonLog { file: usize },
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (any::<usize>(), 0u16..=1000)
            .prop_map(|(file, at_per_mille)| Damage::Cut { file, at_per_mille }),
        (any::<usize>(), any::<u32>(), 1u8..=255).prop_map(|(file, at, mask)| Damage::Flip {
            file,
            at,
            mask
        }),
        any::<usize>().prop_map(|file| Damage::DeleteNonLog { file }),
    ]
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

fn apply(dir: &Path, damage: &Damage) {
    let all = files(dir);
    match *damage {
        Damage::Cut { file, at_per_mille } => {
            let path = &all[file % all.len()];
            let len = fs::metadata(path).unwrap().len();
            let file = OpenOptions::new().write(true).open(path).unwrap();
            file.set_len(len * u64::from(at_per_mille) / 1000).unwrap();
        }
        Damage::Flip { file, at, mask } => {
            let path = &all[file % all.len()];
            let len = fs::metadata(path).unwrap().len();
            if len == 0 {
                return;
            }
            let at = u64::from(at) % len;
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .unwrap();
            let mut byte = [0u8; 1];
            file.read_exact_at(&mut byte, at).unwrap();
            file.write_all_at(&[byte[0] ^ mask], at).unwrap();
        }
        Damage::DeleteNonLog { file } => {
            let others: Vec<&PathBuf> = all
                .iter()
                .filter(|p| p.extension().is_none_or(|e| e != "log"))
                .collect();
            if !others.is_empty() {
                fs::remove_file(others[file % others.len()]).unwrap();
            }
        }
    }
}

/// Reads from the log start until the end or the first refused read; every batch with a
/// valid CRC must be an appended batch (from its magic byte on), later than the last one.
fn check_served(log: &PartitionLog, appended: &[Vec<u8>]) {
    let mut offset = log.log_start_offset();
    let mut last_index: Option<usize> = None;
    while offset < log.log_end_offset() {
        let bytes = match log.read(offset, 4096, u64::MAX).and_then(|s| {
            let next = s.next_offset();
            s.to_bytes().map(|b| (b, next))
        }) {
            Ok((bytes, next)) if !bytes.is_empty() => {
                assert!(next > offset, "reads make progress");
                offset = next;
                bytes
            }
            Ok(_) => break,
            Err(LogError::Corrupt { .. }) => break,
            Err(other) => panic!("a read of damaged data failed untyped: {other:?}"),
        };
        for item in batch::batches(&bytes) {
            let Ok((_, served)) = item else { break };
            if batch::validate(served, usize::MAX).is_err() {
                continue;
            }
            let index = appended
                .iter()
                .position(|a| a.get(16..) == served.get(16..))
                .unwrap_or_else(|| panic!("served a valid batch that was never appended"));
            assert!(
                last_index.is_none_or(|last| index > last),
                "served out of order"
            );
            last_index = Some(index);
        }
    }
}

fn run(clean: bool, damages: Vec<Damage>) {
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_config();
    let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    let appended: Vec<Vec<u8>> = (0..30u64)
        .map(|i| {
            let mut b = batch_of(i, 1 + (i % 3) as usize, 50, 100 + i as i64);
            log.append(&mut b, 1).unwrap();
            b
        })
        .collect();
    if clean {
        log.close().unwrap();
    } else {
        drop(log);
    }
    for damage in &damages {
        apply(dir.path(), damage);
    }
    match PartitionLog::open(dir.path(), config) {
        Err(LogError::Corrupt { .. } | LogError::DamagedBelowRecoveryPoint { .. }) => {}
        Err(other) => panic!("open of a damaged directory failed untyped: {other:?}"),
        Ok(log) => {
            check_served(&log, &appended);
            let end = log.log_end_offset();
            let mut more = batch_of(999, 1, 5, 5);
            assert_eq!(log.append(&mut more, 1).unwrap().base_offset, end);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn damage_then_open_never_panics(
        clean in any::<bool>(),
        damages in proptest::collection::vec(damage(), 1..4),
    ) {
        run(clean, damages);
    }
}
