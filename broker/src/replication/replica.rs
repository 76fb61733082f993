//! The replica's side of replication, on `Partition`: taking leadership,
//! stepping down to follow, storing the leader's batches as they came, and
//! serving a follower's fetch (which is also how the leader learns how far
//! that follower got).

use bytes::Bytes;

use super::role::RoleKind;
use super::tracker::{IsrProposal, ReplicaTracker};
use crate::cluster::NodeId;
use crate::error::BrokerError;
use crate::partition::Partition;

/// What a follower's fetch returns: whole batches up to the leader's log
/// end (not only up to the high watermark: followers must copy what is not
/// yet committed for it ever to be), and the leader's bounds.
#[derive(Debug, Clone)]
pub struct ReplicaRead {
    pub batches: Bytes,
    pub high_watermark: u64,
    pub log_start_offset: u64,
    pub log_end_offset: u64,
}

impl Partition {
    pub fn role_kind(&self) -> RoleKind {
        self.replica.kind()
    }

    pub fn leader_id(&self) -> Option<NodeId> {
        self.replica.leader()
    }

    pub fn log_end_offset(&self) -> u64 {
        self.log().map_or(0, |log| log.log_end_offset())
    }

    /// Takes leadership at `leader_epoch` with the assignment's `replicas`
    /// and `isr`. Everything in the log is kept: a leader elected from the
    /// ISR holds every acknowledged record, and what lies above the high
    /// watermark becomes committed once the followers copy it.
    pub(crate) fn become_leader(
        &self,
        me: NodeId,
        leader_epoch: i32,
        replicas: &[NodeId],
        isr: &[NodeId],
        partition_epoch: i32,
    ) -> Result<(), BrokerError> {
        let log = self.log()?;
        let now_ms = self.clock().now_ms();
        // Exclusive of appends: a fetch answer from the old leader that passed
        // its role check before this must not be stored after it, above the
        // epoch start and the log end the tracker takes here (the chaos test
        // met one: every follower then fetched past the tracker's leader end,
        // counted as nothing, left the ISR, and acks=all stopped for good).
        let high_watermark = self.exclusive_of_appends(|| {
            self.set_leader_epoch(leader_epoch);
            // The new epoch starts at this log's end, before anything is written
            // in it, so a follower asking where the previous epoch ended learns
            // it here (Kafka's step at election).
            log.assign_leader_epoch(leader_epoch)
                .map_err(|e| BrokerError::log(self.topic(), self.index(), e))?;
            let tracker = ReplicaTracker::new(
                me,
                replicas,
                isr,
                partition_epoch,
                log.log_end_offset(),
                log.high_watermark(),
                now_ms,
            );
            let high_watermark = tracker.high_watermark();
            self.replica.set_leader(me, tracker);
            Ok::<u64, BrokerError>(high_watermark)
        })??;
        self.publish_high_watermark(high_watermark);
        self.wake_high_watermark_waiters();
        tracing::info!(topic = %self.topic(), partition = self.index(), leader_epoch, "leading");
        Ok(())
    }

    /// Follows `leader` at `leader_epoch`. Before it fetches, the fetcher
    /// asks the leader where this log's latest epoch ended and cuts the log
    /// there (KIP-279, [`Partition::truncate_by_leader_epoch`]): what lies
    /// above may never have been committed, and the leader's copy decides.
    pub(crate) fn become_follower(
        &self,
        leader: Option<NodeId>,
        leader_epoch: i32,
    ) -> Result<(), BrokerError> {
        self.log()?;
        // Exclusive of appends, as `become_leader`: a client append that passed its
        // role check before this writes before it or not at all.
        self.exclusive_of_appends(|| {
            self.replica.set_follower(leader);
            self.set_leader_epoch(leader_epoch);
        })?;
        // Pending acks=all produces of the old epoch must not succeed now.
        self.wake_high_watermark_waiters();
        tracing::info!(topic = %self.topic(), partition = self.index(), ?leader, leader_epoch, "following");
        Ok(())
    }

    /// Whether this follower still has to find where its log diverges from
    /// its leader's before it fetches.
    pub(crate) fn truncation_pending(&self) -> bool {
        self.replica.kind() == RoleKind::Follower && self.replica.truncation_pending()
    }

    /// The epoch to ask the leader about: this log's latest.
    pub(crate) fn latest_log_epoch(&self) -> Option<i32> {
        self.log().ok().and_then(|log| log.latest_leader_epoch())
    }

    /// One round of KIP-279 with the leader's `answer` for this log's latest
    /// epoch (`None`: the leader knows no such epoch, or this log has none:
    /// fall back to the high watermark, as Kafka does). Returns whether the
    /// log now agrees with the leader's history.
    pub(crate) fn truncate_by_leader_epoch(
        &self,
        answer: Option<(i32, u64)>,
    ) -> Result<bool, BrokerError> {
        if self.replica.kind() != RoleKind::Follower {
            return Ok(true);
        }
        let log = self.log()?;
        let cut = log.follower_truncation(answer);
        let (offset, complete) = (cut.offset, cut.complete);
        if offset < log.log_end_offset() {
            tracing::info!(
                topic = %self.topic(),
                partition = self.index(),
                from = log.log_end_offset(),
                to = offset,
                "cutting the log where it diverges from the leader's"
            );
            self.truncate_log_to(offset)?;
        }
        if complete {
            self.replica.truncation_done();
        }
        Ok(complete)
    }

    /// The leader's answer to a follower's OffsetsForLeaderEpoch.
    pub(crate) fn epoch_end_for_follower(
        &self,
        current_leader_epoch: i32,
        requested_epoch: i32,
    ) -> Result<Option<(i32, u64)>, BrokerError> {
        if self.replica.kind() != RoleKind::Leader || current_leader_epoch != self.leader_epoch() {
            return Err(self.not_leader());
        }
        Ok(self.log()?.leader_epoch_end_offset(requested_epoch))
    }

    /// Stores batches fetched from the leader from `fetch_offset`, offsets
    /// and epochs as the leader wrote them, and learns the leader's high
    /// watermark. Idempotent producers' sequences are recorded as on the
    /// leader, so that this replica, once leader, still refuses their
    /// duplicates. An answer to a fetch from anywhere but this log's end
    /// (it was cut, or grew, while the fetch was out) is dropped: stored, it
    /// would leave a hole or a second copy of some offsets.
    pub(crate) fn append_from_leader(
        &self,
        fetch_offset: u64,
        buf: &[u8],
        leader_high_watermark: u64,
    ) -> Result<(), BrokerError> {
        if self.replica.kind() != RoleKind::Follower {
            return Err(self.not_leader());
        }
        let log = self.log()?;
        if log.log_end_offset() != fetch_offset {
            tracing::debug!(topic = %self.topic(), partition = self.index(), fetch_offset, log_end_offset = log.log_end_offset(), "dropping a fetch answer for another log end");
            return Ok(());
        }
        if !buf.is_empty() {
            self.append_replicated(buf)?;
        }
        // A follower's high watermark is the leader's, as far as its own log goes.
        self.publish_high_watermark(leader_high_watermark.min(log.log_end_offset()));
        Ok(())
    }

    /// A follower holding more than its leader cuts its log to the leader's end.
    pub(crate) fn truncate_for_leader(&self, leader_log_end: u64) -> Result<(), BrokerError> {
        if self.replica.kind() != RoleKind::Follower {
            return Ok(());
        }
        let log = self.log()?;
        tracing::warn!(topic = %self.topic(), partition = self.index(), from = log.log_end_offset(), to = leader_log_end, "cutting a suffix the leader does not have");
        self.truncate_log_to(leader_log_end)
    }

    /// Serves follower `follower`'s fetch from `offset`: whole batches up to
    /// `max_bytes` (at least one) below the log end, after recording that the
    /// follower's log ends at `offset` (which may move the high watermark).
    pub(crate) fn read_for_follower(
        &self,
        follower: NodeId,
        offset: u64,
        max_bytes: usize,
    ) -> Result<ReplicaRead, BrokerError> {
        if self.replica.kind() != RoleKind::Leader {
            return Err(self.not_leader());
        }
        let log = self.log()?;
        let now_ms = self.clock().now_ms();
        let moved = self
            .replica
            .tracker()
            .as_mut()
            .and_then(|tracker| tracker.on_follower_fetch(follower, offset, now_ms));
        if let Some(high_watermark) = moved {
            self.publish_high_watermark(high_watermark);
        }
        let log_end_offset = log.log_end_offset();
        let log_start_offset = log.log_start_offset();
        if offset < log_start_offset || offset > log_end_offset {
            return Err(BrokerError::OffsetOutOfRange {
                topic: self.topic().to_owned(),
                partition: self.index(),
                offset,
                log_start: log_start_offset,
                high_watermark: log.high_watermark(),
            });
        }
        let batches = if offset < log_end_offset {
            let slice = log
                .read(offset, max_bytes, log_end_offset)
                .map_err(|e| BrokerError::log(self.topic(), self.index(), e))?;
            slice
                .to_bytes()
                .map_err(|e| BrokerError::log(self.topic(), self.index(), e))?
        } else {
            Bytes::new()
        };
        Ok(ReplicaRead {
            batches,
            high_watermark: log.high_watermark(),
            log_start_offset,
            log_end_offset,
        })
    }

    /// The ISR change this leader should ask the controller for, if any.
    pub(crate) fn isr_change(&self, lag_time_max_ms: i64) -> Option<IsrProposal> {
        if self.replica.kind() != RoleKind::Leader {
            return None;
        }
        let now_ms = self.clock().now_ms();
        self.replica
            .tracker()
            .as_mut()
            .and_then(|tracker| tracker.isr_change(now_ms, lag_time_max_ms))
    }

    /// The partition epoch of the committed ISR this leader knows.
    pub(crate) fn isr_partition_epoch(&self) -> Option<i32> {
        self.replica
            .tracker()
            .as_ref()
            .map(|tracker| tracker.partition_epoch())
    }

    /// The metadata log, as of entry `index`, has `isr` at `partition_epoch`
    /// for this partition.
    pub(crate) fn isr_committed(&self, isr: &[NodeId], partition_epoch: i32, index: u64) {
        let moved = self
            .replica
            .tracker()
            .as_mut()
            .and_then(|tracker| tracker.on_isr_committed(isr, partition_epoch, index));
        if let Some(high_watermark) = moved {
            self.publish_high_watermark(high_watermark);
        }
    }

    /// This leader's ISR proposal committed; the metadata log, as of entry
    /// `index` (at or after it), has `isr` at `partition_epoch` for this
    /// partition.
    pub(crate) fn isr_proposal_committed(&self, isr: &[NodeId], partition_epoch: i32, index: u64) {
        let moved = self
            .replica
            .tracker()
            .as_mut()
            .and_then(|tracker| tracker.on_isr_proposal_committed(isr, partition_epoch, index));
        if let Some(high_watermark) = moved {
            self.publish_high_watermark(high_watermark);
        }
    }

    /// The ISR proposal was refused or never reached the metadata log. On a
    /// refusal, give the state that refused it to `isr_committed` first, so
    /// the next proposal is computed from it.
    pub(crate) fn isr_proposal_failed(&self) {
        let moved = self
            .replica
            .tracker()
            .as_mut()
            .and_then(|tracker| tracker.on_isr_proposal_failed());
        if let Some(high_watermark) = moved {
            self.publish_high_watermark(high_watermark);
        }
    }

    /// The ISR proposal was not seen committed in time: it may still commit.
    pub(crate) fn isr_proposal_timed_out(&self) {
        if let Some(tracker) = self.replica.tracker().as_mut() {
            tracker.on_isr_proposal_timed_out();
        }
    }

    /// An `acks=all` produce needs `min_isr` in-sync replicas (Kafka's
    /// NOT_ENOUGH_REPLICAS before the append). Alone, there is one.
    pub(crate) fn check_min_isr(&self, min_isr: usize) -> Result<(), BrokerError> {
        let isr = match self.replica.kind() {
            RoleKind::Leader => self.in_sync_replicas().map_or(0, |isr| isr.len()),
            RoleKind::Solo => 1,
            RoleKind::Follower | RoleKind::NotHosted => return Err(self.not_leader()),
        };
        if isr < min_isr {
            return Err(BrokerError::NotEnoughReplicas {
                topic: self.topic().to_owned(),
                partition: self.index(),
                isr,
                min_isr,
            });
        }
        Ok(())
    }

    /// Waits until the high watermark passes `last_offset`: every in-sync
    /// replica holds the append (`acks=all`), or `deadline` passes. The
    /// append happened at `leader_epoch`; if this broker stops leading at
    /// that epoch first, the answer is NOT_LEADER_OR_FOLLOWER (retriable: an
    /// idempotent retry at the new leader is stored once), never a success —
    /// as a follower this log may be cut below `last_offset` and refilled by
    /// the new leader with other records, so its high watermark says nothing
    /// about this append. A broker shutting down answers at once (`closing`),
    /// as Kafka does, rather than holding its shutdown for the replicas.
    pub(crate) async fn wait_replicated(
        &self,
        last_offset: u64,
        leader_epoch: i32,
        deadline: tokio::time::Instant,
        mut closing: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), BrokerError> {
        let still_leading =
            || self.replica.kind() != RoleKind::Follower && self.leader_epoch() == leader_epoch;
        let mut high_watermark = self.subscribe();
        let replicated = async {
            tokio::select! {
                _ = high_watermark.wait_for(|&hw| hw > last_offset || !still_leading()) => {}
                _ = closing.wait_for(|&closing| closing) => {}
            }
        };
        let _ = tokio::time::timeout_at(deadline, replicated).await;
        if !still_leading() {
            return Err(self.not_leader());
        }
        if self.high_watermark() > last_offset {
            return Ok(());
        }
        Err(BrokerError::ReplicationTimedOut {
            topic: self.topic().to_owned(),
            partition: self.index(),
            offset: last_offset,
        })
    }

    /// The in-sync replicas as this leader counts them (committed).
    pub fn in_sync_replicas(&self) -> Option<Vec<NodeId>> {
        self.replica.tracker().as_ref().map(ReplicaTracker::isr)
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use weir_log::batch::{BatchBuilder, Compression};
    use weir_log::LogConfig;

    use super::*;

    fn batch(value: &str) -> BytesMut {
        let mut builder = BatchBuilder::new(Compression::None);
        builder.push(0, None, Some(value.as_bytes()), &[]);
        BytesMut::from(&builder.build().unwrap()[..])
    }

    fn append(partition: &Partition, values: &[&str]) {
        for value in values {
            partition.append(&mut batch(value)).unwrap();
        }
    }

    /// Copies everything `leader` has beyond `follower`'s end.
    fn catch_up(leader: &Partition, follower_id: NodeId, follower: &Partition) {
        loop {
            let read = leader
                .read_for_follower(follower_id, follower.log_end_offset(), 1 << 20)
                .unwrap();
            if read.batches.is_empty() {
                return;
            }
            follower
                .append_from_leader(
                    follower.log_end_offset(),
                    &read.batches,
                    read.high_watermark,
                )
                .unwrap();
        }
    }

    fn log_bytes(dir: &std::path::Path) -> Vec<u8> {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        files.sort();
        files
            .iter()
            .flat_map(|f| std::fs::read(f).unwrap())
            .collect()
    }

    #[test]
    fn an_answer_to_a_fetch_from_another_log_end_is_dropped_not_stored_with_a_hole() {
        let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let leader = Partition::open(dir_a.path(), "t", 0, LogConfig::default(), 0).unwrap();
        let follower = Partition::open(dir_b.path(), "t", 0, LogConfig::default(), 0).unwrap();
        leader.become_leader(1, 1, &[1, 2], &[1, 2], 0).unwrap();
        follower.become_follower(Some(1), 1).unwrap();
        assert!(follower.truncate_by_leader_epoch(None).unwrap());
        append(&leader, &["a", "b"]);
        catch_up(&leader, 2, &follower);
        append(&leader, &["c", "d"]);
        // Asked from offset 2; before the answer comes back the log is cut
        // to 0 (as a truncation after a leader change would).
        let answer = leader.read_for_follower(2, 2, 1 << 20).unwrap();
        follower.log().unwrap().truncate_to(0).unwrap();
        follower
            .append_from_leader(2, &answer.batches, answer.high_watermark)
            .unwrap();
        assert_eq!(follower.log_end_offset(), 0, "nothing stored past a hole");
        catch_up(&leader, 2, &follower);
        assert_eq!(follower.log_end_offset(), 4);
        assert_eq!(log_bytes(dir_a.path()), log_bytes(dir_b.path()));
    }

    #[test]
    fn a_deposed_leader_cuts_what_it_wrote_alone_and_ends_byte_identical_to_the_new_leader() {
        let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = Partition::open(dir_a.path(), "t", 0, LogConfig::default(), 0).unwrap();
        let b = Partition::open(dir_b.path(), "t", 0, LogConfig::default(), 0).unwrap();
        // Epoch 1: A leads, B follows and copies three records.
        a.become_leader(1, 1, &[1, 2], &[1, 2], 0).unwrap();
        b.become_follower(Some(1), 1).unwrap();
        assert!(
            b.truncate_by_leader_epoch(None).unwrap(),
            "an empty log has nothing to cut"
        );
        append(&a, &["a0", "a1", "a2"]);
        catch_up(&a, 2, &b);
        assert_eq!(b.log_end_offset(), 3);
        // A takes two more that B never copies (acks=1), then loses leadership.
        append(&a, &["lost0", "lost1"]);
        assert_eq!(a.log_end_offset(), 5);
        // Epoch 2: B leads and writes its own record at offset 3.
        b.become_leader(2, 2, &[1, 2], &[2], 0).unwrap();
        append(&b, &["b3"]);
        a.become_follower(Some(2), 2).unwrap();
        assert!(a.truncation_pending());
        // KIP-279: A asks where its latest epoch (1) ended on B: at 3.
        let answer = b
            .epoch_end_for_follower(2, a.latest_log_epoch().unwrap())
            .unwrap();
        assert_eq!(answer, Some((1, 3)));
        assert!(a.truncate_by_leader_epoch(answer).unwrap());
        assert!(!a.truncation_pending());
        assert_eq!(a.log_end_offset(), 3, "the two records only A had are gone");
        catch_up(&b, 1, &a);
        assert_eq!(log_bytes(dir_a.path()), log_bytes(dir_b.path()));
        // A stale epoch in the question is refused, not answered.
        assert!(matches!(
            b.epoch_end_for_follower(1, 1),
            Err(BrokerError::NotLeader { .. })
        ));
    }

    #[tokio::test]
    async fn an_acks_all_wait_ends_not_leader_when_the_leader_steps_down_even_if_the_high_watermark_passes(
    ) {
        let dir = tempfile::tempdir().unwrap();
        let p = std::sync::Arc::new(
            Partition::open(dir.path(), "t", 0, LogConfig::default(), 0).unwrap(),
        );
        p.become_leader(1, 1, &[1, 2], &[1, 2], 0).unwrap();
        let appended = p.append(&mut batch("only-here")).unwrap();
        let (_closing_tx, closing) = tokio::sync::watch::channel(false);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        let waiting = {
            let p = std::sync::Arc::clone(&p);
            tokio::spawn(async move {
                p.wait_replicated(
                    appended.last_offset,
                    appended.leader_epoch,
                    deadline,
                    closing,
                )
                .await
            })
        };
        tokio::task::yield_now().await;
        // A new leader at epoch 2 wrote other records at the same offsets;
        // this replica follows, is cut, and copies them: its high watermark
        // passes the offset the old append had.
        p.become_follower(Some(2), 2).unwrap();
        assert!(p.truncate_by_leader_epoch(Some((1, 0))).unwrap());
        let other = p.clone();
        let mut builder = BatchBuilder::new(Compression::None);
        builder.push(0, None, Some(b"from-the-new-leader"), &[]);
        let mut replicated = BytesMut::from(&builder.build().unwrap()[..]);
        weir_log::batch::set_partition_leader_epoch(&mut replicated, 2);
        other
            .append_from_leader(other.log_end_offset(), &replicated, 1)
            .unwrap();
        let answer = waiting.await.unwrap();
        assert!(
            matches!(answer, Err(BrokerError::NotLeader { .. })),
            "{answer:?}"
        );
    }

    #[test]
    fn a_restarted_replica_counts_only_its_checkpointed_high_watermark_committed() {
        let dir = tempfile::tempdir().unwrap();
        let p = Partition::open_replica(
            dir.path(),
            "t",
            0,
            LogConfig::default(),
            0,
            crate::clock::system_clock(),
        )
        .unwrap();
        assert_eq!(p.role_kind(), RoleKind::Follower);
        // A leader's records no follower copied: above its high watermark.
        p.become_leader(1, 1, &[1, 2], &[1, 2], 0).unwrap();
        append(&p, &["a0", "a1", "a2"]);
        assert_eq!((p.log_end_offset(), p.high_watermark()), (3, 0));
        // A crash (no close), and the same broker leads again.
        drop(p);
        let p = Partition::open_replica(
            dir.path(),
            "t",
            0,
            LogConfig::default(),
            1,
            crate::clock::system_clock(),
        )
        .unwrap();
        assert_eq!(p.log_end_offset(), 3);
        p.become_leader(1, 2, &[1, 2], &[1, 2], 0).unwrap();
        assert_eq!(
            p.high_watermark(),
            0,
            "records no other replica holds are not committed by a restart"
        );
        assert!(p.read(0, 1024, false).unwrap().batches.is_empty());
    }

    #[test]
    fn a_replica_that_became_leader_stores_no_batch_of_the_old_leader_checked_before_the_change() {
        let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let old_leader = Partition::open(dir_a.path(), "t", 0, LogConfig::default(), 0).unwrap();
        let p = Partition::open(dir_b.path(), "t", 0, LogConfig::default(), 0).unwrap();
        old_leader.become_leader(1, 1, &[1, 2], &[1, 2], 0).unwrap();
        p.become_follower(Some(1), 1).unwrap();
        append(&old_leader, &["a"]);
        let answer = old_leader.read_for_follower(2, 0, 1 << 20).unwrap();
        // The fetcher's role check passed; then this replica is elected.
        p.become_leader(2, 2, &[1, 2], &[2], 0).unwrap();
        assert!(matches!(
            p.append_replicated(&answer.batches),
            Err(BrokerError::NotLeader { .. })
        ));
        assert_eq!(
            p.log_end_offset(),
            0,
            "the new epoch starts where it took over"
        );
    }

    #[test]
    fn a_client_append_checked_before_a_leader_becomes_follower_is_refused_not_written() {
        use weir_log::pause_point::{pause_at, PausePoint};
        let dir = tempfile::tempdir().unwrap();
        let p = std::sync::Arc::new(
            Partition::open(dir.path(), "t", 0, LogConfig::default(), 0).unwrap(),
        );
        p.become_leader(1, 1, &[1, 2], &[1, 2], 0).unwrap();
        append(&p, &["a"]);
        let pause = pause_at(p.log().unwrap().dir(), PausePoint::AfterValidation);
        let appending = std::thread::spawn({
            let p = std::sync::Arc::clone(&p);
            move || p.append(&mut batch("b"))
        });
        // The append passed its role check and validated its batch; then this
        // replica follows the broker elected in epoch 2.
        assert!(pause.wait_reached(std::time::Duration::from_secs(30)));
        p.become_follower(Some(2), 2).unwrap();
        pause.release();
        assert!(matches!(
            appending.join().unwrap(),
            Err(BrokerError::NotLeader { .. })
        ));
        assert_eq!(p.log_end_offset(), 1, "nothing written after the change");
        assert_eq!(
            p.latest_log_epoch(),
            Some(1),
            "no batch of the new leader's epoch"
        );
    }

    #[test]
    fn a_follower_refuses_produce_and_consume_and_names_its_leader() {
        let dir = tempfile::tempdir().unwrap();
        let p = Partition::open(dir.path(), "t", 0, LogConfig::default(), 0).unwrap();
        p.become_follower(Some(7), 3).unwrap();
        let error = p.append(&mut batch("x")).unwrap_err();
        assert!(error.to_string().contains("broker 7 is"), "{error}");
        assert!(matches!(
            p.read(0, 1024, false),
            Err(BrokerError::NotLeader { .. })
        ));
        assert!(matches!(
            p.check_min_isr(1),
            Err(BrokerError::NotLeader { .. })
        ));
    }
}
