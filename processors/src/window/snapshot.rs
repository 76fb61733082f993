//! A window store's state as bytes, for a changelog: every pane (or session) with its
//! keys' accumulators, the watermark, and the window's shape, so that a state saved
//! by one worker is restored by another exactly as it was.
//!
//! Layout (little-endian): magic `WST1`, kind (0 time windows, 1 sessions), the
//! shape (size and step, or gap), the watermark, the late records counted, then
//! per pane its start, its first offset (`u64::MAX` for none) and its entries
//! (key bytes, accumulator bytes), or per key its sessions (start, last record,
//! first offset, accumulator). Lengths are `u32`. Every read is bounds-checked: a
//! snapshot cut short or of another shape is refused with a sentence, never
//! half-restored.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

use super::aggregate::{Aggregator, Pane, WindowedAggregate};
use super::session::{Session, SessionAggregate};

const MAGIC: &[u8; 4] = b"WST1";
const KIND_WINDOWS: u8 = 0;
const KIND_SESSIONS: u8 = 1;
const NO_OFFSET: u64 = u64::MAX;

/// Appends a key's bytes, or says why it cannot.
pub type EncodeKey<K> = Box<dyn Fn(&K, &mut Vec<u8>) -> Result<(), String> + Send + Sync>;
/// Reads a key back, or says why it cannot.
pub type DecodeKey<K> = Box<dyn Fn(&[u8]) -> Result<K, String> + Send + Sync>;

/// How a stage's keys become bytes and back (the accumulators' own encoding is the
/// aggregator's: [`Aggregator::encode_acc`]).
pub struct KeyCodec<K> {
    pub encode: EncodeKey<K>,
    pub decode: DecodeKey<K>,
}

impl<K> std::fmt::Debug for KeyCodec<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCodec").finish_non_exhaustive()
    }
}

/// A snapshot that cannot be restored, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("window state snapshot: {0}")]
pub struct SnapshotError(pub String);

/// Writes a value's bytes after a length that is filled in once they are written.
fn put_with(
    out: &mut Vec<u8>,
    write: impl FnOnce(&mut Vec<u8>) -> Result<(), String>,
) -> Result<(), SnapshotError> {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    write(out).map_err(SnapshotError)?;
    let len = u32::try_from(out.len() - at - 4)
        .map_err(|_| SnapshotError("a key or accumulator of 4 GiB or more".to_string()))?;
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
    Ok(())
}

/// An accumulator's bytes, or why it has none.
fn put_acc<V, G: Aggregator<V>>(
    out: &mut Vec<u8>,
    aggregator: &G,
    acc: &G::Acc,
) -> Result<(), SnapshotError> {
    put_with(out, |out| {
        if aggregator.encode_acc(acc, out) {
            Ok(())
        } else {
            Err("the accumulator has no encoding".to_string())
        }
    })
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SnapshotError> {
        if self.bytes.len() < n {
            return Err(SnapshotError(format!(
                "cut short: {n} bytes wanted, {} left",
                self.bytes.len()
            )));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, SnapshotError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, SnapshotError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn u64(&mut self) -> Result<u64, SnapshotError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn i64(&mut self) -> Result<i64, SnapshotError> {
        Ok(i64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn bytes(&mut self) -> Result<&'a [u8], SnapshotError> {
        let len = self.u32()? as usize;
        self.take(len)
    }
    /// A count of items each at least `min_item_bytes` long, checked against what is
    /// left so a corrupt count cannot make a huge allocation.
    fn count(&mut self, min_item_bytes: usize) -> Result<usize, SnapshotError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_item_bytes) > self.bytes.len() {
            return Err(SnapshotError(format!(
                "{n} entries cannot fit in the {} bytes left",
                self.bytes.len()
            )));
        }
        Ok(n)
    }
    fn end(&self) -> Result<(), SnapshotError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(SnapshotError(format!(
                "{} bytes after the end",
                self.bytes.len()
            )))
        }
    }
}

fn offset_of(first_offset: Option<u64>) -> u64 {
    first_offset.unwrap_or(NO_OFFSET)
}

fn offset_from(raw: u64) -> Option<u64> {
    (raw != NO_OFFSET).then_some(raw)
}

/// Reads the header both kinds share; checks the kind and shape.
fn header(
    reader: &mut Reader<'_>,
    kind: u8,
    shape: (i64, i64),
) -> Result<(i64, u64), SnapshotError> {
    if reader.take(4)? != MAGIC {
        return Err(SnapshotError("not a window state snapshot".to_string()));
    }
    let found = reader.u8()?;
    if found != kind {
        let name = |k| {
            if k == KIND_SESSIONS {
                "session"
            } else {
                "time"
            }
        };
        return Err(SnapshotError(format!(
            "saved by a {} window stage, restored into a {} window stage",
            name(found),
            name(kind)
        )));
    }
    let saved = (reader.i64()?, reader.i64()?);
    if saved != shape {
        return Err(SnapshotError(format!(
            "saved with a window of {} ms every {} ms, restored into one of {} ms every {} ms \
             (rename the stage to start its state afresh)",
            saved.0, saved.1, shape.0, shape.1
        )));
    }
    Ok((reader.i64()?, reader.u64()?))
}

fn put_header(out: &mut Vec<u8>, kind: u8, shape: (i64, i64), watermark_ms: i64, late: u64) {
    out.extend_from_slice(MAGIC);
    out.push(kind);
    out.extend_from_slice(&shape.0.to_le_bytes());
    out.extend_from_slice(&shape.1.to_le_bytes());
    out.extend_from_slice(&watermark_ms.to_le_bytes());
    out.extend_from_slice(&late.to_le_bytes());
}

/// A store whose state can be saved and restored.
pub trait Snapshot<K> {
    /// Appends the whole state, or says why a key or an accumulator cannot be written.
    fn encode_state(&self, keys: &KeyCodec<K>, out: &mut Vec<u8>) -> Result<(), SnapshotError>;
    /// Replaces the state (which must be empty) with a saved one.
    fn restore_state(&mut self, keys: &KeyCodec<K>, bytes: &[u8]) -> Result<(), SnapshotError>;
}

impl<K, V, G> Snapshot<K> for WindowedAggregate<K, V, G>
where
    K: Hash + Ord + Clone,
    G: Aggregator<V>,
{
    fn encode_state(&self, keys: &KeyCodec<K>, out: &mut Vec<u8>) -> Result<(), SnapshotError> {
        let shape = (self.size_ms, self.step_ms);
        put_header(
            out,
            KIND_WINDOWS,
            shape,
            self.watermark_ms,
            self.late_records,
        );
        out.extend_from_slice(&(self.panes.len() as u32).to_le_bytes());
        for (start, pane) in &self.panes {
            out.extend_from_slice(&start.to_le_bytes());
            out.extend_from_slice(&offset_of(pane.first_offset).to_le_bytes());
            out.extend_from_slice(&(pane.accs.len() as u32).to_le_bytes());
            for (key, acc) in &pane.accs {
                put_with(out, |out| (keys.encode)(key, out))?;
                put_acc(out, &self.aggregator, acc)?;
            }
        }
        Ok(())
    }

    fn restore_state(&mut self, keys: &KeyCodec<K>, bytes: &[u8]) -> Result<(), SnapshotError> {
        debug_assert!(self.panes.is_empty(), "restored into an empty state");
        let mut reader = Reader { bytes };
        let shape = (self.size_ms, self.step_ms);
        let (watermark_ms, late_records) = header(&mut reader, KIND_WINDOWS, shape)?;
        let mut panes = BTreeMap::new();
        // A pane is at least its start, offset and entry count.
        for _ in 0..reader.count(20)? {
            let start = reader.i64()?;
            let first_offset = offset_from(reader.u64()?);
            let n = reader.count(8)?;
            let mut accs = HashMap::with_capacity(n);
            for _ in 0..n {
                let key = (keys.decode)(reader.bytes()?).map_err(SnapshotError)?;
                let acc = self
                    .aggregator
                    .decode_acc(reader.bytes()?)
                    .map_err(SnapshotError)?;
                accs.insert(key, acc);
            }
            panes.insert(start, Pane { accs, first_offset });
        }
        reader.end()?;
        self.panes = panes;
        self.watermark_ms = watermark_ms;
        self.late_records = late_records;
        Ok(())
    }
}

impl<K, V, G> Snapshot<K> for SessionAggregate<K, V, G>
where
    K: Hash + Ord + Clone,
    G: Aggregator<V>,
{
    fn encode_state(&self, keys: &KeyCodec<K>, out: &mut Vec<u8>) -> Result<(), SnapshotError> {
        let shape = (self.gap_ms, 0);
        put_header(
            out,
            KIND_SESSIONS,
            shape,
            self.watermark_ms,
            self.late_records,
        );
        out.extend_from_slice(&self.next_close_ms.to_le_bytes());
        out.extend_from_slice(&(self.sessions.len() as u32).to_le_bytes());
        for (key, sessions) in &self.sessions {
            put_with(out, |out| (keys.encode)(key, out))?;
            out.extend_from_slice(&(sessions.len() as u32).to_le_bytes());
            for (start, session) in sessions {
                out.extend_from_slice(&start.to_le_bytes());
                out.extend_from_slice(&session.last_ms.to_le_bytes());
                out.extend_from_slice(&offset_of(session.first_offset).to_le_bytes());
                put_acc(out, &self.aggregator, &session.acc)?;
            }
        }
        Ok(())
    }

    fn restore_state(&mut self, keys: &KeyCodec<K>, bytes: &[u8]) -> Result<(), SnapshotError> {
        debug_assert!(self.sessions.is_empty(), "restored into an empty state");
        let mut reader = Reader { bytes };
        let (watermark_ms, late_records) = header(&mut reader, KIND_SESSIONS, (self.gap_ms, 0))?;
        let next_close_ms = reader.i64()?;
        let mut all = HashMap::new();
        // A key is at least its length and session count.
        for _ in 0..reader.count(8)? {
            let key = (keys.decode)(reader.bytes()?).map_err(SnapshotError)?;
            let mut sessions = BTreeMap::new();
            for _ in 0..reader.count(28)? {
                let start = reader.i64()?;
                let last_ms = reader.i64()?;
                let first_offset = offset_from(reader.u64()?);
                let acc = self
                    .aggregator
                    .decode_acc(reader.bytes()?)
                    .map_err(SnapshotError)?;
                sessions.insert(
                    start,
                    Session {
                        last_ms,
                        acc,
                        first_offset,
                    },
                );
            }
            all.insert(key, sessions);
        }
        reader.end()?;
        self.sessions = all;
        self.watermark_ms = watermark_ms;
        self.next_close_ms = next_close_ms;
        self.late_records = late_records;
        Ok(())
    }
}

/// Keys as JSON: any `serde` type, readable in the changelog.
pub fn json_keys<K>() -> KeyCodec<K>
where
    K: serde::Serialize + serde::de::DeserializeOwned,
{
    KeyCodec {
        encode: Box::new(|key, out| {
            serde_json::to_writer(out, key)
                .map_err(|e| format!("a key that cannot be written as JSON: {e}"))
        }),
        decode: Box::new(|bytes| {
            serde_json::from_slice(bytes).map_err(|e| format!("a key that does not read: {e}"))
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::window::{Count, EmitMode, WindowSpec};

    fn sliding() -> WindowedAggregate<String, (), Arc<Count>> {
        let spec = WindowSpec::Sliding {
            size_ms: 30,
            slide_ms: 10,
        };
        WindowedAggregate::new(spec, 5, EmitMode::OnClose, Arc::new(Count)).unwrap()
    }

    #[test]
    fn a_restored_window_state_emits_what_the_saved_one_would_have() {
        let keys = json_keys::<String>();
        let mut saved = sliding();
        let mut twin = sliding();
        for (i, key) in ["a", "b", "a", "c", "a", "b"].iter().enumerate() {
            let t = i as i64 * 7;
            saved.add_from(key.to_string(), t, (), i as u64);
            twin.add_from(key.to_string(), t, (), i as u64);
        }
        saved.advance(20);
        twin.advance(20);
        let mut bytes = Vec::new();
        saved.encode_state(&keys, &mut bytes).unwrap();
        let mut restored = sliding();
        restored.restore_state(&keys, &bytes).unwrap();
        assert_eq!(restored.oldest_offset(), twin.oldest_offset());
        assert_eq!(restored.watermark_ms(), twin.watermark_ms());
        restored.add_from("c".to_string(), 41, (), 6);
        twin.add_from("c".to_string(), 41, (), 6);
        assert_eq!(restored.advance(1_000), twin.advance(1_000));
    }

    #[test]
    fn a_restored_session_state_emits_what_the_saved_one_would_have() {
        let keys = json_keys::<u32>();
        let new = || {
            SessionAggregate::<u32, (), _>::new(
                WindowSpec::Session { gap_ms: 10 },
                0,
                EmitMode::OnClose,
                Count,
            )
            .unwrap()
        };
        let (mut saved, mut twin) = (new(), new());
        for (t, key) in [(0, 1), (3, 2), (8, 1), (30, 1), (31, 2)] {
            saved.add(key, t, ());
            twin.add(key, t, ());
        }
        saved.advance(25);
        twin.advance(25);
        let mut bytes = Vec::new();
        saved.encode_state(&keys, &mut bytes).unwrap();
        let mut restored = new();
        restored.restore_state(&keys, &bytes).unwrap();
        restored.add(1, 35, ());
        twin.add(1, 35, ());
        let mut a = restored.advance(1_000);
        let mut b = twin.advance(1_000);
        a.sort_by_key(|r| (r.key, r.window));
        b.sort_by_key(|r| (r.key, r.window));
        assert_eq!(a, b);
        assert!(!a.is_empty());
    }

    #[test]
    fn a_key_json_cannot_hold_is_an_error_not_a_panic() {
        // JSON maps need string keys.
        type Key = BTreeMap<(u8, u8), u8>;
        let keys = json_keys::<Key>();
        let mut state = WindowedAggregate::<Key, (), _>::new(
            WindowSpec::Tumbling { size_ms: 10 },
            0,
            EmitMode::OnClose,
            Count,
        )
        .unwrap();
        state.add(BTreeMap::from([((1, 2), 3)]), 1, ());
        let error = state.encode_state(&keys, &mut Vec::new()).unwrap_err();
        assert!(error.0.contains("cannot be written as JSON"), "{error}");
    }

    #[test]
    fn a_snapshot_cut_short_or_of_another_shape_is_refused_with_a_sentence() {
        let keys = json_keys::<String>();
        let mut saved = sliding();
        saved.add_from("a".to_string(), 3, (), 0);
        let mut bytes = Vec::new();
        saved.encode_state(&keys, &mut bytes).unwrap();
        for cut in 0..bytes.len() {
            let error = sliding().restore_state(&keys, &bytes[..cut]).unwrap_err();
            assert!(!error.0.is_empty());
        }
        let mut other = WindowedAggregate::<String, (), _>::new(
            WindowSpec::Tumbling { size_ms: 30 },
            0,
            EmitMode::OnClose,
            Count,
        )
        .unwrap();
        let error = other.restore_state(&keys, &bytes).unwrap_err();
        assert!(error.0.contains("30 ms every 10 ms"), "{error}");
        // A pane count no bytes could hold: refused before any allocation.
        let header_bytes = 4 + 1 + 8 * 4;
        let mut huge = bytes[..header_bytes].to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        let error = sliding().restore_state(&keys, &huge).unwrap_err();
        assert!(error.0.contains("cannot fit"), "{error}");
    }
}
