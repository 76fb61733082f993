//! Keyed window stages: `.key_by(..).window(spec)` then `.count()`, `.fold(..)`,
//! `.reduce(..)`, `.aggregate(..)` or `.top_k(k)`.
//!
//! State is kept per input partition and moves with it: a partition given up drops
//! its windows, one assigned rebuilds them by replaying from its commit. So a key's
//! records must share an input partition (produce the input keyed by the key the
//! windows use, as Kafka Streams requires of input it does not repartition); with a
//! key spread over partitions, each partition reports its own share.
//!
//! Time is per partition too: its watermark is the largest event time it has shown,
//! moved on with the wall clock once it has had no record for `idle_timeout`, so the
//! windows of a quiet partition still close. (Each partition's windows hold only its
//! own records, so the minimum over the partitions a worker owns would only make the
//! results depend on which partitions share a worker: with one clock per partition, 1
//! worker and 3 give the same results, and a partition that moves keeps its time.)
//! A window closes when the watermark reaches its end plus the allowed lateness. A
//! record all of whose windows have closed is late: counted, and written as read to
//! the side topic of `.late_to_topic(..)` if there is one.
//!
//! The commit rule: a partition is committed at the oldest input offset an open
//! window still holds (its consumed position when none is open), after every output
//! before it is acknowledged, with the consumed position and the watermark in the
//! commit's metadata. Its next owner starts there, with that watermark: records it
//! replays whose windows had all closed were counted before and are skipped, the
//! others rebuild the open windows exactly. A window that closed after the last
//! commit is emitted again, with the same value: read results by (key, window start).
//! A partition revoked in a rebalance is committed by the group consumer at its
//! consumed position instead; its next owner rebuilds from the copy of the last
//! commit made here (see `runtime::Worker::fetch_restored`).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_client::ConsumerRecord;

use super::chain::{Chain, Checkpoint, Env, Restored, SideRecord};
use super::{Context, Pipeline};
use crate::window::{
    default_budget_bytes, AddOutcome, Aggregator, Count, EmitMode, Fold, RankedKey,
    SessionAggregate, TopKAggregator, TopKKey, WindowResult, WindowSpec, WindowedAggregate,
};

/// How long a partition may go without a record before its time moves on with the
/// wall clock, by default.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

type EventTime<V> = Box<dyn FnMut(&V, &Context) -> i64 + Send>;

/// A keyed pipeline with a window chosen, waiting for its aggregate.
pub struct WindowedPipeline<K, V> {
    pipeline: Pipeline<(K, V)>,
    spec: WindowSpec,
    name: Option<String>,
    lateness_ms: i64,
    idle_timeout: Duration,
    emit: EmitMode,
    event_time: Option<EventTime<V>>,
    late_topic: Option<String>,
}

impl<K, V> std::fmt::Debug for WindowedPipeline<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowedPipeline")
            .field("spec", &self.spec)
            .field("name", &self.name)
            .field("lateness_ms", &self.lateness_ms)
            .field("idle_timeout", &self.idle_timeout)
            .field("emit", &self.emit)
            .field("late_topic", &self.late_topic)
            .finish_non_exhaustive()
    }
}

impl<K: Send + 'static, V: Send + 'static> Pipeline<(K, V)> {
    /// Groups the keyed items in windows of event time (the record's timestamp
    /// unless [`WindowedPipeline::event_time`] says otherwise).
    pub fn window(self, spec: WindowSpec) -> WindowedPipeline<K, V> {
        WindowedPipeline {
            pipeline: self,
            spec,
            name: None,
            lateness_ms: 0,
            idle_timeout: IDLE_TIMEOUT,
            emit: EmitMode::OnClose,
            event_time: None,
            late_topic: None,
        }
    }
}

impl<K, V> WindowedPipeline<K, V>
where
    K: Hash + Ord + Clone + Send + 'static,
    V: Send + 'static,
{
    /// The stage's name, which its state (and commit metadata) is known by: letters,
    /// digits, `.`, `_` and `-`, as Kafka topic names. Default: `window-<n>` for the
    /// stage's position in the pipeline; name it so a changed pipeline keeps its state.
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }

    /// How far behind the watermark a record may be and still be counted (default 0).
    pub fn allowed_lateness(mut self, lateness: Duration) -> Self {
        self.lateness_ms = i64::try_from(lateness.as_millis()).unwrap_or(i64::MAX);
        self
    }

    /// How long a partition may go without a record before its time moves on with
    /// the wall clock (default 30 s).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Emit on close (the default: one final result per window and key) or on
    /// every update as well.
    pub fn emit(mut self, emit: EmitMode) -> Self {
        self.emit = emit;
        self
    }

    /// Event time from the item (and its input record), in ms since the epoch.
    pub fn event_time(mut self, f: impl FnMut(&V, &Context) -> i64 + Send + 'static) -> Self {
        self.event_time = Some(Box::new(f));
        self
    }

    /// Writes every late record, as read (key, value, timestamp), to `topic`.
    pub fn late_to_topic(mut self, topic: &str) -> Self {
        self.late_topic = Some(topic.to_string());
        self
    }

    /// Counts each key's items per window.
    pub fn count(self) -> Pipeline<WindowResult<K, u64>> {
        self.aggregate(Count)
    }

    /// Folds each key's items per window: `init` an accumulator, `add` an item to it,
    /// and `merge` two (a window is kept as panes, merged when it is emitted).
    pub fn fold<A>(
        self,
        init: impl Fn() -> A + Send + Sync + 'static,
        add: impl Fn(&mut A, V) + Send + Sync + 'static,
        merge: impl Fn(&mut A, &A) + Send + Sync + 'static,
    ) -> Pipeline<WindowResult<K, A>>
    where
        A: Clone + Send + 'static,
    {
        self.aggregate(Fold { init, add, merge })
    }

    /// Combines each key's items per window with `f`.
    pub fn reduce(
        self,
        f: impl Fn(V, V) -> V + Send + Sync + 'static,
    ) -> Pipeline<WindowResult<K, V>>
    where
        V: Clone,
    {
        let f = Arc::new(f);
        let merge_f = Arc::clone(&f);
        self.fold(
            || None,
            move |acc: &mut Option<V>, value| {
                *acc = Some(match acc.take() {
                    Some(held) => f(held, value),
                    None => value,
                })
            },
            move |into: &mut Option<V>, other: &Option<V>| {
                if let Some(other) = other {
                    *into = Some(match into.take() {
                        Some(held) => merge_f(held, other.clone()),
                        None => other.clone(),
                    })
                }
            },
        )
        .filter_map(|result| {
            let value = result.value?;
            Some(WindowResult {
                key: result.key,
                window: result.window,
                value,
                is_final: result.is_final,
            })
        })
    }

    /// Aggregates each key's items per window with `aggregator`.
    pub fn aggregate<G>(self, aggregator: G) -> Pipeline<WindowResult<K, G::Acc>>
    where
        G: Aggregator<V> + Send + Sync + 'static,
        G::Acc: Send + 'static,
    {
        let aggregator = Arc::new(aggregator);
        self.build(aggregator, |result, out| out.push(result))
    }

    /// The `k` keys with the most items per window, as rows of rank, key, count
    /// and error bound; each pane's sketch gets the default budget (1 KiB per key
    /// wanted, from 64 KiB to 8 MiB).
    pub fn top_k(self, k: usize) -> Pipeline<RankedKey<K>>
    where
        K: TopKKey,
    {
        self.top_k_within(k, default_budget_bytes(k))
    }

    /// As [`WindowedPipeline::top_k`], each pane's sketch in `budget_bytes`.
    pub fn top_k_within(mut self, k: usize, budget_bytes: usize) -> Pipeline<RankedKey<K>>
    where
        K: TopKKey,
    {
        let aggregator = match TopKAggregator::new(k, budget_bytes) {
            Ok(aggregator) => aggregator,
            Err(error) => {
                self.pipeline
                    .invalid
                    .get_or_insert(format!("top_k({k}): {error}"));
                // Never run: `run` reports the mistake first.
                TopKAggregator::new(k, default_budget_bytes(k)).expect("the default fits")
            }
        };
        let ranker = aggregator.clone();
        // The sketch counts the keys; the state has one entry per partition.
        let keys_only =
            self.pipeline
                .then(|(key, value): (K, V), _, out: &mut Vec<((), (K, V))>| {
                    out.push(((), (key, value)))
                });
        let windowed = WindowedPipeline {
            pipeline: keys_only,
            spec: self.spec,
            name: self.name,
            lateness_ms: self.lateness_ms,
            idle_timeout: self.idle_timeout,
            emit: self.emit,
            event_time: self.event_time.map(|mut f| {
                Box::new(move |(_, value): &(K, V), context: &Context| f(value, context))
                    as EventTime<(K, V)>
            }),
            late_topic: self.late_topic,
        };
        windowed.build(
            Arc::new(KeysOf(aggregator, std::marker::PhantomData)),
            move |result: WindowResult<(), _>, out| {
                out.extend(ranker.rank(&result.value, result.window, result.is_final))
            },
        )
    }

    fn build<G, T>(
        mut self,
        aggregator: Arc<G>,
        emit: impl FnMut(WindowResult<K, G::Acc>, &mut Vec<T>) + Send + 'static,
    ) -> Pipeline<T>
    where
        G: Aggregator<V> + Send + Sync + 'static,
        G::Acc: Send + 'static,
        T: Send + 'static,
    {
        let position = self.pipeline.stages + 1;
        let name = self.name.unwrap_or_else(|| format!("window-{position}"));
        if let Err(reason) = check_name(&name) {
            self.pipeline.invalid.get_or_insert(reason);
        }
        if let Err(error) = self.spec.validate() {
            self.pipeline
                .invalid
                .get_or_insert(format!("window stage {name:?}: {error}"));
        }
        let (spec, lateness_ms, mode) = (self.spec, self.lateness_ms, self.emit);
        let new_store: NewStore<K, V, G::Acc> = match spec {
            WindowSpec::Session { .. } => Box::new(move || {
                SessionAggregate::new(spec, lateness_ms, mode, Arc::clone(&aggregator))
                    .map(|s| Box::new(s) as Box<dyn Store<K, V, Acc = G::Acc>>)
                    .ok()
            }),
            _ => Box::new(move || {
                WindowedAggregate::new(spec, lateness_ms, mode, Arc::clone(&aggregator))
                    .map(|s| Box::new(s) as Box<dyn Store<K, V, Acc = G::Acc>>)
                    .ok()
            }),
        };
        let (event_time, idle_timeout) = (self.event_time, self.idle_timeout);
        let late_topic = self.late_topic.map(Arc::from);
        self.pipeline.wrap(move |upstream| {
            Box::new(WindowStage {
                name,
                upstream,
                new_store,
                emit: Box::new(emit),
                event_time,
                idle_timeout,
                late_topic,
                partitions: HashMap::new(),
                scratch: Vec::new(),
                ticked: Vec::new(),
                results: Vec::new(),
            })
        })
    }
}

/// Stage names become parts of state and topic names.
fn check_name(name: &str) -> Result<(), String> {
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    let reserved = ["position", "consumed"];
    if name.is_empty() || name.len() > 200 || !name.chars().all(legal) || reserved.contains(&name) {
        return Err(format!(
            "window stage name {name:?}: use 1 to 200 letters, digits, '.', '_' or '-' (and not \"position\" or \"consumed\")"
        ));
    }
    Ok(())
}

/// Counts the keys of `(key, value)` items in a top-K sketch.
struct KeysOf<K>(TopKAggregator, std::marker::PhantomData<fn(K)>);

impl<K: TopKKey, V> Aggregator<(K, V)> for KeysOf<K> {
    type Acc = crate::window::TopKAcc;
    fn init(&self) -> Self::Acc {
        <TopKAggregator as Aggregator<K>>::init(&self.0)
    }
    fn add(&self, acc: &mut Self::Acc, (key, _): (K, V)) {
        self.0.add(acc, key)
    }
    fn merge(&self, into: &mut Self::Acc, other: &Self::Acc) {
        <TopKAggregator as Aggregator<K>>::merge(&self.0, into, other)
    }
}

/// Time windows and sessions, as the stage uses them.
trait Store<K, V>: Send {
    type Acc;
    fn add_from(
        &mut self,
        key: K,
        timestamp_ms: i64,
        value: V,
        offset: u64,
    ) -> AddOutcome<K, Self::Acc>;
    fn advance(&mut self, watermark_ms: i64) -> Vec<WindowResult<K, Self::Acc>>;
    fn oldest_offset(&self) -> Option<u64>;
}

impl<K, V, G> Store<K, V> for WindowedAggregate<K, V, G>
where
    K: Hash + Ord + Clone + Send,
    G: Aggregator<V> + Send,
    G::Acc: Send,
{
    type Acc = G::Acc;
    fn add_from(
        &mut self,
        key: K,
        timestamp_ms: i64,
        value: V,
        offset: u64,
    ) -> AddOutcome<K, G::Acc> {
        WindowedAggregate::add_from(self, key, timestamp_ms, value, offset)
    }
    fn advance(&mut self, watermark_ms: i64) -> Vec<WindowResult<K, G::Acc>> {
        WindowedAggregate::advance(self, watermark_ms)
    }
    fn oldest_offset(&self) -> Option<u64> {
        WindowedAggregate::oldest_offset(self)
    }
}

impl<K, V, G> Store<K, V> for SessionAggregate<K, V, G>
where
    K: Hash + Ord + Clone + Send,
    G: Aggregator<V> + Send,
    G::Acc: Send,
{
    type Acc = G::Acc;
    fn add_from(
        &mut self,
        key: K,
        timestamp_ms: i64,
        value: V,
        offset: u64,
    ) -> AddOutcome<K, G::Acc> {
        SessionAggregate::add_from(self, key, timestamp_ms, value, offset)
    }
    fn advance(&mut self, watermark_ms: i64) -> Vec<WindowResult<K, G::Acc>> {
        SessionAggregate::advance(self, watermark_ms)
    }
    fn oldest_offset(&self) -> Option<u64> {
        SessionAggregate::oldest_offset(self)
    }
}

/// Makes a partition's empty state; `None` for a spec `run` refuses anyway.
type NewStore<K, V, A> = Box<dyn Fn() -> Option<Box<dyn Store<K, V, Acc = A>>> + Send>;

/// The event time of one partition.
#[derive(Debug, Clone, Copy)]
struct Clock {
    max_event_ms: Option<i64>,
    /// When the last record arrived (or the partition was assigned).
    last_seen: Instant,
    watermark_ms: i64,
}

impl Clock {
    fn new(restored_ms: Option<i64>, now: Instant) -> Clock {
        Clock {
            // A restored partition's time goes on from where its last commit saw it.
            max_event_ms: restored_ms,
            last_seen: now,
            watermark_ms: restored_ms.unwrap_or(i64::MIN),
        }
    }

    fn observe(&mut self, event_ms: i64, now: Instant) {
        self.max_event_ms = Some(self.max_event_ms.map_or(event_ms, |m| m.max(event_ms)));
        self.last_seen = now;
    }

    /// The largest event time seen; once idle, that plus the wall time since it
    /// arrived. Never goes back.
    fn watermark_ms(&mut self, now: Instant, idle_timeout: Duration) -> i64 {
        let waited = now.saturating_duration_since(self.last_seen);
        let candidate = match self.max_event_ms {
            None => i64::MIN,
            Some(max) if waited >= idle_timeout => {
                max.saturating_add(i64::try_from(waited.as_millis()).unwrap_or(i64::MAX))
            }
            Some(max) => max,
        };
        self.watermark_ms = self.watermark_ms.max(candidate);
        self.watermark_ms
    }
}

struct PartitionState<K, V, A> {
    store: Box<dyn Store<K, V, Acc = A>>,
    clock: Clock,
    /// Records before this offset were processed before the commit the state was
    /// rebuilt from.
    replayed_below: Option<u64>,
    last_offset: u64,
    /// The input offset of the last record sent to the late topic, so a record
    /// that became several items is written once.
    last_late_offset: Option<u64>,
}

/// Turns a window's result into the stage's items.
type EmitFn<K, A, T> = Box<dyn FnMut(WindowResult<K, A>, &mut Vec<T>) + Send>;

type PartitionStates<K, V, A> = HashMap<u32, PartitionState<K, V, A>>;

/// Results of windows that closed at a tick: topic, partition, last offset, results.
type Closed<K, A> = (Arc<str>, u32, u64, Vec<WindowResult<K, A>>);

/// A window stage after `upstream`.
struct WindowStage<K, V, A, T> {
    name: String,
    upstream: Box<dyn Chain<(K, V)>>,
    new_store: NewStore<K, V, A>,
    emit: EmitFn<K, A, T>,
    event_time: Option<EventTime<V>>,
    idle_timeout: Duration,
    late_topic: Option<Arc<str>>,
    partitions: HashMap<Arc<str>, PartitionStates<K, V, A>>,
    scratch: Vec<(K, V)>,
    ticked: Vec<(Context, (K, V))>,
    results: Vec<WindowResult<K, A>>,
}

impl<K, V, A, T> WindowStage<K, V, A, T>
where
    K: Send,
    V: Send,
    A: Send,
    T: Send,
{
    fn state(
        &mut self,
        topic: &Arc<str>,
        partition: u32,
        now: Instant,
    ) -> Option<&mut PartitionState<K, V, A>> {
        let partitions = self.partitions.entry(Arc::clone(topic)).or_default();
        match partitions.entry(partition) {
            std::collections::hash_map::Entry::Occupied(entry) => Some(entry.into_mut()),
            std::collections::hash_map::Entry::Vacant(entry) => {
                // Records of a partition before its assignment was seen: start empty.
                let store = (self.new_store)()?;
                Some(entry.insert(new_state(store, &Restored::default(), &self.name, now)))
            }
        }
    }

    /// One item of the partition of `context`; its results (closed windows,
    /// updates) go to `out`.
    fn item(
        &mut self,
        key: K,
        value: V,
        context: &Context,
        env: &mut Env,
        out: &mut Vec<(Context, T)>,
    ) {
        let event_ms = match self.event_time.as_mut() {
            Some(f) => f(&value, context),
            None => context.timestamp_ms,
        };
        let idle_timeout = self.idle_timeout;
        let late_topic = self.late_topic.clone();
        let mut results = std::mem::take(&mut self.results);
        let Some(state) = self.state(&context.topic, context.partition, env.now) else {
            return;
        };
        state.clock.observe(event_ms, env.now);
        state.last_offset = context.offset;
        let replayed = state
            .replayed_below
            .is_some_and(|below| context.offset < below);
        match state.store.add_from(key, event_ms, value, context.offset) {
            AddOutcome::Accepted { updates, .. } => results.extend(updates),
            // A replayed record whose windows had closed was counted before the
            // commit; only a record new to this partition's state is late.
            AddOutcome::Late if replayed => {}
            AddOutcome::Late => {
                if let (Some(topic), Some((key, value))) = (&late_topic, &context.raw) {
                    if state.last_late_offset != Some(context.offset) {
                        state.last_late_offset = Some(context.offset);
                        env.side.push(SideRecord {
                            topic: Arc::clone(topic),
                            key: key.clone(),
                            value: value.clone(),
                            timestamp_ms: context.timestamp_ms,
                        });
                    }
                }
                tracing::debug!(topic = %context.topic, partition = context.partition, offset = context.offset, event_ms, "late record");
            }
        }
        let watermark_ms = state.clock.watermark_ms(env.now, idle_timeout);
        results.extend(state.store.advance(watermark_ms));
        self.emit_all(
            &mut results,
            &context.topic,
            context.partition,
            context.offset,
            out,
        );
        self.results = results;
    }

    fn emit_all(
        &mut self,
        results: &mut Vec<WindowResult<K, A>>,
        topic: &Arc<str>,
        partition: u32,
        offset: u64,
        out: &mut Vec<(Context, T)>,
    ) {
        let mut produced = Vec::new();
        for result in results.drain(..) {
            let context = Context {
                topic: Arc::clone(topic),
                partition,
                offset,
                timestamp_ms: result.window.end_ms.saturating_sub(1),
                raw: None,
            };
            (self.emit)(result, &mut produced);
            out.extend(produced.drain(..).map(|item| (context.clone(), item)));
        }
    }
}

fn new_state<K, V, A>(
    mut store: Box<dyn Store<K, V, Acc = A>>,
    restored: &Restored,
    name: &str,
    now: Instant,
) -> PartitionState<K, V, A> {
    let watermark_ms = restored.watermarks.get(name).copied();
    if let Some(watermark_ms) = watermark_ms {
        let closed = store.advance(watermark_ms);
        debug_assert!(closed.is_empty(), "an empty state has no window to close");
    }
    PartitionState {
        store,
        clock: Clock::new(watermark_ms, now),
        replayed_below: restored.position,
        last_offset: 0,
        last_late_offset: None,
    }
}

impl<K, V, A, T> Chain<T> for WindowStage<K, V, A, T>
where
    K: Send,
    V: Send,
    A: Send,
    T: Send,
{
    fn record(
        &mut self,
        record: ConsumerRecord,
        context: &Context,
        env: &mut Env,
        out: &mut Vec<T>,
    ) {
        let mut items = std::mem::take(&mut self.scratch);
        self.upstream.record(record, context, env, &mut items);
        let mut produced = Vec::new();
        for (key, value) in items.drain(..) {
            self.item(key, value, context, env, &mut produced);
        }
        out.extend(produced.into_iter().map(|(_, item)| item));
        self.scratch = items;
    }

    fn tick(&mut self, env: &mut Env, out: &mut Vec<(Context, T)>) {
        let mut ticked = std::mem::take(&mut self.ticked);
        self.upstream.tick(env, &mut ticked);
        for (context, (key, value)) in ticked.drain(..) {
            self.item(key, value, &context, env, out);
        }
        self.ticked = ticked;
        let mut results = std::mem::take(&mut self.results);
        let mut closed: Vec<Closed<K, A>> = Vec::new();
        for (topic, partitions) in &mut self.partitions {
            for (partition, state) in partitions.iter_mut() {
                let watermark_ms = state.clock.watermark_ms(env.now, self.idle_timeout);
                let now_closed = state.store.advance(watermark_ms);
                if !now_closed.is_empty() {
                    closed.push((Arc::clone(topic), *partition, state.last_offset, now_closed));
                }
            }
        }
        // Partitions in order, so output order does not depend on hashing.
        closed.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        for (topic, partition, offset, now_closed) in closed {
            results.extend(now_closed);
            self.emit_all(&mut results, &topic, partition, offset, out);
        }
        self.results = results;
    }

    fn assign(&mut self, topic: &str, partition: u32, restored: &Restored, now: Instant) {
        self.upstream.assign(topic, partition, restored, now);
        let Some(store) = (self.new_store)() else {
            return;
        };
        let state = new_state(store, restored, &self.name, now);
        self.partitions
            .entry(Arc::from(topic))
            .or_default()
            .insert(partition, state);
    }

    fn revoke(&mut self, topic: &str, partition: u32) {
        self.upstream.revoke(topic, partition);
        if let Some(partitions) = self.partitions.get_mut(topic) {
            partitions.remove(&partition);
        }
    }

    fn checkpoint(&self, topic: &str, partition: u32, into: &mut Checkpoint) {
        self.upstream.checkpoint(topic, partition, into);
        let Some(state) = self.partitions.get(topic).and_then(|p| p.get(&partition)) else {
            return;
        };
        if let Some(oldest) = state.store.oldest_offset() {
            into.oldest_offset = Some(into.oldest_offset.map_or(oldest, |o| o.min(oldest)));
        }
        into.watermarks
            .push((self.name.clone(), state.clock.watermark_ms));
        into.processed_below = into.processed_below.max(state.replayed_below);
    }

    fn is_stateful(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::PipelineError;

    async fn refusal(runnable: crate::pipeline::Runnable) -> String {
        // Refused before connecting: nothing listens at this address.
        match runnable.run("127.0.0.1:1", async {}).await {
            Err(PipelineError::Invalid { reason, .. }) => reason,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_pipeline_with_a_window_that_cannot_work_is_refused_with_a_sentence() {
        let bad_hop = Pipeline::from_topic("t")
            .key_by(|r| r.partition)
            .window(WindowSpec::hopping(
                Duration::from_secs(10),
                Duration::from_secs(3),
            ))
            .count()
            .for_each(|_, _| {});
        assert!(refusal(bad_hop).await.contains("must divide the size"));
        let bad_name = Pipeline::from_topic("t")
            .key_by(|r| r.partition)
            .window(WindowSpec::tumbling(Duration::from_secs(10)))
            .name("per minute")
            .count()
            .for_each(|_, _| {});
        assert!(refusal(bad_name).await.contains("\"per minute\""));
        let tiny_budget = Pipeline::from_topic("t")
            .key_by(|r| r.partition)
            .window(WindowSpec::tumbling(Duration::from_secs(10)))
            .top_k_within(10, 16)
            .for_each(|_, _| {});
        assert!(refusal(tiny_budget).await.contains("top_k(10)"));
    }

    #[test]
    fn a_default_stage_name_says_where_the_stage_is() {
        let pipeline = Pipeline::from_topic("t")
            .map(|r| r)
            .key_by(|r| r.partition)
            .window(WindowSpec::tumbling(Duration::from_secs(10)))
            .count();
        let mut checkpoint = Checkpoint::default();
        let mut chain = pipeline.chain;
        chain.assign("t", 0, &Restored::default(), Instant::now());
        chain.checkpoint("t", 0, &mut checkpoint);
        assert_eq!(
            checkpoint.watermarks,
            vec![("window-3".to_string(), i64::MIN)]
        );
    }
}
