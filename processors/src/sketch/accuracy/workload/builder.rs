//! A [`Workload`] built one key at a time, for streams that arrive in pieces (the records of each
//! fetch from a topic) and so cannot be handed to [`Workload::from_keys`] as one iterator of
//! borrowed keys.

use hashbrown::HashTable;

use super::super::super::cms::KeyHash;
use super::super::super::SketchError;
use super::{Workload, KEYS_MAX};

/// Interns keys as they arrive; [`Workload::from_keys`] is this builder over an iterator:
/// the same ids in order of first occurrence, the same exact counts, the same materialized stream.
/// A key seen before costs a hash and a lookup; only a new key's bytes are copied into the key
/// arena, and every event appends its key to the stream buffer (amortized growth).
#[derive(Debug)]
pub struct WorkloadBuilder {
    workload: Workload,
    /// Key ids by the low half of the key's murmur3 hash.
    index: HashTable<u32>,
}

impl WorkloadBuilder {
    /// An empty workload named `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            workload: Workload {
                name: name.into(),
                key_bytes: Vec::new(),
                key_offsets: vec![0],
                event_bytes: Vec::new(),
                event_ends: Vec::new(),
                counts: Vec::new(),
            },
            index: HashTable::new(),
        }
    }

    /// Appends one event of `key`.
    pub fn push(&mut self, key: &[u8]) -> Result<(), SketchError> {
        let workload = &mut self.workload;
        let hash = KeyHash::of(key, 0).low;
        let found = self
            .index
            .find(hash, |&id| workload.key(id) == key)
            .copied();
        let id = match found {
            Some(id) => id,
            None => {
                let id = u32::try_from(workload.counts.len())
                    .ok()
                    .filter(|&id| u64::from(id) < KEYS_MAX)
                    .ok_or(SketchError::TooLarge {
                        name: "number of distinct keys",
                        value: workload.counts.len() as u64,
                        max: KEYS_MAX,
                    })?;
                workload.key_bytes.extend_from_slice(key);
                workload.key_offsets.push(workload.key_bytes.len());
                workload.counts.push(0);
                let w = &*workload;
                self.index
                    .insert_unique(hash, id, |&id| KeyHash::of(w.key(id), 0).low);
                id
            }
        };
        workload.push_event(id);
        debug_assert_eq!(workload.key_offsets.len(), workload.counts.len() + 1);
        Ok(())
    }

    /// Events pushed so far.
    pub fn events(&self) -> u64 {
        self.workload.total()
    }

    /// Distinct keys pushed so far.
    pub fn distinct(&self) -> usize {
        self.workload.distinct()
    }

    /// The workload; an error if no key was pushed, as [`Workload::from_keys`] refuses an empty
    /// input.
    pub fn finish(self) -> Result<Workload, SketchError> {
        if self.workload.event_ends.is_empty() {
            return Err(SketchError::Zero {
                what: "number of events in the input",
            });
        }
        Ok(self.workload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interns_keys_in_order_of_first_occurrence_with_exact_counts() {
        let keys: Vec<Vec<u8>> = (0..5000u32)
            .map(|i| format!("key-{}", (i * 7919) % 613).into_bytes())
            .chain([Vec::new(), b"key-1".to_vec(), Vec::new()])
            .collect();
        // The independent answer: first-occurrence order and counts from a plain map.
        let mut first_seen: Vec<&[u8]> = Vec::new();
        let mut counts: std::collections::HashMap<&[u8], u64> = std::collections::HashMap::new();
        for key in &keys {
            let count = counts.entry(key.as_slice()).or_insert(0);
            if *count == 0 {
                first_seen.push(key);
            }
            *count += 1;
        }
        let mut builder = WorkloadBuilder::new("w");
        for key in &keys {
            builder.push(key).unwrap();
        }
        assert_eq!(builder.events(), keys.len() as u64);
        assert_eq!(builder.distinct(), first_seen.len());
        let built = builder.finish().unwrap();
        assert_eq!(built.name(), "w");
        assert_eq!(built.total(), keys.len() as u64);
        assert!(built.events().eq(keys.iter().map(Vec::as_slice)));
        for (id, key) in first_seen.iter().enumerate() {
            assert_eq!(built.key(id as u32), *key);
            assert_eq!(built.count(id as u32), counts[key]);
        }
        let from_keys = Workload::from_keys("w", keys.iter().map(Vec::as_slice)).unwrap();
        assert_eq!(from_keys.ids_by_count(), built.ids_by_count());
    }

    #[test]
    fn an_empty_stream_is_refused() {
        assert!(matches!(
            WorkloadBuilder::new("w").finish(),
            Err(SketchError::Zero { .. })
        ));
    }
}
