//! `weir sketch bench --topic`: a topic read as a workload. Every partition is read from its
//! beginning up to the end offset (high watermark) it had when the read began, so the stream is a
//! consistent snapshot however fast producers write; each record's key, or a field of its JSON
//! value, is interned as one event, and records without one are counted and skipped.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context};
use indicatif::ProgressBar;
use serde::Serialize;
use weir_client::{Admin, Consumer, ConsumerConfig, ConsumerRecord, OffsetReset, SeekTo};
use weir_processors::sketch::accuracy::{Workload, WorkloadBuilder};

use super::key_field::{Extracted, KeyField};
use crate::cli::broker::block_on;

const POLL_TIMEOUT: Duration = Duration::from_millis(500);

/// A topic to read and what in its records is the key.
#[derive(Debug, Clone)]
pub struct TopicSource {
    pub broker: String,
    pub topic: String,
    /// `None`: the record key.
    pub key_field: Option<KeyField>,
}

/// What a read found, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct TopicRead {
    pub topic: String,
    /// The `--key-field` path, or none when the record key is the stream key.
    pub key_field: Option<String>,
    /// The snapshot read: the end offset of each partition when the read began.
    pub end_offsets: BTreeMap<u32, u64>,
    /// Records read, counted or skipped.
    pub records: u64,
    pub skipped: SkippedRecords,
}

/// Records that gave no key, by reason.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SkippedRecords {
    /// The record has no key (keying by record key).
    pub null_key: u64,
    /// The value is absent or not one JSON document (keying by field).
    pub not_json: u64,
    /// The JSON value has no such field, or null, an object or an array there.
    pub missing_field: u64,
}

impl SkippedRecords {
    pub fn total(&self) -> u64 {
        self.null_key + self.not_json + self.missing_field
    }
}

impl TopicSource {
    pub fn describe(&self) -> String {
        match &self.key_field {
            None => format!("topic {} by key", self.topic),
            Some(field) => format!("topic {} by {}", self.topic, field.path()),
        }
    }

    /// Reads the topic into a workload named by [`TopicSource::describe`].
    pub fn load(&self, progress: &ProgressBar) -> anyhow::Result<(Workload, TopicRead)> {
        block_on(self.read(progress))?
    }

    async fn read(&self, progress: &ProgressBar) -> anyhow::Result<(Workload, TopicRead)> {
        let topic = &self.topic;
        let admin = Admin::connect(&self.broker).await?;
        let info = match admin.describe_topic(topic).await {
            Ok(info) => info,
            Err(error) if error.is_not_found() => {
                bail!(
                    "topic {topic:?} does not exist on the broker at {}",
                    self.broker
                )
            }
            Err(error) => {
                return Err(error).with_context(|| format!("cannot describe topic {topic:?}"))
            }
        };
        let partitions: Vec<u32> = (0..info.partition_count).collect();
        let config = ConsumerConfig {
            // Records deleted by retention while we read are an error, not a silent gap.
            offset_reset: OffsetReset::Error,
            ..ConsumerConfig::default()
        };
        let mut consumer = Consumer::connect(&self.broker, config).await?;
        consumer.assign(topic, &partitions);
        consumer.seek_all(SeekTo::Beginning)?;
        let ends = consumer
            .end_offsets()
            .await
            .with_context(|| format!("cannot list the end offsets of topic {topic:?}"))?;

        let mut keys = Keys {
            builder: WorkloadBuilder::new(self.describe()),
            field: self.key_field.clone(),
            skipped: SkippedRecords::default(),
            records: 0,
        };
        // Partitions not yet read up to their end offset.
        let mut open = ends.clone();
        loop {
            let mut i = 0;
            while i < open.len() {
                let (partition, end) = open[i];
                if consumer.position(partition).await? >= end {
                    open.swap_remove(i);
                } else {
                    i += 1;
                }
            }
            if open.is_empty() {
                break;
            }
            let records = consumer
                .poll(POLL_TIMEOUT)
                .await
                .with_context(|| format!("cannot read topic {topic:?}"))?;
            for record in &records {
                if !past_end(&ends, record) {
                    keys.take(record)?;
                }
            }
            progress.set_message(format!("reading topic {topic}: {} records", keys.records));
        }

        let read = TopicRead {
            topic: topic.clone(),
            key_field: self.key_field.as_ref().map(|f| f.path().to_string()),
            end_offsets: ends.into_iter().collect(),
            records: keys.records,
            skipped: keys.skipped,
        };
        if read.records == 0 {
            bail!("topic {topic:?} is empty: there is nothing to measure");
        }
        if keys.builder.events() == 0 {
            bail!(
                "none of the {} records of topic {topic:?} has a key to count ({})",
                read.records,
                describe_skipped(&read.skipped)
            );
        }
        let workload = keys.builder.finish()?;
        debug_assert_eq!(workload.total() + read.skipped.total(), read.records);
        Ok((workload, read))
    }
}

/// The interning state of one read.
struct Keys {
    builder: WorkloadBuilder,
    field: Option<KeyField>,
    skipped: SkippedRecords,
    records: u64,
}

impl Keys {
    fn take(&mut self, record: &ConsumerRecord) -> anyhow::Result<()> {
        self.records += 1;
        let key = match &mut self.field {
            None => match &record.key {
                Some(key) => key.as_ref(),
                None => {
                    self.skipped.null_key += 1;
                    return Ok(());
                }
            },
            Some(field) => match field.extract(record.value.as_deref().unwrap_or_default()) {
                Extracted::Key(key) => key,
                Extracted::NotJson => {
                    self.skipped.not_json += 1;
                    return Ok(());
                }
                Extracted::Missing => {
                    self.skipped.missing_field += 1;
                    return Ok(());
                }
            },
        };
        self.builder.push(key).with_context(|| {
            format!(
                "record at offset {} of partition {}",
                record.offset, record.partition
            )
        })
    }
}

/// Whether a record lies beyond the snapshot (its partition had grown since the read began).
fn past_end(ends: &[(u32, u64)], record: &ConsumerRecord) -> bool {
    ends.iter()
        .any(|(p, end)| *p == record.partition && record.offset >= *end)
}

/// `3 with a null key, 2 not JSON`: the non-zero reasons.
pub fn describe_skipped(skipped: &SkippedRecords) -> String {
    let reasons: Vec<String> = [
        (skipped.null_key, "with a null key"),
        (skipped.not_json, "not JSON"),
        (skipped.missing_field, "without the field"),
    ]
    .into_iter()
    .filter(|(count, _)| *count > 0)
    .map(|(count, why)| format!("{count} {why}"))
    .collect();
    if reasons.is_empty() {
        "none skipped".to_string()
    } else {
        reasons.join(", ")
    }
}
