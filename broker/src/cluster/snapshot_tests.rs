//! Crash safety of snapshots and log compaction: the metadata log file and
//! the snapshot file, read back after a compaction that finished, that
//! stopped after each of its steps, or whose snapshot was damaged; and a
//! `QuorumNode` that snapshots and reopens.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};

use super::metadata::{ClusterMetadata, MetadataCommand, PartitionAssignment, TopicMetadata};
use super::node::{ProposalId, QuorumNode};
use super::raft_file::{CompactStep, RaftFile, Recovered};
use super::snapshot;
use super::ClusterError;

const STEPS: [CompactStep; 4] = [
    CompactStep::SnapshotWritten,
    CompactStep::SnapshotInstalled,
    CompactStep::LogWritten,
    CompactStep::LogInstalled,
];

fn create_topic(name: &str) -> MetadataCommand {
    MetadataCommand::CreateTopic(TopicMetadata {
        name: name.into(),
        configs: BTreeMap::new(),
        partitions: vec![PartitionAssignment {
            replicas: vec![1, 2, 3],
            leader: Some(1),
            leader_epoch: 0,
            isr: vec![1, 2, 3],
            partition_epoch: 0,
        }],
    })
}

/// Entry `index` of term `term` creates topic `t<index>`.
fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        data: format!("t{index}").into_bytes().into(),
        ..Default::default()
    }
}

fn apply(metadata: &mut ClusterMetadata, entries: &[Entry]) {
    for e in entries {
        let name = String::from_utf8(e.data.to_vec()).unwrap();
        metadata.apply(e.index, &create_topic(&name)).unwrap();
    }
}

/// The metadata a log and its snapshot stand for.
fn metadata_of(recovered: &Recovered) -> ClusterMetadata {
    let mut metadata = recovered
        .snapshot
        .as_ref()
        .map(|s| s.metadata.clone())
        .unwrap_or_default();
    apply(&mut metadata, &recovered.entries);
    metadata
}

/// A snapshot at `index` of the metadata that entries 1..=index made.
fn snapshot_at(index: u64, term: u64) -> Snapshot {
    let mut metadata = ClusterMetadata::default();
    let entries: Vec<Entry> = (1..=index).map(|i| entry(i, term)).collect();
    apply(&mut metadata, &entries);
    let mut snapshot = Snapshot {
        data: snapshot::encode_data(&metadata).unwrap().into(),
        ..Default::default()
    };
    snapshot.mut_metadata().index = index;
    snapshot.mut_metadata().term = term;
    snapshot
        .mut_metadata()
        .set_conf_state(ConfState::from((vec![1, 2, 3], vec![])));
    snapshot
}

fn hard_state(term: u64, commit: u64) -> HardState {
    HardState {
        term,
        vote: 1,
        commit,
        ..Default::default()
    }
}

/// Writes entries 1..=12 (term 1) and compacts to entry 4, then compacts to
/// entry 8 up to `last_step` (or not at all).
fn log_compacted_twice(dir: &Path, last_step: Option<CompactStep>) {
    let (mut file, _) = RaftFile::open(dir).unwrap();
    let entries: Vec<Entry> = (1..=12).map(|i| entry(i, 1)).collect();
    file.append_entries(&entries[..10]).unwrap();
    file.write_hard_state(&hard_state(1, 10)).unwrap();
    file.sync().unwrap();
    file.compact(&snapshot_at(4, 1), &entries[4..10], &hard_state(1, 10))
        .unwrap();
    file.append_entries(&entries[10..]).unwrap();
    file.write_hard_state(&hard_state(1, 12)).unwrap();
    file.sync().unwrap();
    if let Some(step) = last_step {
        file.compact_through(&snapshot_at(8, 1), &entries[8..], &hard_state(1, 12), step)
            .unwrap();
    }
}

#[test]
fn a_compacted_log_reopens_to_its_snapshot_and_the_entries_after_it() {
    let dir = tempfile::tempdir().unwrap();
    log_compacted_twice(dir.path(), Some(CompactStep::LogInstalled));
    let (_, recovered) = RaftFile::open(dir.path()).unwrap();
    let snapshot = recovered.snapshot.as_ref().unwrap();
    assert_eq!((snapshot.index(), snapshot.term()), (8, 1));
    let indexes: Vec<u64> = recovered.entries.iter().map(|e| e.index).collect();
    assert_eq!(indexes, vec![9, 10, 11, 12]);
    assert_eq!(recovered.hard_state.commit, 12);
    assert_eq!(metadata_of(&recovered).topics.len(), 12);
    assert_eq!(metadata_of(&recovered).applied_index, 12);
    // Nothing a compaction wrote is left half-done.
    let mut names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, vec!["raft.log", "snapshot"]);
}

#[test]
fn a_crash_after_any_compaction_step_reopens_to_the_same_metadata() {
    let reference = tempfile::tempdir().unwrap();
    log_compacted_twice(reference.path(), None);
    let (_, recovered) = RaftFile::open(reference.path()).unwrap();
    let expected = metadata_of(&recovered);
    assert_eq!(expected.topics.len(), 12);
    for step in STEPS {
        let dir = tempfile::tempdir().unwrap();
        // Dropping the file mid-compaction is the crash: what was written
        // stays (the page cache outlives the process), nothing else runs.
        log_compacted_twice(dir.path(), Some(step));
        let (mut file, recovered) = RaftFile::open(dir.path()).unwrap();
        assert_eq!(metadata_of(&recovered), expected, "after {step:?}");
        let snapshot_index = recovered.snapshot.as_ref().unwrap().index();
        let expected_snapshot = if step >= CompactStep::SnapshotInstalled {
            8
        } else {
            4
        };
        assert_eq!(snapshot_index, expected_snapshot, "after {step:?}");
        assert_eq!(recovered.hard_state.commit, 12, "after {step:?}");
        // The log goes on from there, and a second reopen agrees.
        file.append_entries(&[entry(13, 1)]).unwrap();
        file.sync().unwrap();
        drop(file);
        let (_, again) = RaftFile::open(dir.path()).unwrap();
        assert_eq!(
            metadata_of(&again).topics.len(),
            13,
            "after {step:?}, then one more entry"
        );
    }
}

#[test]
fn a_crash_while_installing_a_leaders_snapshot_drops_the_replaced_suffix() {
    // The follower held entries 1..=5 of term 1, of which 4 and 5 the leader
    // never had; the leader's snapshot is at entry 6 of term 2.
    let leader = snapshot_at(6, 2);
    for step in STEPS {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut file, _) = RaftFile::open(dir.path()).unwrap();
            let mut entries: Vec<Entry> = (1..=5).map(|i| entry(i, 1)).collect();
            entries[3].data = b"stale4".to_vec().into();
            entries[4].data = b"stale5".to_vec().into();
            file.append_entries(&entries).unwrap();
            file.write_hard_state(&hard_state(1, 3)).unwrap();
            file.sync().unwrap();
            file.compact_through(&leader, &[], &hard_state(2, 6), step)
                .unwrap();
        }
        let (_, recovered) = RaftFile::open(dir.path()).unwrap();
        let metadata = metadata_of(&recovered);
        if step >= CompactStep::SnapshotInstalled {
            assert_eq!(recovered.snapshot.as_ref().unwrap().index(), 6);
            assert!(recovered.entries.is_empty(), "after {step:?}");
            assert_eq!(metadata.topics.len(), 6, "after {step:?}");
            assert!(!metadata.topics.contains_key("stale4"));
        } else {
            // Not yet installed: the old log, uncommitted suffix and all.
            assert!(recovered.snapshot.is_none());
            assert_eq!(recovered.entries.len(), 5, "after {step:?}");
        }
    }
    // The same with the follower's log reaching past the snapshot in an
    // older term: all of it goes.
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut file, _) = RaftFile::open(dir.path()).unwrap();
        let entries: Vec<Entry> = (1..=9).map(|i| entry(i, 1)).collect();
        file.append_entries(&entries).unwrap();
        file.sync().unwrap();
        file.compact_through(
            &leader,
            &[],
            &hard_state(2, 6),
            CompactStep::SnapshotInstalled,
        )
        .unwrap();
    }
    let (_, recovered) = RaftFile::open(dir.path()).unwrap();
    assert!(recovered.entries.is_empty());
    assert_eq!(metadata_of(&recovered).applied_index, 6);
}

#[test]
fn a_damaged_snapshot_is_refused_with_its_path_never_read_as_empty() {
    let dir = tempfile::tempdir().unwrap();
    log_compacted_twice(dir.path(), Some(CompactStep::LogInstalled));
    let path = dir.path().join("snapshot");
    let whole = fs::read(&path).unwrap();
    let refused = |bytes: &[u8]| {
        let copy = tempfile::tempdir().unwrap();
        fs::copy(dir.path().join("raft.log"), copy.path().join("raft.log")).unwrap();
        fs::write(copy.path().join("snapshot"), bytes).unwrap();
        RaftFile::open(copy.path()).unwrap_err()
    };
    // Torn anywhere: the length or the checksum says so.
    for cut in [1, 10, whole.len() / 2, whole.len() - 1] {
        let error = refused(&whole[..cut]);
        assert!(
            matches!(error, ClusterError::CorruptSnapshot { .. }),
            "cut at {cut}: {error}"
        );
    }
    // One bit flipped in the metadata.
    let mut flipped = whole.clone();
    let last = flipped.len() - 3;
    flipped[last] ^= 0x04;
    let error = refused(&flipped).to_string();
    assert!(error.contains("checksum"), "{error}");
    assert!(
        error.contains(&*path.file_name().unwrap().to_string_lossy()),
        "{error}"
    );
    // Gone: the log says it was compacted.
    fs::remove_file(&path).unwrap();
    let error = RaftFile::open(dir.path()).unwrap_err();
    assert!(
        matches!(
            error,
            ClusterError::SnapshotMissing {
                compacted: 8,
                found: 0,
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("is missing"), "{error}");
}

#[test]
fn an_older_snapshot_than_the_log_was_compacted_to_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    log_compacted_twice(dir.path(), None);
    let older = fs::read(dir.path().join("snapshot")).unwrap();
    let (mut file, _) = RaftFile::open(dir.path()).unwrap();
    let later: Vec<Entry> = (9..=12).map(|i| entry(i, 1)).collect();
    file.compact(&snapshot_at(8, 1), &later, &hard_state(1, 12))
        .unwrap();
    drop(file);
    fs::write(dir.path().join("snapshot"), older).unwrap();
    let error = RaftFile::open(dir.path()).unwrap_err().to_string();
    assert!(
        error.contains("compacted through entry 8") && error.contains("only reaches entry 4"),
        "{error}"
    );
}

/// Drives a one-voter node until `done` holds, within a bound of rounds.
fn drive(node: &mut QuorumNode, done: impl Fn(&QuorumNode) -> bool) {
    for _ in 0..1_000 {
        if done(node) {
            return;
        }
        node.tick();
        node.process_ready().unwrap();
    }
    panic!("not done after 1000 rounds: {:?}", node.status());
}

#[test]
fn a_node_snapshots_every_n_entries_and_reopens_to_the_same_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let mut node = QuorumNode::open(dir.path(), 1, &[1], 5).unwrap();
        drive(&mut node, |n| n.is_leader());
        for seq in 1..=12 {
            node.propose(
                ProposalId { node: 1, seq },
                &create_topic(&format!("t{seq}")),
            )
            .unwrap();
            node.process_ready().unwrap();
        }
        drive(&mut node, |n| n.metadata().topics.len() == 12);
        let status = node.status();
        assert!(
            status.snapshot_index >= 10 && status.snapshot_index <= status.applied_index,
            "{status:?}"
        );
        node.metadata().clone()
    };
    // The log holds only what follows the snapshot.
    let (_, recovered) = RaftFile::open(dir.path()).unwrap();
    let snapshot_index = recovered.snapshot.as_ref().unwrap().index();
    assert!(recovered.entries.iter().all(|e| e.index > snapshot_index));
    let mut node = QuorumNode::open(dir.path(), 1, &[1], 5).unwrap();
    assert_eq!(node.status().snapshot_index, snapshot_index);
    drive(&mut node, |n| {
        n.metadata().applied_index >= before.applied_index
    });
    assert_eq!(node.metadata().topics, before.topics);
    assert_eq!(node.metadata().brokers, before.brokers);
}
