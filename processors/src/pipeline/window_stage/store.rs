//! The window state a stage keeps per partition: time windows or sessions, behind
//! one trait the stage works with.

use std::hash::Hash;

use crate::window::{
    AddOutcome, Aggregator, KeyCodec, SessionAggregate, Snapshot, SnapshotError, WindowResult,
    WindowedAggregate,
};

/// Time windows and sessions, as the stage uses them.
pub(in crate::pipeline) trait Store<K, V>: Send {
    type Acc;
    fn add_from(
        &mut self,
        key: K,
        timestamp_ms: i64,
        value: V,
        offset: u64,
    ) -> AddOutcome<K, Self::Acc>;
    fn advance(&mut self, watermark_ms: i64) -> Vec<WindowResult<K, Self::Acc>>;
    fn oldest_offset(&self) -> Option<u64>;
    fn state_bytes(&self) -> usize;
    fn open_results(&self) -> Vec<WindowResult<K, Self::Acc>>;
    fn encode_state(&self, keys: &KeyCodec<K>, out: &mut Vec<u8>) -> Result<(), SnapshotError>;
    fn restore_state(&mut self, keys: &KeyCodec<K>, bytes: &[u8]) -> Result<(), SnapshotError>;
}

impl<K, V, G> Store<K, V> for WindowedAggregate<K, V, G>
where
    K: Hash + Ord + Clone + Send,
    G: Aggregator<V> + Send,
    G::Acc: Send,
{
    type Acc = G::Acc;
    fn add_from(
        &mut self,
        key: K,
        timestamp_ms: i64,
        value: V,
        offset: u64,
    ) -> AddOutcome<K, G::Acc> {
        WindowedAggregate::add_from(self, key, timestamp_ms, value, offset)
    }
    fn advance(&mut self, watermark_ms: i64) -> Vec<WindowResult<K, G::Acc>> {
        WindowedAggregate::advance(self, watermark_ms)
    }
    fn oldest_offset(&self) -> Option<u64> {
        WindowedAggregate::oldest_offset(self)
    }
    fn state_bytes(&self) -> usize {
        WindowedAggregate::state_bytes(self)
    }
    fn open_results(&self) -> Vec<WindowResult<K, G::Acc>> {
        WindowedAggregate::open_results(self)
    }
    fn encode_state(&self, keys: &KeyCodec<K>, out: &mut Vec<u8>) -> Result<(), SnapshotError> {
        Snapshot::encode_state(self, keys, out)
    }
    fn restore_state(&mut self, keys: &KeyCodec<K>, bytes: &[u8]) -> Result<(), SnapshotError> {
        Snapshot::restore_state(self, keys, bytes)
    }
}

impl<K, V, G> Store<K, V> for SessionAggregate<K, V, G>
where
    K: Hash + Ord + Clone + Send,
    G: Aggregator<V> + Send,
    G::Acc: Send,
{
    type Acc = G::Acc;
    fn add_from(
        &mut self,
        key: K,
        timestamp_ms: i64,
        value: V,
        offset: u64,
    ) -> AddOutcome<K, G::Acc> {
        SessionAggregate::add_from(self, key, timestamp_ms, value, offset)
    }
    fn advance(&mut self, watermark_ms: i64) -> Vec<WindowResult<K, G::Acc>> {
        SessionAggregate::advance(self, watermark_ms)
    }
    fn oldest_offset(&self) -> Option<u64> {
        SessionAggregate::oldest_offset(self)
    }
    fn state_bytes(&self) -> usize {
        SessionAggregate::state_bytes(self)
    }
    fn open_results(&self) -> Vec<WindowResult<K, G::Acc>> {
        SessionAggregate::open_results(self)
    }
    fn encode_state(&self, keys: &KeyCodec<K>, out: &mut Vec<u8>) -> Result<(), SnapshotError> {
        Snapshot::encode_state(self, keys, out)
    }
    fn restore_state(&mut self, keys: &KeyCodec<K>, bytes: &[u8]) -> Result<(), SnapshotError> {
        Snapshot::restore_state(self, keys, bytes)
    }
}
