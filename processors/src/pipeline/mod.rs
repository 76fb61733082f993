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
//! input partition and commit a partition only up to the oldest record an open window
//! still holds, so a replay after a crash rebuilds the windows (see [`WindowedPipeline`]).
//!
//! Does not own: the window arithmetic and aggregates (`window`), which the windowed
//! stages build on.

mod chain;
mod runtime;
mod window_stage;
mod windowed;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use weir_client::ConsumerRecord;

use chain::{Chain, Source, Then};
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
}

impl<T> std::fmt::Debug for Pipeline<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("topics", &self.topics)
            .field("group", &self.group)
            .field("stages", &self.stages)
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
        Pipeline {
            topics: topics.iter().map(|t| t.to_string()).collect(),
            group: None,
            chain: Box::new(Source),
            stages: 0,
            invalid: None,
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

    fn then<U: Send + 'static>(
        self,
        stage: impl FnMut(T, &Context, &mut Vec<U>) + Send + 'static,
    ) -> Pipeline<U> {
        self.wrap(|upstream| {
            Box::new(Then {
                upstream,
                stage: Box::new(stage),
                scratch: Vec::new(),
                ticked: Vec::new(),
                produced: Vec::new(),
            })
        })
    }

    /// This pipeline with a new last stage built around its chain.
    fn wrap<U>(self, stage: impl FnOnce(Box<dyn Chain<T>>) -> Box<dyn Chain<U>>) -> Pipeline<U> {
        Pipeline {
            topics: self.topics,
            group: self.group,
            chain: stage(self.chain),
            stages: self.stages + 1,
            invalid: self.invalid,
        }
    }

    pub fn map<U: Send + 'static>(self, mut f: impl FnMut(T) -> U + Send + 'static) -> Pipeline<U> {
        self.then(move |item, _, out| out.push(f(item)))
    }

    /// As `map`, with the item's input record at hand.
    pub fn map_with_context<U: Send + 'static>(
        self,
        mut f: impl FnMut(T, &Context) -> U + Send + 'static,
    ) -> Pipeline<U> {
        self.then(move |item, context, out| out.push(f(item, context)))
    }

    pub fn filter(self, mut keep: impl FnMut(&T) -> bool + Send + 'static) -> Pipeline<T> {
        self.then(move |item, _, out| {
            if keep(&item) {
                out.push(item)
            }
        })
    }

    /// Keeps the items `f` turns into `Some`: parsing that may fail, for example.
    pub fn filter_map<U: Send + 'static>(
        self,
        mut f: impl FnMut(T) -> Option<U> + Send + 'static,
    ) -> Pipeline<U> {
        self.then(move |item, _, out| out.extend(f(item)))
    }

    pub fn flat_map<U: Send + 'static, I: IntoIterator<Item = U>>(
        self,
        mut f: impl FnMut(T) -> I + Send + 'static,
    ) -> Pipeline<U> {
        self.then(move |item, _, out| out.extend(f(item)))
    }

    pub fn inspect(self, mut f: impl FnMut(&T) + Send + 'static) -> Pipeline<T> {
        self.then(move |item, _, out| {
            f(&item);
            out.push(item)
        })
    }

    /// Pairs each item with a key: the output record's key at `to_topic`, and so
    /// its partition; a window stage after it aggregates per key.
    pub fn key_by<K: Send + 'static>(
        self,
        mut key: impl FnMut(&T) -> K + Send + 'static,
    ) -> Pipeline<(K, T)> {
        self.then(move |item, _, out| out.push((key(&item), item)))
    }

    /// Ends the pipeline in a closure called for every item.
    pub fn for_each(self, mut f: impl FnMut(T, &Context) + Send + 'static) -> Runnable {
        let ended =
            self.then(move |item, context, _: &mut Vec<runtime::Serialized>| f(item, context));
        Runnable::new(ended, None)
    }

    /// Ends the pipeline in a topic: `serialize` gives each item's key (which picks
    /// the partition, as the producer does) and value. For window results, a key
    /// made of the result's key and window start makes a repeated result (after a
    /// crash, see [`WindowedPipeline`]) overwrite the first under compaction.
    pub fn to_topic(
        self,
        topic: &str,
        mut serialize: impl FnMut(&T) -> (Option<Vec<u8>>, Vec<u8>) + Send + 'static,
    ) -> Runnable {
        let ended = self.then(move |item, _, out| out.push(serialize(&item)));
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
    invalid: Option<String>,
}

impl Runnable {
    fn new(pipeline: Pipeline<runtime::Serialized>, output_topic: Option<String>) -> Runnable {
        Runnable {
            topics: pipeline.topics,
            group: pipeline.group,
            chain: pipeline.chain,
            output_topic,
            commit_interval: runtime::COMMIT_INTERVAL,
            invalid: pipeline.invalid,
        }
    }

    /// How often the worker commits what its outputs cover (default 5 s, Kafka
    /// Streams' `commit.interval.ms` for at-least-once). Shorter means less replay
    /// after a crash, for more commits.
    pub fn commit_interval(mut self, interval: Duration) -> Runnable {
        self.commit_interval = interval;
        self
    }
}

impl std::fmt::Debug for Runnable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runnable")
            .field("topics", &self.topics)
            .field("group", &self.group)
            .field("output_topic", &self.output_topic)
            .finish_non_exhaustive()
    }
}
