//! A partition replica's part in replication: alone (a broker in no
//! cluster, where the high watermark is the log end), leader (it takes
//! produces, tracks its followers and moves the high watermark by the ISR),
//! follower (it takes only the leader's batches, through its fetcher) or not
//! hosted here at all.
//!
//! The role is read on every produce, so its kind is an atomic; the
//! leader's `ReplicaTracker` sits behind a mutex taken only by replicated
//! partitions, once per append and once per follower fetch.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::tracker::ReplicaTracker;
use crate::cluster::NodeId;

const SOLO: u8 = 0;
const LEADER: u8 = 1;
const FOLLOWER: u8 = 2;
const NOT_HOSTED: u8 = 3;

/// What this broker's replica of a partition does now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleKind {
    /// In no cluster: the only copy; the high watermark is the log end.
    Solo,
    Leader,
    Follower,
    /// This broker holds no replica of the partition.
    NotHosted,
}

#[derive(Debug, Default)]
pub struct ReplicaRole {
    kind: AtomicU8,
    /// The leader this replica follows, or 0 (as a leader: itself).
    leader: AtomicU64,
    tracker: Mutex<Option<ReplicaTracker>>,
    /// A follower that has not yet cut its log where the leader's history
    /// diverges from it (KIP-279); it fetches only once this is false.
    truncation_pending: AtomicBool,
}

impl ReplicaRole {
    pub fn not_hosted(leader: Option<NodeId>) -> ReplicaRole {
        ReplicaRole {
            kind: AtomicU8::new(NOT_HOSTED),
            leader: AtomicU64::new(leader.unwrap_or(0)),
            tracker: Mutex::new(None),
            truncation_pending: AtomicBool::new(false),
        }
    }

    pub fn kind(&self) -> RoleKind {
        match self.kind.load(Ordering::Acquire) {
            SOLO => RoleKind::Solo,
            LEADER => RoleKind::Leader,
            FOLLOWER => RoleKind::Follower,
            _ => RoleKind::NotHosted,
        }
    }

    /// The partition's leader as this broker last learned it.
    pub fn leader(&self) -> Option<NodeId> {
        Some(self.leader.load(Ordering::Acquire)).filter(|&id| id != 0)
    }

    pub(crate) fn tracker(&self) -> MutexGuard<'_, Option<ReplicaTracker>> {
        // The tracker is plain data: a panic mid-update leaves numbers that
        // the next fetch or append corrects.
        self.tracker.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn set_leader(&self, me: NodeId, tracker: ReplicaTracker) {
        *self.tracker() = Some(tracker);
        self.leader.store(me, Ordering::Release);
        self.kind.store(LEADER, Ordering::Release);
    }

    /// For a partition not hosted here: who leads it, for NOT_LEADER answers.
    pub(crate) fn set_known_leader(&self, leader: Option<NodeId>) {
        self.leader.store(leader.unwrap_or(0), Ordering::Release);
    }

    pub(crate) fn truncation_pending(&self) -> bool {
        self.truncation_pending.load(Ordering::Acquire)
    }

    pub(crate) fn truncation_done(&self) {
        self.truncation_pending.store(false, Ordering::Release);
    }

    pub(crate) fn set_follower(&self, leader: Option<NodeId>) {
        self.truncation_pending.store(true, Ordering::Release);
        self.kind.store(FOLLOWER, Ordering::Release);
        self.leader.store(leader.unwrap_or(0), Ordering::Release);
        *self.tracker() = None;
    }
}
