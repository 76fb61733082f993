//! Records fetched and not yet handed out by `poll`, with where each partition's start, so
//! that a partition's next offset is found without scanning them: the group consumer asks
//! it of every partition after every poll (for commits and lag), and a scan of a 16 MiB
//! fetch's records for each made a pipeline's cost grow with the square of its input
//! (0.06 M records/s over 5 million, against 0.5 M over 300,000).

use std::collections::VecDeque;

use crate::consumer::ConsumerRecord;

#[derive(Debug, Default)]
pub(crate) struct Undelivered {
    records: VecDeque<ConsumerRecord>,
    /// (partition, records of it still held), in the records' order: a fetch answer
    /// holds each partition's records together.
    runs: VecDeque<(u32, usize)>,
}

impl Undelivered {
    /// Holds a fetch answer's records, each partition's together.
    pub fn replace(&mut self, records: Vec<ConsumerRecord>) {
        self.runs.clear();
        for record in &records {
            match self.runs.back_mut() {
                Some((partition, count)) if *partition == record.partition => *count += 1,
                _ => self.runs.push_back((record.partition, 1)),
            }
        }
        self.records = records.into();
        self.check();
    }

    /// The next `count` records at most.
    pub fn take(&mut self, count: usize) -> Vec<ConsumerRecord> {
        let count = count.min(self.records.len());
        let mut left = count;
        while left > 0 {
            let Some((_, held)) = self.runs.front_mut() else {
                break;
            };
            if *held <= left {
                left -= *held;
                self.runs.pop_front();
            } else {
                *held -= left;
                left = 0;
            }
        }
        let taken = self.records.drain(..count).collect();
        self.check();
        taken
    }

    pub fn clear(&mut self) {
        self.records.clear();
        self.runs.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Drops `partition`'s records.
    pub fn remove_partition(&mut self, partition: u32) {
        if self.runs.iter().any(|(p, _)| *p == partition) {
            let kept: Vec<ConsumerRecord> = self
                .records
                .drain(..)
                .filter(|r| r.partition != partition)
                .collect();
            self.replace(kept);
        }
    }

    /// The offset of `partition`'s next held record.
    pub fn first_offset(&self, partition: u32) -> Option<u64> {
        let mut index = 0;
        for (p, held) in &self.runs {
            if *p == partition {
                return self.records.get(index).map(|r| r.offset);
            }
            index += held;
        }
        None
    }

    fn check(&self) {
        debug_assert_eq!(
            self.runs.iter().map(|(_, n)| n).sum::<usize>(),
            self.records.len(),
            "the runs cover the records held"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(partition: u32, offset: u64) -> ConsumerRecord {
        ConsumerRecord {
            topic: std::sync::Arc::from("t"),
            partition,
            offset,
            timestamp_ms: 0,
            key: None,
            value: None,
            headers: Vec::new(),
        }
    }

    #[test]
    fn each_partitions_next_offset_follows_what_was_taken() {
        let mut held = Undelivered::default();
        let records: Vec<ConsumerRecord> = (10..13)
            .map(|o| record(0, o))
            .chain((50..52).map(|o| record(2, o)))
            .collect();
        held.replace(records);
        assert_eq!(held.first_offset(0), Some(10));
        assert_eq!(held.first_offset(2), Some(50));
        assert_eq!(held.first_offset(1), None);
        assert_eq!(held.take(2).len(), 2);
        assert_eq!(held.first_offset(0), Some(12));
        assert_eq!(
            held.take(2).iter().map(|r| r.offset).collect::<Vec<_>>(),
            vec![12, 50]
        );
        assert_eq!(held.first_offset(0), None);
        assert_eq!(held.first_offset(2), Some(51));
        held.remove_partition(2);
        assert!(held.is_empty());
        assert_eq!(held.first_offset(2), None);
    }
}
