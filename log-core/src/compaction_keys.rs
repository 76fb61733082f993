//! The first pass of compaction: which offset holds the newest record of each key, and
//! which transactional batches belong to a committed transaction.
//!
//! Only records that are surely visible may supersede others: plain records, and records
//! of transactions whose COMMIT marker lies in the compacted segments. A record of an
//! aborted or still open transaction supersedes nothing (otherwise an aborted write would
//! make compaction delete the committed value it never replaced), and its batch is kept
//! whole.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;

use crate::batch::{BatchError, BatchHeader, ControlRecordType, RecordDecoder};

/// What the first pass learned.
#[derive(Debug, Default)]
pub(crate) struct KeyScan {
    /// Key -> offset of its newest visible record.
    pub latest: HashMap<Bytes, u64>,
    /// Base offsets of transactional batches whose transaction committed.
    pub committed: HashSet<i64>,
    /// Per producer id: its open transaction's batches and (key, offset) pairs.
    open: HashMap<i64, OpenTransaction>,
}

#[derive(Debug, Default)]
struct OpenTransaction {
    batch_bases: Vec<i64>,
    keys: Vec<(Bytes, u64)>,
}

impl KeyScan {
    /// Accounts for one batch, in log order.
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
            let key = Bytes::copy_from_slice(key);
            if transactional {
                keys.push((key, offset));
            } else {
                self.supersede(key, offset);
            }
        }
        if transactional {
            let open = self.open.entry(header.producer_id).or_default();
            open.batch_bases.push(header.base_offset);
            open.keys.extend(keys);
        }
        Ok(())
    }

    /// A record that became visible later (at its commit) may still be older than one
    /// already seen: the newest offset wins.
    fn supersede(&mut self, key: Bytes, offset: u64) {
        let newest = self.latest.entry(key).or_insert(offset);
        *newest = (*newest).max(offset);
    }
}
