//! Session windows: per key, records closer than the gap to each other share a
//! window. A record joins every open session within the gap of it, merging them;
//! a session closes when the watermark passes its last record plus the gap plus the
//! allowed lateness, and its window is `[first, last + 1)`.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::marker::PhantomData;

use super::aggregate::{AddOutcome, Aggregator, EmitMode, WindowResult};
use super::{InvalidWindow, Window, WindowSpec};

#[derive(Debug, Clone)]
pub(super) struct Session<A> {
    pub(super) last_ms: i64,
    pub(super) acc: A,
    /// The smallest input offset counted in it, if given ([`SessionAggregate::add_from`]).
    pub(super) first_offset: Option<u64>,
}

/// Session aggregates of a keyed stream of values `V`.
pub struct SessionAggregate<K, V, G: Aggregator<V>> {
    pub(super) gap_ms: i64,
    lateness_ms: i64,
    emit: EmitMode,
    pub(super) aggregator: G,
    /// Key → first timestamp → session. Sessions of a key never overlap.
    pub(super) sessions: HashMap<K, BTreeMap<i64, Session<G::Acc>>>,
    pub(super) watermark_ms: i64,
    /// No session closes before the watermark reaches this (a lower bound: merged
    /// sessions may close later), so most advances need not look at every key.
    pub(super) next_close_ms: i64,
    pub(super) late_records: u64,
    values: PhantomData<fn(V)>,
}

impl<K, V, G> SessionAggregate<K, V, G>
where
    K: Hash + Ord + Clone,
    G: Aggregator<V>,
{
    pub fn new(
        spec: WindowSpec,
        lateness_ms: i64,
        emit: EmitMode,
        aggregator: G,
    ) -> Result<Self, InvalidWindow> {
        spec.validate()?;
        let WindowSpec::Session { gap_ms } = spec else {
            return Err(InvalidWindow(
                "time windows are aggregated by WindowedAggregate".to_string(),
            ));
        };
        Ok(SessionAggregate {
            gap_ms,
            lateness_ms: lateness_ms.max(0),
            emit,
            aggregator,
            sessions: HashMap::new(),
            watermark_ms: i64::MIN,
            next_close_ms: i64::MAX,
            late_records: 0,
            values: PhantomData,
        })
    }

    pub fn watermark_ms(&self) -> i64 {
        self.watermark_ms
    }

    pub fn late_records(&self) -> u64 {
        self.late_records
    }

    /// Open sessions held: the state's size.
    pub fn state_entries(&self) -> usize {
        self.sessions.values().map(BTreeMap::len).sum()
    }

    /// An estimate of the state's bytes: each key inline, each open session's
    /// bounds and accumulator inline, and what the aggregator says the
    /// accumulator holds on the heap (a key's own heap data is not counted).
    pub fn state_bytes(&self) -> usize {
        self.sessions
            .values()
            .map(|sessions| {
                size_of::<K>()
                    + sessions.len() * (size_of::<i64>() + size_of::<Session<G::Acc>>())
                    + sessions
                        .values()
                        .map(|session| self.aggregator.heap_bytes(&session.acc))
                        .sum::<usize>()
            })
            .sum()
    }

    /// Strictly past: a record exactly `gap` after the last could still join it.
    fn closes_by(&self, last_ms: i64) -> bool {
        last_ms
            .saturating_add(self.gap_ms)
            .saturating_add(self.lateness_ms)
            < self.watermark_ms
    }

    /// The smallest input offset counted in an open session (given through
    /// [`SessionAggregate::add_from`]): replaying the input from there rebuilds every
    /// open session.
    pub fn oldest_offset(&self) -> Option<u64> {
        self.sessions
            .values()
            .flat_map(BTreeMap::values)
            .filter_map(|s| s.first_offset)
            .min()
    }

    /// As [`SessionAggregate::add`], for the record at input `offset`.
    pub fn add_from(
        &mut self,
        key: K,
        timestamp_ms: i64,
        value: V,
        offset: u64,
    ) -> AddOutcome<K, G::Acc> {
        self.add_at(key, timestamp_ms, value, Some(offset))
    }

    pub fn add(&mut self, key: K, timestamp_ms: i64, value: V) -> AddOutcome<K, G::Acc> {
        self.add_at(key, timestamp_ms, value, None)
    }

    fn add_at(
        &mut self,
        key: K,
        timestamp_ms: i64,
        value: V,
        offset: Option<u64>,
    ) -> AddOutcome<K, G::Acc> {
        let gap = self.gap_ms;
        let sessions = self.sessions.entry(key.clone()).or_default();
        // Open sessions within the gap: first - gap <= t <= last + gap.
        let touching: Vec<i64> = sessions
            .range(..=timestamp_ms.saturating_add(gap))
            .rev()
            .take_while(|(_, s)| s.last_ms.saturating_add(gap) >= timestamp_ms)
            .map(|(first, _)| *first)
            .collect();
        if touching.is_empty()
            && timestamp_ms
                .saturating_add(gap)
                .saturating_add(self.lateness_ms)
                < self.watermark_ms
        {
            self.late_records += 1;
            return AddOutcome::Late;
        }
        let mut first = timestamp_ms;
        let mut last = timestamp_ms;
        let mut acc = self.aggregator.init();
        self.aggregator.add(&mut acc, value);
        let mut first_offset = offset;
        for start in touching {
            let session = sessions.remove(&start).expect("just found");
            first_offset = match (first_offset, session.first_offset) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            first = first.min(start);
            last = last.max(session.last_ms);
            let mut merged = session.acc;
            self.aggregator.merge(&mut merged, &acc);
            acc = merged;
        }
        let updates = match self.emit {
            EmitMode::OnClose | EmitMode::Periodic(_) => Vec::new(),
            EmitMode::OnUpdate => vec![WindowResult {
                key: key.clone(),
                window: Window {
                    start_ms: first,
                    end_ms: last.saturating_add(1),
                },
                value: acc.clone(),
                is_final: false,
            }],
        };
        // Closes once the watermark is past last + gap + lateness.
        let close_ms = last
            .saturating_add(self.gap_ms)
            .saturating_add(self.lateness_ms)
            .saturating_add(1);
        self.next_close_ms = self.next_close_ms.min(close_ms);
        sessions.insert(
            first,
            Session {
                last_ms: last,
                acc,
                first_offset,
            },
        );
        AddOutcome::Accepted {
            closed_windows: 0,
            updates,
        }
    }

    /// Every open session's aggregate so far, by end and then key, none final
    /// ([`EmitMode::Periodic`]); the state is unchanged.
    pub fn open_results(&self) -> Vec<WindowResult<K, G::Acc>> {
        let mut results: Vec<WindowResult<K, G::Acc>> = self
            .sessions
            .iter()
            .flat_map(|(key, sessions)| {
                sessions.iter().map(move |(first, session)| WindowResult {
                    key: key.clone(),
                    window: Window {
                        start_ms: *first,
                        end_ms: session.last_ms.saturating_add(1),
                    },
                    value: session.acc.clone(),
                    is_final: false,
                })
            })
            .collect();
        results.sort_by(|a, b| (a.window.end_ms, &a.key).cmp(&(b.window.end_ms, &b.key)));
        results
    }

    /// Moves the watermark (never back) and returns the sessions that closed, by end
    /// and then key.
    pub fn advance(&mut self, watermark_ms: i64) -> Vec<WindowResult<K, G::Acc>> {
        if watermark_ms <= self.watermark_ms {
            return Vec::new();
        }
        self.watermark_ms = watermark_ms;
        if watermark_ms < self.next_close_ms {
            return Vec::new();
        }
        let mut results = Vec::new();
        let (gap, lateness) = (self.gap_ms, self.lateness_ms);
        for (key, sessions) in self.sessions.iter_mut() {
            let closed: Vec<i64> = sessions
                .iter()
                .filter(|(_, s)| {
                    s.last_ms.saturating_add(gap).saturating_add(lateness) < watermark_ms
                })
                .map(|(first, _)| *first)
                .collect();
            for first in closed {
                let session = sessions.remove(&first).expect("just found");
                results.push(WindowResult {
                    key: key.clone(),
                    window: Window {
                        start_ms: first,
                        end_ms: session.last_ms.saturating_add(1),
                    },
                    value: session.acc,
                    is_final: true,
                });
            }
        }
        self.sessions.retain(|_, sessions| !sessions.is_empty());
        self.next_close_ms = self
            .sessions
            .values()
            .flat_map(BTreeMap::values)
            .map(|s| {
                s.last_ms
                    .saturating_add(gap)
                    .saturating_add(lateness)
                    .saturating_add(1)
            })
            .min()
            .unwrap_or(i64::MAX);
        results.sort_by(|a, b| (a.window.end_ms, &a.key).cmp(&(b.window.end_ms, &b.key)));
        debug_assert!(self
            .sessions
            .values()
            .flat_map(|s| s.values())
            .all(|s| !self.closes_by(s.last_ms)));
        results
    }
}

impl<K, V, G: Aggregator<V>> std::fmt::Debug for SessionAggregate<K, V, G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionAggregate")
            .field("gap_ms", &self.gap_ms)
            .field("lateness_ms", &self.lateness_ms)
            .field("watermark_ms", &self.watermark_ms)
            .field("keys", &self.sessions.len())
            .finish_non_exhaustive()
    }
}
