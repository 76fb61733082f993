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
//! Does not own: windows and their state (`window`), which the stateful stages build
//! on; this module holds the stateless stages.

mod runtime;

use std::sync::Arc;

use weir_client::ConsumerRecord;

pub use runtime::{PipelineError, RunStats};

/// Where an item came from: its input record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    pub topic: Arc<str>,
    pub partition: u32,
    pub offset: u64,
    pub timestamp_ms: i64,
}

/// A stage: turns one item into zero or more.
pub(crate) type Stage<I, O> = Box<dyn FnMut(I, &Context, &mut Vec<O>) + Send>;

/// A pipeline whose items are `T` so far.
pub struct Pipeline<T> {
    topics: Vec<String>,
    group: Option<String>,
    stage: Stage<ConsumerRecord, T>,
}

impl<T> std::fmt::Debug for Pipeline<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("topics", &self.topics)
            .field("group", &self.group)
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
            stage: Box::new(|record, _, out| out.push(record)),
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
        mut next: impl FnMut(T, &Context, &mut Vec<U>) + Send + 'static,
    ) -> Pipeline<U> {
        let mut stage = self.stage;
        let mut scratch: Vec<T> = Vec::new();
        Pipeline {
            topics: self.topics,
            group: self.group,
            stage: Box::new(move |record, context, out| {
                stage(record, context, &mut scratch);
                for item in scratch.drain(..) {
                    next(item, context, out);
                }
            }),
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
    /// its partition.
    pub fn key_by<K: Send + 'static>(
        self,
        mut key: impl FnMut(&T) -> K + Send + 'static,
    ) -> Pipeline<(K, T)> {
        self.then(move |item, _, out| out.push((key(&item), item)))
    }

    /// Ends the pipeline in a closure called for every item.
    pub fn for_each(self, mut f: impl FnMut(T, &Context) + Send + 'static) -> Runnable {
        let mut stage = self.stage;
        let mut scratch = Vec::new();
        Runnable {
            topics: self.topics,
            group: self.group,
            sink: runtime::Sink::ForEach(Box::new(move |record, context| {
                stage(record, context, &mut scratch);
                for item in scratch.drain(..) {
                    f(item, context);
                }
            })),
        }
    }

    /// Ends the pipeline in a topic: `serialize` gives each item's key (which picks
    /// the partition, as the producer does) and value.
    pub fn to_topic(
        self,
        topic: &str,
        mut serialize: impl FnMut(&T) -> (Option<Vec<u8>>, Vec<u8>) + Send + 'static,
    ) -> Runnable {
        let mut stage = self.stage;
        let mut scratch = Vec::new();
        Runnable {
            topics: self.topics,
            group: self.group,
            sink: runtime::Sink::Topic {
                topic: topic.to_string(),
                serialize: Box::new(move |record, context, out| {
                    stage(record, context, &mut scratch);
                    for item in scratch.drain(..) {
                        out.push(serialize(&item));
                    }
                }),
            },
        }
    }
}

/// A pipeline with its sink, ready to [`Runnable::run`].
pub struct Runnable {
    topics: Vec<String>,
    group: Option<String>,
    sink: runtime::Sink,
}

impl std::fmt::Debug for Runnable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runnable")
            .field("topics", &self.topics)
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}
