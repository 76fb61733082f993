//! The stages of a pipeline as one chain: each stage wraps the one before it, so a
//! record, a tick of time or a partition moving passes through all of them in order.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use weir_client::ConsumerRecord;

use super::metrics::{OperatorMeter, PipelineMetrics};
use super::Context;

/// What a stage may do besides returning items: the time of this round, and records
/// for side topics (late records).
pub(crate) struct Env {
    pub now: Instant,
    pub side: Vec<SideRecord>,
    /// Items found late (all their windows closed) this round.
    pub late: u64,
    /// The last round before the pipeline stops: a stage that emits open windows
    /// periodically emits them once more.
    pub stopping: bool,
    /// Set by a stage that cannot go on (an item it cannot write): the worker stops
    /// with it before committing anything past the round.
    pub failure: Option<String>,
}

/// A record for a topic other than the pipeline's output: a late record, or an item
/// on its way through a repartition topic.
pub(crate) struct SideRecord {
    pub topic: Arc<str>,
    /// A late record (counted as such), not a repartitioned item.
    pub late: bool,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub timestamp_ms: i64,
}

/// What the stateful stages need recorded when a partition's position is committed.
#[derive(Debug, Default)]
pub(crate) struct Checkpoint {
    /// The smallest input offset an open window still holds: the commit goes no
    /// further, so a replay from the commit rebuilds every open window.
    pub oldest_offset: Option<u64>,
    /// Each windowed stage's watermark, by stage name.
    pub watermarks: Vec<(String, i64)>,
    /// Records before this offset were processed before the state was rebuilt
    /// (a replay not yet past them still counts them as processed).
    pub processed_below: Option<u64>,
}

/// A saved state of one stage and input partition in the stage's changelog: its id
/// and how many chunk records hold it (see [`super::changelog`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SnapshotRef {
    pub id: u64,
    pub chunks: u32,
}

/// A window stage that keeps a changelog, and whether it keeps one by default (after
/// `key_by`) rather than because `.changelog()` asked: a default one the pipeline
/// may turn off (see `super::Runnable::new`), an asked-for one it may not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChangelogStage {
    pub name: String,
    pub by_default: bool,
}

/// What the last commit of a partition recorded, for the state rebuilt from it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Restored {
    /// Records before this offset had been processed when the commit was made:
    /// replaying them emits nothing of windows that had closed.
    pub position: Option<u64>,
    /// The partition's consumed position when the commit was made (before
    /// `position` if the state was itself being rebuilt then).
    pub consumed: Option<u64>,
    pub watermarks: BTreeMap<String, i64>,
    /// Per stage with a changelog, the snapshot the commit was made with.
    pub snapshots: BTreeMap<String, SnapshotRef>,
    /// Per stage, the snapshot's bytes, read from its changelog before the state is
    /// rebuilt.
    pub snapshot_bytes: BTreeMap<String, Vec<u8>>,
}

const METADATA_TAG: &str = "weir-windows/1";

/// Marks a word of the metadata naming a stage's snapshot.
const SNAPSHOT_PREFIX: &str = "snapshot:";

/// The commit metadata of a partition: the offset below which records were
/// processed, its consumed position, each stage's watermark, and the snapshot each
/// stage with a changelog saved for the commit. (Kafka Streams keeps a partition's
/// stream time in its commit metadata alike.) Stage names hold no spaces, `=` or
/// `:`, and are not `position` or `consumed`.
pub(crate) fn encode_metadata(
    position: u64,
    consumed: u64,
    watermarks: &[(String, i64)],
    snapshots: &[(String, SnapshotRef)],
) -> String {
    let mut out = format!("{METADATA_TAG} position={position} consumed={consumed}");
    for (name, watermark_ms) in watermarks {
        out.push_str(&format!(" {name}={watermark_ms}"));
    }
    for (name, snapshot) in snapshots {
        out.push_str(&format!(
            " {SNAPSHOT_PREFIX}{name}={:016x}/{}",
            snapshot.id, snapshot.chunks
        ));
    }
    out
}

fn decode_snapshot_ref(value: &str) -> Option<SnapshotRef> {
    let (id, chunks) = value.split_once('/')?;
    Some(SnapshotRef {
        id: u64::from_str_radix(id, 16).ok()?,
        chunks: chunks.parse().ok()?,
    })
}

/// Reads [`encode_metadata`]'s text; anything else (no commit, a commit by another
/// program) restores nothing.
pub(crate) fn decode_metadata(metadata: &str) -> Restored {
    let mut words = metadata.split(' ');
    if words.next() != Some(METADATA_TAG) {
        return Restored::default();
    }
    let mut restored = Restored::default();
    for word in words {
        let Some((name, value)) = word.split_once('=') else {
            continue;
        };
        if let Some(stage) = name.strip_prefix(SNAPSHOT_PREFIX) {
            if let Some(snapshot) = decode_snapshot_ref(value) {
                restored.snapshots.insert(stage.to_string(), snapshot);
            }
        } else if name == "position" {
            restored.position = value.parse().ok();
        } else if name == "consumed" {
            restored.consumed = value.parse().ok();
        } else if let Ok(watermark_ms) = value.parse() {
            restored.watermarks.insert(name.to_string(), watermark_ms);
        }
    }
    restored
}

/// A pipeline's stages up to items of type `T`.
pub(crate) trait Chain<T>: Send {
    /// One input record's items.
    fn record(
        &mut self,
        record: ConsumerRecord,
        context: &Context,
        env: &mut Env,
        out: &mut Vec<T>,
    );
    /// Time passed: items of windows that closed, each with the context of the
    /// partition whose state held it.
    fn tick(&mut self, env: &mut Env, out: &mut Vec<(Context, T)>);
    /// The worker now owns `partition`; its state is rebuilt from `restored` (a
    /// snapshot, or the records replayed from the commit). Fails with a sentence when
    /// a snapshot does not restore.
    fn assign(
        &mut self,
        topic: &str,
        partition: u32,
        restored: &Restored,
        now: Instant,
    ) -> Result<(), String>;
    /// The worker no longer owns `partition`: its state goes.
    fn revoke(&mut self, topic: &str, partition: u32);
    fn checkpoint(&self, topic: &str, partition: u32, into: &mut Checkpoint);
    /// The state of `partition` of each stage with a changelog that changed since its
    /// last snapshot, as bytes, by stage name; fails with a sentence when a key or
    /// an accumulator cannot be written.
    fn snapshot(
        &mut self,
        topic: &str,
        partition: u32,
        out: &mut Vec<(String, Vec<u8>)>,
    ) -> Result<(), String>;
    /// The stages that keep a changelog, upstream first.
    fn changelog_stages(&self, out: &mut Vec<ChangelogStage>);
    /// Every stage that keeps a changelog by default keeps none from now on: its
    /// state is rebuilt by replay, as a stage's without a changelog.
    fn drop_default_changelogs(&mut self);
    /// Whether any stage keeps state across records.
    fn is_stateful(&self) -> bool;
    /// Each operator's name, upstream first, and whether it keeps window state.
    fn operators(&self, out: &mut Vec<(String, bool)>);
    /// Names the last operator ([`super::Pipeline::name`]); a stage the pipeline
    /// added for its own ends (`reduce`'s) passes the name on to the one before.
    fn rename(&mut self, name: &str);
    /// Every operator counts into `metrics` from now on.
    fn bind_metrics(&mut self, metrics: &PipelineMetrics, group: &Arc<str>);
    /// Names the internal topics of the stages for `group` and lists them, upstream
    /// first: the worker creates them and reads them with the input.
    fn internal_topics(&mut self, group: &str, out: &mut Vec<String>);
    /// Whether records of `topic` come out of this stage as items: an input topic's
    /// do, up to a repartition, after which only its own topic's do. A window stage
    /// keeps time only over the partitions that feed it.
    fn fed_by(&self, topic: &str) -> bool;
    /// Adds what each operator counted to its counters, measuring window state
    /// too if `measure_state`.
    fn publish_metrics(&mut self, measure_state: bool);
}

/// The input records themselves.
pub(crate) struct Source {
    pub meter: OperatorMeter,
    /// The pipeline's input topics.
    pub topics: Vec<String>,
}

impl Chain<ConsumerRecord> for Source {
    fn record(
        &mut self,
        record: ConsumerRecord,
        _: &Context,
        _: &mut Env,
        out: &mut Vec<ConsumerRecord>,
    ) {
        self.meter.records_in += 1;
        self.meter.records_out += 1;
        out.push(record);
    }
    fn tick(&mut self, _: &mut Env, _: &mut Vec<(Context, ConsumerRecord)>) {}
    fn assign(&mut self, _: &str, _: u32, _: &Restored, _: Instant) -> Result<(), String> {
        Ok(())
    }
    fn revoke(&mut self, _: &str, _: u32) {}
    fn checkpoint(&self, _: &str, _: u32, _: &mut Checkpoint) {}
    fn snapshot(&mut self, _: &str, _: u32, _: &mut Vec<(String, Vec<u8>)>) -> Result<(), String> {
        Ok(())
    }
    fn changelog_stages(&self, _: &mut Vec<ChangelogStage>) {}
    fn drop_default_changelogs(&mut self) {}
    fn is_stateful(&self) -> bool {
        false
    }
    fn operators(&self, out: &mut Vec<(String, bool)>) {
        out.push((self.meter.name.clone(), false));
    }
    fn rename(&mut self, name: &str) {
        self.meter.name = name.to_string();
    }
    fn bind_metrics(&mut self, metrics: &PipelineMetrics, group: &Arc<str>) {
        self.meter.bind(metrics, group, false);
    }
    fn internal_topics(&mut self, _: &str, _: &mut Vec<String>) {}
    fn fed_by(&self, topic: &str) -> bool {
        self.topics.iter().any(|t| t == topic)
    }
    fn publish_metrics(&mut self, _: bool) {
        self.meter.publish(None);
    }
}

pub(crate) type StageFn<T, U> = Box<dyn FnMut(T, &Context, &mut Vec<U>) + Send>;

/// A stateless stage after `upstream`.
pub(crate) struct Then<T, U> {
    pub upstream: Box<dyn Chain<T>>,
    /// `None` for a stage the pipeline added for its own ends, which is part of
    /// the operator before it.
    pub meter: Option<OperatorMeter>,
    pub stage: StageFn<T, U>,
    pub scratch: Vec<T>,
    pub ticked: Vec<(Context, T)>,
    pub produced: Vec<U>,
}

impl<T: Send, U: Send> Chain<U> for Then<T, U> {
    fn record(
        &mut self,
        record: ConsumerRecord,
        context: &Context,
        env: &mut Env,
        out: &mut Vec<U>,
    ) {
        self.upstream
            .record(record, context, env, &mut self.scratch);
        let (taken, before) = (self.scratch.len(), out.len());
        for item in self.scratch.drain(..) {
            (self.stage)(item, context, out);
        }
        if let Some(meter) = &mut self.meter {
            meter.records_in += taken as u64;
            meter.records_out += (out.len() - before) as u64;
        }
    }

    fn tick(&mut self, env: &mut Env, out: &mut Vec<(Context, U)>) {
        self.upstream.tick(env, &mut self.ticked);
        let (taken, before) = (self.ticked.len(), out.len());
        for (context, item) in self.ticked.drain(..) {
            (self.stage)(item, &context, &mut self.produced);
            out.extend(self.produced.drain(..).map(|u| (context.clone(), u)));
        }
        if let Some(meter) = &mut self.meter {
            meter.records_in += taken as u64;
            meter.records_out += (out.len() - before) as u64;
        }
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
        if let Some(meter) = &self.meter {
            out.push((meter.name.clone(), false));
        }
    }

    fn rename(&mut self, name: &str) {
        match &mut self.meter {
            Some(meter) => meter.name = name.to_string(),
            None => self.upstream.rename(name),
        }
    }

    fn bind_metrics(&mut self, metrics: &PipelineMetrics, group: &Arc<str>) {
        self.upstream.bind_metrics(metrics, group);
        if let Some(meter) = &mut self.meter {
            meter.bind(metrics, group, false);
        }
    }

    fn fed_by(&self, topic: &str) -> bool {
        self.upstream.fed_by(topic)
    }

    fn internal_topics(&mut self, group: &str, out: &mut Vec<String>) {
        self.upstream.internal_topics(group, out)
    }

    fn publish_metrics(&mut self, measure_state: bool) {
        self.upstream.publish_metrics(measure_state);
        if let Some(meter) = &mut self.meter {
            meter.publish(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_metadata_round_trips_and_foreign_text_restores_nothing() {
        let snapshot = SnapshotRef {
            id: 0xfeed_0000_0000_0001,
            chunks: 3,
        };
        let text = encode_metadata(
            42,
            40,
            &[("window-3".to_string(), -5), ("top".to_string(), 9)],
            &[("top".to_string(), snapshot)],
        );
        let restored = decode_metadata(&text);
        assert_eq!(restored.position, Some(42));
        assert_eq!(restored.consumed, Some(40));
        assert_eq!(restored.watermarks.get("window-3"), Some(&-5));
        assert_eq!(restored.watermarks.get("top"), Some(&9));
        assert_eq!(restored.watermarks.len(), 2);
        assert_eq!(restored.snapshots.get("top"), Some(&snapshot));
        assert_eq!(decode_metadata(""), Restored::default());
        assert_eq!(decode_metadata("position=4"), Restored::default());
    }
}
