//! The cluster: brokers that agree on metadata (which brokers exist, which
//! topics, where each partition's replicas live, who leads it and at which
//! epoch, who is in sync) through a Raft log, as Kafka's KRaft controllers do.
//!
//! Every broker of the cluster is a voter; the Raft leader is the controller.
//! A broker with no `--peers` is a one-voter cluster that elects itself at
//! once. The Raft core is TiKV's raft-rs (a sans-IO state machine with
//! pre-vote and check-quorum): this module brings its log file
//! (`raft_file.rs`, fsynced before anything that depends on it is sent), the
//! thread that owns it (`quorum.rs`), its transport over the brokers' gRPC
//! listeners (`transport.rs`) and the state machine it drives
//! (`metadata.rs`).
//!
//! Does not own: the partitions' data or their replication (the fetch-based
//! follower lives with the partitions), nor the topic registry of a broker
//! that is not in a cluster.

mod metadata;
mod node;
mod quorum;
mod raft_file;
mod snapshot;
#[cfg(test)]
mod snapshot_tests;
mod storage;
mod transport;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use metadata::{
    place_replicas, BrokerRecord, ClusterMetadata, MetadataCommand, MetadataRefusal, NodeId,
    PartitionAssignment, TopicMetadata,
};
pub use node::{
    Applied, ProposalId, QuorumNode, QuorumStatus, ReadyOutput, SNAPSHOT_ENTRIES_DEFAULT, TICK_MS,
};
pub(crate) use quorum::ALIVE_WITHIN;
pub use quorum::{MetadataQuorum, QuorumHandle, QuorumView};
/// A Raft message between quorum members (raft-rs `eraftpb.Message`).
pub use raft::eraftpb::Message as RaftMessage;
pub use transport::QuorumService;

/// The directory under the data directory that holds the metadata log. Its
/// name has no `-<partition>` suffix, so it never reads as a partition.
pub const METADATA_DIR: &str = "cluster";

pub fn metadata_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(METADATA_DIR)
}

/// Node ids run from 1 to `NODE_IDS - 1` (producer ids are striped by them).
pub const NODE_IDS: u64 = 1024;

/// Who this broker is and who the voters are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    pub node_id: NodeId,
    /// Every voter's gRPC address by node id, this broker's included.
    pub peers: BTreeMap<NodeId, String>,
    /// Entries applied between two snapshots of the metadata.
    pub snapshot_entries: u64,
}

impl ClusterConfig {
    /// A one-broker cluster.
    pub fn single(node_id: NodeId, address: String) -> ClusterConfig {
        ClusterConfig {
            node_id,
            peers: BTreeMap::from([(node_id, address)]),
            snapshot_entries: SNAPSHOT_ENTRIES_DEFAULT,
        }
    }

    /// Parses `--peers 1=HOST:PORT,2=HOST:PORT,...` for broker `node_id`,
    /// which must be among them.
    pub fn parse(node_id: NodeId, peers: &str) -> Result<ClusterConfig, ClusterError> {
        let invalid = |reason: String| ClusterError::InvalidPeers {
            peers: peers.to_owned(),
            reason,
        };
        if node_id == 0 || node_id >= NODE_IDS {
            return Err(invalid(format!("node ids run from 1 to {}", NODE_IDS - 1)));
        }
        let mut map = BTreeMap::new();
        for item in peers.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (id, address) = item
                .split_once('=')
                .ok_or_else(|| invalid(format!("{item:?} is not ID=HOST:PORT")))?;
            let id: NodeId = id
                .trim()
                .parse()
                .ok()
                .filter(|&id| id > 0 && id < NODE_IDS)
                .ok_or_else(|| {
                    invalid(format!("{id:?} is not a node id (1 to {})", NODE_IDS - 1))
                })?;
            let address = address.trim();
            if address
                .rsplit_once(':')
                .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
            {
                return Err(invalid(format!("{address:?} is not HOST:PORT")));
            }
            if map.insert(id, address.to_owned()).is_some() {
                return Err(invalid(format!("node {id} appears twice")));
            }
        }
        if !map.contains_key(&node_id) {
            return Err(invalid(format!(
                "this broker's node id {node_id} is not among them"
            )));
        }
        Ok(ClusterConfig {
            node_id,
            peers: map,
            snapshot_entries: SNAPSHOT_ENTRIES_DEFAULT,
        })
    }

    pub fn voters(&self) -> Vec<NodeId> {
        self.peers.keys().copied().collect()
    }

    pub fn is_single(&self) -> bool {
        self.peers.len() == 1
    }
}

/// What can go wrong in the cluster layer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot {op} {}: {message}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("the metadata log {} is damaged at byte {position}", path.display())]
    Corrupt { path: PathBuf, position: u64 },
    #[error("a metadata entry of {bytes} bytes is larger than the log takes")]
    EntryTooLarge { bytes: usize },
    #[error("a metadata snapshot of {bytes} bytes is larger than this broker writes")]
    SnapshotTooLarge { bytes: usize },
    /// The log before the snapshot may be gone, so the broker does not start
    /// from an empty or older state instead.
    #[error(
        "the metadata snapshot {} cannot be used: {reason}; the metadata log was compacted up to it, so this broker does not start without it",
        path.display()
    )]
    CorruptSnapshot { path: PathBuf, reason: String },
    #[error(
        "the metadata log was compacted through entry {compacted}, but the snapshot {} {}; this broker does not start without it",
        path.display(),
        match found {
            0 => "is missing".to_owned(),
            found => format!("only reaches entry {found}"),
        }
    )]
    SnapshotMissing {
        path: PathBuf,
        compacted: u64,
        found: u64,
    },
    #[error("cannot encode a Raft message: {0}")]
    Encode(String),
    #[error("Raft: {0}")]
    Raft(String),
    #[error("{}", match controller {
        Some(id) => format!("the controller is broker {id}, and the proposal could not reach it"),
        None => "no controller is elected yet".to_owned(),
    })]
    NotController { controller: Option<NodeId> },
    #[error("the metadata change was not applied within {timeout_ms} ms; it may still apply")]
    ProposalTimedOut { timeout_ms: u64 },
    #[error("refused: {0}")]
    Refused(#[from] MetadataRefusal),
    #[error("the quorum's queue is full")]
    Busy,
    #[error("this broker's quorum member has stopped")]
    Stopped,
    #[error("invalid --peers {peers:?}: {reason}")]
    InvalidPeers { peers: String, reason: String },
}

impl ClusterError {
    pub(crate) fn io(op: &'static str, path: &Path, e: std::io::Error) -> ClusterError {
        ClusterError::Io {
            op,
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    }
}

impl From<protobuf::ProtobufError> for ClusterError {
    fn from(e: protobuf::ProtobufError) -> ClusterError {
        ClusterError::Encode(e.to_string())
    }
}

/// raft-rs logs through slog; its lines go to `tracing` with the node id.
pub(crate) fn raft_logger(node_id: NodeId) -> slog::Logger {
    slog::Logger::root(TracingDrain { node_id }, slog::o!())
}

struct TracingDrain {
    node_id: NodeId,
}

impl slog::Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &slog::Record, _: &slog::OwnedKVList) -> Result<(), slog::Never> {
        let node_id = self.node_id;
        let message = record.msg();
        match record.level() {
            slog::Level::Critical | slog::Level::Error => {
                tracing::error!(target: "weir::raft", node_id, "{message}")
            }
            slog::Level::Warning => tracing::warn!(target: "weir::raft", node_id, "{message}"),
            slog::Level::Info => tracing::info!(target: "weir::raft", node_id, "{message}"),
            slog::Level::Debug => tracing::debug!(target: "weir::raft", node_id, "{message}"),
            slog::Level::Trace => tracing::trace!(target: "weir::raft", node_id, "{message}"),
        }
        Ok(())
    }
}
