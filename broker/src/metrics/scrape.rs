//! What a scrape reads from the broker itself rather than from counters kept
//! on the hot path: each hosted partition's offsets, size and segment count,
//! each topic's traffic counters, the memory pool, and consumer-group lag
//! (the committed offset against the partition's high watermark), members,
//! rebalances and how long they took, bounded in series by [`GROUP_SERIES_MAX`].

use std::fmt::Write as _;
use std::sync::Arc;

use crate::replication::RoleKind;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabel, EncodeLabelSet, EncodeLabelValue, EncodeMetric,
    LabelSetEncoder, LabelValueEncoder, NoLabelSet,
};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use super::Listener;
use crate::broker::{Broker, Topic};
use crate::group::{RebalanceDurations, REBALANCE_BUCKET_BOUNDS_MS};
use crate::group_service::GroupService;

/// The broker's topics, partitions and memory pool, read at each scrape.
#[derive(Debug)]
pub(super) struct BrokerCollector {
    pub broker: Arc<Broker>,
}

/// One hosted partition as a scrape saw it; `None` offsets while offline.
struct PartitionRow {
    topic: Arc<Topic>,
    partition: u32,
    online: Option<OnlineRow>,
    /// In a cluster: (leads it here, replicas, in-sync replicas as this
    /// leader counts them).
    replication: Option<(bool, usize, Option<usize>)>,
}

struct OnlineRow {
    log_start_offset: u64,
    log_end_offset: u64,
    high_watermark: u64,
    size_bytes: u64,
    segments: u64,
}

struct PartitionLabels<'a> {
    topic: &'a str,
    partition: u32,
}

impl EncodeLabelSet for PartitionLabels<'_> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        ("topic", self.topic).encode(encoder.encode_label())?;
        ("partition", self.partition).encode(encoder.encode_label())
    }
}

struct TopicLabels<'a> {
    topic: &'a str,
    listener: Listener,
}

impl EncodeLabelSet for TopicLabels<'_> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        ("topic", self.topic).encode(encoder.encode_label())?;
        ("listener", self.listener.as_str()).encode(encoder.encode_label())
    }
}

/// A label value written with the exposition format's escapes. Group ids are
/// chosen by clients and may hold quotes or newlines; `prometheus-client`
/// writes label values as they are. (Topic names cannot: see `topic_name`.)
struct Escaped<'a>(&'a str);

impl EncodeLabelValue for Escaped<'_> {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        for c in self.0.chars() {
            match c {
                '\\' => encoder.write_str("\\\\")?,
                '"' => encoder.write_str("\\\"")?,
                '\n' => encoder.write_str("\\n")?,
                c => encoder.write_char(c)?,
            }
        }
        Ok(())
    }
}

impl Collector for BrokerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // A broker shutting down has no topics left to read: the rest still encode.
        let topics = self.broker.topics().unwrap_or_default();
        encode_traffic(&mut encoder, &topics)?;
        let rows = partition_rows(&topics);
        encode_partitions(&mut encoder, &rows)?;
        encode_memory_pool(&mut encoder, &self.broker)
    }
}

fn encode_traffic(
    encoder: &mut DescriptorEncoder,
    topics: &[Arc<Topic>],
) -> Result<(), std::fmt::Error> {
    type Pick = fn(&super::topic::TrafficTotals) -> u64;
    let counters: [(&str, &str, Pick); 4] = [
        (
            "weir_topic_bytes_in",
            "Batch bytes appended by produce requests, per topic and listener",
            |t| t.bytes_in,
        ),
        (
            "weir_topic_records_in",
            "Records appended by produce requests, per topic and listener",
            |t| t.records_in,
        ),
        (
            "weir_topic_bytes_out",
            "Batch bytes sent in fetch responses, per topic and listener",
            |t| t.bytes_out,
        ),
        (
            "weir_topic_records_out",
            "Records in the batches sent in fetch responses, per topic and listener",
            |t| t.records_out,
        ),
    ];
    for (name, help, pick) in counters {
        let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        for topic in topics {
            for listener in Listener::ALL {
                let value = pick(&topic.metrics.totals(listener));
                let labels = TopicLabels {
                    topic: &topic.name,
                    listener,
                };
                ConstCounter::new(value).encode(metric.encode_family(&labels)?)?;
            }
        }
    }
    Ok(())
}

fn partition_rows(topics: &[Arc<Topic>]) -> Vec<PartitionRow> {
    let mut rows = Vec::new();
    for topic in topics {
        for partition in &topic.partitions {
            let role = partition.role_kind();
            if role == RoleKind::NotHosted {
                // Series only for partitions this broker holds a replica of.
                continue;
            }
            let replication = (role != RoleKind::Solo).then(|| {
                (
                    role == RoleKind::Leader,
                    topic.replication_factor as usize,
                    partition.in_sync_replicas().map(|isr| isr.len()),
                )
            });
            let online = partition.offline_cause().is_none().then(|| {
                let status = partition.status();
                OnlineRow {
                    log_start_offset: status.log_start_offset,
                    log_end_offset: status.log_end_offset,
                    high_watermark: status.high_watermark,
                    size_bytes: status.size_bytes,
                    segments: partition.segment_count() as u64,
                }
            });
            rows.push(PartitionRow {
                topic: Arc::clone(topic),
                partition: partition.index(),
                online,
                replication,
            });
        }
    }
    rows
}

fn encode_partitions(
    encoder: &mut DescriptorEncoder,
    rows: &[PartitionRow],
) -> Result<(), std::fmt::Error> {
    type Pick = fn(&OnlineRow) -> u64;
    let gauges: [(&str, &str, Pick); 5] = [
        (
            "weir_partition_log_start_offset",
            "First offset still in the partition's log",
            |r| r.log_start_offset,
        ),
        (
            "weir_partition_log_end_offset",
            "Offset the partition's next record will get",
            |r| r.log_end_offset,
        ),
        (
            "weir_partition_high_watermark",
            "Offset below which records are committed and visible to consumers",
            |r| r.high_watermark,
        ),
        (
            "weir_partition_size_bytes",
            "Bytes in the partition's segment files",
            |r| r.size_bytes,
        ),
        (
            "weir_partition_segments",
            "Segments of the partition's log, the active one included",
            |r| r.segments,
        ),
    ];
    for (name, help, pick) in gauges {
        let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for row in rows {
            let Some(online) = &row.online else { continue };
            let labels = PartitionLabels {
                topic: &row.topic.name,
                partition: row.partition,
            };
            ConstGauge::new(pick(online)).encode(metric.encode_family(&labels)?)?;
        }
    }
    let mut metric = encoder.encode_descriptor(
        "weir_partition_online",
        "1 while the partition's log is open, 0 while it is offline",
        None,
        MetricType::Gauge,
    )?;
    for row in rows {
        let labels = PartitionLabels {
            topic: &row.topic.name,
            partition: row.partition,
        };
        ConstGauge::new(i64::from(row.online.is_some())).encode(metric.encode_family(&labels)?)?;
    }
    encode_replication(encoder, rows)
}

/// Replicated partitions only (a broker in no cluster has none): whether
/// this broker leads each, and, where it leads, how many replicas are in
/// sync and whether that is fewer than all (Kafka's UnderReplicatedPartitions).
fn encode_replication(
    encoder: &mut DescriptorEncoder,
    rows: &[PartitionRow],
) -> Result<(), std::fmt::Error> {
    let replicated: Vec<_> = rows
        .iter()
        .filter_map(|row| row.replication.map(|r| (row, r)))
        .collect();
    if replicated.is_empty() {
        return Ok(());
    }
    fn labels(row: &PartitionRow) -> PartitionLabels<'_> {
        PartitionLabels {
            topic: &row.topic.name,
            partition: row.partition,
        }
    }
    let mut metric = encoder.encode_descriptor(
        "weir_partition_leader",
        "1 while this broker leads the partition, 0 while it follows",
        None,
        MetricType::Gauge,
    )?;
    for (row, (leads, _, _)) in &replicated {
        ConstGauge::new(i64::from(*leads)).encode(metric.encode_family(&labels(row))?)?;
    }
    let mut metric = encoder.encode_descriptor(
        "weir_partition_in_sync_replicas",
        "In-sync replicas of a partition this broker leads, itself included",
        None,
        MetricType::Gauge,
    )?;
    for (row, (_, _, isr)) in &replicated {
        if let Some(isr) = isr {
            ConstGauge::new(*isr as i64).encode(metric.encode_family(&labels(row))?)?;
        }
    }
    let mut metric = encoder.encode_descriptor(
        "weir_partition_under_replicated",
        "1 when a partition this broker leads has fewer in-sync replicas than replicas",
        None,
        MetricType::Gauge,
    )?;
    for (row, (_, replicas, isr)) in &replicated {
        if let Some(isr) = isr {
            ConstGauge::new(i64::from(isr < replicas))
                .encode(metric.encode_family(&labels(row))?)?;
        }
    }
    Ok(())
}

fn encode_memory_pool(
    encoder: &mut DescriptorEncoder,
    broker: &Broker,
) -> Result<(), std::fmt::Error> {
    let pool = broker.memory_pool();
    let gauges = [
        (
            "weir_request_memory_bytes",
            "Request and fetch-response bytes held in memory now",
            pool.in_use_bytes(),
        ),
        (
            "weir_request_memory_max_bytes",
            "The bound on request and fetch-response bytes held at once (queued_request_bytes_max)",
            pool.capacity_bytes(),
        ),
        (
            "weir_request_memory_peak_bytes",
            "The most request and fetch-response bytes held at once since the broker started",
            pool.in_use_bytes_max(),
        ),
    ];
    for (name, help, value) in gauges {
        let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
        ConstGauge::new(value as u64).encode(metric)?;
    }
    let counters = [
        (
            "weir_request_memory_waits",
            "Requests and fetches that found the memory pool full and waited",
            pool.waits(),
        ),
        (
            "weir_request_memory_refusals",
            "Requests and fetches refused because the memory pool stayed full until their \
             deadline (backpressure)",
            pool.timeouts(),
        ),
    ];
    for (name, help, value) in counters {
        let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        ConstCounter::new(value).encode(metric)?;
    }
    Ok(())
}

/// The most consumer-group series one scrape writes (lag series, plus members
/// and rebalances per group, and the rebalance-duration histogram's series for
/// a group that has completed a rebalance). Group ids are chosen by clients, and any client
/// can create a group with one offset commit, so the groups, unlike the
/// partitions, have no bound of their own. Groups with members come first,
/// then by id; a group that does not fit whole is left out and counted in
/// `weir_consumer_group_series_omitted`.
pub(super) const GROUP_SERIES_MAX: usize = 10_000;

/// One consumer group as a scrape saw it.
#[derive(Debug)]
struct GroupSample {
    group: String,
    members: u64,
    epoch: u64,
    /// (topic, partition, lag) of each committed partition this broker hosts.
    lags: Vec<(Arc<Topic>, u32, u64)>,
    rebalances: RebalanceDurations,
}

impl GroupSample {
    fn series(&self) -> usize {
        // The histogram, once it has an observation: its buckets, +Inf, sum and count.
        let durations = match self.rebalances.count() {
            0 => 0,
            _ => REBALANCE_BUCKET_BOUNDS_MS.len() + 3,
        };
        2 + durations + self.lags.len()
    }
}

/// The consumer groups this broker coordinates (those its `GroupService`
/// holds), read under the coordinator's lock once per scrape.
#[derive(Debug)]
pub(super) struct GroupsCollector {
    groups: Vec<GroupSample>,
    /// Groups left out to keep within [`GROUP_SERIES_MAX`].
    omitted: u64,
}

impl GroupsCollector {
    /// Reads every group's members, epoch and committed offsets, and each
    /// committed partition's high watermark now. A partition of a deleted
    /// topic is not hosted here and gets no series.
    pub(super) async fn read(service: &GroupService, broker: &Broker) -> GroupsCollector {
        let read = service
            .read_all(|coordinator| {
                coordinator
                    .list_groups()
                    .into_iter()
                    .map(|listing| {
                        let epoch = coordinator
                            .describe_group(&listing.group_id)
                            .map_or(0, |d| d.group_epoch);
                        let offsets = coordinator.fetch_offsets(&listing.group_id, None);
                        let rebalances = coordinator
                            .rebalance_durations(&listing.group_id)
                            .cloned()
                            .unwrap_or_default();
                        (listing, epoch, offsets, rebalances)
                    })
                    .collect::<Vec<_>>()
            })
            .await;
        let Ok(mut read) = read else {
            return GroupsCollector {
                groups: Vec::new(),
                omitted: 0,
            };
        };
        read.sort_by(|a, b| a.0.group_id.cmp(&b.0.group_id));
        let mut groups: Vec<GroupSample> = read
            .into_iter()
            .map(|(listing, epoch, offsets, rebalances)| {
                let lags = offsets
                    .into_iter()
                    .filter_map(|(tp, committed)| {
                        let topic = broker.topic(&tp.topic).ok()?;
                        let high_watermark = topic.partition(tp.partition).ok()?.high_watermark();
                        // Kafka's lag (kafka-consumer-groups.sh, ListOffsets LATEST):
                        // records below the high watermark not yet committed. On
                        // one node the high watermark is the log end.
                        let lag = high_watermark.saturating_sub(committed.offset);
                        Some((topic, tp.partition, lag))
                    })
                    .collect();
                GroupSample {
                    group: listing.group_id,
                    members: listing.members as u64,
                    epoch: u64::try_from(epoch).unwrap_or(0),
                    lags,
                    rebalances,
                }
            })
            .collect();
        let omitted = keep_within_series_max(&mut groups, GROUP_SERIES_MAX);
        GroupsCollector { groups, omitted }
    }
}

/// Keeps the groups whose series fit in `series_max`, those with members
/// first, then by id; returns how many were left out.
fn keep_within_series_max(groups: &mut Vec<GroupSample>, series_max: usize) -> u64 {
    groups.sort_by(|a, b| {
        (a.members == 0)
            .cmp(&(b.members == 0))
            .then_with(|| a.group.cmp(&b.group))
    });
    let mut series = 0usize;
    let before = groups.len();
    groups.retain(|group| {
        let fits = series + group.series() <= series_max;
        if fits {
            series += group.series();
        }
        fits
    });
    debug_assert!(series <= series_max);
    (before - groups.len()) as u64
}

struct GroupLabels<'a> {
    group: &'a str,
}

impl EncodeLabelSet for GroupLabels<'_> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        ("group", Escaped(self.group)).encode(encoder.encode_label())
    }
}

struct LagLabels<'a> {
    group: &'a str,
    topic: &'a str,
    partition: u32,
}

impl EncodeLabelSet for LagLabels<'_> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        ("group", Escaped(self.group)).encode(encoder.encode_label())?;
        ("topic", self.topic).encode(encoder.encode_label())?;
        ("partition", self.partition).encode(encoder.encode_label())
    }
}

impl Collector for GroupsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut lag = encoder.encode_descriptor(
            "weir_consumer_group_lag",
            "Records below the high watermark past the group's committed offset, per partition",
            None,
            MetricType::Gauge,
        )?;
        for group in &self.groups {
            for (topic, partition, records) in &group.lags {
                let labels = LagLabels {
                    group: &group.group,
                    topic: &topic.name,
                    partition: *partition,
                };
                ConstGauge::new(*records).encode(lag.encode_family(&labels)?)?;
            }
        }
        let mut members = encoder.encode_descriptor(
            "weir_consumer_group_members",
            "Members of the consumer group now",
            None,
            MetricType::Gauge,
        )?;
        for group in &self.groups {
            let labels = GroupLabels {
                group: &group.group,
            };
            ConstGauge::new(group.members).encode(members.encode_family(&labels)?)?;
        }
        // KIP-848: every bump of the group epoch starts a rebalance, and the
        // epoch is stored in `__consumer_offsets`, so this survives restarts.
        let mut rebalances = encoder.encode_descriptor(
            "weir_consumer_group_rebalances",
            "Rebalances of the consumer group (bumps of its group epoch)",
            None,
            MetricType::Counter,
        )?;
        for group in &self.groups {
            let labels = GroupLabels {
                group: &group.group,
            };
            ConstCounter::new(group.epoch).encode(rebalances.encode_family(&labels)?)?;
        }
        // A group gets the histogram once a rebalance has completed here, so groups that
        // only hold offsets (committed from outside, never joined) spend no series on it.
        let mut durations = encoder.encode_descriptor(
            "weir_consumer_group_rebalance_duration_seconds",
            "Time from a bump of the group epoch (a rebalance starting) until every member \
             holds its target assignment, per completed rebalance since the coordinator started",
            None,
            MetricType::Histogram,
        )?;
        for group in &self.groups {
            let timed = &group.rebalances;
            if timed.count() == 0 {
                continue;
            }
            let mut buckets = [(f64::MAX, 0u64); REBALANCE_BUCKET_BOUNDS_MS.len() + 1];
            for (index, (bucket, &count)) in
                buckets.iter_mut().zip(timed.bucket_counts()).enumerate()
            {
                if let Some(&bound_ms) = REBALANCE_BUCKET_BOUNDS_MS.get(index) {
                    bucket.0 = bound_ms as f64 / 1e3;
                }
                bucket.1 = count;
            }
            let labels = GroupLabels {
                group: &group.group,
            };
            durations
                .encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(
                    timed.sum_ms() as f64 / 1e3,
                    timed.count(),
                    &buckets,
                    None,
                )?;
        }
        let omitted = encoder.encode_descriptor(
            "weir_consumer_group_series_omitted",
            "Consumer groups given no series by this scrape, to keep the group series under \
             their bound",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(self.omitted).encode(omitted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(id: &str, members: u64, lags: usize, topic: &Arc<Topic>) -> GroupSample {
        GroupSample {
            group: id.to_owned(),
            members,
            epoch: 1,
            lags: (0..lags as u32)
                .map(|p| (Arc::clone(topic), p, 0))
                .collect(),
            rebalances: RebalanceDurations::default(),
        }
    }

    fn topic() -> Arc<Topic> {
        Arc::new(Topic {
            name: "t".to_owned(),
            replication_factor: 1,
            configs: Default::default(),
            partitions: Vec::new(),
            metrics: Arc::default(),
        })
    }

    #[test]
    fn a_group_counts_its_duration_histogram_once_a_rebalance_completed() {
        let mut sample = group("g", 1, 1, &topic());
        assert_eq!(sample.series(), 3);
        sample.rebalances.started(0);
        assert_eq!(sample.series(), 3, "none completed yet");
        sample.rebalances.settled(40, true);
        // 8 finite buckets, +Inf, sum and count.
        assert_eq!(sample.series(), 3 + 11);
    }

    #[test]
    fn groups_with_members_keep_their_series_first_and_what_does_not_fit_is_counted() {
        let topic = topic();
        let mut groups = vec![
            group("a-empty", 0, 1, &topic),
            group("z-active", 2, 3, &topic),
            group("b-active", 1, 1, &topic),
        ];
        // b-active (3 series) and z-active (5) fit in 9; a-empty (3) does not.
        let omitted = keep_within_series_max(&mut groups, 9);
        let kept: Vec<&str> = groups.iter().map(|g| g.group.as_str()).collect();
        assert_eq!(kept, ["b-active", "z-active"]);
        assert_eq!(omitted, 1);
        assert_eq!(keep_within_series_max(&mut groups, 2), 2);
        assert!(groups.is_empty());
    }
}
