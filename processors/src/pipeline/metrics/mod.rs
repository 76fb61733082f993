//! Per-operator metrics of pipelines, in the broker's form: `prometheus-client`
//! registries passed explicitly (no process-wide recorder, so pipelines side by
//! side in one process keep their numbers apart unless they share a
//! [`PipelineMetrics`] on purpose), the OpenMetrics text when a scraper asks for
//! it and Prometheus' text 0.0.4 otherwise, served by `http`.
//!
//! Nothing is counted per record on a shared value: an operator adds to plain
//! fields as items pass, and the worker moves them into the counters once per
//! round ([`OperatorMeter::publish`]). State is measured at most once per
//! [`STATE_REFRESH`], since measuring walks the open windows.
//!
//! Labels stay bounded: `group` (the pipeline's consumer group) and `operator`
//! (a stage's name, chosen by the user or `<kind>-<position>`), and `topic` and
//! `partition` only for the input partitions this worker owns now (a partition
//! given up takes its series with it). No record key is ever a label.

mod http;
mod text_format;

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{
    EncodeLabel, EncodeLabelSet, EncodeLabelValue, LabelSetEncoder, LabelValueEncoder,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

pub use http::MetricsServer;

use super::PipelineError;

/// How often a worker measures its window state at most.
pub(crate) const STATE_REFRESH: Duration = Duration::from_secs(1);

/// A label value written with the exposition format's escapes: group names are
/// the user's and may hold quotes or newlines, and `prometheus-client` writes
/// label values as they are (the broker escapes its group labels alike).
struct Escaped<'a>(&'a str);

impl EncodeLabelValue for Escaped<'_> {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        use std::fmt::Write as _;
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

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct OperatorLabels {
    group: Arc<str>,
    operator: Arc<str>,
}

impl EncodeLabelSet for OperatorLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        ("group", Escaped(&self.group)).encode(encoder.encode_label())?;
        ("operator", Escaped(&self.operator)).encode(encoder.encode_label())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PartitionLabels {
    group: Arc<str>,
    topic: Arc<str>,
    partition: u32,
}

impl EncodeLabelSet for PartitionLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        ("group", Escaped(&self.group)).encode(encoder.encode_label())?;
        ("topic", Escaped(&self.topic)).encode(encoder.encode_label())?;
        ("partition", self.partition).encode(encoder.encode_label())
    }
}

/// From 1 ms, doubling, to 131 s: a partition with no open window restores in
/// one commit lookup; one replaying a long window's records takes as long as
/// reading them.
fn restore_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 18))
}

type RestoreFamily = Family<OperatorLabels, Histogram, fn() -> Histogram>;

/// The metrics of one or more pipelines: each [`super::Runnable`] has its own
/// unless given one to share ([`super::Runnable::with_metrics`]), so several
/// pipelines can be served on one endpoint. Clones share their values.
///
/// Series, per `group` (the pipeline's consumer group) and `operator`:
/// `weir_processor_records_in_total`, `weir_processor_records_out_total`, and
/// for window operators `weir_processor_late_records_total`,
/// `weir_processor_state_bytes` and `weir_processor_state_restore_duration_seconds`;
/// per owned input partition, `weir_processor_consumer_lag`.
#[derive(Debug, Clone)]
pub struct PipelineMetrics {
    records_in: Family<OperatorLabels, Counter>,
    records_out: Family<OperatorLabels, Counter>,
    late_records: Family<OperatorLabels, Counter>,
    state_bytes: Family<OperatorLabels, Gauge>,
    restore_seconds: RestoreFamily,
    consumer_lag: Family<PartitionLabels, Gauge>,
}

impl Default for PipelineMetrics {
    fn default() -> Self {
        PipelineMetrics {
            records_in: Family::default(),
            records_out: Family::default(),
            late_records: Family::default(),
            state_bytes: Family::default(),
            restore_seconds: Family::new_with_constructor(restore_histogram),
            consumer_lag: Family::default(),
        }
    }
}

impl PipelineMetrics {
    pub fn new() -> PipelineMetrics {
        PipelineMetrics::default()
    }

    /// Adds these metrics to a `prometheus-client` 0.24 registry, for a program
    /// that serves its own.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "weir_processor_records_in",
            "Items each operator took in (a source: the records it read), per pipeline group \
             and operator; records replayed to rebuild window state count again",
            self.records_in.clone(),
        );
        registry.register(
            "weir_processor_records_out",
            "Items each operator passed on (a to_topic sink: the records it handed to the \
             producer; a for_each sink passes none on), per pipeline group and operator",
            self.records_out.clone(),
        );
        registry.register(
            "weir_processor_late_records",
            "Records a window operator found late (every window of theirs had closed): counted \
             in no window, and written to the late topic if one is set",
            self.late_records.clone(),
        );
        registry.register(
            "weir_processor_state_bytes",
            "Estimated bytes of window state held by this process, per operator: each open \
             window's keys and accumulators, plus what the aggregator says its accumulators \
             hold on the heap (top-K sketches do)",
            self.state_bytes.clone(),
        );
        registry.register(
            "weir_processor_state_restore_duration_seconds",
            "Time from a partition's assignment until its window state was rebuilt (its \
             commit read and the records after it replayed), per operator",
            self.restore_seconds.clone(),
        );
        registry.register(
            "weir_processor_consumer_lag",
            "Records of an input partition this worker owns that it has not processed: the \
             high watermark its last fetch answered minus its position",
            self.consumer_lag.clone(),
        );
    }

    /// The exposition in Prometheus' text format 0.0.4, which several can be
    /// concatenated in (a program's own endpoint, say).
    pub fn encode(&self) -> String {
        text_format::to_prometheus_text(&self.encode_openmetrics())
    }

    /// The exposition in OpenMetrics 1.0 text, `# EOF` included.
    pub fn encode_openmetrics(&self) -> String {
        let mut registry = Registry::default();
        self.register(&mut registry);
        let mut body = String::new();
        prometheus_client::encoding::text::encode(&mut body, &registry)
            .expect("writing to a String cannot fail");
        body
    }

    /// Serves `/metrics` on `addr` (port 0 picks a free port) until the
    /// returned server is stopped or dropped.
    pub async fn serve(&self, addr: &str) -> Result<MetricsServer, PipelineError> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| PipelineError::MetricsListen {
                addr: addr.to_string(),
                source,
            })?;
        MetricsServer::start(listener, self.clone()).map_err(|source| {
            PipelineError::MetricsListen {
                addr: addr.to_string(),
                source,
            }
        })
    }

    /// One operator's series; created now, so they read 0 before anything passed.
    fn operator(&self, group: &Arc<str>, name: &str, stateful: bool) -> OperatorMetrics {
        let labels = OperatorLabels {
            group: Arc::clone(group),
            operator: Arc::from(name),
        };
        OperatorMetrics {
            records_in: self.records_in.get_or_create_owned(&labels),
            records_out: self.records_out.get_or_create_owned(&labels),
            window: stateful.then(|| WindowMetrics {
                late_records: self.late_records.get_or_create_owned(&labels),
                state_bytes: self.state_bytes.get_or_create_owned(&labels),
                state_bytes_reported: 0,
            }),
        }
    }

    /// Counts one rebuild of `operator`'s state of a partition.
    pub(crate) fn restored(&self, group: &Arc<str>, operator: &str, took: Duration) {
        let labels = OperatorLabels {
            group: Arc::clone(group),
            operator: Arc::from(operator),
        };
        self.restore_seconds
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// Creates the restore histogram's series of `operator` (count 0).
    fn restore_series(&self, group: &Arc<str>, operator: &str) {
        let labels = OperatorLabels {
            group: Arc::clone(group),
            operator: Arc::from(operator),
        };
        let _ = self.restore_seconds.get_or_create(&labels);
    }
}

/// Where an operator's counts go.
#[derive(Debug)]
struct OperatorMetrics {
    records_in: Counter,
    records_out: Counter,
    window: Option<WindowMetrics>,
}

#[derive(Debug)]
struct WindowMetrics {
    late_records: Counter,
    /// Workers of one group in one process share it: each adds what its state
    /// grew by since it last measured, and takes its share back when it stops.
    state_bytes: Gauge,
    state_bytes_reported: i64,
}

impl Drop for WindowMetrics {
    fn drop(&mut self) {
        self.state_bytes.dec_by(self.state_bytes_reported);
    }
}

/// An operator's name, and what it counted since the worker last published.
#[derive(Debug)]
pub(crate) struct OperatorMeter {
    pub name: String,
    pub records_in: u64,
    pub records_out: u64,
    pub records_late: u64,
    published: Option<OperatorMetrics>,
}

impl OperatorMeter {
    pub fn new(name: String) -> OperatorMeter {
        OperatorMeter {
            name,
            records_in: 0,
            records_out: 0,
            records_late: 0,
            published: None,
        }
    }

    /// Counts into `metrics` from now on; a window operator (`stateful`) has
    /// late records, state bytes and restore times too.
    pub fn bind(&mut self, metrics: &PipelineMetrics, group: &Arc<str>, stateful: bool) {
        self.published = Some(metrics.operator(group, &self.name, stateful));
        if stateful {
            metrics.restore_series(group, &self.name);
        }
    }

    /// Adds the counts to the counters; `state_bytes` is the state measured now.
    pub fn publish(&mut self, state_bytes: Option<usize>) {
        let Some(published) = &mut self.published else {
            return;
        };
        published
            .records_in
            .inc_by(std::mem::take(&mut self.records_in));
        published
            .records_out
            .inc_by(std::mem::take(&mut self.records_out));
        let records_late = std::mem::take(&mut self.records_late);
        let Some(window) = &mut published.window else {
            debug_assert_eq!(records_late, 0, "only window operators find records late");
            return;
        };
        window.late_records.inc_by(records_late);
        if let Some(bytes) = state_bytes {
            let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
            window
                .state_bytes
                .inc_by(bytes - window.state_bytes_reported);
            window.state_bytes_reported = bytes;
        }
    }
}

/// The lag series of the partitions one worker owns; dropped with the worker.
#[derive(Debug)]
pub(crate) struct LagGauges {
    metrics: PipelineMetrics,
    group: Arc<str>,
    series: Vec<PartitionLabels>,
}

impl LagGauges {
    pub fn new(metrics: PipelineMetrics, group: Arc<str>) -> LagGauges {
        LagGauges {
            metrics,
            group,
            series: Vec::new(),
        }
    }

    /// Sets each partition's lag; partitions no longer listed (given up) lose
    /// their series.
    pub fn update(&mut self, lags: &[(String, u32, u64)]) {
        let mut current = Vec::with_capacity(lags.len());
        for (topic, partition, lag) in lags {
            // The labels of a partition already owned are reused, not built again.
            let labels = match self
                .series
                .iter()
                .position(|s| s.partition == *partition && &*s.topic == topic)
            {
                Some(index) => self.series.swap_remove(index),
                None => PartitionLabels {
                    group: Arc::clone(&self.group),
                    topic: Arc::from(topic.as_str()),
                    partition: *partition,
                },
            };
            self.metrics
                .consumer_lag
                .get_or_create(&labels)
                .set(i64::try_from(*lag).unwrap_or(i64::MAX));
            current.push(labels);
        }
        // What is left was given up.
        for gone in self.series.drain(..) {
            self.metrics.consumer_lag.remove(&gone);
        }
        self.series = current;
    }
}

impl Drop for LagGauges {
    fn drop(&mut self) {
        for series in &self.series {
            self.metrics.consumer_lag.remove(series);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(exposition: &str, series: &str) -> Option<i64> {
        exposition
            .lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn counts_reach_the_counters_when_published_and_state_goes_with_its_worker() {
        let metrics = PipelineMetrics::new();
        let group: Arc<str> = Arc::from("g");
        let series = "weir_processor_state_bytes{group=\"g\",operator=\"w\"}";
        let mut first = OperatorMeter::new("w".to_string());
        let mut second = OperatorMeter::new("w".to_string());
        first.bind(&metrics, &group, true);
        second.bind(&metrics, &group, true);
        first.records_in += 3;
        first.records_late += 1;
        let text = metrics.encode();
        assert_eq!(
            sample(
                &text,
                "weir_processor_records_in_total{group=\"g\",operator=\"w\"}"
            ),
            Some(0),
            "nothing counted before a publish"
        );
        first.publish(Some(100));
        second.publish(Some(40));
        first.publish(Some(70));
        let text = metrics.encode();
        assert_eq!(
            sample(
                &text,
                "weir_processor_records_in_total{group=\"g\",operator=\"w\"}"
            ),
            Some(3)
        );
        assert_eq!(
            sample(
                &text,
                "weir_processor_late_records_total{group=\"g\",operator=\"w\"}"
            ),
            Some(1)
        );
        assert_eq!(
            sample(&text, series),
            Some(110),
            "two workers' state adds up"
        );
        drop(first);
        assert_eq!(sample(&metrics.encode(), series), Some(40));
        drop(second);
        assert_eq!(sample(&metrics.encode(), series), Some(0));
    }

    #[test]
    fn a_group_name_is_escaped_in_its_label() {
        let metrics = PipelineMetrics::new();
        let group: Arc<str> = Arc::from("a\"b\\c\nd");
        let mut meter = OperatorMeter::new("map-1".to_string());
        meter.bind(&metrics, &group, false);
        let text = metrics.encode();
        assert!(
            text.contains(
                "weir_processor_records_in_total{group=\"a\\\"b\\\\c\\nd\",operator=\"map-1\"} 0"
            ),
            "{text}"
        );
    }

    #[test]
    fn lag_series_follow_the_partitions_owned() {
        let metrics = PipelineMetrics::new();
        let mut lags = LagGauges::new(metrics.clone(), Arc::from("g"));
        lags.update(&[("t".to_string(), 0, 5), ("t".to_string(), 1, 7)]);
        lags.update(&[("t".to_string(), 1, 2)]);
        let text = metrics.encode();
        let lag = |p: u32| {
            sample(
                &text,
                &format!(
                    "weir_processor_consumer_lag{{group=\"g\",topic=\"t\",partition=\"{p}\"}}"
                ),
            )
        };
        assert_eq!(
            (lag(0), lag(1)),
            (None, Some(2)),
            "partition 0 was given up"
        );
        drop(lags);
        assert!(!metrics.encode().contains("weir_processor_consumer_lag{"));
    }
}
