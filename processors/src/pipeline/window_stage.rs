//! A window stage at work: per input partition, the window state and the clock of
//! event time; records, ticks and partitions moving go through it (see [`super::windowed`]
//! for the rules it keeps).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_client::ConsumerRecord;

use super::chain::{Chain, ChangelogStage, Checkpoint, Env, Restored, SideRecord};
use super::metrics::{OperatorMeter, PipelineMetrics};
use super::Context;
use crate::window::{
    stream_time, AddOutcome, KeyCodec, PartitionTime, SnapshotError, StreamTime, WindowResult,
};

mod store;
#[cfg(test)]
mod tests;

pub(super) use store::Store;

pub(super) type EventTime<V> = Box<dyn FnMut(&V, &Context) -> i64 + Send>;

/// Makes a partition's empty state; `None` for a spec `run` refuses anyway.
pub(super) type NewStore<K, V, A> = Box<dyn Fn() -> Option<Box<dyn Store<K, V, Acc = A>>> + Send>;

/// The event time of one partition and the watermark its windows have been
/// advanced to.
#[derive(Debug, Clone, Copy)]
struct Clock {
    time: PartitionTime,
    /// Never goes back, though stream time over a worker's partitions may (a
    /// partition assigned behind the others): windows closed stay closed.
    watermark_ms: i64,
}

impl Clock {
    fn new(restored_ms: Option<i64>, now: Instant) -> Clock {
        Clock {
            // A restored partition's time goes on from where its last commit saw it.
            time: PartitionTime::new(restored_ms, now),
            watermark_ms: restored_ms.unwrap_or(i64::MIN),
        }
    }

    /// Stream time of this partition alone (`StreamTime::PerPartition`).
    fn own_stream_time(&self, now: Instant, idle_timeout: Duration) -> i64 {
        stream_time(std::iter::once(&self.time), now, idle_timeout)
    }

    /// Moves the watermark on to `stream_time_ms` if that is ahead of it.
    fn advance(&mut self, stream_time_ms: i64) -> i64 {
        self.watermark_ms = self.watermark_ms.max(stream_time_ms);
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
    /// The state changed since its last snapshot (a record came, a window closed).
    dirty: bool,
    /// Windows the restore's watermark closed, emitted with the partition's next
    /// results (see `restored_state`).
    closed_at_restore: Vec<WindowResult<K, A>>,
}

/// The changelog of a window stage: its state is saved as a snapshot at each commit
/// and restored from it, instead of held back for replay.
pub(super) struct StageChangelog<K> {
    /// How the state's keys are written.
    pub keys: KeyCodec<K>,
    /// On by default (after `key_by`), not asked for with `.changelog()`: the
    /// pipeline turns it off when another window stage keeps none.
    pub by_default: bool,
}

/// How a window stage keeps time, where it sends what, and whether it keeps a
/// changelog.
pub(super) struct StageOptions<K, V> {
    pub event_time: Option<EventTime<V>>,
    pub changelog: Option<StageChangelog<K>>,
    pub idle_timeout: Duration,
    pub stream_time: StreamTime,
    pub late_topic: Option<Arc<str>>,
    /// `EmitMode::Periodic`'s interval.
    pub periodic: Option<Duration>,
}

/// Turns a window's result into the stage's items.
pub(super) type EmitFn<K, A, T> = Box<dyn FnMut(WindowResult<K, A>, &mut Vec<T>) + Send>;

type PartitionStates<K, V, A> = HashMap<u32, PartitionState<K, V, A>>;

/// A partition's state and the stage's cached stream time, borrowed together.
type StateAndTime<'a, K, V, A> = (&'a mut PartitionState<K, V, A>, &'a mut Option<i64>);

/// Results of windows that closed at a tick: topic, partition, last offset, results.
type Closed<K, A> = (Arc<str>, u32, u64, Vec<WindowResult<K, A>>);

/// A window stage after `upstream`.
pub(super) struct WindowStage<K, V, A, T> {
    /// The operator's name is also the name its state is known by.
    meter: OperatorMeter,
    upstream: Box<dyn Chain<(K, V)>>,
    new_store: NewStore<K, V, A>,
    emit: EmitFn<K, A, T>,
    event_time: Option<EventTime<V>>,
    idle_timeout: Duration,
    stream_time: StreamTime,
    /// Under [`StreamTime::WorkerMinimum`], stream time over every partition as last
    /// computed; `None` when a partition came, went, went idle or came back since.
    worker_time_ms: Option<i64>,
    late_topic: Option<Arc<str>>,
    changelog: Option<StageChangelog<K>>,
    /// `EmitMode::Periodic`'s interval, and when open windows are next emitted
    /// (counted from the first tick, when the pipeline runs, not from its building).
    periodic: Option<(Duration, Option<Instant>)>,
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
    pub(super) fn new(
        name: String,
        upstream: Box<dyn Chain<(K, V)>>,
        new_store: NewStore<K, V, A>,
        emit: EmitFn<K, A, T>,
        options: StageOptions<K, V>,
    ) -> Self {
        WindowStage {
            periodic: options.periodic.map(|interval| (interval, None)),
            meter: OperatorMeter::new(name),
            upstream,
            new_store,
            emit,
            event_time: options.event_time,
            idle_timeout: options.idle_timeout,
            stream_time: options.stream_time,
            worker_time_ms: None,
            late_topic: options.late_topic,
            changelog: options.changelog,
            partitions: HashMap::new(),
            scratch: Vec::new(),
            ticked: Vec::new(),
            results: Vec::new(),
        }
    }

    /// The partition's state (made empty for records of a partition before its
    /// assignment was seen), with the cached stream time beside it.
    fn state(
        &mut self,
        topic: &Arc<str>,
        partition: u32,
        now: Instant,
    ) -> Option<StateAndTime<'_, K, V, A>> {
        let WindowStage {
            partitions,
            new_store,
            meter,
            worker_time_ms,
            ..
        } = self;
        let partitions = partitions.entry(Arc::clone(topic)).or_default();
        let state = match partitions.entry(partition) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => {
                let store = new_store()?;
                *worker_time_ms = None;
                entry.insert(new_state(store, &Restored::default(), &meter.name, now))
            }
        };
        Some((state, worker_time_ms))
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
        self.meter.records_in += 1;
        let (idle_timeout, stream_time_policy) = (self.idle_timeout, self.stream_time);
        let late_topic = self.late_topic.clone();
        let mut results = std::mem::take(&mut self.results);
        let Some((state, worker_time_ms)) = self.state(&context.topic, context.partition, env.now)
        else {
            return;
        };
        results.append(&mut state.closed_at_restore);
        let time_before = state.clock.time;
        state.clock.time.observe(event_ms, env.now);
        state.last_offset = context.offset;
        state.dirty = true;
        let replayed = state
            .replayed_below
            .is_some_and(|below| context.offset < below);
        let mut late = false;
        match state.store.add_from(key, event_ms, value, context.offset) {
            AddOutcome::Accepted { updates, .. } => results.extend(updates),
            // A replayed record whose windows had closed was counted before the
            // commit; only a record new to this partition's state is late.
            AddOutcome::Late if replayed => {}
            AddOutcome::Late => {
                env.late += 1;
                late = true;
                if let (Some(topic), Some((key, value))) = (&late_topic, &context.raw) {
                    if state.last_late_offset != Some(context.offset) {
                        state.last_late_offset = Some(context.offset);
                        env.side.push(SideRecord {
                            topic: Arc::clone(topic),
                            late: true,
                            key: key.clone(),
                            value: value.clone(),
                            timestamp_ms: context.timestamp_ms,
                        });
                    }
                }
                tracing::debug!(topic = %context.topic, partition = context.partition, offset = context.offset, event_ms, "late record");
            }
        }
        let time_after = state.clock.time;
        let known_ms = match stream_time_policy {
            StreamTime::PerPartition => Some(state.clock.own_stream_time(env.now, idle_timeout)),
            StreamTime::WorkerMinimum => {
                // Only a partition that was at the minimum (or idle, and so not
                // counted) can move the minimum by going further.
                let moved = time_after.max_event_ms != time_before.max_event_ms;
                let at_minimum = worker_time_ms
                    .is_none_or(|w| time_before.max_event_ms.unwrap_or(i64::MIN) <= w);
                if time_before.is_idle(env.now, idle_timeout) || (moved && at_minimum) {
                    *worker_time_ms = None;
                }
                *worker_time_ms
            }
        };
        let (state, stream_time_ms) = match known_ms {
            Some(time_ms) => (state, time_ms),
            None => {
                let time_ms = self.worker_stream_time(env.now);
                let state = self
                    .partitions
                    .get_mut(&context.topic)
                    .and_then(|partitions| partitions.get_mut(&context.partition))
                    .expect("the partition's state was made above");
                (state, time_ms)
            }
        };
        let watermark_ms = state.clock.advance(stream_time_ms);
        results.extend(state.store.advance(watermark_ms));
        if late {
            self.meter.records_late += 1;
        }
        self.emit_all(
            &mut results,
            &context.topic,
            context.partition,
            context.offset,
            out,
        );
        self.results = results;
    }

    /// Stream time over every partition of the stage, from the last computation
    /// unless something that could move it happened since.
    fn worker_stream_time(&mut self, now: Instant) -> i64 {
        if let Some(time_ms) = self.worker_time_ms {
            return time_ms;
        }
        let times = self
            .partitions
            .values()
            .flat_map(HashMap::values)
            .map(|state| &state.clock.time);
        let time_ms = stream_time(times, now, self.idle_timeout);
        self.worker_time_ms = Some(time_ms);
        time_ms
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
            self.meter.records_out += produced.len() as u64;
            out.extend(produced.drain(..).map(|item| (context.clone(), item)));
        }
    }
}

impl<K, V, A, T> WindowStage<K, V, A, T>
where
    K: Send,
    V: Send,
    A: Send,
    T: Send,
{
    /// Under `EmitMode::Periodic`, every open window's result so far, when the
    /// interval has passed or the pipeline is stopping.
    fn emit_open(&mut self, env: &Env, out: &mut Vec<(Context, T)>) {
        let Some((interval, mut due)) = self.periodic else {
            return;
        };
        let due = *due.get_or_insert(env.now + interval);
        self.periodic = Some((interval, Some(due)));
        if env.now < due && !env.stopping {
            return;
        }
        self.periodic = Some((interval, Some(env.now + interval)));
        let mut open: Vec<Closed<K, A>> = Vec::new();
        for (topic, partitions) in &self.partitions {
            for (partition, state) in partitions {
                let results = state.store.open_results();
                if !results.is_empty() {
                    open.push((Arc::clone(topic), *partition, state.last_offset, results));
                }
            }
        }
        open.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        let mut results = std::mem::take(&mut self.results);
        for (topic, partition, offset, now_open) in open {
            results.extend(now_open);
            self.emit_all(&mut results, &topic, partition, offset, out);
        }
        self.results = results;
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
        dirty: false,
        closed_at_restore: Vec::new(),
    }
}

/// A partition's state from its snapshot: the store as saved, time going on from
/// the commit's watermark. Nothing is replayed, so nothing is skipped as replayed.
fn restored_state<K, V, A>(
    mut store: Box<dyn Store<K, V, Acc = A>>,
    keys: &KeyCodec<K>,
    bytes: &[u8],
    restored: &Restored,
    (name, topic, partition): (&str, &str, u32),
    now: Instant,
) -> Result<PartitionState<K, V, A>, SnapshotError> {
    store.restore_state(keys, bytes)?;
    let watermark_ms = restored.watermarks.get(name).copied();
    // The snapshot and the watermark are named by one commit: the snapshot was taken
    // at that commit, after the stage's last advance to that watermark, or is an
    // older one when the state had not changed since (an advance that closes a window
    // changes it), so advancing the saved state to the watermark closes nothing.
    // Not a `debug_assert!`: the bytes come from a topic (another version's writer,
    // a record written by hand), and a window they hold past the watermark is
    // emitted, not lost. It may have been emitted before the snapshot was saved:
    // once more is within at-least-once, and the same value.
    let closed_at_restore = match watermark_ms {
        Some(watermark_ms) => store.advance(watermark_ms),
        None => Vec::new(),
    };
    if !closed_at_restore.is_empty() {
        tracing::warn!(
            stage = name,
            %topic,
            partition,
            watermark_ms,
            windows = closed_at_restore.len(),
            "the restored snapshot holds windows its commit's watermark closed; \
             they are emitted now"
        );
    }
    Ok(PartitionState {
        store,
        clock: Clock::new(watermark_ms, now),
        replayed_below: None,
        // Results emitted before the partition's first record carry the last offset
        // the commit covers.
        last_offset: restored.position.map_or(0, |p| p.saturating_sub(1)),
        last_late_offset: None,
        // The next snapshot is of the state without the windows emitted.
        dirty: !closed_at_restore.is_empty(),
        closed_at_restore,
    })
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
        // Partitions go idle with the wall clock alone.
        self.worker_time_ms = None;
        let worker_time_ms = match self.stream_time {
            StreamTime::WorkerMinimum => Some(self.worker_stream_time(env.now)),
            StreamTime::PerPartition => None,
        };
        for (topic, partitions) in &mut self.partitions {
            for (partition, state) in partitions.iter_mut() {
                let stream_time_ms = worker_time_ms
                    .unwrap_or_else(|| state.clock.own_stream_time(env.now, self.idle_timeout));
                let watermark_ms = state.clock.advance(stream_time_ms);
                let mut now_closed = std::mem::take(&mut state.closed_at_restore);
                now_closed.extend(state.store.advance(watermark_ms));
                if !now_closed.is_empty() {
                    state.dirty = true;
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
        self.emit_open(env, out);
    }

    fn assign(
        &mut self,
        topic: &str,
        partition: u32,
        restored: &Restored,
        now: Instant,
    ) -> Result<(), String> {
        self.upstream.assign(topic, partition, restored, now)?;
        // A partition whose records never reach this stage (an input topic's, when
        // the stage reads a repartition topic) would hold the watermark back forever.
        if !self.upstream.fed_by(topic) {
            return Ok(());
        }
        let Some(store) = (self.new_store)() else {
            return Ok(());
        };
        let name = &self.meter.name;
        let saved = restored.snapshot_bytes.get(name.as_str());
        let state = match (&self.changelog, saved) {
            (Some(changelog), Some(bytes)) => restored_state(
                store,
                &changelog.keys,
                bytes,
                restored,
                (name, topic, partition),
                now,
            )
            .map_err(|error| {
                format!("stage {name:?}, partition {partition} of {topic:?}: {error}")
            })?,
            _ => new_state(store, restored, name, now),
        };
        self.partitions
            .entry(Arc::from(topic))
            .or_default()
            .insert(partition, state);
        self.worker_time_ms = None;
        Ok(())
    }

    fn revoke(&mut self, topic: &str, partition: u32) {
        self.upstream.revoke(topic, partition);
        if let Some(partitions) = self.partitions.get_mut(topic) {
            partitions.remove(&partition);
        }
        self.worker_time_ms = None;
    }

    fn checkpoint(&self, topic: &str, partition: u32, into: &mut Checkpoint) {
        self.upstream.checkpoint(topic, partition, into);
        let Some(state) = self.partitions.get(topic).and_then(|p| p.get(&partition)) else {
            return;
        };
        // A stage with a changelog is restored from its snapshot: it holds no
        // commit back.
        if let Some(oldest) = state
            .store
            .oldest_offset()
            .filter(|_| self.changelog.is_none())
        {
            into.oldest_offset = Some(into.oldest_offset.map_or(oldest, |o| o.min(oldest)));
        }
        into.watermarks
            .push((self.meter.name.clone(), state.clock.watermark_ms));
        into.processed_below = into.processed_below.max(state.replayed_below);
    }

    fn snapshot(
        &mut self,
        topic: &str,
        partition: u32,
        out: &mut Vec<(String, Vec<u8>)>,
    ) -> Result<(), String> {
        self.upstream.snapshot(topic, partition, out)?;
        let Some(keys) = self.changelog.as_ref().map(|changelog| &changelog.keys) else {
            return Ok(());
        };
        let Some(state) = self
            .partitions
            .get_mut(topic)
            .and_then(|p| p.get_mut(&partition))
            .filter(|state| state.dirty)
        else {
            return Ok(());
        };
        let mut bytes = Vec::new();
        let name = &self.meter.name;
        state
            .store
            .encode_state(keys, &mut bytes)
            .map_err(|error| {
                format!("stage {name:?}, partition {partition} of {topic:?}: {error}")
            })?;
        state.dirty = false;
        out.push((name.clone(), bytes));
        Ok(())
    }

    fn changelog_stages(&self, out: &mut Vec<ChangelogStage>) {
        self.upstream.changelog_stages(out);
        if let Some(changelog) = &self.changelog {
            out.push(ChangelogStage {
                name: self.meter.name.clone(),
                by_default: changelog.by_default,
            });
        }
    }

    fn drop_default_changelogs(&mut self) {
        self.upstream.drop_default_changelogs();
        debug_assert!(self.partitions.is_empty(), "decided before it holds state");
        if self.changelog.as_ref().is_some_and(|c| c.by_default) {
            self.changelog = None;
        }
    }

    fn is_stateful(&self) -> bool {
        true
    }

    fn operators(&self, out: &mut Vec<(String, bool)>) {
        self.upstream.operators(out);
        out.push((self.meter.name.clone(), true));
    }

    fn rename(&mut self, name: &str) {
        debug_assert!(self.partitions.is_empty(), "named before it holds state");
        self.meter.name = name.to_string();
    }

    fn bind_metrics(&mut self, metrics: &PipelineMetrics, group: &Arc<str>) {
        self.upstream.bind_metrics(metrics, group);
        self.meter.bind(metrics, group, true);
    }

    fn internal_topics(&mut self, group: &str, out: &mut Vec<String>) {
        self.upstream.internal_topics(group, out)
    }

    fn fed_by(&self, topic: &str) -> bool {
        self.upstream.fed_by(topic)
    }

    fn publish_metrics(&mut self, measure_state: bool) {
        self.upstream.publish_metrics(measure_state);
        let state_bytes = measure_state.then(|| {
            self.partitions
                .values()
                .flat_map(HashMap::values)
                .map(|state| state.store.state_bytes())
                .sum()
        });
        self.meter.publish(state_bytes);
    }
}
