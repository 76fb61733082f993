//! Model-based test: a `Vec` of stored batches is the model; appends, rolls (tiny
//! segments), reads, truncations, retention and clean and unclean reopens run against both,
//! and after every step the log holds exactly the model's batches at the model's offsets.

mod log_support;

use log_support::*;
use proptest::prelude::*;
use weir_log::batch::BatchHeader;
use weir_log::{LogError, PartitionLog};

#[derive(Debug, Clone)]
enum Op {
    Append {
        seed: u64,
        records: usize,
        value_bytes: usize,
    },
    Read {
        at: u16,
    },
    Truncate {
        at: u16,
    },
    Retain {
        keep_bytes: u16,
    },
    ReopenClean,
    ReopenUnclean,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (any::<u64>(), 1usize..6, 0usize..200)
            .prop_map(|(seed, records, value_bytes)| Op::Append { seed, records, value_bytes }),
        2 => any::<u16>().prop_map(|at| Op::Read { at }),
        1 => any::<u16>().prop_map(|at| Op::Truncate { at }),
        1 => (0u16..4000).prop_map(|keep_bytes| Op::Retain { keep_bytes }),
        1 => Just(Op::ReopenClean),
        1 => Just(Op::ReopenUnclean),
    ]
}

struct Model {
    log_start: u64,
    log_end: u64,
    /// (base offset, next offset, stored bytes)
    batches: Vec<(u64, u64, Vec<u8>)>,
}

fn pick(model: &Model, at: u16) -> u64 {
    let span = model.log_end - model.log_start + 1;
    model.log_start + u64::from(at) % span
}

fn check(log: &PartitionLog, model: &Model) {
    assert_eq!(log.log_start_offset(), model.log_start, "log start");
    assert_eq!(log.log_end_offset(), model.log_end, "log end");
    let expected: Vec<Vec<u8>> = model.batches.iter().map(|(_, _, b)| b.clone()).collect();
    assert_eq!(read_all_batches(log), expected, "batches");
}

fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = tiny_config();
    let mut log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    let mut model = Model {
        log_start: 0,
        log_end: 0,
        batches: Vec::new(),
    };
    for op in ops {
        match op {
            Op::Append {
                seed,
                records,
                value_bytes,
            } => {
                let mut b = batch_of(seed, records, value_bytes, seed as i64 % 1000);
                let info = log.append(&mut b, 3).unwrap();
                assert_eq!(info.base_offset, model.log_end);
                model
                    .batches
                    .push((info.base_offset, info.last_offset + 1, b));
                model.log_end = info.last_offset + 1;
            }
            Op::Read { at } => {
                let offset = pick(&model, at);
                let slice = log.read(offset, 1, u64::MAX).unwrap();
                match model.batches.iter().find(|(_, next, _)| *next > offset) {
                    Some((_, next, bytes)) => {
                        assert_eq!(slice.to_bytes().unwrap().as_ref(), bytes.as_slice());
                        assert_eq!(slice.next_offset(), *next);
                    }
                    None => assert!(slice.is_empty()),
                }
                let past = log.read(model.log_end + 1, 1, u64::MAX).unwrap_err();
                assert!(matches!(past, LogError::OffsetOutOfRange { .. }));
            }
            Op::Truncate { at } => {
                let offset = pick(&model, at);
                log.truncate_to(offset).unwrap();
                if offset < model.log_end {
                    let cut = model.batches.iter().position(|(_, next, _)| *next > offset);
                    if let Some(cut) = cut {
                        let base = model.batches[cut].0;
                        model.batches.truncate(cut);
                        if model.batches.is_empty() && offset <= model.log_start {
                            model.log_start = offset;
                        }
                        model.log_end = offset.min(base);
                    }
                    if model.batches.is_empty() && model.log_end < model.log_start {
                        model.log_start = model.log_end;
                    }
                }
            }
            Op::Retain { keep_bytes } => {
                config.retention_bytes = Some(u64::from(keep_bytes));
                log.set_config(config.clone());
                let report = log.enforce_retention(0).unwrap();
                config.retention_bytes = None;
                log.set_config(config.clone());
                let start = log.log_start_offset();
                assert_eq!(report.log_start_offset, start);
                assert!(start >= model.log_start);
                let boundary = start == model.log_end
                    || model.batches.iter().any(|(base, _, _)| *base == start);
                assert!(boundary, "log start {start} is a batch boundary");
                model.batches.retain(|(base, _, _)| *base >= start);
                model.log_start = start;
            }
            Op::ReopenClean => {
                log.close().unwrap();
                log = PartitionLog::open(dir.path(), config.clone()).unwrap();
            }
            Op::ReopenUnclean => {
                drop(log);
                log = PartitionLog::open(dir.path(), config.clone()).unwrap();
            }
        }
        check(&log, &model);
    }
    // Every stored batch carries its model offset.
    for (base, _, bytes) in &model.batches {
        assert_eq!(BatchHeader::parse(bytes).unwrap().base_offset as u64, *base);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn log_matches_model(ops in proptest::collection::vec(op(), 1..40)) {
        run(ops);
    }
}
