//! The first pass of compaction: which offset holds the newest record of each key (in the
//! bounded [`KeyMap`]), and which transactional batches belong to a committed transaction.
//!
//! Only records that are surely visible may supersede others: plain records, and records
//! of transactions whose COMMIT marker lies in the scanned range. A record of an aborted
//! or still open transaction supersedes nothing (otherwise an aborted write would make
//! compaction delete the committed value it never replaced), and its batch is kept whole.

use std::collections::{HashMap, HashSet};

use crate::batch::{BatchError, BatchHeader, ControlRecordType, RecordDecoder};
use crate::compaction_map::{hash_key, KeyHash, KeyMap};

/// What the first pass learned.
#[derive(Debug)]
pub(crate) struct KeyScan {
    /// Key hash -> offset of its newest visible record.
    pub latest: KeyMap,
    /// Base offsets of transactional batches whose transaction committed.
    pub committed: HashSet<i64>,
    /// Per producer id: its open transaction's batches and (key, offset) pairs.
    open: HashMap<i64, OpenTransaction>,
    /// Keys held in `open`: they enter the map at their commit, so they take room now.
    open_keys: usize,
}

#[derive(Debug, Default)]
struct OpenTransaction {
    batch_bases: Vec<i64>,
    keys: Vec<(KeyHash, u64)>,
}

impl KeyScan {
    pub fn new(latest: KeyMap) -> KeyScan {
        KeyScan {
            latest,
            committed: HashSet::new(),
            open: HashMap::new(),
            open_keys: 0,
        }
    }

    /// Whether a batch of `header` surely fits in the map (every record a new key).
    pub fn fits(&self, header: &BatchHeader) -> bool {
        let records = usize::try_from(header.record_count).unwrap_or(usize::MAX);
        self.latest.room() >= self.open_keys.saturating_add(records)
    }

    /// Accounts for one batch, in log order; call only after `fits` said yes.
    pub fn visit(
        &mut self,
        header: &BatchHeader,
        bytes: &[u8],
        decoder: &mut RecordDecoder,
    ) -> Result<(), BatchError> {
        if header.is_control() {
            let mut marker = None;
            for record in decoder.records(bytes)? {
                marker = record?.key.and_then(ControlRecordType::from_key).or(marker);
            }
            let open = self.open.remove(&header.producer_id).unwrap_or_default();
            self.open_keys -= open.keys.len();
            if marker == Some(ControlRecordType::Commit) {
                self.committed.extend(open.batch_bases);
                for (key, offset) in open.keys {
                    self.supersede(key, offset);
                }
            }
            return Ok(());
        }
        let transactional = header.is_transactional();
        let mut keys = Vec::new();
        for record in decoder.records(bytes)? {
            let record = record?;
            let (Some(key), Ok(offset)) = (record.key, u64::try_from(record.offset)) else {
                continue;
            };
            let key = hash_key(key);
            if transactional {
                keys.push((key, offset));
            } else {
                self.supersede(key, offset);
            }
        }
        if transactional {
            self.open_keys += keys.len();
            let open = self.open.entry(header.producer_id).or_default();
            open.batch_bases.push(header.base_offset);
            open.keys.extend(keys);
        }
        Ok(())
    }

    /// A record that became visible later (at its commit) may still be older than one
    /// already seen: the newest offset wins (`put` keeps the larger).
    fn supersede(&mut self, key: KeyHash, offset: u64) {
        let stored = self.latest.put(key, offset);
        // `fits` reserved room for every record of the batch and every open key.
        debug_assert!(stored, "key map overfilled");
    }
}
