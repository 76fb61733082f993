//! A repartition stage: keyed items go through an internal topic, keyed by their key, and
//! come back from whichever partition that key hashes to, so that every item of a key is
//! in one partition, and so in one worker's window state, whatever partition its input
//! record was in. Kafka Streams does the same with a `-repartition` topic before a keyed
//! aggregation of re-keyed input.
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

use super::chain::{Chain, Checkpoint, Env, Restored, SideRecord};
use super::metrics::{OperatorMeter, PipelineMetrics};
use super::{Context, Pipeline};

/// The suffix of a repartition topic's name: `<group>-<stage name>-repartition`.
pub(crate) const TOPIC_SUFFIX: &str = "-repartition";

type Encode<K, V> = Box<dyn Fn(&K, &V) -> Result<(Vec<u8>, Vec<u8>), serde_json::Error> + Send>;
type Decode<K, V> = Box<dyn Fn(&[u8], &[u8]) -> Result<(K, V), serde_json::Error> + Send>;

pub(crate) struct Repartition<K, V> {
    meter: OperatorMeter,
    upstream: Box<dyn Chain<(K, V)>>,
    /// Named when the group is known (`internal_topics`).
    topic: Option<Arc<str>>,
    encode: Encode<K, V>,
    decode: Decode<K, V>,
    scratch: Vec<(K, V)>,
    ticked: Vec<(Context, (K, V))>,
}

impl<K, V> Pipeline<(K, V)>
where
    K: Serialize + DeserializeOwned + Send + 'static,
    V: Serialize + DeserializeOwned + Send + 'static,
{
    /// Sends the items through the internal topic `<group>-<name>-repartition`
    /// (`name` is this stage's, `repartition-<n>` by default), keyed by their key,
    /// so that the stages after it see every item of a key in one partition. Put it
    /// between a `key_by` that changes the key and a window stage, when the input is
    /// not already partitioned by that key. Keys and values travel as JSON.
    ///
    /// The topic is created with as many partitions as the input topic with the most
    /// (Kafka Streams' rule) when the pipeline starts, if it does not exist.
    pub fn repartition(self) -> Pipeline<(K, V)> {
        let name = format!("repartition-{}", self.stages + 1);
        self.wrap(move |upstream| {
            Box::new(Repartition {
                meter: OperatorMeter::new(name),
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
            })
        })
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

    fn changelog_stages(&self, out: &mut Vec<String>) {
        self.upstream.changelog_stages(out)
    }

    fn is_stateful(&self) -> bool {
        self.upstream.is_stateful()
    }

    fn operators(&self, out: &mut Vec<(String, bool)>) {
        self.upstream.operators(out);
        out.push((self.meter.name.clone(), false));
    }

    fn rename(&mut self, name: &str) {
        self.meter.name = name.to_string();
    }

    fn bind_metrics(&mut self, metrics: &PipelineMetrics, group: &Arc<str>) {
        self.upstream.bind_metrics(metrics, group);
        self.meter.bind(metrics, group, false);
    }

    fn internal_topics(&mut self, group: &str, out: &mut Vec<String>) {
        self.upstream.internal_topics(group, out);
        let topic = format!("{group}-{}{TOPIC_SUFFIX}", self.meter.name);
        self.topic = Some(Arc::from(topic.as_str()));
        out.push(topic);
    }

    fn publish_metrics(&mut self, measure_state: bool) {
        self.upstream.publish_metrics(measure_state);
        self.meter.publish(None);
    }
}
