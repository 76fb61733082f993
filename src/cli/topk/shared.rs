//! `weir topk --group G`: the processes of a group each count the partitions the group gave
//! them, and publish every window sketch they emit to the topic `G.topk`; each reads that
//! topic back, its own included, so every process merges the sketches of all partitions into
//! the same answer. A record is keyed by window start and input partition (compaction keeps the
//! newest of each) and holds the window's bounds, the partition, whether it had closed there,
//! and the sketch ([`TopKAcc::to_bytes`]).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use anyhow::{bail, Context as _};
use weir_client::{
    Admin, Consumer, ConsumerConfig, ConsumerRecord, Producer, ProducerConfig, ProducerRecord,
    SeekTo,
};
use weir_processors::window::{TopKAcc, Window};

use super::view::Partial;
use super::Query;

const FORMAT_VERSION: u8 = 1;
const HEADER_BYTES: usize = 1 + 8 + 8 + 4 + 1;
/// The topic keeps an hour of sketches, or two windows if longer: a process that joins
/// reads from the end, so older ones are never read.
const RETENTION_MS_MIN: i64 = 3_600_000;

/// The group's topic, to publish to and to read from.
pub(crate) struct Shared {
    out: SharedOut,
    input: SharedIn,
}

pub(crate) struct SharedOut {
    producer: Producer,
    topic: String,
}

pub(crate) struct SharedIn {
    consumer: Consumer,
    topic: String,
    budget_bytes: usize,
    buffered: VecDeque<ConsumerRecord>,
}

impl Shared {
    /// Creates the group's topic if it does not exist, and reads it from its end.
    pub async fn start(addr: &str, group: &str, query: &Query) -> anyhow::Result<Shared> {
        let topic = format!("{group}.topk");
        let admin = Admin::connect(addr).await?;
        let retention_ms = query.window_ms.map_or(RETENTION_MS_MIN, |w| {
            w.saturating_mul(2).max(RETENTION_MS_MIN)
        });
        let configs = BTreeMap::from([
            ("cleanup.policy".to_string(), "compact,delete".to_string()),
            ("retention.ms".to_string(), retention_ms.to_string()),
        ]);
        if let Err(error) = admin.create_topic(&topic, 1, 1, &configs).await {
            // Another process of the group made it first, or it is there from an
            // earlier run.
            if admin.describe_topic(&topic).await.is_err() {
                return Err(error).with_context(|| {
                    format!("cannot create topic {topic:?}, where the processes of group {group:?} share their counts")
                });
            }
        }
        let producer = Producer::connect(addr, ProducerConfig::default()).await?;
        let mut consumer = Consumer::connect(addr, ConsumerConfig::default()).await?;
        consumer.assign(&topic, &[0]);
        consumer.seek(0, SeekTo::End)?;
        Ok(Shared {
            out: SharedOut {
                producer,
                topic: topic.clone(),
            },
            input: SharedIn {
                consumer,
                topic,
                budget_bytes: query.budget_bytes,
                buffered: VecDeque::new(),
            },
        })
    }

    pub fn split(self) -> (SharedOut, SharedIn) {
        (self.out, self.input)
    }
}

impl SharedOut {
    /// Sends one partition's sketch of a window to the group (not waiting for the
    /// broker's answer: a lost one is replaced by the next).
    pub async fn publish(&self, partial: &Partial) -> anyhow::Result<()> {
        let value = encode(partial);
        let key = format!("{}/{}", partial.window.start_ms, partial.partition);
        let record = ProducerRecord::new(&self.topic, &value)
            .with_key(key.as_bytes())
            .with_partition(0);
        let delivery = self
            .producer
            .send(record)
            .await
            .with_context(|| format!("cannot publish to topic {:?}", self.topic))?;
        // Its answer is not awaited: the next slide's sketch replaces a lost one.
        drop(delivery);
        Ok(())
    }
}

impl SharedIn {
    /// The next sketch any process of the group published.
    pub async fn next(&mut self) -> anyhow::Result<Partial> {
        loop {
            while let Some(record) = self.buffered.pop_front() {
                let value = record.value.as_deref().unwrap_or_default();
                match decode(value, self.budget_bytes) {
                    Ok(partial) => return Ok(partial),
                    Err(error) => tracing::warn!(
                        topic = %self.topic,
                        offset = record.offset,
                        %error,
                        "skipping a record that is not a window sketch of this query"
                    ),
                }
            }
            let records = self
                .consumer
                .poll(Duration::from_millis(500))
                .await
                .with_context(|| format!("cannot read topic {:?}", self.topic))?;
            self.buffered.extend(records);
        }
    }
}

fn encode(partial: &Partial) -> Vec<u8> {
    let acc = partial.acc.to_bytes();
    let mut out = Vec::with_capacity(HEADER_BYTES + acc.len());
    out.push(FORMAT_VERSION);
    out.extend_from_slice(&partial.window.start_ms.to_le_bytes());
    out.extend_from_slice(&partial.window.end_ms.to_le_bytes());
    out.extend_from_slice(&partial.partition.to_le_bytes());
    out.push(u8::from(partial.is_final));
    out.extend_from_slice(&acc);
    out
}

/// A sketch bigger than `budget_bytes` is another query's (a process of the group run
/// with another `--memory`), refused before it is allocated.
fn decode(bytes: &[u8], budget_bytes: usize) -> anyhow::Result<Partial> {
    if bytes.len() < HEADER_BYTES {
        bail!(
            "{} bytes, shorter than the {HEADER_BYTES}-byte header",
            bytes.len()
        );
    }
    if bytes[0] != FORMAT_VERSION {
        bail!(
            "format version {} (this build reads {FORMAT_VERSION})",
            bytes[0]
        );
    }
    let i64_at = |at: usize| i64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let window = Window {
        start_ms: i64_at(1),
        end_ms: i64_at(9),
    };
    let partition = u32::from_le_bytes(bytes[17..21].try_into().expect("4 bytes"));
    let is_final = match bytes[21] {
        0 => false,
        1 => true,
        other => bail!("closed flag {other} is neither 0 nor 1"),
    };
    let acc = TopKAcc::from_bytes(&bytes[HEADER_BYTES..], budget_bytes)?;
    Ok(Partial {
        partition,
        window,
        acc,
        is_final,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_processors::window::{Aggregator, TopKAggregator};

    #[test]
    fn a_partial_round_trips_and_damage_is_refused() {
        let aggregator = TopKAggregator::new(3, 16 * 1024).unwrap();
        let mut acc = <TopKAggregator as Aggregator<Vec<u8>>>::init(&aggregator);
        for key in ["a", "b", "a"] {
            <TopKAggregator as Aggregator<Vec<u8>>>::add(&aggregator, &mut acc, key.into());
        }
        let partial = Partial {
            partition: 7,
            window: Window {
                start_ms: -10,
                end_ms: 20,
            },
            acc,
            is_final: true,
        };
        let bytes = encode(&partial);
        let back = decode(&bytes, 16 * 1024).unwrap();
        assert_eq!(
            (back.partition, back.window, back.is_final),
            (7, partial.window, true)
        );
        assert_eq!(back.acc.to_bytes(), partial.acc.to_bytes());
        assert!(decode(&bytes[..HEADER_BYTES - 1], 16 * 1024).is_err());
        assert!(decode(&bytes[..bytes.len() - 1], 16 * 1024).is_err());
        assert!(
            decode(&bytes, 1024).is_err(),
            "a bigger sketch than this query's"
        );
        let mut other_version = bytes.clone();
        other_version[0] = 9;
        assert!(decode(&other_version, 16 * 1024).is_err());
    }
}
