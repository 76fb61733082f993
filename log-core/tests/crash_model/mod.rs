//! The power-loss model test, shared by the `power_loss_*` tests: a seeded sequence of
//! appends (one to three batches of 0 to ~1.5 KiB values), flushes, retention, compaction,
//! truncations, clean reopens and process-crash reopens runs on a `PartitionLog` in a
//! directory armed with `weir_log::fault::power_loss`. Every few calls of the engine the
//! simulator takes a crash image (what a power cut then could leave); once the operation
//! in progress returns, the image is opened with `PartitionLog::open` and must hold a state
//! the model allows for that operation:
//!
//! - `fsync = always`: exactly the acknowledged batches, byte for byte at their offsets (for
//!   the operation in progress: its state before, after, or one the operation passes
//!   through — a prefix of an append's batches, a prefix of the log down to a truncation's
//!   cut, a suffix up to what retention deletes);
//! - `fsync = never` or every N ms: the log opens, and holds a whole-batch prefix of such a
//!   state that reaches at least the recovery point the log reported before the operation
//!   (everything an explicit flush, a roll or an open made durable);
//! - compaction: each batch is one from before the pass or one it wrote, nothing overlaps,
//!   and no record the pass keeps is missing below the image's end.
//!
//! Each case derives everything from its seed. `WEIR_CRASH_CASES=N` runs N cases (the long
//! form); `WEIR_CRASH_SEED=S` replays the one case a failure names. Cases with a time-based
//! fsync interval may take a different path on replay.
#![allow(dead_code)]

use std::collections::HashSet;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use crate::log_support::{batch_of, keyed_batch, stored_form, tiny_config};
use weir_log::batch::{self, BatchHeader};
use weir_log::fault::power_loss::{self, CrashImage, PowerLossGuard};
use weir_log::{CleanupPolicy, FsyncPolicy, LogConfig, PartitionLog};

/// What a family of cases exercises.
pub struct Scenario {
    /// Each case picks one of these.
    pub fsync: &'static [FsyncPolicy],
    /// Topics with `cleanup.policy` including compact (and `Compact` operations).
    pub compact: bool,
    /// `segment.bytes` values a case picks from; small ones roll often.
    pub segment_bytes: &'static [u64],
}

/// Runs the cases of `scenario`: `default_cases`, `WEIR_CRASH_CASES`, or the one
/// `WEIR_CRASH_SEED` names. Returns the number of crash images checked.
pub fn run_cases(test_name: &str, default_cases: u64, scenario: &Scenario) -> u64 {
    let seeds: Vec<u64> = match std::env::var("WEIR_CRASH_SEED") {
        Ok(seed) => vec![parse_seed(&seed)],
        Err(_) => {
            let cases = std::env::var("WEIR_CRASH_CASES")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(default_cases);
            let mut names = Rng(fnv(test_name));
            (0..cases).map(|_| names.next()).collect()
        }
    };
    let mut images = 0;
    for &seed in &seeds {
        images += run_case(seed, scenario);
    }
    assert!(images > 0 || seeds.is_empty(), "no crash image was checked");
    eprintln!(
        "{test_name}: {images} crash images of {} cases checked",
        seeds.len()
    );
    images
}

fn parse_seed(text: &str) -> u64 {
    let text = text.trim();
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.unwrap_or_else(|_| panic!("WEIR_CRASH_SEED={text} is not a number"))
}

fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// SplitMix64: cases replay from their seed.
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
        if n == 0 {
            return 0;
        }
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

#[derive(Debug, Clone)]
struct BatchSpec {
    seed: u64,
    records: usize,
    value_bytes: usize,
    tombstone: bool,
}

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<BatchSpec>),
    Flush,
    Retain {
        keep_bytes: u64,
    },
    Compact,
    Truncate {
        pick: u64,
    },
    /// Close cleanly and reopen.
    Close,
    /// Drop without closing (the process died) and reopen.
    Kill,
}

fn batch_spec(rng: &mut Rng, compact: bool) -> BatchSpec {
    let value_bytes = if rng.below(5) == 0 {
        200 + rng.below(1300)
    } else {
        rng.below(200)
    } as usize;
    BatchSpec {
        seed: rng.next(),
        records: 1 + rng.below(4) as usize,
        value_bytes,
        tombstone: compact && rng.below(8) == 0,
    }
}

fn op(rng: &mut Rng, compact: bool) -> Op {
    match rng.below(20) {
        12 => Op::Flush,
        13 | 14 => Op::Retain {
            keep_bytes: rng.below(8000),
        },
        15 | 16 if compact => Op::Compact,
        17 => Op::Truncate { pick: rng.next() },
        18 => Op::Close,
        19 => Op::Kill,
        _ => Op::Append(
            (0..1 + rng.below(3))
                .map(|_| batch_spec(rng, compact))
                .collect(),
        ),
    }
}

fn build(spec: &BatchSpec, timestamp: i64) -> Vec<u8> {
    if spec.tombstone {
        let key = format!("k{}", spec.seed % 7);
        return keyed_batch(&[(key.as_str(), None, timestamp)]);
    }
    batch_of(spec.seed, spec.records, spec.value_bytes, timestamp)
}

/// A batch as stored: (base offset, next offset, bytes).
type Stored = (u64, u64, Vec<u8>);

/// What an image taken during one operation may hold.
enum Allowed {
    /// Any one of these states.
    States(Vec<Vec<Stored>>),
    /// A compaction pass: batches from either side, no kept record missing.
    Compaction {
        before: Vec<Stored>,
        after: Vec<Stored>,
    },
}

fn read_stored(log: &PartitionLog) -> Result<Vec<Stored>, String> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    let end = log.log_end_offset();
    while offset < end {
        let slice = log
            .read(offset, 1 << 16, u64::MAX)
            .map_err(|e| format!("read at offset {offset}: {e}"))?;
        if slice.is_empty() {
            break;
        }
        let bytes = slice
            .to_bytes()
            .map_err(|e| format!("read at offset {offset}: {e}"))?;
        for item in batch::batches(&bytes) {
            let (_, whole) = item.map_err(|e| format!("read at offset {offset}: {e}"))?;
            let header = batch::validate(whole, usize::MAX)
                .map_err(|e| format!("batch served near offset {offset}: {e}"))?;
            let base = header.base_offset as u64;
            out.push((base, header.next_offset() as u64, whole.to_vec()));
        }
        if slice.next_offset() <= offset {
            return Err(format!("a read at offset {offset} made no progress"));
        }
        offset = slice.next_offset();
    }
    Ok(out)
}

fn describe(batches: &[Stored]) -> String {
    let ranges: Vec<String> = batches
        .iter()
        .map(|b| format!("{}..{}", b.0, b.1))
        .collect();
    format!("[{}]", ranges.join(" "))
}

/// One running case.
struct Case<'a> {
    seed: u64,
    fsync: FsyncPolicy,
    config: LogConfig,
    ops: Vec<Op>,
    root: &'a Path,
    dir: PathBuf,
    guard: PowerLossGuard,
    rng: Rng,
    images: u64,
}

/// Runs one case; returns the crash images checked.
fn run_case(seed: u64, scenario: &Scenario) -> u64 {
    let mut rng = Rng(seed);
    let fsync = rng.pick(scenario.fsync);
    let mut config = tiny_config();
    config.fsync = fsync;
    config.segment_bytes = rng.pick(scenario.segment_bytes);
    config.index_bytes_max = rng.pick(&[96, 4096]);
    config.cleanup_policy = if scenario.compact {
        rng.pick(&[CleanupPolicy::Compact, CleanupPolicy::CompactDelete])
    } else {
        CleanupPolicy::Delete
    };
    // Clean whenever there is anything dirty, so passes happen in short runs.
    config.min_cleanable_dirty_ratio_ppm = 0;
    let op_count = 10 + rng.below(40);
    let ops: Vec<Op> = (0..op_count)
        .map(|_| op(&mut rng, scenario.compact))
        .collect();
    // The simulator, not the disk, decides what survives: a memory file system spares the
    // real fsyncs (seconds per case on a shared disk).
    let shm = Path::new("/dev/shm");
    let root = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .unwrap();
    let dir = root.path().join("partition");
    let guard = power_loss::arm(&dir).unwrap();
    let mut case = Case {
        seed,
        fsync,
        config,
        ops,
        root: root.path(),
        dir,
        guard,
        rng,
        images: 0,
    };
    case.run();
    case.images
}

impl Case<'_> {
    fn image_dir(&self) -> PathBuf {
        self.root.join("image")
    }

    fn schedule(&mut self) {
        let _ = std::fs::remove_dir_all(self.image_dir());
        let event = self.guard.events() + 1 + self.rng.below(24);
        let seed = self.rng.next();
        self.guard.crash_after_event(event, seed, &self.image_dir());
    }

    fn run(&mut self) {
        let mut log = Some(PartitionLog::open(&self.dir, self.config.clone()).unwrap());
        let mut model: Vec<Stored> = Vec::new();
        // Offsets below it were reported durable (the recovery point).
        let mut durable_end = 0u64;
        self.schedule();
        for i in 0..self.ops.len() {
            let op = self.ops[i].clone();
            let allowed = self.apply(&mut log, &op, i, &mut model);
            let live = log.as_ref().expect("the log is open between operations");
            let served = read_stored(live).unwrap_or_else(|e| self.fail(i, None, &e));
            if served != model {
                let why = format!(
                    "the live log serves {} where the model has {}",
                    describe(&served),
                    describe(&model)
                );
                self.fail(i, None, &why);
            }
            if let Some(taken) = self.guard.take_crashed() {
                self.check_image(i, taken, &allowed, durable_end);
                self.schedule();
            }
            durable_end = match self.fsync {
                FsyncPolicy::Always => model.last().map_or(0, |b| b.1),
                _ => live.recovery_point(),
            };
        }
        // And a power cut after the last operation.
        let _ = std::fs::remove_dir_all(self.image_dir());
        let seed = self.rng.next();
        let taken = self
            .guard
            .crash_image(seed, &self.image_dir())
            .map_err(|e| e.to_string());
        let last = self.ops.len() - 1;
        let allowed = Allowed::States(vec![model.clone()]);
        self.check_image(last, taken, &allowed, durable_end);
    }

    /// Runs one operation on the live log, updates the model, and says what an image taken
    /// while it ran may hold.
    fn apply(
        &self,
        log: &mut Option<PartitionLog>,
        op: &Op,
        i: usize,
        model: &mut Vec<Stored>,
    ) -> Allowed {
        let before = model.clone();
        let timestamp = i as i64 * 10;
        let live = log.as_ref().expect("open");
        match op {
            Op::Append(specs) => {
                let parts: Vec<Vec<u8>> = specs.iter().map(|s| build(s, timestamp)).collect();
                let mut buffer = parts.concat();
                let base = live.log_end_offset();
                let info = live
                    .append(&mut buffer, 4)
                    .unwrap_or_else(|e| self.fail(i, None, &format!("append: {e}")));
                assert_eq!(info.base_offset, base);
                let mut added: Vec<Stored> = Vec::new();
                for part in parts {
                    let here = added.last().map_or(base, |b| b.1);
                    let header = BatchHeader::parse(&part).unwrap();
                    let next = here + header.last_offset_delta as u64 + 1;
                    added.push((here, next, stored_form(part, here, 4)));
                }
                model.extend(added.iter().cloned());
                Allowed::States(
                    (0..=added.len())
                        .map(|n| [before.clone(), added[..n].to_vec()].concat())
                        .collect(),
                )
            }
            Op::Flush => {
                live.flush()
                    .unwrap_or_else(|e| self.fail(i, None, &format!("flush: {e}")));
                Allowed::States(vec![before])
            }
            Op::Retain { keep_bytes } => {
                let mut config = self.config.clone();
                config.retention_bytes = Some(*keep_bytes);
                live.set_config(config);
                let report = live
                    .enforce_retention(timestamp)
                    .unwrap_or_else(|e| self.fail(i, None, &format!("retention: {e}")));
                live.set_config(self.config.clone());
                model.retain(|b| b.0 >= report.log_start_offset);
                let dropped = before.len() - model.len();
                Allowed::States((0..=dropped).map(|k| before[k..].to_vec()).collect())
            }
            Op::Compact => {
                // Compaction cleans only below the high watermark; a log with no replicas
                // has everything written committed.
                live.set_high_watermark(live.log_end_offset());
                live.compact(timestamp)
                    .unwrap_or_else(|e| self.fail(i, None, &format!("compaction: {e}")));
                *model = read_stored(live).unwrap_or_else(|e| self.fail(i, None, &e));
                Allowed::Compaction {
                    before,
                    after: model.clone(),
                }
            }
            Op::Truncate { pick } => {
                let start = live.log_start_offset();
                let end = live.log_end_offset();
                let offset = start + pick % (end - start + 1);
                live.truncate_to(offset).unwrap_or_else(|e| {
                    self.fail(i, None, &format!("truncation to {offset}: {e}"))
                });
                model.retain(|b| b.1 <= offset);
                let kept = model.len();
                Allowed::States(
                    (kept..=before.len())
                        .map(|n| before[..n].to_vec())
                        .collect(),
                )
            }
            Op::Close => {
                let closing = log.take().expect("open");
                closing
                    .close()
                    .unwrap_or_else(|e| self.fail(i, None, &format!("close: {e}")));
                *log = Some(self.reopen(i));
                Allowed::States(vec![before])
            }
            Op::Kill => {
                drop(log.take());
                *log = Some(self.reopen(i));
                Allowed::States(vec![before])
            }
        }
    }

    fn reopen(&self, i: usize) -> PartitionLog {
        PartitionLog::open(&self.dir, self.config.clone())
            .unwrap_or_else(|e| self.fail(i, None, &format!("reopen: {e}")))
    }

    /// Opens the image taken during operation `i` and checks it against `allowed`.
    fn check_image(
        &mut self,
        i: usize,
        taken: Result<CrashImage, String>,
        allowed: &Allowed,
        durable_end: u64,
    ) {
        let image = taken.unwrap_or_else(|e| self.fail(i, None, &e));
        self.images += 1;
        let dir = self.image_dir();
        let config = self.config.clone();
        let fsync = self.fsync;
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            check_opened(&dir, config, fsync, allowed, durable_end)
        }));
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(why)) => self.fail(i, Some(&image), &why),
            Err(panic) => {
                eprintln!(
                    "{}",
                    self.context(i, Some(&image), "opening the image panicked")
                );
                resume_unwind(panic)
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn context(&self, i: usize, image: Option<&CrashImage>, why: &str) -> String {
        let image = image.map_or_else(String::new, |im| format!("{im}\n"));
        format!(
            "fsync={} case seed {seed:#x} (replay: WEIR_CRASH_SEED={seed:#x}), during op #{i} {:?}: {why}\n\
             {image}config: {:?}\nops: {:?}\nlast events:\n{}",
            self.fsync,
            self.ops[i],
            self.config,
            &self.ops[..=i],
            self.guard.history(80),
            seed = self.seed,
        )
    }

    fn fail(&self, i: usize, image: Option<&CrashImage>, why: &str) -> ! {
        panic!("{}", self.context(i, image, why))
    }
}

/// Opens the image in `dir` and checks what it serves.
fn check_opened(
    dir: &Path,
    config: LogConfig,
    fsync: FsyncPolicy,
    allowed: &Allowed,
    durable_end: u64,
) -> Result<(), String> {
    let log =
        PartitionLog::open(dir, config).map_err(|e| format!("the image does not open: {e}"))?;
    let served = read_stored(&log).map_err(|e| format!("the opened image: {e}"))?;
    let strict = fsync == FsyncPolicy::Always;
    match allowed {
        Allowed::States(states) => {
            let fits = |state: &Vec<Stored>| {
                if strict {
                    return &served == state;
                }
                let reaches = state.iter().filter(|b| b.1 <= durable_end).count();
                served.len() >= reaches
                    && served.len() <= state.len()
                    && served[..] == state[..served.len()]
            };
            if !states.iter().any(fits) {
                let shown: Vec<String> = states.iter().map(|s| describe(s)).collect();
                return Err(format!(
                    "the image serves {} (durable below {durable_end}), which is {} none of: {}",
                    describe(&served),
                    if strict {
                        ""
                    } else {
                        "a whole-batch prefix reaching that of"
                    },
                    shown.join(" | ")
                ));
            }
        }
        Allowed::Compaction { before, after } => {
            check_compaction_image(&served, before, after, strict, durable_end)?;
        }
    }
    // The recovered log takes writes again, right at its end.
    let end = log.log_end_offset();
    let mut more = batch_of(7, 2, 10, 1);
    let info = log
        .append(&mut more, 4)
        .map_err(|e| format!("the opened image refuses an append: {e}"))?;
    if info.base_offset != end {
        return Err(format!(
            "an append to the opened image landed at {}, not its end {end}",
            info.base_offset
        ));
    }
    Ok(())
}

fn check_compaction_image(
    served: &[Stored],
    before: &[Stored],
    after: &[Stored],
    strict: bool,
    durable_end: u64,
) -> Result<(), String> {
    let known: HashSet<&[u8]> = before
        .iter()
        .chain(after.iter())
        .map(|b| b.2.as_slice())
        .collect();
    let mut previous_end = 0u64;
    for b in served {
        if !known.contains(b.2.as_slice()) {
            return Err(format!(
                "during compaction the image serves batch {}..{} that is neither from before nor after it",
                b.0, b.1
            ));
        }
        if b.0 < previous_end {
            return Err(format!("batch {}..{} overlaps the one before it", b.0, b.1));
        }
        previous_end = b.1;
    }
    // Every batch the pass keeps is served (as itself, or inside its original) below the
    // image's end, and, for what was durable, at all.
    let served_end = served.last().map_or(0, |b| b.1);
    let must_reach = if strict { u64::MAX } else { durable_end };
    for kept in after {
        if kept.1 > served_end && kept.1 > must_reach {
            continue;
        }
        let covered = served.iter().any(|s| s.0 <= kept.0 && kept.1 <= s.1);
        if !covered {
            return Err(format!(
                "during compaction the image lost records {}..{} that the pass keeps; it serves {} (before {}, after {})",
                kept.0,
                kept.1,
                describe(served),
                describe(before),
                describe(after)
            ));
        }
    }
    Ok(())
}
