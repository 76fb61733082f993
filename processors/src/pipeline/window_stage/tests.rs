use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_client::ConsumerRecord;

use crate::pipeline::chain::{Chain, Env, Restored};
use crate::pipeline::{Context, Pipeline};
use crate::window::{StreamTime, WindowResult, WindowSpec};

mod stream_time;

type Counts = Box<dyn Chain<WindowResult<u64, u64>>>;

/// Counts per key (the offset's parity) in 10 ms tumbling windows, saved to a
/// changelog, with an idle timeout no test reaches.
fn counts() -> Counts {
    Pipeline::from_topic("t")
        .key_by_local(|r| r.offset % 2)
        .window(WindowSpec::tumbling(Duration::from_millis(10)))
        .name("counts")
        .changelog()
        .idle_timeout(Duration::from_secs(3600))
        .count()
        .chain
}

fn env() -> Env {
    Env {
        now: Instant::now(),
        side: Vec::new(),
        late: 0,
        stopping: false,
        failure: None,
    }
}

fn record(offset: u64, timestamp_ms: i64) -> (ConsumerRecord, Context) {
    record_on(0, offset, timestamp_ms)
}

fn record_on(partition: u32, offset: u64, timestamp_ms: i64) -> (ConsumerRecord, Context) {
    let topic: Arc<str> = Arc::from("t");
    let record = ConsumerRecord {
        topic: Arc::clone(&topic),
        partition,
        offset,
        timestamp_ms,
        key: None,
        value: None,
        headers: Vec::new(),
    };
    let context = Context {
        topic,
        partition,
        offset,
        timestamp_ms,
        raw: Some((None, None)),
    };
    (record, context)
}

/// (key, window start, count, final) of each result.
fn rows<'a>(
    results: impl IntoIterator<Item = &'a WindowResult<u64, u64>>,
) -> Vec<(u64, i64, u64, bool)> {
    results
        .into_iter()
        .map(|r| (r.key, r.window.start_ms, r.value, r.is_final))
        .collect()
}

/// A snapshot of partition 0 holding [0, 10) open with offsets 0..3 (key 0 twice,
/// key 1 once), at watermark 3; and a commit of it whose watermark, 15, closed that
/// window: what the commit rule never writes, made here by hand.
fn snapshot_behind_its_commit() -> Restored {
    let mut env = env();
    let mut saved = counts();
    saved.assign("t", 0, &Restored::default(), env.now).unwrap();
    for (offset, timestamp_ms) in [(0, 1), (1, 2), (2, 3)] {
        let (record, context) = record(offset, timestamp_ms);
        let mut out = Vec::new();
        saved.record(record, &context, &mut env, &mut out);
        assert!(out.is_empty(), "the window is open when saved");
    }
    let mut states = Vec::new();
    saved.snapshot("t", 0, &mut states).unwrap();
    let [(stage, bytes)]: [(String, Vec<u8>); 1] = states.try_into().unwrap();
    let mut restored = Restored {
        position: Some(3),
        consumed: Some(3),
        ..Restored::default()
    };
    restored.watermarks.insert(stage.clone(), 15);
    restored.snapshot_bytes.insert(stage, bytes);
    restored
}

#[test]
fn windows_a_restored_snapshot_holds_past_its_watermark_are_emitted_at_the_next_tick() {
    let restored = snapshot_behind_its_commit();
    let mut env = env();
    let mut moved = counts();
    moved.assign("t", 0, &restored, env.now).unwrap();
    let mut ticked = Vec::new();
    moved.tick(&mut env, &mut ticked);
    let mut emitted = rows(ticked.iter().map(|(_, result)| result));
    emitted.sort_unstable();
    assert_eq!(emitted, vec![(0, 0, 2, true), (1, 0, 1, true)]);
    for (context, _) in &ticked {
        assert_eq!(
            (context.partition, context.offset),
            (0, 2),
            "a result carries the last offset the commit covers"
        );
    }
    let mut again = Vec::new();
    moved.tick(&mut env, &mut again);
    assert!(again.is_empty(), "emitted once");

    // The next snapshot is of the state without them: restored from it, with the
    // same watermark, nothing closes.
    let mut states = Vec::new();
    moved.snapshot("t", 0, &mut states).unwrap();
    let [(stage, bytes)]: [(String, Vec<u8>); 1] = states.try_into().unwrap();
    let mut next = restored.clone();
    next.snapshot_bytes.insert(stage, bytes);
    let mut later = counts();
    later.assign("t", 0, &next, env.now).unwrap();
    let mut nothing = Vec::new();
    later.tick(&mut env, &mut nothing);
    assert!(nothing.is_empty());
}

#[test]
fn windows_a_restored_snapshot_holds_past_its_watermark_come_before_a_record_s_results() {
    let restored = snapshot_behind_its_commit();
    let mut env = env();
    let mut moved = counts();
    moved.assign("t", 0, &restored, env.now).unwrap();
    // Offset 3 at 25 ms: [10, 20) never opened, [20, 30) opens.
    let (record, context) = record(3, 25);
    let mut out = Vec::new();
    moved.record(record, &context, &mut env, &mut out);
    let mut emitted = rows(&out);
    emitted.sort_unstable();
    assert_eq!(emitted, vec![(0, 0, 2, true), (1, 0, 1, true)]);
    let mut ticked = Vec::new();
    moved.tick(&mut env, &mut ticked);
    assert!(ticked.is_empty(), "emitted once");
}
