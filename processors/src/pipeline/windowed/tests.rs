use std::time::Instant;

use weir_client::ConsumerRecord;

use super::*;
use crate::pipeline::chain::{Chain, Checkpoint, Env, Restored};
use crate::pipeline::PipelineError;

pub(super) async fn refusal(runnable: crate::pipeline::Runnable) -> String {
    // Refused before connecting: nothing listens at this address.
    match runnable.run("127.0.0.1:1", async {}).await {
        Err(PipelineError::Invalid { reason, .. }) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_pipeline_with_a_window_that_cannot_work_is_refused_with_a_sentence() {
    let bad_hop = Pipeline::from_topic("t")
        .key_by_local(|r| r.partition)
        .window(WindowSpec::hopping(
            Duration::from_secs(10),
            Duration::from_secs(3),
        ))
        .count()
        .for_each(|_, _| {});
    assert!(refusal(bad_hop).await.contains("must divide the size"));
    let bad_name = Pipeline::from_topic("t")
        .key_by_local(|r| r.partition)
        .window(WindowSpec::tumbling(Duration::from_secs(10)))
        .name("per minute")
        .count()
        .for_each(|_, _| {});
    assert!(refusal(bad_name).await.contains("\"per minute\""));
    let tiny_budget = Pipeline::from_topic("t")
        .key_by_local(|r| r.partition)
        .window(WindowSpec::tumbling(Duration::from_secs(10)))
        .top_k_within(10, 16)
        .for_each(|_, _| {});
    assert!(refusal(tiny_budget).await.contains("top_k(10)"));
}

#[tokio::test]
async fn a_stage_name_given_twice_or_malformed_is_refused() {
    let twice = Pipeline::from_topic("t")
        .map(|r| r)
        .name("step")
        .filter(|_| true)
        .name("step")
        .for_each(|_, _| {});
    assert!(refusal(twice).await.contains("\"step\" is given twice"));
    let malformed = Pipeline::from_topic("t")
        .map(|r| r)
        .name("a b")
        .for_each(|_, _| {});
    assert!(refusal(malformed).await.contains("\"a b\""));
}

#[test]
fn a_name_after_an_aggregate_names_its_window_stage() {
    let pipeline = Pipeline::from_topic("t")
        .key_by_local(|r| r.partition)
        .window(WindowSpec::tumbling(Duration::from_secs(10)))
        .reduce(|a, _| a)
        .name("latest");
    let mut operators = Vec::new();
    pipeline.chain.operators(&mut operators);
    assert_eq!(
        operators,
        vec![
            ("from_topic-0".to_string(), false),
            ("key_by-1".to_string(), false),
            ("latest".to_string(), true),
        ],
        "reduce's own stage is part of the window operator"
    );
    let mut chain = pipeline.chain;
    chain
        .assign("t", 0, &Restored::default(), Instant::now())
        .unwrap();
    let mut checkpoint = Checkpoint::default();
    chain.checkpoint("t", 0, &mut checkpoint);
    assert_eq!(
        checkpoint.watermarks,
        vec![("latest".to_string(), i64::MIN)]
    );
}

fn record(offset: u64, timestamp_ms: i64) -> (ConsumerRecord, Context) {
    let topic: Arc<str> = Arc::from("t");
    let record = ConsumerRecord {
        topic: Arc::clone(&topic),
        partition: 0,
        offset,
        timestamp_ms,
        key: None,
        value: None,
        headers: Vec::new(),
    };
    let context = Context {
        topic,
        partition: 0,
        offset,
        timestamp_ms,
        raw: Some((None, None)),
    };
    (record, context)
}

#[test]
fn emit_on_update_gives_every_update_then_the_final_result_at_close() {
    let pipeline = Pipeline::from_topic("t")
        .key_by_local(|_| "k")
        .window(WindowSpec::tumbling(Duration::from_millis(10)))
        .emit(EmitMode::OnUpdate)
        .count();
    let mut chain = pipeline.chain;
    let mut env = Env {
        now: Instant::now(),
        side: Vec::new(),
        late: 0,
        stopping: false,
        failure: None,
    };
    chain.assign("t", 0, &Restored::default(), env.now).unwrap();
    let mut seen = Vec::new();
    for (offset, timestamp_ms) in [(0, 1), (1, 2), (2, 15)] {
        let (record, context) = record(offset, timestamp_ms);
        let mut out = Vec::new();
        chain.record(record, &context, &mut env, &mut out);
        seen.extend(
            out.into_iter()
                .map(|r| (r.window.start_ms, r.value, r.is_final)),
        );
    }
    assert_eq!(
        seen,
        vec![(0, 1, false), (0, 2, false), (10, 1, false), (0, 2, true)]
    );
    // [10, 20) holds offset 2 open: the commit stops there.
    let mut checkpoint = Checkpoint::default();
    chain.checkpoint("t", 0, &mut checkpoint);
    assert_eq!(checkpoint.oldest_offset, Some(2));
}

#[test]
fn periodic_emit_gives_open_windows_each_interval_and_when_stopping() {
    let pipeline = Pipeline::from_topic("t")
        .key_by_local(|_| "k")
        .window(WindowSpec::tumbling(Duration::from_millis(10)))
        .idle_timeout(Duration::from_secs(3600))
        .emit(EmitMode::Periodic(Duration::from_secs(60)))
        .count();
    let mut chain = pipeline.chain;
    let start = Instant::now();
    let mut env = Env {
        now: start,
        side: Vec::new(),
        late: 0,
        stopping: false,
        failure: None,
    };
    chain.assign("t", 0, &Restored::default(), env.now).unwrap();
    let mut closed = Vec::new();
    for (offset, timestamp_ms) in [(0, 1), (1, 2), (2, 15)] {
        let (record, context) = record(offset, timestamp_ms);
        chain.record(record, &context, &mut env, &mut closed);
    }
    let seen = |items: Vec<WindowResult<&str, u64>>| -> Vec<(i64, u64, bool)> {
        items
            .into_iter()
            .map(|r| (r.window.start_ms, r.value, r.is_final))
            .collect()
    };
    assert_eq!(seen(closed), vec![(0, 2, true)], "a window closes as ever");
    let mut tick = |env: &mut Env| {
        let mut ticked = Vec::new();
        chain.tick(env, &mut ticked);
        seen(ticked.into_iter().map(|(_, item)| item).collect())
    };
    // Built half an hour before it runs: the interval counts from its first tick.
    env.now = start + Duration::from_secs(1800);
    assert_eq!(tick(&mut env), vec![], "the interval has not passed");
    let start = env.now;
    env.now = start + Duration::from_secs(61);
    assert_eq!(
        tick(&mut env),
        vec![(10, 1, false)],
        "the open window so far"
    );
    assert_eq!(tick(&mut env), vec![], "the next interval starts");
    env.stopping = true;
    assert_eq!(
        tick(&mut env),
        vec![(10, 1, false)],
        "once more when stopping"
    );
}

#[test]
fn a_top_k_stage_with_a_changelog_restores_its_sketches_and_holds_no_commit_back() {
    let build = || {
        Pipeline::from_topic("t")
            .key_by_local(|r| r.offset % 3)
            .window(WindowSpec::tumbling(Duration::from_millis(100)))
            .name("top")
            .changelog()
            .top_k_within(2, 4096)
            .chain
    };
    let mut env = Env {
        now: Instant::now(),
        side: Vec::new(),
        late: 0,
        stopping: false,
        failure: None,
    };
    let (mut saved, mut twin) = (build(), build());
    for chain in [&mut saved, &mut twin] {
        chain.assign("t", 0, &Restored::default(), env.now).unwrap();
        for offset in 0..10 {
            let (record, context) = record(offset, 5 + offset as i64);
            chain.record(record, &context, &mut env, &mut Vec::new());
        }
    }
    let mut checkpoint = Checkpoint::default();
    saved.checkpoint("t", 0, &mut checkpoint);
    assert_eq!(
        checkpoint.oldest_offset, None,
        "restored from its snapshot, not a replay"
    );
    let mut states = Vec::new();
    saved.snapshot("t", 0, &mut states).unwrap();
    assert_eq!(states.len(), 1);
    let mut unchanged = Vec::new();
    saved.snapshot("t", 0, &mut unchanged).unwrap();
    assert!(
        unchanged.is_empty(),
        "nothing changed since the last snapshot"
    );

    let mut restored = Restored::default();
    restored
        .snapshot_bytes
        .insert(states[0].0.clone(), states[0].1.clone());
    let mut moved = build();
    moved.assign("t", 0, &restored, env.now).unwrap();
    let mut rows = |chain: &mut Box<dyn Chain<RankedKey<u64>>>| {
        let (record, context) = record(10, 500);
        let mut out = Vec::new();
        chain.record(record, &context, &mut env, &mut out);
        out.into_iter()
            .map(|r| (r.window.start_ms, r.rank, r.key, r.count))
            .collect::<Vec<_>>()
    };
    let (from_snapshot, expected) = (rows(&mut moved), rows(&mut twin));
    assert!(!expected.is_empty());
    assert_eq!(from_snapshot, expected);

    let mut cut = Restored::default();
    cut.snapshot_bytes.insert(
        "top".to_string(),
        states[0].1[..states[0].1.len() - 1].to_vec(),
    );
    let error = build().assign("t", 0, &cut, env.now).unwrap_err();
    assert!(
        error.contains("\"top\"") && error.contains("partition 0"),
        "{error}"
    );
}

#[tokio::test]
async fn a_changelog_without_an_encoding_or_on_some_window_stages_only_is_refused() {
    let fold = Pipeline::from_topic("t")
        .key_by_local(|r| r.partition)
        .window(WindowSpec::tumbling(Duration::from_secs(10)))
        .changelog()
        .fold(|| 0u64, |acc, _| *acc += 1, |a, b| *a += b)
        .for_each(|_, _| {});
    assert!(refusal(fold).await.contains("accumulator with an encoding"));
    let mixed = Pipeline::from_topic("t")
        .key_by_local(|r| r.partition)
        .window(WindowSpec::tumbling(Duration::from_secs(10)))
        .changelog()
        .count()
        .key_by_local(|r| r.key)
        .window(WindowSpec::tumbling(Duration::from_secs(60)))
        .count()
        .for_each(|_, _| {});
    assert!(refusal(mixed).await.contains("give every window stage"));
}

#[test]
fn a_default_stage_name_says_where_the_stage_is() {
    let pipeline = Pipeline::from_topic("t")
        .map(|r| r)
        .key_by_local(|r| r.partition)
        .window(WindowSpec::tumbling(Duration::from_secs(10)))
        .count();
    let mut checkpoint = Checkpoint::default();
    let mut chain = pipeline.chain;
    chain
        .assign("t", 0, &Restored::default(), Instant::now())
        .unwrap();
    chain.checkpoint("t", 0, &mut checkpoint);
    assert_eq!(
        checkpoint.watermarks,
        vec![("window-3".to_string(), i64::MIN)]
    );
}
