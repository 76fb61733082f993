//! Model-based fault injection, in the manner of redb's `fuzz_redb.rs`: appends (one or
//! several batches per buffer, rolling tiny segments), flushes, truncations, retention and
//! clean reopens run against a `Vec` of acknowledged batches while a fault plan fails a
//! chosen kind of I/O call after a random countdown (once or for good, writes possibly
//! torn). At the first failed operation the process "crashes" (the log is dropped), the
//! faults stop, and the reopened log must hold every acknowledged batch, byte for byte at
//! its offset, plus only what the failed operation may leave:
//!
//! - append: a prefix of its batches, each whole;
//! - truncation: a prefix of the old log at least as long as the cut;
//! - retention: a suffix of the old log holding at least `retention.bytes`;
//! - flush, close, open: exactly the acknowledged batches.
//!
//! The same holds for the live (possibly poisoned) log before the crash: nothing torn or
//! unacknowledged beyond that is ever served.

mod log_support;

use log_support::*;
use proptest::prelude::*;
use weir_log::batch::BatchHeader;
use weir_log::fault::{inject, FaultPlan, IoCall};
use weir_log::{FsyncPolicy, LogConfig, LogError, PartitionLog};

#[derive(Debug, Clone)]
enum Op {
    Append {
        seed: u64,
        batch_count: usize,
        value_bytes: usize,
    },
    Flush,
    Truncate {
        at: u16,
    },
    Retain {
        keep_bytes: u16,
    },
    ReopenClean,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (any::<u64>(), 1usize..4, 0usize..160).prop_map(|(seed, batch_count, value_bytes)| {
            Op::Append { seed, batch_count, value_bytes }
        }),
        1 => Just(Op::Flush),
        1 => any::<u16>().prop_map(|at| Op::Truncate { at }),
        2 => (0u16..2000).prop_map(|keep_bytes| Op::Retain { keep_bytes }),
        1 => Just(Op::ReopenClean),
    ]
}

/// Kinds of call to fail: every kind, or one family.
fn calls() -> impl Strategy<Value = Vec<IoCall>> {
    prop_oneof![
        Just(IoCall::ALL.to_vec()),
        Just(vec![IoCall::Fsync]),
        Just(vec![IoCall::Fsync, IoCall::SyncDir]),
        Just(vec![IoCall::Write]),
        Just(vec![IoCall::Write, IoCall::SetLen]),
        Just(vec![IoCall::SetLen, IoCall::Rename, IoCall::Remove]),
    ]
}

#[derive(Debug, Clone)]
struct Fault {
    calls: Vec<IoCall>,
    countdown: u64,
    sticky: bool,
    torn_per_mille: u16,
}

fn fault() -> impl Strategy<Value = Fault> {
    (calls(), 0u64..80, any::<bool>(), 0u16..1000).prop_map(
        |(calls, countdown, sticky, torn_per_mille)| Fault {
            calls,
            countdown,
            sticky,
            torn_per_mille,
        },
    )
}

/// A stored batch: (base offset, next offset, bytes as the log stores them).
type Stored = (u64, u64, Vec<u8>);

/// What the log may hold after the failed operation: any of these batch lists.
struct Outcomes {
    candidates: Vec<Vec<Stored>>,
    what: String,
}

fn config(fsync: FsyncPolicy) -> LogConfig {
    let mut config = tiny_config();
    config.fsync = fsync;
    config
}

/// Checks `log` against the outcomes and returns the index of the one it matches.
fn check(log: &PartitionLog, outcomes: &Outcomes, when: &str) -> usize {
    let served = read_all_batches(log);
    let matched = outcomes.candidates.iter().position(|candidate| {
        candidate.len() == served.len() && candidate.iter().zip(&served).all(|(c, s)| &c.2 == s)
    });
    let Some(index) = matched else {
        panic!(
            "{when}: after a failed {} the log serves {} batches matching no allowed outcome ({:?} batches)",
            outcomes.what,
            served.len(),
            outcomes.candidates.iter().map(Vec::len).collect::<Vec<_>>()
        );
    };
    if let Some(last) = outcomes.candidates[index].last() {
        assert_eq!(log.log_end_offset(), last.1, "{when}: log end offset");
    }
    index
}

fn bytes_of(batches: &[Stored]) -> usize {
    batches.iter().map(|b| b.2.len()).sum()
}

/// Applies one op; on failure returns what the log may hold afterwards.
fn apply(
    log: &mut Option<PartitionLog>,
    op: &Op,
    model: &mut Vec<Stored>,
    config: &mut LogConfig,
    dir: &std::path::Path,
) -> Option<Outcomes> {
    let exactly = |what: &str| Outcomes {
        candidates: vec![model.clone()],
        what: what.to_string(),
    };
    let live = log.as_ref()?;
    match op {
        Op::Append {
            seed,
            batch_count,
            value_bytes,
        } => {
            let parts: Vec<Vec<u8>> = (0..*batch_count as u64)
                .map(|i| batch_of(seed.wrapping_add(i), 1 + (i as usize % 3), *value_bytes, 5))
                .collect();
            let mut buffer = parts.concat();
            let base = model.last().map_or(live.log_start_offset(), |b| b.1);
            let result = live.append(&mut buffer, 4);
            // The batches as the log stores them: offsets from the model's end, epoch 4.
            let mut stored: Vec<Stored> = Vec::new();
            for part in parts {
                let base_here = stored.last().map_or(base, |s| s.1);
                let header = BatchHeader::parse(&part).unwrap();
                let next = base_here + header.last_offset_delta as u64 + 1;
                stored.push((base_here, next, stored_form(part, base_here, 4)));
            }
            if result.is_ok() {
                let expected: Vec<u8> = stored.iter().flat_map(|s| s.2.clone()).collect();
                assert_eq!(buffer, expected, "append stamps offsets and epoch in place");
            }
            match result {
                Ok(info) => {
                    assert_eq!(info.base_offset, base);
                    model.extend(stored);
                    None
                }
                Err(_) => Some(Outcomes {
                    candidates: (0..=stored.len())
                        .map(|n| [model.clone(), stored[..n].to_vec()].concat())
                        .collect(),
                    what: "append".to_string(),
                }),
            }
        }
        Op::Flush => live.flush().err().map(|_| exactly("flush")),
        Op::Truncate { at } => {
            let start = model.first().map_or(live.log_start_offset(), |b| b.0);
            let end = live.log_end_offset();
            let offset = start + u64::from(*at) % (end - start + 1);
            let cut = model
                .iter()
                .position(|b| b.1 > offset)
                .unwrap_or(model.len());
            match live.truncate_to(offset) {
                Ok(()) => {
                    model.truncate(cut);
                    None
                }
                Err(_) => Some(Outcomes {
                    candidates: (cut..=model.len()).map(|n| model[..n].to_vec()).collect(),
                    what: format!("truncation to {offset}"),
                }),
            }
        }
        Op::Retain { keep_bytes } => {
            config.retention_bytes = Some(u64::from(*keep_bytes));
            live.set_config(config.clone());
            let result = live.enforce_retention(0);
            config.retention_bytes = None;
            live.set_config(config.clone());
            match result {
                Ok(report) => {
                    model.retain(|b| b.0 >= report.log_start_offset);
                    None
                }
                Err(_) => {
                    let floor = usize::from(*keep_bytes).min(bytes_of(model));
                    let candidates = (0..=model.len())
                        .map(|i| model[i..].to_vec())
                        .filter(|suffix| bytes_of(suffix) >= floor)
                        .collect();
                    Some(Outcomes {
                        candidates,
                        what: "retention".to_string(),
                    })
                }
            }
        }
        Op::ReopenClean => {
            let closing = log.take()?;
            if closing.close().is_err() {
                return Some(exactly("close"));
            }
            match PartitionLog::open(dir, config.clone()) {
                Ok(reopened) => {
                    *log = Some(reopened);
                    None
                }
                Err(_) => Some(exactly("open")),
            }
        }
    }
}

fn run(fsync: FsyncPolicy, fault: Fault, ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(fsync);
    let mut log = Some(PartitionLog::open(dir.path(), config.clone()).unwrap());
    let mut model: Vec<Stored> = Vec::new();
    let mut plan = FaultPlan::new(&fault.calls)
        .after(fault.countdown)
        .torn_writes(fault.torn_per_mille);
    if fault.sticky {
        plan = plan.sticky();
    }
    let guard = inject(dir.path(), plan);
    let mut failed = None;
    for op in &ops {
        if let Some(outcomes) = apply(&mut log, op, &mut model, &mut config, dir.path()) {
            failed = Some(outcomes);
            break;
        }
    }
    let injected = guard.failures() > 0;
    drop(guard);
    let outcomes = failed.unwrap_or_else(|| Outcomes {
        candidates: vec![model.clone()],
        what: "nothing".to_string(),
    });
    assert!(
        injected || outcomes.what == "nothing",
        "{} failed without an injected fault",
        outcomes.what
    );
    if let Some(live) = &log {
        check(live, &outcomes, "live log");
        if live.is_poisoned() {
            let mut more = batch_of(1, 1, 1, 1);
            let error = live.append(&mut more, 4).unwrap_err();
            assert!(matches!(error, LogError::Poisoned { .. }), "{error:?}");
        }
    }
    drop(log); // the crash
    let reopened = PartitionLog::open(dir.path(), config.clone()).unwrap();
    let index = check(&reopened, &outcomes, "after reopen");
    // The recovered log takes writes again, right after what it holds.
    let expected_base = outcomes.candidates[index]
        .last()
        .map_or(reopened.log_end_offset(), |b| b.1);
    let mut more = batch_of(2, 2, 2, 2);
    assert_eq!(
        reopened.append(&mut more, 4).unwrap().base_offset,
        expected_base
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]
    #[test]
    fn every_acknowledged_append_survives_an_injected_failure(
        always in any::<bool>(),
        fault in fault(),
        ops in proptest::collection::vec(op(), 1..40),
    ) {
        let fsync = if always { FsyncPolicy::Always } else { FsyncPolicy::Never };
        run(fsync, fault, ops);
    }
}
