//! Which watermark a window stage advances its partitions to: the minimum over the
//! worker's partitions, or each partition's own.

use super::*;

/// One count per 10 ms tumbling window (every record the same key), with its
/// watermark taken as `stream_time` says.
fn counts_by(stream_time: StreamTime, idle_timeout: Duration) -> Counts {
    Pipeline::from_topic("t")
        .key_by_local(|_| 0u64)
        .window(WindowSpec::tumbling(Duration::from_millis(10)))
        .idle_timeout(idle_timeout)
        .stream_time(stream_time)
        .count()
        .chain
}

/// Feeds `(partition, offset, timestamp)` records and a tick; what came out, as
/// (window start, count).
fn feed(stage: &mut Counts, env: &mut Env, records: &[(u32, u64, i64)]) -> Vec<(i64, u64)> {
    let mut out = Vec::new();
    for &(partition, offset, timestamp_ms) in records {
        let (record, context) = record_on(partition, offset, timestamp_ms);
        stage.record(record, &context, env, &mut out);
    }
    let mut ticked = Vec::new();
    stage.tick(env, &mut ticked);
    out.extend(ticked.into_iter().map(|(_, result)| result));
    out.iter().map(|r| (r.window.start_ms, r.value)).collect()
}

#[test]
fn under_the_worker_minimum_a_partition_behind_holds_every_window_open() {
    let mut env = env();
    let mut stage = counts_by(StreamTime::WorkerMinimum, Duration::from_secs(3600));
    stage.assign("t", 0, &Restored::default(), env.now).unwrap();
    stage.assign("t", 1, &Restored::default(), env.now).unwrap();

    // Partition 1 has shown nothing: it may hold older records, so nothing closes,
    // and a record of partition 0 behind its own latest is not late.
    assert_eq!(
        feed(&mut stage, &mut env, &[(0, 0, 1), (0, 1, 12), (0, 2, 25)]),
        []
    );
    assert_eq!(feed(&mut stage, &mut env, &[(0, 3, 5)]), []);
    assert_eq!(env.late, 0);

    // Partition 1 reaches 15: [0, 10) closes on both partitions, with both of
    // partition 0's records in it; [10, 20) waits for partition 1 to pass 20.
    assert_eq!(feed(&mut stage, &mut env, &[(1, 0, 15)]), [(0, 2)]);
    assert_eq!(
        feed(&mut stage, &mut env, &[(1, 1, 21)]),
        [(10, 1), (10, 1)]
    );

    // Now [0, 10) is closed for partition 0: a record in it is late.
    assert_eq!(feed(&mut stage, &mut env, &[(0, 4, 7)]), []);
    assert_eq!(env.late, 1);
}

#[test]
fn a_record_that_moves_the_minimum_closes_its_partition_s_windows_without_a_tick() {
    let mut env = env();
    let mut stage = counts_by(StreamTime::WorkerMinimum, Duration::from_secs(3600));
    stage.assign("t", 0, &Restored::default(), env.now).unwrap();
    stage.assign("t", 1, &Restored::default(), env.now).unwrap();
    let mut record_results = |records: &[(u32, u64, i64)], env: &mut Env| {
        let mut out = Vec::new();
        for &(partition, offset, timestamp_ms) in records {
            let (record, context) = record_on(partition, offset, timestamp_ms);
            stage.record(record, &context, env, &mut out);
        }
        out.iter()
            .map(|r| (r.window.start_ms, r.value))
            .collect::<Vec<_>>()
    };
    // Partition 1 far ahead, partition 0 the minimum: each of partition 0's records
    // moves the minimum, and the one at 50 closes [0, 10) as it comes.
    assert_eq!(record_results(&[(1, 0, 100), (0, 0, 5)], &mut env), []);
    assert_eq!(record_results(&[(0, 1, 50)], &mut env), [(0, 1)]);
    // Partition 0 passes partition 1: the minimum is partition 1's 100, and partition
    // 0's [50, 60) closes; then partition 1's record at 160 moves it to 150 and closes
    // partition 1's [100, 110).
    assert_eq!(record_results(&[(0, 2, 150)], &mut env), [(50, 1)]);
    assert_eq!(record_results(&[(1, 1, 160)], &mut env), [(100, 1)]);
}

#[test]
fn per_partition_each_partition_closes_its_windows_on_its_own_records() {
    let mut env = env();
    let mut stage = counts_by(StreamTime::PerPartition, Duration::from_secs(3600));
    stage.assign("t", 0, &Restored::default(), env.now).unwrap();
    stage.assign("t", 1, &Restored::default(), env.now).unwrap();
    assert_eq!(
        feed(&mut stage, &mut env, &[(0, 0, 1), (0, 1, 12), (0, 2, 25)]),
        [(0, 1), (10, 1)]
    );
    assert_eq!(feed(&mut stage, &mut env, &[(0, 3, 5)]), []);
    assert_eq!(env.late, 1, "behind partition 0's own time");
}

#[test]
fn an_idle_partition_stops_holding_the_worker_back_and_then_time_follows_the_clock() {
    let idle = Duration::from_millis(50);
    let mut env = env();
    let start = env.now;
    let mut stage = counts_by(StreamTime::WorkerMinimum, idle);
    stage.assign("t", 0, &Restored::default(), start).unwrap();
    stage.assign("t", 1, &Restored::default(), start).unwrap();
    assert_eq!(feed(&mut stage, &mut env, &[(0, 0, 1), (0, 1, 25)]), []);

    // 55 ms on, partition 1 (nothing since its assignment) is idle; partition 0,
    // with a record just now, alone holds the watermark, at 30.
    env.now = start + Duration::from_millis(55);
    assert_eq!(feed(&mut stage, &mut env, &[(0, 2, 30)]), [(0, 1), (20, 1)]);

    // Until partition 0 is idle too, it holds the watermark at 30; then time moves
    // on from 30 by the wall time since that record (50 ms), and [30, 40) closes.
    env.now = start + Duration::from_millis(55 + 49);
    assert_eq!(feed(&mut stage, &mut env, &[]), []);
    env.now = start + Duration::from_millis(55) + idle;
    assert_eq!(feed(&mut stage, &mut env, &[]), [(30, 1)]);

    // A record brings partition 1 back into the minimum, but no window reopens.
    assert_eq!(feed(&mut stage, &mut env, &[(1, 0, 2)]), []);
    assert_eq!(env.late, 1);
}
