use super::super::{GroupRecord, GroupState, MemberState, OffsetCommit};
use super::*;

/// A coordinator with one group in each interesting state, and every record it wrote.
fn busy_coordinator() -> (GroupCoordinator, Vec<GroupRecord>, Vec<Consumer>) {
    let mut c = coordinator(&[("t", 4), ("u", 2)]);
    let mut records = c.take_records();
    let mut a = joined(&mut c, &["t", "u"], 0);
    let b = joined(&mut c, &["t"], 1);
    // a is told to revoke and has not; b waits for it.
    c.heartbeat(&a.request(), 2).expect("heartbeat");
    c.commit_offsets(
        GROUP,
        &a.member_id,
        a.epoch,
        &[OffsetCommit {
            partition: TopicPartition::new("t", 0),
            offset: 11,
            metadata: "m".to_owned(),
        }],
        3,
    )
    .expect("commit");
    a.owned = a.owned.iter().take(1).cloned().collect();
    records.extend(c.take_records());

    let mut s = Consumer::static_member(&["u"], "s-1");
    let mut req = s.request();
    req.group_id = "statics".to_owned();
    let answer = c.heartbeat(&req, 4).expect("join");
    s.member_id = answer.member_id;
    c.leave("statics", &s.member_id, answer.member_epoch, 5)
        .expect("leave");
    // A group that existed and was deleted leaves nothing behind.
    let mut doomed = Consumer::new(&["u"]).request();
    doomed.group_id = "doomed".to_owned();
    let answer = c.heartbeat(&doomed, 6).expect("join");
    c.leave("doomed", &answer.member_id, answer.member_epoch, 7)
        .expect("leave");
    c.delete_group("doomed").expect("delete");
    records.extend(c.take_records());
    (c, records, vec![a, b])
}

#[test]
fn replaying_the_written_records_rebuilds_the_same_groups_and_offsets() {
    let (original, records, _) = busy_coordinator();
    let states: Vec<GroupState> = original.list_groups().iter().map(|l| l.state).collect();
    assert_eq!(states, vec![GroupState::Reconciling, GroupState::Stable]);
    let replayed = GroupCoordinator::replay(config(), 99, &records, 100).expect("replay");
    assert_eq!(observe(&replayed), observe(&original));
    assert_eq!(replayed.group_state("doomed"), GroupState::Dead);
}

#[test]
fn a_replayed_coordinator_answers_as_the_original_would() {
    let (mut original, records, consumers) = busy_coordinator();
    let mut replayed = GroupCoordinator::replay(config(), 99, &records, 8).expect("replay");
    for consumer in &consumers {
        let want = original.heartbeat(&consumer.request(), 8);
        let got = replayed.heartbeat(&consumer.request(), 8);
        assert_eq!(got, want);
    }
    assert_eq!(observe(&replayed), observe(&original));
    assert_eq!(replayed.take_records(), original.take_records());
}

#[test]
fn replaying_a_compacted_log_gives_the_same_state() {
    let (original, records, _) = busy_coordinator();
    let mut latest: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    for record in &records {
        match &record.value {
            Some(value) => latest.insert(record.key.clone(), value.clone()),
            None => latest.remove(&record.key),
        };
    }
    let compacted: Vec<GroupRecord> = latest
        .into_iter()
        .map(|(key, value)| GroupRecord {
            key,
            value: Some(value),
        })
        .collect();
    assert!(compacted.len() < records.len());
    let replayed = GroupCoordinator::replay(config(), 1, &compacted, 8).expect("replay");
    assert_eq!(observe(&replayed), observe(&original));
}

#[test]
fn replay_restarts_the_session_and_rebalance_timers_from_load_time() {
    let (_, records, consumers) = busy_coordinator();
    let load_ms = 1_000_000;
    let mut replayed = GroupCoordinator::replay(config(), 1, &records, load_ms).expect("replay");
    assert!(replayed.tick(load_ms + 1).is_empty());
    let description = replayed.describe_group(GROUP).expect("group");
    let revoking = description
        .members
        .iter()
        .find(|m| m.member_id == consumers[0].member_id)
        .expect("member");
    assert_eq!(revoking.state, MemberState::UnrevokedPartitions);
    let removed = replayed.tick(load_ms + replayed.config().session_timeout_ms);
    assert_eq!(
        removed.len(),
        3,
        "every silent member goes at the session timeout"
    );
}

#[test]
fn a_damaged_record_is_named_by_its_position() {
    let (_, mut records, _) = busy_coordinator();
    let index = records
        .iter()
        .position(|r| r.value.is_some())
        .expect("a value");
    if let Some(value) = records[index].value.as_mut() {
        value.truncate(value.len() - 1);
    }
    // Later records for the same key would hide the damage: drop them.
    let key = records[index].key.clone();
    let mut kept: Vec<GroupRecord> = records[..=index].to_vec();
    kept.extend(
        records[index + 1..]
            .iter()
            .filter(|r| r.key != key)
            .cloned(),
    );
    let error = GroupCoordinator::replay(config(), 1, &kept, 0).expect_err("damaged");
    assert!(
        matches!(&error, GroupError::CorruptRecord { index: at, .. } if *at == index),
        "{error}"
    );

    let unknown = GroupRecord {
        key: vec![0, 42, 0, 1, b'g'],
        value: Some(vec![0, 0]),
    };
    let error = GroupCoordinator::replay(config(), 1, &[unknown], 0).expect_err("unknown key");
    assert_eq!(
        error.to_string(),
        "__consumer_offsets record at position 0 is damaged: unknown key type 42"
    );
}

#[test]
fn an_offset_commit_key_keeps_its_byte_layout() {
    let mut c = coordinator(&[("t", 4)]);
    c.commit_offsets(
        "g",
        "",
        super::super::NO_MEMBER_EPOCH,
        &[OffsetCommit {
            partition: TopicPartition::new("t", 3),
            offset: 5,
            metadata: String::new(),
        }],
        0,
    )
    .expect("commit");
    let records = c.take_records();
    let key: &[u8] = &[0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 3];
    let commit = records
        .iter()
        .find(|r| r.key == key)
        .expect("offset record");
    let value = commit.value.as_deref().expect("not a tombstone");
    assert_eq!(
        value,
        &[0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    );
}
