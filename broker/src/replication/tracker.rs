//! `ReplicaTracker`: what a partition's leader knows about its followers, and
//! the two decisions it makes from that: where the high watermark is, and
//! which replicas should be in sync.
//!
//! Kafka's rules (`Partition.scala`, KIP-497), kept here without I/O:
//! - every replica of the assignment is tracked, not only the ISR, so a
//!   follower that fell out can catch up and come back;
//! - a follower's log end offset is the offset it asks for in its fetch;
//! - the high watermark is the smallest log end offset over the ISR, the
//!   leader included, and never moves back;
//! - while an ISR change is waiting to commit through the metadata log, the
//!   high watermark uses the larger of the two sets (the committed ISR plus a
//!   pending addition, or the committed ISR during a pending removal), so no
//!   record is acknowledged on the strength of a set not yet agreed. A change
//!   names the partition epoch of the ISR it was computed from and commits
//!   only while the partition is still at that epoch, so it stays pending
//!   until it is seen committed or refused, or the committed partition epoch
//!   moves past it (then it committed or never will): one whose proposal
//!   timed out may still commit, so it is sent again, at the same epoch,
//!   rather than forgotten (Kafka's leader, too, keeps its pending ISR until
//!   the controller answers);
//! - a follower is caught up when its fetch reaches the leader's log end
//!   offset as it was at the follower's previous fetch (it read everything
//!   there was one round ago); one not caught up for `replica.lag.time.max.ms`
//!   leaves the ISR; one whose log end reaches the high watermark and the
//!   start of the leader's epoch joins again.

use std::collections::{BTreeMap, BTreeSet};

use crate::cluster::NodeId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FollowerProgress {
    log_end_offset: Option<u64>,
    /// The leader's log end offset when this follower last fetched.
    leader_end_at_last_fetch: u64,
    last_caught_up_ms: i64,
}

/// A change of ISR the leader asks the controller for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrProposal {
    pub isr: Vec<NodeId>,
    /// The partition epoch of the ISR it was computed from.
    pub partition_epoch: i32,
}

#[derive(Debug, Clone)]
pub struct ReplicaTracker {
    leader: NodeId,
    followers: BTreeMap<NodeId, FollowerProgress>,
    /// The ISR as the metadata log last committed it (always holds the leader).
    isr: BTreeSet<NodeId>,
    /// The partition epoch of `isr`.
    partition_epoch: i32,
    /// The metadata log index `isr` is as of: an older state never replaces it.
    isr_index: u64,
    /// An ISR this leader proposed that has not come back committed yet, and
    /// the partition epoch it was computed from.
    pending: Option<(BTreeSet<NodeId>, i32)>,
    /// The proposal of `pending` timed out: send it again.
    resend: bool,
    high_watermark: u64,
    leader_end_offset: u64,
    /// The first offset the leader wrote in its current epoch.
    epoch_start_offset: u64,
}

impl ReplicaTracker {
    /// A tracker for a leader that just took over, with the ISR the metadata
    /// has at `partition_epoch`: followers are assumed caught up as of
    /// `now_ms` (as Kafka does), so none is dropped before it has had
    /// `replica.lag.time.max.ms` to fetch.
    pub fn new(
        leader: NodeId,
        replicas: &[NodeId],
        isr: &[NodeId],
        partition_epoch: i32,
        leader_end_offset: u64,
        high_watermark: u64,
        now_ms: i64,
    ) -> ReplicaTracker {
        let followers = replicas
            .iter()
            .filter(|&&id| id != leader)
            .map(|&id| {
                (
                    id,
                    FollowerProgress {
                        log_end_offset: None,
                        leader_end_at_last_fetch: 0,
                        last_caught_up_ms: now_ms,
                    },
                )
            })
            .collect();
        let mut isr: BTreeSet<NodeId> = isr.iter().copied().collect();
        isr.insert(leader);
        ReplicaTracker {
            leader,
            followers,
            isr,
            partition_epoch,
            isr_index: 0,
            pending: None,
            resend: false,
            high_watermark: high_watermark.min(leader_end_offset),
            leader_end_offset,
            epoch_start_offset: leader_end_offset,
        }
    }

    pub fn high_watermark(&self) -> u64 {
        self.high_watermark
    }

    pub fn isr(&self) -> Vec<NodeId> {
        self.isr.iter().copied().collect()
    }

    /// The partition epoch of the committed ISR this leader knows.
    pub fn partition_epoch(&self) -> i32 {
        self.partition_epoch
    }

    /// The ISR the high watermark is computed over (see the module doc).
    fn maximal_isr(&self) -> BTreeSet<NodeId> {
        match &self.pending {
            Some((pending, _)) => self.isr.union(pending).copied().collect(),
            None => self.isr.clone(),
        }
    }

    /// The leader appended: its log now ends at `leader_end_offset`. Returns
    /// the new high watermark if it moved (only when the ISR is the leader alone).
    pub fn on_leader_append(&mut self, leader_end_offset: u64) -> Option<u64> {
        debug_assert!(leader_end_offset >= self.leader_end_offset);
        self.leader_end_offset = leader_end_offset;
        self.recompute()
    }

    /// Follower `id` fetched from `fetch_offset` (so its log ends there).
    /// Returns the new high watermark if it moved.
    pub fn on_follower_fetch(&mut self, id: NodeId, fetch_offset: u64, now_ms: i64) -> Option<u64> {
        let leader_end = self.leader_end_offset;
        let progress = self.followers.get_mut(&id)?;
        // A fetch beyond the leader's end is a follower from a diverged past;
        // it is truncated before it fetches again and counts as nothing here.
        if fetch_offset > leader_end {
            return None;
        }
        if fetch_offset >= leader_end || fetch_offset >= progress.leader_end_at_last_fetch {
            progress.last_caught_up_ms = progress.last_caught_up_ms.max(now_ms);
        }
        progress.log_end_offset = Some(fetch_offset);
        progress.leader_end_at_last_fetch = leader_end;
        self.recompute()
    }

    fn recompute(&mut self) -> Option<u64> {
        let mut low = self.leader_end_offset;
        for id in self.maximal_isr() {
            if id == self.leader {
                continue;
            }
            // An ISR member not heard from since this leader took over holds
            // the high watermark where it is.
            let end = self
                .followers
                .get(&id)
                .and_then(|p| p.log_end_offset)
                .unwrap_or(self.high_watermark);
            low = low.min(end);
        }
        if low > self.high_watermark {
            self.high_watermark = low;
            Some(low)
        } else {
            None
        }
    }

    /// The ISR change to propose now, if any and none is pending: followers
    /// not caught up for `lag_time_max_ms` leave, followers that reached the
    /// high watermark and this epoch's start join.
    pub fn isr_change(&mut self, now_ms: i64, lag_time_max_ms: i64) -> Option<IsrProposal> {
        if let Some((pending, partition_epoch)) = &self.pending {
            if !std::mem::take(&mut self.resend) {
                return None;
            }
            // At the epoch it was first sent at: if that copy committed, this
            // one is refused rather than applied a second time.
            return Some(IsrProposal {
                isr: pending.iter().copied().collect(),
                partition_epoch: *partition_epoch,
            });
        }
        let mut next = self.isr.clone();
        for (&id, progress) in &self.followers {
            let in_sync = self.isr.contains(&id);
            let lagging = now_ms - progress.last_caught_up_ms > lag_time_max_ms;
            let end = progress.log_end_offset;
            let reached =
                end.is_some_and(|end| end >= self.high_watermark && end >= self.epoch_start_offset);
            if in_sync && lagging {
                next.remove(&id);
            } else if !in_sync && reached && !lagging {
                next.insert(id);
            }
        }
        debug_assert!(
            next.contains(&self.leader),
            "the leader never leaves its own ISR"
        );
        if next == self.isr {
            return None;
        }
        self.pending = Some((next.clone(), self.partition_epoch));
        Some(IsrProposal {
            isr: next.into_iter().collect(),
            partition_epoch: self.partition_epoch,
        })
    }

    /// The metadata log, as of entry `index`, has `isr` at `partition_epoch`
    /// for this leader (this leader's proposal or not). Returns the new high
    /// watermark if it moved.
    pub fn on_isr_committed(
        &mut self,
        isr: &[NodeId],
        partition_epoch: i32,
        index: u64,
    ) -> Option<u64> {
        if index < self.isr_index {
            return None;
        }
        self.isr_index = index;
        let mut committed: BTreeSet<NodeId> = isr.iter().copied().collect();
        committed.insert(self.leader);
        // The pending change commits only at the epoch it was computed from:
        // once the partition is past it, either it was that change, or a
        // change of the controller's (dropping a dead broker) took its place
        // and it will be refused. Until then the high watermark keeps
        // counting its members.
        if self
            .pending
            .as_ref()
            .is_some_and(|(_, from)| partition_epoch > *from)
        {
            self.pending = None;
            self.resend = false;
        }
        self.isr = committed;
        self.partition_epoch = partition_epoch;
        self.recompute()
    }

    /// This leader's proposal committed; `isr` is the ISR at
    /// `partition_epoch` as of entry `index`, at or after it, which settles
    /// the proposal whatever it is.
    pub fn on_isr_proposal_committed(
        &mut self,
        isr: &[NodeId],
        partition_epoch: i32,
        index: u64,
    ) -> Option<u64> {
        self.pending = None;
        self.resend = false;
        self.on_isr_committed(isr, partition_epoch, index)
            .or_else(|| self.recompute())
    }

    /// The proposal was refused, or never reached the metadata log: allow
    /// another, computed from the committed ISR this leader knows (given
    /// first, on a refusal, through `on_isr_committed`).
    pub fn on_isr_proposal_failed(&mut self) -> Option<u64> {
        self.pending = None;
        self.resend = false;
        self.recompute()
    }

    /// The proposal was not seen committed in time; it may still commit.
    pub fn on_isr_proposal_timed_out(&mut self) {
        self.resend = self.pending.is_some();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAG_MS: i64 = 10_000;

    #[test]
    fn the_high_watermark_is_the_smallest_isr_end_and_never_goes_back() {
        let mut t = ReplicaTracker::new(1, &[1, 2, 3], &[1, 2, 3], 0, 0, 0, 0);
        assert_eq!(t.on_leader_append(10), None, "followers have not fetched");
        assert_eq!(t.on_follower_fetch(2, 10, 1), None, "3 still at 0");
        assert_eq!(t.on_follower_fetch(3, 7, 1), Some(7));
        assert_eq!(t.on_follower_fetch(3, 10, 2), Some(10));
        // A follower that truncated and fetches lower never moves it back.
        assert_eq!(t.on_follower_fetch(3, 4, 3), None);
        assert_eq!(t.high_watermark(), 10);
    }

    #[test]
    fn a_leader_alone_in_its_isr_moves_the_high_watermark_on_append() {
        let mut t = ReplicaTracker::new(1, &[1, 2], &[1], 0, 5, 5, 0);
        assert_eq!(t.on_leader_append(9), Some(9));
        // A follower outside the ISR does not hold it back.
        assert_eq!(t.on_follower_fetch(2, 0, 1), None);
        assert_eq!(t.high_watermark(), 9);
    }

    #[test]
    fn a_follower_that_stops_fetching_leaves_the_isr_and_comes_back_when_caught_up() {
        let mut t = ReplicaTracker::new(1, &[1, 2, 3], &[1, 2, 3], 0, 0, 0, 0);
        t.on_leader_append(100);
        t.on_follower_fetch(2, 100, 1_000);
        t.on_follower_fetch(3, 50, 1_000);
        // 3 keeps fetching but never reaches what the leader had one fetch ago.
        t.on_leader_append(200);
        t.on_follower_fetch(3, 60, 5_000);
        t.on_follower_fetch(2, 200, 11_000);
        let shrink = t.isr_change(11_001, LAG_MS).expect("3 lags");
        assert_eq!(shrink.isr, vec![1, 2]);
        assert_eq!(shrink.partition_epoch, 0);
        // While the shrink is pending the high watermark still waits for 3.
        assert_eq!(t.high_watermark(), 60);
        assert_eq!(t.isr_change(11_002, LAG_MS), None, "one change at a time");
        assert_eq!(t.on_isr_committed(&[1, 2], 1, 1), Some(200));
        // 3 catches up: fetches at the leader's end.
        t.on_follower_fetch(3, 200, 12_000);
        let expand = t.isr_change(12_001, LAG_MS).expect("3 caught up");
        assert_eq!(expand.isr, vec![1, 2, 3]);
        assert_eq!(expand.partition_epoch, 1);
        // While the addition is pending, 3 already counts.
        t.on_leader_append(300);
        t.on_follower_fetch(2, 300, 12_100);
        assert_eq!(t.high_watermark(), 200, "3 has not fetched 300 yet");
        t.on_isr_committed(&[1, 2, 3], 2, 2);
        assert_eq!(t.on_follower_fetch(3, 300, 12_200), Some(300));
    }

    #[test]
    fn an_isr_change_that_timed_out_stays_pending_and_is_sent_again_until_it_commits() {
        let mut t = ReplicaTracker::new(1, &[1, 2], &[1], 0, 0, 0, 0);
        t.on_leader_append(10);
        t.on_follower_fetch(2, 10, 1);
        let expand = t.isr_change(2, LAG_MS).expect("2 caught up");
        assert_eq!(expand.isr, vec![1, 2]);
        // The proposal timed out; it may still commit, so 2 keeps holding
        // the high watermark until it is seen committed.
        t.on_isr_proposal_timed_out();
        t.on_leader_append(20);
        assert_eq!(t.high_watermark(), 10, "2 is still counted");
        assert_eq!(t.isr_change(3, LAG_MS), Some(expand), "sent again");
        assert_eq!(t.isr_change(4, LAG_MS), None, "once per time-out");
        // The state it was computed from, seen again: still pending.
        t.on_isr_committed(&[1], 0, 7);
        assert_eq!(t.high_watermark(), 10);
        t.on_follower_fetch(2, 20, 5);
        assert_eq!(t.high_watermark(), 20);
        t.on_isr_committed(&[1, 2], 1, 8);
        t.on_leader_append(30);
        assert_eq!(t.high_watermark(), 20, "2 is in the ISR now");
        // An older state never replaces a newer one.
        assert_eq!(t.on_isr_committed(&[1], 0, 7), None);
        assert_eq!(t.isr(), vec![1, 2]);
        assert_eq!(t.partition_epoch(), 1);
    }

    #[test]
    fn a_committed_proposal_settles_even_when_a_later_change_hides_it() {
        let mut t = ReplicaTracker::new(1, &[1, 2, 3], &[1, 2, 3], 0, 0, 0, 0);
        t.on_leader_append(10);
        t.on_follower_fetch(2, 10, 1);
        t.on_follower_fetch(3, 10, 1);
        t.on_follower_fetch(2, 10, 20_000);
        let shrink = t.isr_change(20_000, LAG_MS).expect("3 lags");
        assert_eq!(shrink.isr, vec![1, 2]);
        // The metadata applied here had both this shrink and then the
        // controller's change after it: the shrink itself is never seen.
        t.on_isr_proposal_committed(&[1], 2, 5);
        assert_eq!(t.isr(), vec![1]);
        t.on_follower_fetch(3, 10, 20_002);
        assert_eq!(
            t.isr_change(20_003, LAG_MS),
            Some(IsrProposal {
                isr: vec![1, 2, 3],
                partition_epoch: 2
            }),
            "no longer pending: the next change goes out, from the newer state"
        );
    }

    #[test]
    fn a_pending_change_is_settled_once_the_partition_epoch_moves_past_it() {
        let mut t = ReplicaTracker::new(1, &[1, 2, 3], &[1, 2, 3], 5, 0, 0, 0);
        t.on_leader_append(10);
        t.on_follower_fetch(2, 10, 1);
        t.on_follower_fetch(3, 10, 1);
        t.on_follower_fetch(3, 10, 20_000);
        let shrink = t.isr_change(20_000, LAG_MS).expect("2 lags");
        assert_eq!(
            shrink,
            IsrProposal {
                isr: vec![1, 3],
                partition_epoch: 5
            }
        );
        // The controller, from the same state, dropped 3 (dead to it) and
        // committed first: this leader's shrink will be refused, so it is
        // computed again from the newer state (2 still lags, 3 fetches and
        // comes back) rather than sent again.
        t.on_isr_committed(&[1, 2], 6, 9);
        t.on_isr_proposal_timed_out();
        assert_eq!(
            t.isr_change(20_001, LAG_MS),
            Some(IsrProposal {
                isr: vec![1, 3],
                partition_epoch: 6
            })
        );
    }

    #[test]
    fn a_new_leader_gives_followers_the_full_lag_time_before_dropping_them() {
        let mut t = ReplicaTracker::new(1, &[1, 2], &[1, 2], 0, 10, 8, 50_000);
        assert_eq!(t.isr_change(50_000 + LAG_MS, LAG_MS), None);
        assert_eq!(
            t.isr_change(50_001 + LAG_MS, LAG_MS).map(|p| p.isr),
            Some(vec![1])
        );
    }

    #[test]
    fn a_follower_must_reach_the_start_of_the_leaders_epoch_to_join() {
        // The new leader's log ends at 10 but the high watermark is 8: a
        // follower at 9 has reached the high watermark, not this epoch.
        let mut t = ReplicaTracker::new(1, &[1, 2], &[1], 0, 10, 8, 0);
        t.on_follower_fetch(2, 9, 1);
        assert_eq!(t.isr_change(2, LAG_MS), None);
        t.on_follower_fetch(2, 10, 3);
        assert_eq!(t.isr_change(4, LAG_MS).map(|p| p.isr), Some(vec![1, 2]));
    }
}
