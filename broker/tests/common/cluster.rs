//! Three brokers in one process, each on its own loopback port and data
//! directory, forming a cluster over their gRPC listeners.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use weir_broker::cluster::{ClusterMetadata, NodeId, PartitionAssignment};
use weir_broker::{BrokerConfig, Partition, RunningBroker};

pub const WAIT: Duration = Duration::from_secs(30);

pub struct Cluster {
    pub peers: String,
    pub ports: BTreeMap<NodeId, u16>,
    pub dirs: BTreeMap<NodeId, tempfile::TempDir>,
    pub brokers: BTreeMap<NodeId, RunningBroker>,
    /// Applied to every broker's config before it starts.
    pub configure: fn(&mut BrokerConfig),
}

impl Cluster {
    pub async fn start() -> Cluster {
        Cluster::start_with(|_| {}).await
    }

    pub async fn start_with(configure: fn(&mut BrokerConfig)) -> Cluster {
        // Ports are picked first because every broker must know every
        // other's address before any of them starts.
        let held: Vec<TcpListener> = (0..3)
            .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let ports: BTreeMap<NodeId, u16> = held
            .iter()
            .enumerate()
            .map(|(i, l)| (i as NodeId + 1, l.local_addr().unwrap().port()))
            .collect();
        drop(held);
        let peers = ports
            .iter()
            .map(|(id, port)| format!("{id}=127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Cluster {
            peers,
            ports,
            dirs: (1..=3)
                .map(|id| (id, tempfile::tempdir().unwrap()))
                .collect(),
            brokers: BTreeMap::new(),
            configure,
        };
        for id in 1..=3 {
            cluster.start_broker(id).await;
        }
        cluster
    }

    pub fn addr(&self, id: NodeId) -> String {
        format!("127.0.0.1:{}", self.ports[&id])
    }

    pub async fn start_broker(&mut self, id: NodeId) {
        let mut config = BrokerConfig {
            node_id: id as i32,
            data_dir: self.dirs[&id].path().to_path_buf(),
            listen: self.addr(id).parse().unwrap(),
            peers: Some(self.peers.clone()),
            ..BrokerConfig::default()
        };
        (self.configure)(&mut config);
        let running = RunningBroker::start(config).await.unwrap();
        self.brokers.insert(id, running);
    }

    pub async fn stop_broker(&mut self, id: NodeId) {
        let running = self.brokers.remove(&id).unwrap();
        running.shutdown().await.unwrap();
    }

    pub fn metadata(&self, id: NodeId) -> ClusterMetadata {
        let quorum = self.brokers[&id].quorum().unwrap();
        let metadata = quorum.metadata();
        let current = metadata.borrow().as_ref().clone();
        current
    }

    /// Waits until every running broker's metadata satisfies `check`.
    pub async fn wait_all(&self, what: &str, check: impl Fn(&ClusterMetadata) -> bool) {
        self.wait_for(what, || {
            self.brokers.keys().all(|id| check(&self.metadata(*id)))
        })
        .await;
    }

    /// Polls `check` until it holds, for up to [`WAIT`].
    pub async fn wait_for(&self, what: &str, check: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !check() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls the async `check` until it holds, for up to [`WAIT`].
    pub async fn wait_for_async<F, Fut>(&self, what: &str, check: F)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !check().await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The controller every running broker agrees on.
    pub async fn controller(&self) -> NodeId {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let seen: Vec<Option<NodeId>> = self
                .brokers
                .values()
                .map(|b| b.quorum().unwrap().view().borrow().status.leader_id)
                .collect();
            if let Some(Some(leader)) = seen.first() {
                if seen.iter().all(|s| *s == Some(*leader)) && self.brokers.contains_key(leader) {
                    return *leader;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no agreed controller: {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A partition's assignment as broker `id` applied it.
    pub fn assignment(
        &self,
        id: NodeId,
        topic: &str,
        partition: u32,
    ) -> Option<PartitionAssignment> {
        self.metadata(id)
            .topics
            .get(topic)
            .and_then(|t| t.partitions.get(partition as usize).cloned())
    }

    /// Broker `id`'s replica of a partition.
    pub fn replica(&self, id: NodeId, topic: &str, partition: u32) -> Arc<Partition> {
        let topic = self.brokers[&id].broker().topic(topic).unwrap();
        Arc::clone(topic.partition(partition).unwrap())
    }

    /// The bytes of every `.log` file of broker `id`'s replica, in order.
    pub fn log_bytes(&self, id: NodeId, topic: &str, partition: u32) -> Vec<u8> {
        let dir = weir_broker::partition_dir(self.dirs[&id].path(), topic, partition);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        files.sort();
        files
            .iter()
            .flat_map(|f| std::fs::read(f).unwrap())
            .collect()
    }
}

impl Cluster {
    /// The `/metrics` exposition of broker `id` (started with a metrics listener).
    pub async fn scrape(&self, id: NodeId) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = self.brokers[&id]
            .metrics_addr()
            .expect("a metrics listener");
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: weir\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        tokio::time::timeout(WAIT, stream.read_to_string(&mut response))
            .await
            .expect("a scrape within the test's bound")
            .unwrap();
        response.split_once("\r\n\r\n").unwrap().1.to_string()
    }
}

/// The value of the sample `name{labels}` in an exposition, 0 when absent.
pub fn sample(exposition: &str, name: &str, labels: &str) -> f64 {
    let prefix = if labels.is_empty() {
        format!("{name} ")
    } else {
        format!("{name}{{{labels}}} ")
    };
    exposition
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map_or(0.0, |value| value.trim().parse().unwrap())
}
