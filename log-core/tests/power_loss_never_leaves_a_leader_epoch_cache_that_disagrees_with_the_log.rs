//! A power cut at any moment of leader appends that change epoch, replicated buffers with
//! several epochs, truncations, retention and restarts never leaves a leader-epoch cache
//! that names an epoch whose batches are gone, or misses one whose batches survived: the
//! opened crash image's cache is exactly what its surviving batches describe. Guards the
//! order of the checkpoint writes (before a new epoch's batches, after a truncation's
//! cut, after retention's deletions are durable) and open's cut of the cache to the
//! recovered log. `WEIR_CRASH_CASES=N` runs N cases; `WEIR_CRASH_SEED=S` replays one.

mod epoch_support;
mod log_support;

use std::path::Path;

use epoch_support::*;
use log_support::*;
use weir_log::fault::power_loss::{self, CrashImage, PowerLossGuard};
use weir_log::{FsyncPolicy, LogConfig, PartitionLog};

/// SplitMix64: a case replays from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

struct Case {
    seed: u64,
    rng: Rng,
    config: LogConfig,
    root: tempfile::TempDir,
    guard: PowerLossGuard,
    /// The leader epoch the next append uses; it only grows.
    epoch: i32,
    history: Vec<String>,
    images: u64,
}

impl Case {
    fn new(seed: u64) -> Case {
        let mut rng = Rng(seed);
        let mut config = tiny_config();
        config.fsync = [FsyncPolicy::Never, FsyncPolicy::Always][rng.below(2) as usize];
        config.segment_bytes = [1024, 2048][rng.below(2) as usize];
        // The simulator decides what survives; a memory file system spares real fsyncs.
        let shm = Path::new("/dev/shm");
        let root = if shm.is_dir() {
            tempfile::tempdir_in(shm)
        } else {
            tempfile::tempdir()
        }
        .unwrap();
        let guard = power_loss::arm(&root.path().join("partition")).unwrap();
        Case {
            seed,
            rng,
            config,
            root,
            guard,
            epoch: 0,
            history: Vec::new(),
            images: 0,
        }
    }

    fn dir(&self) -> std::path::PathBuf {
        self.root.path().join("partition")
    }

    fn image_dir(&self) -> std::path::PathBuf {
        self.root.path().join("image")
    }

    fn fail(&self, why: &str, image: Option<&CrashImage>) -> ! {
        let image = image.map_or_else(String::new, |i| format!("{i}\n"));
        panic!(
            "case seed {seed:#x} (replay: WEIR_CRASH_SEED={seed:#x}), {:?}: {why}\n{image}ops: {:?}\nlast events:\n{}",
            self.config.fsync,
            self.history,
            self.guard.history(60),
            seed = self.seed
        )
    }

    fn schedule(&mut self) {
        let _ = std::fs::remove_dir_all(self.image_dir());
        let event = self.guard.events() + 1 + self.rng.below(30);
        let seed = self.rng.next();
        self.guard.crash_after_event(event, seed, &self.image_dir());
    }

    fn open(&self) -> PartitionLog {
        PartitionLog::open(&self.dir(), self.config.clone())
            .unwrap_or_else(|e| self.fail(&format!("reopen: {e}"), None))
    }

    /// One operation on the live log.
    fn step(&mut self, log: &mut Option<PartitionLog>) {
        let live = log.as_ref().expect("open between operations");
        match self.rng.below(12) {
            0..=4 => {
                if self.rng.below(3) == 0 {
                    self.epoch += 1 + self.rng.below(2) as i32;
                }
                let batches = 1 + self.rng.below(3);
                let mut buffer: Vec<u8> = (0..batches)
                    .flat_map(|_| batch_of(self.rng.next(), 1 + self.rng.below(3) as usize, 60, 1))
                    .collect();
                self.history
                    .push(format!("append {batches} at {}", self.epoch));
                live.append(&mut buffer, self.epoch)
                    .unwrap_or_else(|e| self.fail(&format!("append: {e}"), None));
            }
            5 | 6 => {
                // A leader's buffer whose epoch changes between its batches.
                let mut next = live.log_end_offset();
                let mut buffer = Vec::new();
                let mut epochs = Vec::new();
                for _ in 0..1 + self.rng.below(4) {
                    if self.rng.below(2) == 0 {
                        self.epoch += 1;
                    }
                    let records = 1 + self.rng.below(3);
                    buffer.extend(leader_batch(
                        self.rng.next(),
                        records as usize,
                        next,
                        self.epoch,
                    ));
                    epochs.push(self.epoch);
                    next += records;
                }
                self.history.push(format!("replicate epochs {epochs:?}"));
                live.append_replicated(&buffer)
                    .unwrap_or_else(|e| self.fail(&format!("replicated append: {e}"), None));
            }
            7 | 8 => {
                let start = live.log_start_offset();
                let end = live.log_end_offset();
                let target = start + self.rng.below(end - start + 1);
                self.history.push(format!("truncate to {target}"));
                live.truncate_to(target)
                    .unwrap_or_else(|e| self.fail(&format!("truncation: {e}"), None));
            }
            9 => {
                let mut config = self.config.clone();
                config.retention_bytes = Some(self.rng.below(6000));
                live.set_config(config);
                self.history.push("retention".to_string());
                live.enforce_retention(0)
                    .unwrap_or_else(|e| self.fail(&format!("retention: {e}"), None));
                live.set_config(self.config.clone());
            }
            10 => {
                self.history.push("close, reopen".to_string());
                log.take()
                    .expect("open")
                    .close()
                    .unwrap_or_else(|e| self.fail(&format!("close: {e}"), None));
                *log = Some(self.open());
            }
            _ => {
                self.history.push("crash, reopen".to_string());
                drop(log.take());
                *log = Some(self.open());
            }
        }
    }

    /// Opens a crash image and holds its cache to its batches.
    fn check_image(&mut self, taken: Result<CrashImage, String>) {
        let image = taken.unwrap_or_else(|e| self.fail(&e, None));
        self.images += 1;
        let file_before_open =
            std::fs::read_to_string(self.image_dir().join("leader-epoch-checkpoint"));
        let opened = PartitionLog::open(&self.image_dir(), self.config.clone())
            .unwrap_or_else(|e| self.fail(&format!("the image does not open: {e}"), Some(&image)));
        let (cache, batches) = (epochs(&opened), epochs_of_batches(&opened));
        if !agrees(&opened, &cache, &batches) {
            self.fail(
                &format!(
                    "the image's cache is {cache:?}; its batches say {batches:?} (log {}..{}; the checkpoint before the open: {file_before_open:?})",
                    opened.log_start_offset(),
                    opened.log_end_offset()
                ),
                Some(&image),
            );
        }
        drop(opened);
        let _ = std::fs::remove_dir_all(self.image_dir());
    }

    fn run(&mut self, ops: u64) {
        let mut log = Some(self.open());
        self.schedule();
        for _ in 0..ops {
            self.step(&mut log);
            let live = log.as_ref().expect("open");
            let (cache, batches) = (epochs(live), epochs_of_batches(live));
            if !agrees(live, &cache, &batches) {
                self.fail(
                    &format!("the live cache is {cache:?}; its batches say {batches:?}"),
                    None,
                );
            }
            if let Some(taken) = self.guard.take_crashed() {
                self.check_image(taken);
                self.schedule();
            }
        }
        let _ = std::fs::remove_dir_all(self.image_dir());
        let seed = self.rng.next();
        let taken = self
            .guard
            .crash_image(seed, &self.image_dir())
            .map_err(|e| e.to_string());
        self.check_image(taken);
    }
}

/// The cache is what the batches describe. One exception, Kafka's: a log that retention
/// emptied keeps the epoch in force at its start, as one entry there (no batch can show
/// which epoch that was).
fn agrees(log: &PartitionLog, cache: &[(i32, u64)], batches: &[(i32, u64)]) -> bool {
    let start = log.log_start_offset();
    let emptied = batches.is_empty()
        && log.log_end_offset() == start
        && matches!(cache, [(_, at)] if *at == start);
    cache == batches || emptied
}

#[test]
fn power_loss_never_leaves_a_leader_epoch_cache_that_disagrees_with_the_log() {
    let seeds: Vec<u64> = match std::env::var("WEIR_CRASH_SEED") {
        Ok(seed) => {
            let seed = seed.trim();
            vec![match seed.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16).expect("hex seed"),
                None => seed.parse().expect("seed"),
            }]
        }
        Err(_) => {
            let cases = std::env::var("WEIR_CRASH_CASES")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(24);
            let mut names = Rng(0x1ead_e90c);
            (0..cases).map(|_| names.next()).collect()
        }
    };
    let mut images = 0;
    for &seed in &seeds {
        let mut case = Case::new(seed);
        case.run(40);
        images += case.images;
    }
    assert!(images >= seeds.len() as u64, "every case checked images");
    eprintln!("{images} crash images of {} cases checked", seeds.len());
}
