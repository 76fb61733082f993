//! A repartition stage: keyed items go through an internal topic, keyed by their key, and
//! come back from whichever partition that key hashes to, so that every item of a key is
//! in one partition, and so in one worker's window state, whatever partition its input
//! record was in. Kafka Streams does the same with a `-repartition` topic before a keyed
//! aggregation of re-keyed input.
//!
//! A `key_by` leaves a [`PendingRepartition`] on the pipeline, built where the key and
//! item types are known to be serializable; the next keyed operator inserts it, so the
//! stage sits where an explicit `.repartition()` would, and the chain has the same shape.
//! Its topic is named from the `key_by`'s name (`<group>-<key_by name>-repartition`),
//! its operator `<key_by name>-repartition`, so that a pipeline changed elsewhere keeps
//! its topic, and the two operators' names differ.
//!
//! The stage is both ends of the hop. An input record runs through the stages before it
//! and each item they give is written to the topic (as a side record, acknowledged
//! before the input offset is committed); a record of the topic skips them, is decoded,
//! and goes on to the stages after it with its own partition and offset as context, so
//! window state and commits downstream are per partition of the topic.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use weir_client::ConsumerRecord;

use super::chain::{Chain, ChangelogStage, Checkpoint, Env, Restored, SideRecord};
use super::metrics::{OperatorMeter, PipelineMetrics};
use super::{Context, Pipeline};

/// The suffix of a repartition topic's name: `<group>-<stage name>-repartition`.
pub(crate) const TOPIC_SUFFIX: &str = "-repartition";

type Encode<K, V> = Box<dyn Fn(&K, &V) -> Result<(Vec<u8>, Vec<u8>), serde_json::Error> + Send>;
type Decode<K, V> = Box<dyn Fn(&[u8], &[u8]) -> Result<(K, V), serde_json::Error> + Send>;

pub(crate) struct Repartition<K, V> {
    meter: OperatorMeter,
    /// What the topic is named from, `<group>-<stem>-repartition`: the `key_by`'s name
    /// for a repartition it asked for; `None` for an explicit `.repartition()`, named
    /// from its own operator name as ever.
    topic_stem: Option<String>,
    upstream: Box<dyn Chain<(K, V)>>,
    /// Named when the group is known (`internal_topics`).
    topic: Option<Arc<str>>,
    encode: Encode<K, V>,
    decode: Decode<K, V>,
    scratch: Vec<(K, V)>,
    ticked: Vec<(Context, (K, V))>,
}

type Insert<T> = Box<dyn FnOnce(Box<dyn Chain<T>>, &str) -> Box<dyn Chain<T>> + Send>;

/// The repartition a `key_by` asked for, which the next keyed operator inserts.
pub(crate) struct PendingRepartition<T> {
    /// The `key_by`'s name, which the topic and the operator are named from.
    pub key_by: String,
    /// Whether the `key_by` is the stage added last, so that `.name(..)` names it.
    pub key_by_last: bool,
    insert: Insert<T>,
}

impl<K, V> PendingRepartition<(K, V)>
where
    K: Serialize + DeserializeOwned + Send + 'static,
    V: Serialize + DeserializeOwned + Send + 'static,
{
    /// A repartition of JSON items for the `key_by` named `key_by`.
    pub(crate) fn json(key_by: String) -> PendingRepartition<(K, V)> {
        PendingRepartition {
            key_by,
            key_by_last: true,
            insert: Box::new(|upstream, key_by| {
                Box::new(Repartition::json(
                    format!("{key_by}{TOPIC_SUFFIX}"),
                    Some(key_by.to_string()),
                    upstream,
                ))
            }),
        }
    }
}

impl<T> PendingRepartition<T> {
    /// The repartition stage after `upstream`.
    pub(crate) fn insert(self, upstream: Box<dyn Chain<T>>) -> Box<dyn Chain<T>> {
        (self.insert)(upstream, &self.key_by)
    }
}

impl<K, V> Pipeline<(K, V)>
where
    K: Serialize + DeserializeOwned + Send + 'static,
    V: Serialize + DeserializeOwned + Send + 'static,
{
    /// Sends the items through the internal topic `<group>-<name>-repartition`
    /// (`name` is this stage's, `repartition-<n>` by default), keyed by their key,
    /// so that the stages after it see every item of a key in one partition. A
    /// `key_by` does this by itself before a window stage; this is for items keyed
    /// otherwise: after [`Pipeline::key_by_local`], or a `map` to pairs. After a
    /// `key_by` it takes the place of the repartition the `key_by` asked for (one
    /// hop, not two), named as here, so a pipeline that put it there keeps its topic.
    /// Keys and values travel as JSON.
    ///
    /// The topic is created with as many partitions as the input topic with the most
    /// (Kafka Streams' rule) when the pipeline starts, if it does not exist.
    ///
    /// As after `key_by`, a window stage after it keeps a changelog by default.
    pub fn repartition(mut self) -> Pipeline<(K, V)> {
        self.pending = None;
        let name = format!("repartition-{}", self.stages + 1);
        let mut repartitioned =
            self.wrap(move |upstream| Box::new(Repartition::json(name, None, upstream)));
        repartitioned.changelog_keys = Some(Box::new(crate::window::json_keys::<K>()));
        repartitioned
    }
}

impl<K, V> Repartition<K, V>
where
    K: Serialize + DeserializeOwned + Send + 'static,
    V: Serialize + DeserializeOwned + Send + 'static,
{
    fn json(
        name: String,
        topic_stem: Option<String>,
        upstream: Box<dyn Chain<(K, V)>>,
    ) -> Repartition<K, V> {
        Repartition {
            meter: OperatorMeter::new(name),
            topic_stem,
            upstream,
            topic: None,
            encode: Box::new(|key, value| {
                Ok((serde_json::to_vec(key)?, serde_json::to_vec(value)?))
            }),
            decode: Box::new(|key, value| {
                Ok((serde_json::from_slice(key)?, serde_json::from_slice(value)?))
            }),
            scratch: Vec::new(),
            ticked: Vec::new(),
        }
    }
}

impl<K: Send, V: Send> Repartition<K, V> {
    /// Writes the items the stages before gave to the topic.
    fn send(&mut self, items: impl Iterator<Item = (K, V)>, timestamp_ms: i64, env: &mut Env) {
        let topic = self
            .topic
            .as_ref()
            .expect("the worker names internal topics before the first record");
        for (key, value) in items {
            self.meter.records_in += 1;
            match (self.encode)(&key, &value) {
                Ok((key, value)) => env.side.push(SideRecord {
                    topic: Arc::clone(topic),
                    late: false,
                    key: Some(Bytes::from(key)),
                    value: Some(Bytes::from(value)),
                    timestamp_ms,
                }),
                // serde_json fails only on a map with non-string keys or a type's
                // own Serialize error: the item cannot travel, and the worker stops
                // before committing its record (Kafka Streams fails the task alike).
                Err(error) => {
                    env.failure.get_or_insert(format!(
                        "stage {:?}: an item cannot be written as JSON to {topic:?}: {error}",
                        self.meter.name
                    ));
                }
            }
        }
    }
}

impl<K: Send, V: Send> Chain<(K, V)> for Repartition<K, V> {
    fn record(
        &mut self,
        record: ConsumerRecord,
        context: &Context,
        env: &mut Env,
        out: &mut Vec<(K, V)>,
    ) {
        if self.topic.as_deref() == Some(&*record.topic) {
            let key = record.key.as_deref().unwrap_or_default();
            let value = record.value.as_deref().unwrap_or_default();
            match (self.decode)(key, value) {
                Ok(item) => {
                    self.meter.records_out += 1;
                    out.push(item);
                }
                Err(error) => tracing::warn!(
                    topic = %record.topic,
                    partition = record.partition,
                    offset = record.offset,
                    %error,
                    "a record of the repartition topic that this pipeline did not write is skipped"
                ),
            }
            return;
        }
        let mut items = std::mem::take(&mut self.scratch);
        self.upstream.record(record, context, env, &mut items);
        self.send(items.drain(..), context.timestamp_ms, env);
        self.scratch = items;
    }

    fn tick(&mut self, env: &mut Env, _: &mut Vec<(Context, (K, V))>) {
        // Items the stages before give on a tick (closed windows) travel too.
        let mut ticked = std::mem::take(&mut self.ticked);
        self.upstream.tick(env, &mut ticked);
        for (context, item) in ticked.drain(..) {
            self.send(std::iter::once(item), context.timestamp_ms, env);
        }
        self.ticked = ticked;
    }

    fn assign(
        &mut self,
        topic: &str,
        partition: u32,
        restored: &Restored,
        now: Instant,
    ) -> Result<(), String> {
        self.upstream.assign(topic, partition, restored, now)
    }

    fn revoke(&mut self, topic: &str, partition: u32) {
        self.upstream.revoke(topic, partition)
    }

    fn checkpoint(&self, topic: &str, partition: u32, into: &mut Checkpoint) {
        self.upstream.checkpoint(topic, partition, into)
    }

    fn snapshot(
        &mut self,
        topic: &str,
        partition: u32,
        out: &mut Vec<(String, Vec<u8>)>,
    ) -> Result<(), String> {
        self.upstream.snapshot(topic, partition, out)
    }

    fn changelog_stages(&self, out: &mut Vec<ChangelogStage>) {
        self.upstream.changelog_stages(out)
    }

    fn drop_default_changelogs(&mut self) {
        self.upstream.drop_default_changelogs()
    }

    fn is_stateful(&self) -> bool {
        self.upstream.is_stateful()
    }

    fn operators(&self, out: &mut Vec<(String, bool)>) {
        self.upstream.operators(out);
        out.push((self.meter.name.clone(), false));
    }

    fn rename(&mut self, name: &str) {
        // A repartition a `key_by` asked for is inserted before another stage, never
        // last when `.name(..)` comes: its name is the `key_by`'s to give.
        debug_assert!(
            self.topic_stem.is_none(),
            "only an explicit repartition is named after it"
        );
        self.meter.name = name.to_string();
    }

    fn bind_metrics(&mut self, metrics: &PipelineMetrics, group: &Arc<str>) {
        self.upstream.bind_metrics(metrics, group);
        self.meter.bind(metrics, group, false);
    }

    fn fed_by(&self, topic: &str) -> bool {
        // Every other topic's items go into the repartition topic, not on.
        self.topic.as_deref() == Some(topic)
    }

    fn internal_topics(&mut self, group: &str, out: &mut Vec<String>) {
        self.upstream.internal_topics(group, out);
        let stem = self.topic_stem.as_ref().unwrap_or(&self.meter.name);
        let topic = format!("{group}-{stem}{TOPIC_SUFFIX}");
        self.topic = Some(Arc::from(topic.as_str()));
        out.push(topic);
    }

    fn publish_metrics(&mut self, measure_state: bool) {
        self.upstream.publish_metrics(measure_state);
        self.meter.publish(None);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::window::WindowSpec;

    /// The records' values, which can travel as JSON.
    fn values() -> Pipeline<Vec<u8>> {
        Pipeline::from_topic("t").filter_map(|record| record.value.map(|v| v.to_vec()))
    }

    /// The internal topics of `chain` for group `g`, and its operators' names.
    fn topics_and_operators<T>(mut chain: Box<dyn Chain<T>>) -> (Vec<String>, Vec<String>) {
        let mut topics = Vec::new();
        chain.internal_topics("g", &mut topics);
        let mut operators = Vec::new();
        chain.operators(&mut operators);
        (
            topics,
            operators.into_iter().map(|(name, _)| name).collect(),
        )
    }

    fn names(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| name.to_string()).collect()
    }

    #[test]
    fn a_key_by_right_before_a_sink_makes_no_repartition_topic() {
        let to_topic = values()
            .key_by(|value| value.len())
            .filter(|(length, _)| *length > 0)
            .to_topic("out", |(_, value)| (None, value.clone()));
        let (topics, operators) = topics_and_operators(to_topic.chain);
        assert_eq!(topics, Vec::<String>::new());
        assert_eq!(
            operators,
            names(&[
                "from_topic-0",
                "filter_map-1",
                "key_by-2",
                "filter-3",
                "to_topic-4"
            ])
        );
        let for_each = values().key_by(|value| value.len()).for_each(|_, _| {});
        assert_eq!(topics_and_operators(for_each.chain).0, Vec::<String>::new());
    }

    #[test]
    fn a_window_after_key_by_and_filter_reads_one_topic_named_from_the_key_by() {
        let counts = values()
            .key_by(|value| value.len())
            .filter(|(length, _)| *length > 0)
            .window(WindowSpec::tumbling(Duration::from_secs(1)))
            .count();
        let mut chain = counts.chain;
        let metrics = PipelineMetrics::new();
        chain.bind_metrics(&metrics, &Arc::from("g"));
        chain.publish_metrics(false);
        assert!(
            metrics
                .encode()
                .contains(r#"operator="key_by-2-repartition""#),
            "the hop counts as an operator of its own"
        );
        let (topics, operators) = topics_and_operators(chain);
        assert_eq!(topics, names(&["g-key_by-2-repartition"]));
        assert_eq!(
            operators,
            names(&[
                "from_topic-0",
                "filter_map-1",
                "key_by-2",
                "filter-3",
                "key_by-2-repartition",
                "window-4",
            ]),
            "the filter runs before the hop, and the hop takes no position"
        );
    }

    #[test]
    fn a_named_key_by_names_its_repartition_topic_and_a_later_name_does_not() {
        let counts = values()
            .key_by(|value| value.len())
            .name("by-length")
            .filter(|(length, _)| *length > 0)
            .name("non-empty")
            .window(WindowSpec::tumbling(Duration::from_secs(1)))
            .count();
        let (topics, operators) = topics_and_operators(counts.chain);
        assert_eq!(topics, names(&["g-by-length-repartition"]));
        assert!(
            operators.contains(&"by-length-repartition".to_string()),
            "{operators:?}"
        );
    }

    #[test]
    fn an_explicit_repartition_after_key_by_is_the_only_hop() {
        let counts = values()
            .key_by(|value| value.len())
            .repartition()
            .window(WindowSpec::tumbling(Duration::from_secs(1)))
            .count();
        let (topics, operators) = topics_and_operators(counts.chain);
        assert_eq!(topics, names(&["g-repartition-3-repartition"]));
        assert_eq!(
            operators,
            names(&[
                "from_topic-0",
                "filter_map-1",
                "key_by-2",
                "repartition-3",
                "window-4"
            ])
        );
    }

    #[test]
    fn a_map_after_key_by_hops_before_it_and_a_second_key_by_replaces_the_first() {
        let mapped = values()
            .key_by(|value| value.len())
            .map(|(length, value)| (length, value.first().copied()))
            .window(WindowSpec::tumbling(Duration::from_secs(1)))
            .count();
        let (topics, operators) = topics_and_operators(mapped.chain);
        assert_eq!(topics, names(&["g-key_by-2-repartition"]));
        assert_eq!(operators[3..5], names(&["key_by-2-repartition", "map-3"]));

        let rekeyed = values()
            .key_by(|value| value.len())
            .key_by(|(_, value)| value.first().copied())
            .window(WindowSpec::tumbling(Duration::from_secs(1)))
            .count();
        assert_eq!(
            topics_and_operators(rekeyed.chain).0,
            names(&["g-key_by-3-repartition"])
        );
    }

    #[test]
    fn a_window_after_key_by_local_reads_the_input_as_it_is() {
        let counts = values()
            .key_by_local(|value| value.len())
            .window(WindowSpec::tumbling(Duration::from_secs(1)))
            .count();
        assert_eq!(topics_and_operators(counts.chain).0, Vec::<String>::new());
    }
}
