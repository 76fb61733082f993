//! The broker's Prometheus metrics and the small HTTP server that serves them
//! with `/healthz` and `/readyz` (`metrics_listen`).
//!
//! One file per job: `grpc` times every gRPC request, `topic` keeps the per-topic traffic counters (atomics in
//! an `Arc` next to the topic, so produce and fetch count without a lookup or
//! an allocation), `requests` the request counters and latency histograms,
//! `scrape` computes at scrape time what the broker already knows (partition
//! offsets and sizes, the memory pool, consumer-group lag), and `http` serves
//! it. `fsync` keeps the logs' fsync latency, which `weir-log` reports to a
//! process-wide observer. Nothing is counted per record: a produce adds its batch bytes and
//! record count once per partition, a fetch walks its batch headers.
//!
//! The crate is `prometheus-client`, the Prometheus project's own: it writes
//! the OpenMetrics text format, its registries are values passed explicitly
//! (no process-wide recorder, so brokers started side by side in one test
//! process never mix their numbers), and its `Collector` lets values be read
//! from the partitions at scrape time instead of being mirrored on the hot
//! path. The `metrics` facade with its Prometheus exporter was the other
//! choice: it needs a global recorder and builds owned label sets per update.
//!
//! Labels stay bounded: `topic` and `partition` only for partitions this
//! broker hosts (a deleted topic's series go with it), `listener` and `api`
//! from fixed sets, `error` from the error codes the broker answers, `group`
//! from the groups its coordinator holds. No record key or client id is ever
//! a label.

mod fsync;
mod grpc;
mod http;
mod requests;
mod scrape;
mod text_format;
mod topic;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

pub(crate) use fsync::observe_fsyncs;
pub(crate) use grpc::GrpcMetricsLayer;
pub use http::MetricsServer;
pub(crate) use requests::RequestMetrics;
pub(crate) use requests::{grpc_error_name, grpc_status_name, kafka_error_name};
pub(crate) use topic::{appended_records, TopicMetrics};

/// Which listener a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Listener {
    Grpc,
    Kafka,
}

impl Listener {
    pub const ALL: [Listener; 2] = [Listener::Grpc, Listener::Kafka];

    pub fn as_str(self) -> &'static str {
        match self {
            Listener::Grpc => "grpc",
            Listener::Kafka => "kafka",
        }
    }

    fn index(self) -> usize {
        match self {
            Listener::Grpc => 0,
            Listener::Kafka => 1,
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: &'static str,
}

/// The metrics the broker updates as it serves; the rest are read at scrape
/// time (see `scrape`). Cloned handles share their values.
#[derive(Debug)]
pub struct BrokerMetrics {
    pub(crate) requests: RequestMetrics,
    /// ISR changes this broker's leaders had committed, and leader changes
    /// this broker made as the controller.
    pub(crate) isr_shrinks: Counter,
    pub(crate) isr_expands: Counter,
    pub(crate) leader_elections: Counter,
    pub(crate) unclean_leader_elections: Counter,
    connections: Family<ListenerLabels, Gauge>,
    connection_gauges: [Gauge; 2],
    refused: Family<ListenerLabels, Counter>,
}

impl Default for BrokerMetrics {
    fn default() -> Self {
        let connections = Family::<ListenerLabels, Gauge>::default();
        let connection_gauges = Listener::ALL.map(|listener| {
            connections
                .get_or_create(&ListenerLabels {
                    listener: listener.as_str(),
                })
                .clone()
        });
        BrokerMetrics {
            requests: RequestMetrics::default(),
            isr_shrinks: Counter::default(),
            isr_expands: Counter::default(),
            leader_elections: Counter::default(),
            unclean_leader_elections: Counter::default(),
            connections,
            connection_gauges,
            refused: Family::default(),
        }
    }
}

impl BrokerMetrics {
    /// What a listener counts its open connections with.
    pub(crate) fn connections(&self, listener: Listener) -> ConnectionCounter {
        let labels = ListenerLabels {
            listener: listener.as_str(),
        };
        ConnectionCounter {
            gauge: self.connection_gauges[listener.index()].clone(),
            refused: self.refused.get_or_create(&labels).clone(),
        }
    }

    /// Open connections on `listener` now.
    pub fn open_connections(&self, listener: Listener) -> i64 {
        self.connection_gauges[listener.index()].get()
    }

    fn register(&self, registry: &mut Registry) {
        registry.register(
            "weir_open_connections",
            "Client connections open now, per listener",
            self.connections.clone(),
        );
        registry.register(
            "weir_connections_refused",
            "Client connections closed at once for want of a slot (connections_max, \
             connections_max_per_ip), per listener; the log warns of them at most every 10 s",
            self.refused.clone(),
        );
        registry.register(
            "weir_isr_shrinks",
            "ISR shrinks committed for partitions this broker leads (a follower fell behind for \
             replica.lag.time.max.ms)",
            self.isr_shrinks.clone(),
        );
        registry.register(
            "weir_isr_expands",
            "ISR expansions committed for partitions this broker leads (a follower caught up)",
            self.isr_expands.clone(),
        );
        registry.register(
            "weir_leader_elections",
            "Partition leader changes this broker made as the controller (a dead leader replaced, \
             the preferred replica restored, a partition left without a live in-sync replica)",
            self.leader_elections.clone(),
        );
        registry.register(
            "weir_unclean_leader_elections",
            "Leaders this broker elected as the controller from outside the ISR, for topics with \
             unclean.leader.election.enable (records only the old ISR held are lost)",
            self.unclean_leader_elections.clone(),
        );
        self.requests.register(registry);
    }
}

/// Counts one listener's open and refused connections.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionCounter {
    gauge: Gauge,
    refused: Counter,
}

impl ConnectionCounter {
    /// Counts a connection open until the guard is dropped.
    pub(crate) fn open(&self) -> OpenConnection {
        self.gauge.inc();
        OpenConnection {
            gauge: self.gauge.clone(),
        }
    }

    /// Counts a connection refused for want of a slot.
    pub(crate) fn refused(&self) {
        self.refused.inc();
    }
}

/// One open connection, counted until dropped.
#[derive(Debug)]
pub(crate) struct OpenConnection {
    gauge: Gauge,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}
