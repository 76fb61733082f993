//! Pipelines of Rust closures run by consumer-group workers.
//!
//! `Pipeline::from_topic("clicks").group("cleaner").map(..).filter(..)` builds a chain
//! of stages; a sink (`to_topic`, `for_each`) ends it, and `run` joins the group and
//! processes the partitions the group gives this worker. Run N copies with one group
//! and they share the partitions.
//!
//! At-least-once: a worker commits an input offset only after every output of the
//! records before it was acknowledged by the broker (the producer is flushed before
//! each commit, and the group consumer commits a partition it gives up only after the
//! outputs of what it handed out). A worker that dies makes its partitions' next owner
//! start at the last commit, so outputs may repeat, never go missing.
//!
//! Windowed stages (`.window(spec).count()`, `.top_k(k)`, ...) keep their state per
//! input partition. After a `key_by` they save it by default as a snapshot in a
//! compacted changelog topic before each commit and restore it from there (see
//! `changelog`), as Kafka Streams logs every state store; after `key_by_local` (or
//! with `.without_changelog()`, or an aggregate whose accumulator has no encoding)
//! they commit a partition only up to the oldest record an open window still holds,
//! so a replay after a crash rebuilds the windows (see [`WindowedPipeline`]).
//!
//! Every stage is an operator with a name (`.name(..)` after it, else `<kind>-<n>` for
//! its position: `from_topic-0`, `map-1`, `window-3`, `to_topic-4`), which its
//! metrics are labelled with (see [`PipelineMetrics`]).
//!
//! A `key_by` marks the pipeline as re-keyed, and the next stage that needs every item
//! of a key in one place (a window, or a stage after which the key can no longer be
//! followed) first sends the items through the internal topic
//! `<group>-<key_by name>-repartition`, as Kafka Streams inserts a repartition topic
//! before a keyed aggregation of re-keyed input; a sink reached first does not (see
//! `repartition`). `key_by_local` keys the items where they are.
//!
//! Does not own: the window arithmetic and aggregates (`window`), which the windowed
//! stages build on.

mod chain;
mod changelog;
mod metrics;
mod repartition;
mod runtime;
mod window_stage;
mod windowed;

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use weir_client::{ConsumerRecord, OffsetReset};

use chain::{Chain, Source, Then};
use metrics::OperatorMeter;
pub use metrics::{MetricsServer, PipelineMetrics};
use repartition::PendingRepartition;
pub use runtime::{PipelineError, RunStats};
pub use windowed::WindowedPipeline;

/// Where an item came from: its input record, or for a window's result the input
/// partition whose state held the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    pub topic: Arc<str>,
    pub partition: u32,
    pub offset: u64,
    pub timestamp_ms: i64,
    /// The input record's key and value as read, for a side topic of late records.
    pub(crate) raw: Option<(Option<Bytes>, Option<Bytes>)>,
}

/// A pipeline whose items are `T` so far.
pub struct Pipeline<T> {
    topics: Vec<String>,
    group: Option<String>,
    chain: Box<dyn Chain<T>>,
    /// Stages so far, for default stage names.
    stages: usize,
    /// The first mistake in building the pipeline, reported by `run`.
    invalid: Option<String>,
    /// The repartition a `key_by` asked for, not yet inserted: the next keyed
    /// operator (or a stage after which the key is lost) inserts it, a sink drops it.
    pending: Option<PendingRepartition<T>>,
    /// After a `key_by` (or a `.repartition()`), the encoding of its key, a
    /// `KeyCodec<K>` of the items `(K, V)`, with which a window stage keeps a
    /// changelog by default. `T` names the item, not the key, hence `Any`: it is
    /// carried only by the stages that keep the item type (`filter`, `inspect`, the
    /// repartition's insertion), so `window` finds the codec of its own key type.
    changelog_keys: Option<Box<dyn Any + Send>>,
}

impl<T> std::fmt::Debug for Pipeline<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("topics", &self.topics)
            .field("group", &self.group)
            .field("stages", &self.stages)
            .field(
                "pending_repartition",
                &self.pending.as_ref().map(|p| p.key_by.as_str()),
            )
            .field("changelog_by_default", &self.changelog_keys.is_some())
            .finish_non_exhaustive()
    }
}

impl Pipeline<ConsumerRecord> {
    /// Reads `topic`'s records.
    pub fn from_topic(topic: &str) -> Pipeline<ConsumerRecord> {
        Pipeline::from_topics(&[topic])
    }

    /// Reads the records of several topics; each item's [`Context`] says which.
    pub fn from_topics(topics: &[&str]) -> Pipeline<ConsumerRecord> {
        let topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
        Pipeline {
            group: None,
            chain: Box::new(Source {
                meter: OperatorMeter::new("from_topic-0".to_string()),
                topics: topics.clone(),
            }),
            topics,
            stages: 0,
            invalid: None,
            pending: None,
            changelog_keys: None,
        }
    }
}

impl<T: Send + 'static> Pipeline<T> {
    /// The consumer group the workers share the input with (default: the topics'
    /// names joined, so one pipeline per input gets one group).
    pub fn group(mut self, group: &str) -> Pipeline<T> {
        self.group = Some(group.to_string());
        self
    }

    /// Names the stage added last (default: `<kind>-<position>`, as `map-1`): the
    /// `operator` label of its metrics, and for a window stage the name its state
    /// is kept under (as [`WindowedPipeline::name`]), for a `key_by` the name of its
    /// repartition topic and operator (see [`Pipeline::key_by`]). Letters, digits,
    /// `.`, `_` and `-`; each name once in a pipeline.
    pub fn name(mut self, name: &str) -> Pipeline<T> {
        match check_name(name) {
            Ok(()) => {
                self.chain.rename(name);
                if let Some(pending) = self.pending.as_mut().filter(|p| p.key_by_last) {
                    pending.key_by = name.to_string();
                }
            }
            Err(reason) => {
                self.invalid.get_or_insert(reason);
            }
        }
        self
    }

    /// A stage of `kind`, an operator of its own.
    fn then<U: Send + 'static>(
        self,
        kind: &str,
        stage: impl FnMut(T, &Context, &mut Vec<U>) + Send + 'static,
    ) -> Pipeline<U> {
        let name = format!("{kind}-{}", self.stages + 1);
        self.then_metered(Some(OperatorMeter::new(name)), stage)
    }

    /// A stage the pipeline adds for its own ends: part of the operator before it.
    fn then_internal<U: Send + 'static>(
        self,
        stage: impl FnMut(T, &Context, &mut Vec<U>) + Send + 'static,
    ) -> Pipeline<U> {
        self.then_metered(None, stage)
    }

    fn then_metered<U: Send + 'static>(
        self,
        meter: Option<OperatorMeter>,
        stage: impl FnMut(T, &Context, &mut Vec<U>) + Send + 'static,
    ) -> Pipeline<U> {
        self.wrap(|upstream| {
            Box::new(Then {
                upstream,
                meter,
                stage: Box::new(stage),
                scratch: Vec::new(),
                ticked: Vec::new(),
                produced: Vec::new(),
            })
        })
    }

    /// This pipeline with a new last stage built around its chain. A pending
    /// repartition and the key's encoding are dropped (the stage may change what
    /// the key is): a method that keeps them, or inserts the repartition, says so.
    fn wrap<U>(self, stage: impl FnOnce(Box<dyn Chain<T>>) -> Box<dyn Chain<U>>) -> Pipeline<U> {
        Pipeline {
            topics: self.topics,
            group: self.group,
            chain: stage(self.chain),
            stages: self.stages + 1,
            invalid: self.invalid,
            pending: None,
            changelog_keys: None,
        }
    }

    /// Inserts the repartition a `key_by` asked for, if one is pending. It is part of
    /// the `key_by` operator by name (`<key_by name>-repartition`), so it takes no
    /// position: the default names of the stages after it are as without it.
    fn repartitioned(mut self) -> Pipeline<T> {
        if let Some(pending) = self.pending.take() {
            self.chain = pending.insert(self.chain);
        }
        self
    }

    /// A stage of `kind` that keeps the item type and the items' keys (it only drops
    /// or looks at items): a pending repartition stays pending past it, so fewer
    /// items travel, and a window after it keeps a changelog by default as one
    /// right after the `key_by` would.
    fn then_keeping_keys(
        mut self,
        kind: &str,
        stage: impl FnMut(T, &Context, &mut Vec<T>) + Send + 'static,
    ) -> Pipeline<T> {
        let mut pending = self.pending.take();
        if let Some(pending) = &mut pending {
            pending.key_by_last = false;
        }
        let changelog_keys = self.changelog_keys.take();
        let mut next = self.then(kind, stage);
        next.pending = pending;
        next.changelog_keys = changelog_keys;
        next
    }

    /// A pending repartition is inserted before it: what comes out may be keyed
    /// otherwise, and the pending one is for this item type only.
    pub fn map<U: Send + 'static>(self, mut f: impl FnMut(T) -> U + Send + 'static) -> Pipeline<U> {
        self.repartitioned()
            .then("map", move |item, _, out| out.push(f(item)))
    }

    /// As `map`, with the item's input record at hand.
    pub fn map_with_context<U: Send + 'static>(
        self,
        mut f: impl FnMut(T, &Context) -> U + Send + 'static,
    ) -> Pipeline<U> {
        self.repartitioned()
            .then("map", move |item, context, out| out.push(f(item, context)))
    }

    pub fn filter(self, mut keep: impl FnMut(&T) -> bool + Send + 'static) -> Pipeline<T> {
        self.then_keeping_keys("filter", move |item, _, out| {
            if keep(&item) {
                out.push(item)
            }
        })
    }

    /// Keeps the items `f` turns into `Some`: parsing that may fail, for example.
    /// A pending repartition is inserted before it, as before `map`.
    pub fn filter_map<U: Send + 'static>(
        self,
        mut f: impl FnMut(T) -> Option<U> + Send + 'static,
    ) -> Pipeline<U> {
        self.repartitioned()
            .then("filter_map", move |item, _, out| out.extend(f(item)))
    }

    /// A pending repartition is inserted before it, as before `map`.
    pub fn flat_map<U: Send + 'static, I: IntoIterator<Item = U>>(
        self,
        mut f: impl FnMut(T) -> I + Send + 'static,
    ) -> Pipeline<U> {
        self.repartitioned()
            .then("flat_map", move |item, _, out| out.extend(f(item)))
    }

    pub fn inspect(self, mut f: impl FnMut(&T) + Send + 'static) -> Pipeline<T> {
        self.then_keeping_keys("inspect", move |item, _, out| {
            f(&item);
            out.push(item)
        })
    }

    /// Pairs each item with a key: the output record's key at `to_topic`, and so
    /// its partition; a window stage after it aggregates per key.
    ///
    /// The input is not partitioned by this key, so before the next stage that needs
    /// a key's items in one place the items go through the internal topic
    /// `<group>-<name>-repartition` (`name` is this stage's, `key_by-<n>` unless
    /// `.name(..)` right after it says otherwise; name it so a changed pipeline keeps
    /// the topic), keyed by their key, as JSON: a window stage, and `map`,
    /// `map_with_context`, `filter_map` or `flat_map` (after which the key could not
    /// be followed) insert it; `filter` and `inspect` keep it pending (fewer items
    /// travel); a sink right after (`to_topic`, `for_each`) needs none, as Kafka
    /// Streams' `selectKey(..).to(..)`. For input already partitioned by the key, or
    /// for results per input partition, use [`Pipeline::key_by_local`].
    ///
    /// A window stage after it (past `filter` and `inspect` only) keeps its state in
    /// a changelog by default, its keys as JSON (see [`WindowedPipeline::changelog`]
    /// and [`WindowedPipeline::without_changelog`]).
    pub fn key_by<K>(self, key: impl FnMut(&T) -> K + Send + 'static) -> Pipeline<(K, T)>
    where
        K: Serialize + DeserializeOwned + Send + 'static,
        T: Serialize + DeserializeOwned,
    {
        let mut keyed = self.key_by_local(key);
        keyed.pending = Some(PendingRepartition::json(format!("key_by-{}", keyed.stages)));
        keyed.changelog_keys = Some(Box::new(crate::window::json_keys::<K>()));
        keyed
    }

    /// As [`Pipeline::key_by`], keeping every item in the input partition it came
    /// from: a window stage after it sees a key's items in one place only if the
    /// input is already partitioned by this key (produced keyed by it, with the
    /// producer's partitioner); otherwise each input partition aggregates its own
    /// share of a key, which is right when results per partition are wanted (and
    /// merged later). Neither key nor item needs to be serializable, so a window
    /// stage after it keeps no changelog unless `.changelog()` asks for one.
    pub fn key_by_local<K: Send + 'static>(
        self,
        mut key: impl FnMut(&T) -> K + Send + 'static,
    ) -> Pipeline<(K, T)> {
        self.then("key_by", move |item, _, out| out.push((key(&item), item)))
    }

    /// Ends the pipeline in a closure called for every item. A pending repartition
    /// is dropped: no keyed operator follows.
    pub fn for_each(self, mut f: impl FnMut(T, &Context) + Send + 'static) -> Runnable {
        let ended = self.then(
            "for_each",
            move |item, context, _: &mut Vec<runtime::Serialized>| f(item, context),
        );
        Runnable::new(ended, None)
    }

    /// Ends the pipeline in a topic: `serialize` gives each item's key (which picks
    /// the partition, as the producer does) and value. For window results, a key
    /// made of the result's key and window start makes a repeated result (after a
    /// crash, see [`WindowedPipeline`]) overwrite the first under compaction. A
    /// pending repartition is dropped: the topic is partitioned by the key given
    /// here, as Kafka Streams' `selectKey(..).to(..)` writes with no repartition topic.
    pub fn to_topic(
        self,
        topic: &str,
        mut serialize: impl FnMut(&T) -> (Option<Vec<u8>>, Vec<u8>) + Send + 'static,
    ) -> Runnable {
        // Its records out are those handed to the producer, as a Kafka Streams sink
        // node counts what it forwards; `run` fails if one is not stored.
        let ended = self.then("to_topic", move |item, _, out| out.push(serialize(&item)));
        Runnable::new(ended, Some(topic.to_string()))
    }
}

/// A pipeline with its sink, ready to [`Runnable::run`].
pub struct Runnable {
    topics: Vec<String>,
    group: Option<String>,
    chain: Box<dyn Chain<runtime::Serialized>>,
    output_topic: Option<String>,
    commit_interval: Duration,
    offset_reset: OffsetReset,
    metrics: PipelineMetrics,
    /// Bound by `metrics_listen`, served while the pipeline runs.
    metrics_listener: Option<std::net::TcpListener>,
    invalid: Option<String>,
}

impl Runnable {
    fn new(pipeline: Pipeline<runtime::Serialized>, output_topic: Option<String>) -> Runnable {
        let mut invalid = pipeline.invalid;
        let mut operators = Vec::new();
        pipeline.chain.operators(&mut operators);
        let mut names: Vec<&str> = operators.iter().map(|(name, _)| name.as_str()).collect();
        names.sort_unstable();
        if let Some(twice) = names.windows(2).find(|pair| pair[0] == pair[1]) {
            // Kafka Streams refuses a topology with two processors of one name alike:
            // their metrics, and two windows' state, would mix.
            invalid.get_or_insert(format!(
                "stage name {:?} is given twice: name each stage of a pipeline once",
                twice[0]
            ));
        }
        let mut chain = pipeline.chain;
        let mut changelogs = Vec::new();
        chain.changelog_stages(&mut changelogs);
        let windows = operators.iter().filter(|(_, stateful)| *stateful).count();
        if !changelogs.is_empty() && changelogs.len() < windows {
            // A stage restored from its snapshot cannot take part in a replay the
            // others' commits wait for, nor can they replay past its snapshot.
            let names: Vec<&str> = changelogs.iter().map(|c| c.name.as_str()).collect();
            if changelogs.iter().all(|c| c.by_default) {
                // Defaults only: replay, which every stage can do, wins.
                tracing::info!(
                    stages = ?names,
                    without = windows - changelogs.len(),
                    "window stages keep a changelog by default and others of the pipeline \
                     cannot or were told not to: every window stage rebuilds its state by \
                     replay instead"
                );
                chain.drop_default_changelogs();
            } else {
                invalid.get_or_insert(format!(
                    "window stages {names:?} keep a changelog and the other {} do not: \
                     give every window stage of the pipeline a changelog, or none",
                    windows - changelogs.len()
                ));
            }
        }
        Runnable {
            topics: pipeline.topics,
            group: pipeline.group,
            chain,
            output_topic,
            commit_interval: runtime::COMMIT_INTERVAL,
            offset_reset: OffsetReset::Earliest,
            metrics: PipelineMetrics::new(),
            metrics_listener: None,
            invalid,
        }
    }

    /// How often the worker commits what its outputs cover (default 5 s, Kafka
    /// Streams' `commit.interval.ms` for at-least-once). Shorter means less replay
    /// after a crash, for more commits.
    pub fn commit_interval(mut self, interval: Duration) -> Runnable {
        self.commit_interval = interval;
        self
    }

    /// Where a partition the group has no commit for starts (`auto.offset.reset`):
    /// its earliest offset by default, as Kafka Streams; `Latest` reads only what is
    /// produced from now on.
    pub fn offset_reset(mut self, reset: OffsetReset) -> Runnable {
        self.offset_reset = reset;
        self
    }

    /// Counts into `metrics` instead of this pipeline's own, so that several
    /// pipelines' metrics are encoded and served together.
    pub fn with_metrics(mut self, metrics: &PipelineMetrics) -> Runnable {
        self.metrics = metrics.clone();
        self
    }

    /// The metrics this pipeline counts into: encode them, or serve them with
    /// [`PipelineMetrics::serve`], during the run and after it.
    pub fn metrics(&self) -> PipelineMetrics {
        self.metrics.clone()
    }

    /// Serves the metrics on `/metrics` at `addr` while the pipeline runs. The
    /// address is bound now (port 0 picks a free port: see
    /// [`Runnable::metrics_addr`]); if it cannot be, `run` says so.
    pub fn metrics_listen(mut self, addr: &str) -> Runnable {
        let bound = std::net::TcpListener::bind(addr)
            .and_then(|listener| listener.set_nonblocking(true).map(|()| listener));
        match bound {
            Ok(listener) => self.metrics_listener = Some(listener),
            Err(error) => {
                self.invalid
                    .get_or_insert(format!("metrics_listen({addr:?}): {error}"));
            }
        }
        self
    }

    /// The address `metrics_listen` bound.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|listener| listener.local_addr().ok())
    }
}

/// Stage names become label values, parts of commit metadata and of state names.
fn check_name(name: &str) -> Result<(), String> {
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    let reserved = ["position", "consumed"];
    if name.is_empty() || name.len() > 200 || !name.chars().all(legal) || reserved.contains(&name) {
        return Err(format!(
            "stage name {name:?}: use 1 to 200 letters, digits, '.', '_' or '-' (and not \"position\" or \"consumed\")"
        ));
    }
    Ok(())
}

impl std::fmt::Debug for Runnable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runnable")
            .field("topics", &self.topics)
            .field("group", &self.group)
            .field("output_topic", &self.output_topic)
            .field("metrics_addr", &self.metrics_addr())
            .finish_non_exhaustive()
    }
}
