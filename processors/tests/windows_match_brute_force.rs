//! Every window type gives what a brute-force computation over the same records
//! gives, with records out of order, late records, and the watermark moving on
//! between them.

use std::collections::BTreeMap;

use proptest::prelude::*;
use weir_processors::window::{
    AddOutcome, Aggregator, EmitMode, SessionAggregate, Window, WindowResult, WindowSpec,
    WindowedAggregate,
};

/// (count, sum) per key and window.
type Expected = BTreeMap<(u8, Window), (u64, u64)>;

/// (count, sum) of the values.
#[derive(Debug, Clone, Copy)]
struct SumAndCount;

impl Aggregator<u64> for SumAndCount {
    type Acc = (u64, u64);
    fn init(&self) -> (u64, u64) {
        (0, 0)
    }
    fn add(&self, acc: &mut (u64, u64), value: u64) {
        acc.0 += 1;
        acc.1 += value;
    }
    fn merge(&self, into: &mut (u64, u64), other: &(u64, u64)) {
        into.0 += other.0;
        into.1 += other.1;
    }
}

/// A record: key, timestamp, value, and the watermark the worker had reached when
/// it arrived.
#[derive(Debug, Clone)]
struct Arrival {
    key: u8,
    timestamp_ms: i64,
    value: u64,
    watermark_ms: i64,
}

/// Records in arrival order, each with the watermark reached before it: the largest
/// timestamp so far minus a random holdback (so some arrive after their windows).
fn arrivals() -> impl Strategy<Value = Vec<Arrival>> {
    prop::collection::vec((0u8..4, 0i64..20_000, 0u64..100, 0i64..3_000), 1..200).prop_map(|raw| {
        let mut max_ts = i64::MIN;
        let mut watermark = i64::MIN;
        raw.into_iter()
            .map(|(key, timestamp_ms, value, holdback)| {
                let arrival = Arrival {
                    key,
                    timestamp_ms,
                    value,
                    watermark_ms: watermark,
                };
                max_ts = max_ts.max(timestamp_ms);
                watermark = watermark.max(max_ts - holdback);
                arrival
            })
            .collect()
    })
}

fn time_windows() -> impl Strategy<Value = WindowSpec> {
    prop_oneof![
        (1i64..5).prop_map(|k| WindowSpec::Tumbling { size_ms: k * 1_000 }),
        (1i64..4, 1i64..4).prop_map(|(step, n)| WindowSpec::Hopping {
            size_ms: step * 500 * n,
            advance_ms: step * 500
        }),
        (1i64..4, 1i64..6).prop_map(|(step, n)| WindowSpec::Sliding {
            size_ms: step * 250 * n,
            slide_ms: step * 250
        }),
    ]
}

fn brute_force_time(spec: WindowSpec, lateness_ms: i64, records: &[Arrival]) -> (Expected, u64) {
    let mut expected = Expected::new();
    let mut late = 0;
    for r in records {
        let open: Vec<Window> = spec
            .windows_of(r.timestamp_ms)
            .into_iter()
            .filter(|w| w.end_ms + lateness_ms > r.watermark_ms)
            .collect();
        if open.is_empty() {
            late += 1;
        }
        for window in open {
            let entry = expected.entry((r.key, window)).or_default();
            entry.0 += 1;
            entry.1 += r.value;
        }
    }
    (expected, late)
}

fn collect(results: Vec<WindowResult<u8, (u64, u64)>>, into: &mut Expected) {
    for result in results {
        assert!(result.is_final);
        let previous = into.insert((result.key, result.window), result.value);
        assert_eq!(previous, None, "{:?} emitted twice", result.window);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn time_windows_equal_brute_force(
        spec in time_windows(),
        lateness_ms in 0i64..2_000,
        records in arrivals(),
    ) {
        let mut aggregate =
            WindowedAggregate::new(spec, lateness_ms, EmitMode::OnClose, SumAndCount).unwrap();
        let mut got = Expected::new();
        let mut late = 0u64;
        for r in &records {
            collect(aggregate.advance(r.watermark_ms), &mut got);
            if aggregate.add(r.key, r.timestamp_ms, r.value) == AddOutcome::Late {
                late += 1;
            }
        }
        collect(aggregate.advance(i64::MAX), &mut got);
        let (expected, expected_late) = brute_force_time(spec, lateness_ms, &records);
        prop_assert_eq!(got, expected);
        prop_assert_eq!(late, expected_late);
        prop_assert_eq!(aggregate.late_records(), expected_late);
        prop_assert_eq!(aggregate.state_entries(), 0, "closed panes are dropped");
    }

    #[test]
    fn on_update_results_end_at_the_final_values(
        spec in time_windows(),
        records in arrivals(),
    ) {
        let mut aggregate =
            WindowedAggregate::new(spec, 0, EmitMode::OnUpdate, SumAndCount).unwrap();
        let mut latest = Expected::new();
        let mut finals = Expected::new();
        for r in &records {
            collect(aggregate.advance(r.watermark_ms), &mut finals);
            if let AddOutcome::Accepted { updates, .. } = aggregate.add(r.key, r.timestamp_ms, r.value) {
                for update in updates {
                    prop_assert!(!update.is_final);
                    latest.insert((update.key, update.window), update.value);
                }
            }
        }
        collect(aggregate.advance(i64::MAX), &mut finals);
        prop_assert_eq!(latest, finals);
    }

    #[test]
    fn sessions_equal_brute_force_when_disorder_is_within_the_lateness(
        gap_ms in 1i64..2_000,
        lateness_ms in 0i64..2_000,
        raw in prop::collection::vec((0u8..3, 0i64..3_000, 0u64..100), 1..150),
    ) {
        // Each record at most `lateness_ms` behind the largest timestamp so far, and
        // the watermark at that largest timestamp: none is late and no session closes
        // before a record that joins it arrives.
        let mut max_ts = 0i64;
        let mut records = Vec::new();
        for (key, step, value) in raw {
            let timestamp_ms = (max_ts + step - 1_500).max(max_ts - lateness_ms).max(0);
            records.push((key, timestamp_ms, value, max_ts));
            max_ts = max_ts.max(timestamp_ms);
        }
        let mut aggregate = SessionAggregate::new(
            WindowSpec::Session { gap_ms },
            lateness_ms,
            EmitMode::OnClose,
            SumAndCount,
        )
        .unwrap();
        let mut got = Expected::new();
        for (key, timestamp_ms, value, watermark_ms) in &records {
            collect(aggregate.advance(*watermark_ms), &mut got);
            prop_assert_ne!(aggregate.add(*key, *timestamp_ms, *value), AddOutcome::Late);
        }
        collect(aggregate.advance(i64::MAX), &mut got);
        // Brute force: per key, sorted timestamps split where two neighbours are more
        // than the gap apart.
        let mut expected = Expected::new();
        for key in 0..3u8 {
            let mut mine: Vec<(i64, u64)> = records
                .iter()
                .filter(|r| r.0 == key)
                .map(|r| (r.1, r.2))
                .collect();
            mine.sort_unstable();
            let mut run: Vec<(i64, u64)> = Vec::new();
            let mut flush = |run: &mut Vec<(i64, u64)>| {
                if let (Some(first), Some(last)) = (run.first(), run.last()) {
                    let window = Window { start_ms: first.0, end_ms: last.0 + 1 };
                    let sum = run.iter().map(|r| r.1).sum();
                    expected.insert((key, window), (run.len() as u64, sum));
                }
                run.clear();
            };
            for record in mine {
                if run.last().is_some_and(|last| record.0 - last.0 > gap_ms) {
                    flush(&mut run);
                }
                run.push(record);
            }
            flush(&mut run);
        }
        prop_assert_eq!(got, expected);
    }
}

#[test]
fn a_session_record_after_its_session_closed_is_late() {
    let mut aggregate = SessionAggregate::new(
        WindowSpec::Session { gap_ms: 100 },
        50,
        EmitMode::OnClose,
        SumAndCount,
    )
    .unwrap();
    assert!(matches!(
        aggregate.add(1u8, 1_000, 1),
        AddOutcome::Accepted { .. }
    ));
    // Closes once the watermark is past 1 000 + 100 + 50.
    assert!(aggregate.advance(1_150).is_empty());
    let closed = aggregate.advance(1_151);
    assert_eq!(closed.len(), 1);
    assert_eq!(
        closed[0].window,
        Window {
            start_ms: 1_000,
            end_ms: 1_001
        }
    );
    assert_eq!(aggregate.add(1u8, 1_000, 1), AddOutcome::Late);
    assert_eq!(aggregate.late_records(), 1);
}
