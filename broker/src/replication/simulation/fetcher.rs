//! The follower's fetcher and the leader's answers (`fetch.rs`) over the
//! simulated network: one fetcher per (follower, leader), one request out at
//! a time (asked again after a timeout, so a late answer may still come), the
//! same checks before storing an answer.

use weir_log::LogError;

use super::{trace, tracing_on, Sim, NODES};
use crate::cluster::NodeId;
use crate::error::BrokerError;
use crate::replication::role::RoleKind;
use crate::replication::ReplicaRead;

/// Steps a fetcher waits for an answer before it asks again.
const FETCH_TIMEOUT_STEPS: u64 = 20;

#[derive(Debug, Clone)]
pub(super) struct Refused {
    out_of_range: bool,
    log_end_offset: u64,
}

/// Requests go from `follower` to `leader`, answers back; `life` is the
/// follower's, so an answer to a crashed process is dropped.
#[derive(Debug, Clone)]
pub(super) enum Message {
    Fetch {
        follower: NodeId,
        life: u64,
        leader: NodeId,
        request: u64,
        leader_epoch: i32,
        offset: u64,
        max_bytes: usize,
    },
    FetchAnswer {
        follower: NodeId,
        life: u64,
        leader: NodeId,
        request: u64,
        asked_epoch: i32,
        asked_offset: u64,
        result: Result<ReplicaRead, Refused>,
    },
    EpochQuery {
        follower: NodeId,
        life: u64,
        leader: NodeId,
        request: u64,
        current_leader_epoch: i32,
        requested_epoch: i32,
    },
    EpochAnswer {
        follower: NodeId,
        life: u64,
        leader: NodeId,
        request: u64,
        /// `None`: refused (not the leader at that epoch).
        answer: Option<Option<(i32, u64)>>,
    },
}

impl Message {
    pub(super) fn is_answer(&self) -> bool {
        matches!(
            self,
            Message::FetchAnswer { .. } | Message::EpochAnswer { .. }
        )
    }
}

impl Sim {
    /// One round of `fetch::follow` for the replica on `id`: KIP-279 first
    /// while a truncation is pending, then a fetch from its log end at its
    /// epoch.
    pub(super) fn fetch_round(&mut self, id: NodeId) {
        let node = &self.nodes[&id];
        let partition = node.partition.as_ref().unwrap();
        if self.step < node.paused_until || partition.role_kind() != RoleKind::Follower {
            return;
        }
        let Some(leader) = partition.leader_id().filter(|l| NODES.contains(l)) else {
            return;
        };
        if let Some(&(_, sent)) = node.fetchers.get(&leader) {
            if self.step - sent < FETCH_TIMEOUT_STEPS {
                return;
            }
        }
        let life = node.life;
        let message = if partition.truncation_pending() {
            match partition.latest_log_epoch() {
                // No epoch in this log: nothing to compare; the high watermark decides.
                None => {
                    if let Err(error) = partition.truncate_by_leader_epoch(None) {
                        self.fail(format_args!("node {id} cannot truncate: {error}"));
                    }
                    self.checker.cut(id, partition);
                    return;
                }
                Some(epoch) => Message::EpochQuery {
                    follower: id,
                    life,
                    leader,
                    request: self.next_id + 1,
                    current_leader_epoch: partition.leader_epoch(),
                    requested_epoch: epoch,
                },
            }
        } else {
            Message::Fetch {
                follower: id,
                life,
                leader,
                request: self.next_id + 1,
                leader_epoch: partition.leader_epoch(),
                offset: partition.log_end_offset(),
                max_bytes: 256 + self.rng.below(4096) as usize,
            }
        };
        self.next_id += 1;
        let request = (self.next_id, self.step);
        self.nodes
            .get_mut(&id)
            .unwrap()
            .fetchers
            .insert(leader, request);
        self.send(message);
    }

    pub(super) fn handle(&mut self, message: Message) {
        trace!(self, "deliver {message:?}");
        match message {
            Message::Fetch {
                follower,
                life,
                leader,
                request,
                leader_epoch,
                offset,
                max_bytes,
            } => {
                let Some(partition) = self.nodes[&leader].partition.as_ref() else {
                    return;
                };
                // `ReplicaService::read_one`.
                let log_end_offset = partition.log_end_offset();
                let refused = |out_of_range| Refused {
                    out_of_range,
                    log_end_offset,
                };
                let result = if leader_epoch != partition.leader_epoch() {
                    Err(refused(false))
                } else {
                    match partition.read_for_follower(follower, offset, max_bytes) {
                        Ok(read) => Ok(read),
                        Err(BrokerError::OffsetOutOfRange { .. }) => Err(refused(true)),
                        Err(BrokerError::NotLeader { .. }) => Err(refused(false)),
                        Err(error) => self.fail(format_args!(
                            "leader {leader} cannot serve a fetch at {offset}: {error}"
                        )),
                    }
                };
                self.send(Message::FetchAnswer {
                    follower,
                    life,
                    leader,
                    request,
                    asked_epoch: leader_epoch,
                    asked_offset: offset,
                    result,
                });
            }
            Message::FetchAnswer {
                follower,
                life,
                leader,
                request,
                asked_epoch,
                asked_offset,
                result,
            } => {
                let node = self.nodes.get_mut(&follower).unwrap();
                if node.life != life || node.partition.is_none() {
                    return;
                }
                if node
                    .fetchers
                    .get(&leader)
                    .is_some_and(|&(r, _)| r == request)
                {
                    node.fetchers.remove(&leader);
                }
                self.store(follower, leader, (asked_epoch, asked_offset), result);
            }
            Message::EpochQuery {
                follower,
                life,
                leader,
                request,
                current_leader_epoch,
                requested_epoch,
            } => {
                let Some(partition) = self.nodes[&leader].partition.as_ref() else {
                    return;
                };
                let answer =
                    match partition.epoch_end_for_follower(current_leader_epoch, requested_epoch) {
                        Ok(end) => Some(end),
                        Err(BrokerError::NotLeader { .. }) => None,
                        Err(error) => self.fail(format_args!(
                            "leader {leader} cannot answer OffsetsForLeaderEpoch: {error}"
                        )),
                    };
                self.send(Message::EpochAnswer {
                    follower,
                    life,
                    leader,
                    request,
                    answer,
                });
            }
            Message::EpochAnswer {
                follower,
                life,
                leader,
                request,
                answer,
            } => {
                let node = self.nodes.get_mut(&follower).unwrap();
                // The fetcher awaits its query: only that answer, once.
                let awaited = node.fetchers.get(&leader).map(|&(r, _)| r) == Some(request);
                if node.life != life || !awaited {
                    return;
                }
                node.fetchers.remove(&leader);
                // `fetch::truncate`: a refusal is a leader change in flight.
                let Some(answer) = answer else {
                    return;
                };
                let partition = node.partition.as_ref().unwrap();
                if let Err(error) = partition.truncate_by_leader_epoch(answer) {
                    self.fail(format_args!("node {follower} cannot truncate: {error}"));
                }
                self.checker.cut(follower, partition);
            }
        }
    }

    /// `fetch::store`: one partition's answer, stored only if the follower
    /// still follows that leader at the epoch it asked at and has nothing to
    /// cut first (and, in `append_from_leader`, only if its log still ends
    /// where it asked from).
    fn store(
        &mut self,
        id: NodeId,
        leader: NodeId,
        (asked_epoch, asked_offset): (i32, u64),
        result: Result<ReplicaRead, Refused>,
    ) {
        let partition = self.nodes[&id].partition.as_ref().unwrap();
        if partition.leader_epoch() != asked_epoch
            || partition.leader_id() != Some(leader)
            || partition.truncation_pending()
        {
            return;
        }
        trace!(
            self,
            "node {id} stores (log end {})",
            partition.log_end_offset()
        );
        match result {
            Ok(read) => {
                match partition.append_from_leader(asked_offset, &read.batches, read.high_watermark)
                {
                    Ok(()) => {}
                    // A duplicated or late answer from below this log's end:
                    // refused whole, as the real fetcher's warning says, and the
                    // next fetch asks from the log end again.
                    Err(BrokerError::Log {
                        source: LogError::NonContiguous { .. },
                        ..
                    }) => {}
                    Err(error) => self.fail(format_args!(
                        "follower {id} cannot store the leader's batches: {error}"
                    )),
                }
            }
            Err(refused)
                if refused.out_of_range && partition.log_end_offset() > refused.log_end_offset =>
            {
                if let Err(error) = partition.truncate_for_leader(refused.log_end_offset) {
                    self.fail(format_args!("follower {id} cannot truncate: {error}"));
                }
                self.checker.cut(id, partition);
            }
            Err(_) => {}
        }
    }
}
