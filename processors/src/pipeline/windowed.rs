//! Keyed window stages: `.key_by(..).window(spec)` then `.count()`, `.fold(..)`,
//! `.reduce(..)`, `.aggregate(..)` or `.top_k(k)`.
//!
//! State is kept per input partition and moves with it: a partition given up drops
//! its windows, one assigned restores them from the snapshot its commit names in the
//! stage's changelog (see `changelog`), which a stage keeps by default after `key_by`
//! (whose key is serializable), as Kafka Streams logs every state store; or, after
//! `key_by_local`, with `.without_changelog()`, or for `fold` and `reduce` (no encoding
//! of their accumulators), rebuilds them by replaying from its commit. So a key's
//! records must share an input partition: after `key_by` they do, through its repartition
//! topic (whose partitions are then the stage's input partitions); after `key_by_local`
//! only if the input is produced keyed by the window key (as Kafka Streams requires of
//! input it does not repartition), else each partition reports its own share of a key.
//!
//! Time: a stage's watermark is, by default, the minimum over the input partitions the
//! worker owns of the largest event time each has shown (`StreamTime::WorkerMinimum`);
//! a partition with no record for `idle_timeout` stops holding it back, and once every
//! partition is idle it moves on with the wall clock, so the windows of a quiet topic
//! still close. Each partition's windows are advanced to it and never go back. Under
//! the minimum, whether a record is late depends on which partitions share its worker
//! and the order they are read in; `StreamTime::PerPartition` gives each partition its
//! own clock instead, so 1 worker and 3 give the same results, late records included,
//! and a partition that moves keeps its time.
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

use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use super::window_stage::{EventTime, NewStore, StageChangelog, StageOptions, Store, WindowStage};
use super::{check_name, Context, Pipeline};
use crate::window::{
    default_budget_bytes, json_keys, Aggregator, Count, EmitMode, Fold, KeyCodec, RankedKey,
    SessionAggregate, StreamTime, TopKAggregator, TopKKey, WindowResult, WindowSpec,
    WindowedAggregate,
};

/// How long a partition may go without a record before its time moves on with the
/// wall clock, by default.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A keyed pipeline with a window chosen, waiting for its aggregate.
///
/// State is kept per input partition, so a key's records must share one (`key_by`
/// sees to it; after `key_by_local`, produce the input keyed by the window key). A
/// partition's windows close when the watermark (see [`WindowedPipeline::stream_time`])
/// passes their end plus the allowed lateness.
/// After `key_by` its state is saved in a changelog at each commit and restored from
/// there (see [`WindowedPipeline::changelog`]). Without one, a partition is committed
/// no further than the oldest record an open window holds, so after a crash or a
/// rebalance its windows are rebuilt by replay. Either way a window that closed after
/// the last commit is emitted again with the same value, so read results by key and
/// window start.
pub struct WindowedPipeline<K, V> {
    pipeline: Pipeline<(K, V)>,
    spec: WindowSpec,
    name: Option<String>,
    lateness_ms: i64,
    idle_timeout: Duration,
    stream_time: StreamTime,
    emit: EmitMode,
    event_time: Option<EventTime<V>>,
    late_topic: Option<String>,
    changelog: Option<StageChangelog<K>>,
}

impl<K, V> std::fmt::Debug for WindowedPipeline<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowedPipeline")
            .field("spec", &self.spec)
            .field("name", &self.name)
            .field("lateness_ms", &self.lateness_ms)
            .field("idle_timeout", &self.idle_timeout)
            .field("stream_time", &self.stream_time)
            .field("emit", &self.emit)
            .field("late_topic", &self.late_topic)
            .field(
                "changelog",
                &self.changelog.as_ref().map(|c| {
                    if c.by_default {
                        "by default"
                    } else {
                        "asked for"
                    }
                }),
            )
            .finish_non_exhaustive()
    }
}

impl<K: Send + 'static, V: Send + 'static> Pipeline<(K, V)> {
    /// Groups the keyed items in windows of event time (the record's timestamp
    /// unless [`WindowedPipeline::event_time`] says otherwise). After a `key_by`,
    /// the items first go through its repartition topic (see [`Pipeline::key_by`]).
    ///
    /// After a `key_by` (or a `.repartition()`), whose key is serializable, the
    /// stage keeps its state in a changelog by default, as Kafka Streams logs every
    /// state store (see [`WindowedPipeline::changelog`]); after `key_by_local` it
    /// rebuilds its state by replay unless `.changelog()` says otherwise.
    pub fn window(mut self, spec: WindowSpec) -> WindowedPipeline<K, V> {
        let keys = self.changelog_keys.take().and_then(|keys| {
            let keys = keys.downcast::<KeyCodec<K>>();
            // Only the stages that keep the item type, and so the key type, carry
            // the keys' encoding on.
            debug_assert!(keys.is_ok(), "the keys' encoding is of this key type");
            keys.ok()
        });
        WindowedPipeline {
            pipeline: self.repartitioned(),
            spec,
            name: None,
            lateness_ms: 0,
            idle_timeout: IDLE_TIMEOUT,
            stream_time: StreamTime::default(),
            emit: EmitMode::OnClose,
            event_time: None,
            late_topic: None,
            changelog: keys.map(|keys| StageChangelog {
                keys: *keys,
                by_default: true,
            }),
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

    /// How long a partition may go without a record before it stops holding the
    /// watermark back, and time then moves on with the wall clock (default 30 s).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Which partitions the watermark is taken over: the minimum over the input
    /// partitions this worker owns ([`StreamTime::WorkerMinimum`], the default), or
    /// each partition's own ([`StreamTime::PerPartition`]), for results that do not
    /// depend on how partitions are spread over workers even for late records.
    pub fn stream_time(mut self, stream_time: StreamTime) -> Self {
        self.stream_time = stream_time;
        self
    }

    /// Emit on close (the default: one final result per window and key), on
    /// every update as well, or periodically: open windows' results so far every
    /// interval and when the pipeline stops, as well as the final ones on close.
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

    /// Keeps the stage's state in a compacted changelog topic,
    /// `<group>-<stage>-changelog`: at every commit each input partition's state that
    /// changed is saved there as a snapshot (keys as JSON, accumulators in their own
    /// encoding: a sketch in its serialized form), and the commit names the snapshot
    /// it goes with; a partition assigned is restored from that snapshot and goes on
    /// from the commit. Without it, a partition's commit waits for its oldest open
    /// window and its state is rebuilt by replaying the input from there.
    ///
    /// On by default after `key_by`: this is for a stage after `key_by_local`, or
    /// to have `run` refuse a pipeline where it cannot be kept. The accumulator
    /// needs an encoding: `count` and `top_k` have one, as has an [`Aggregator`]
    /// implementing `encode_acc` and `decode_acc`; `fold` and `reduce` do not (asked
    /// for, `run` refuses them; by default, they keep none). Every window stage of a
    /// pipeline keeps a changelog or none does: a pipeline where only default
    /// changelogs stand beside stages without one runs with none; one where an
    /// asked-for changelog does is refused.
    pub fn changelog(mut self) -> Self
    where
        K: serde::Serialize + serde::de::DeserializeOwned,
    {
        self.changelog = Some(StageChangelog {
            keys: json_keys(),
            by_default: false,
        });
        self
    }

    /// Keeps no changelog (Kafka Streams' `withLoggingDisabled`): no snapshot is
    /// written at commits, and a partition assigned rebuilds its state by replaying
    /// the input from its commit, which waits for its oldest open window, so up to
    /// a window (plus the allowed lateness) of input is read again after a move or
    /// a crash.
    pub fn without_changelog(mut self) -> Self {
        self.changelog = None;
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
        .then_internal(|result, _, out| {
            if let Some(value) = result.value {
                out.push(WindowResult {
                    key: result.key,
                    window: result.window,
                    value,
                    is_final: result.is_final,
                })
            }
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
                .then_internal(|(key, value): (K, V), _, out: &mut Vec<((), (K, V))>| {
                    out.push(((), (key, value)))
                });
        let windowed = WindowedPipeline {
            pipeline: keys_only,
            spec: self.spec,
            name: self.name,
            lateness_ms: self.lateness_ms,
            idle_timeout: self.idle_timeout,
            stream_time: self.stream_time,
            emit: self.emit,
            event_time: self.event_time.map(|mut f| {
                Box::new(move |(_, value): &(K, V), context: &Context| f(value, context))
                    as EventTime<(K, V)>
            }),
            late_topic: self.late_topic,
            // The sketch holds the keys; the state's only key is the unit.
            changelog: self.changelog.map(|changelog| StageChangelog {
                keys: unit_keys(),
                by_default: changelog.by_default,
            }),
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
        let encodable = aggregator.encode_acc(&aggregator.init(), &mut Vec::new());
        match &self.changelog {
            Some(changelog) if !encodable && changelog.by_default => {
                // Kept where it can be, as the default is: this stage's state is
                // rebuilt by replay (and so, by `Runnable::new`, every stage's).
                self.changelog = None;
            }
            Some(_) if !encodable => {
                self.pipeline.invalid.get_or_insert(format!(
                    "window stage {name:?}: a changelog needs an accumulator with an encoding \
                     (count and top_k have one, fold and reduce do not; implement \
                     Aggregator::encode_acc and decode_acc and use aggregate)"
                ));
            }
            _ => {}
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
        let (event_time, idle_timeout, stream_time) =
            (self.event_time, self.idle_timeout, self.stream_time);
        let late_topic = self.late_topic.map(Arc::from);
        let changelog = self.changelog;
        self.pipeline.wrap(move |upstream| {
            Box::new(WindowStage::new(
                name,
                upstream,
                new_store,
                Box::new(emit),
                StageOptions {
                    event_time,
                    changelog,
                    idle_timeout,
                    stream_time,
                    late_topic,
                    periodic: match mode {
                        EmitMode::Periodic(interval) => Some(interval),
                        EmitMode::OnClose | EmitMode::OnUpdate => None,
                    },
                },
            ))
        })
    }
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
    fn heap_bytes(&self, acc: &Self::Acc) -> usize {
        <TopKAggregator as Aggregator<K>>::heap_bytes(&self.0, acc)
    }
    fn encode_acc(&self, acc: &Self::Acc, out: &mut Vec<u8>) -> bool {
        <TopKAggregator as Aggregator<K>>::encode_acc(&self.0, acc, out)
    }
    fn decode_acc(&self, bytes: &[u8]) -> Result<Self::Acc, String> {
        <TopKAggregator as Aggregator<K>>::decode_acc(&self.0, bytes)
    }
}

/// The unit key of a top-K stage's state, as no bytes.
fn unit_keys() -> KeyCodec<()> {
    KeyCodec {
        encode: Box::new(|(), _| Ok(())),
        decode: Box::new(|bytes| {
            if bytes.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "a top-K state's key is empty, not {} bytes",
                    bytes.len()
                ))
            }
        }),
    }
}

#[cfg(test)]
mod default_changelog_tests;
#[cfg(test)]
mod tests;
