//! Group metadata and committed offsets as key/value records of the compacted
//! `__consumer_offsets` topic, and back.
//!
//! A key starts with a big-endian u16 that names its schema (as Kafka's key version does);
//! a value starts with a u16 value version, 0 for all of these. A null value is a
//! tombstone: compaction drops the key. Strings are a u16 length then UTF-8; an optional
//! string has length 0xFFFF when absent. An assignment is a u32 topic count, then per topic
//! its name, a u32 partition count and the u32 partitions.
//!
//! | key type | key fields | value fields (Kafka's record) |
//! |---|---|---|
//! | 1 | group, topic, partition | offset u64, metadata, commit time i64 (`OffsetCommit`) |
//! | 3 | group | group epoch i32, subscribed topic sizes (`ConsumerGroupMetadata`, `…PartitionMetadata`) |
//! | 5 | group, member | instance id?, rebalance timeout i64, assignor u8 (0 none), topics (`ConsumerGroupMemberMetadata`) |
//! | 6 | group | target epoch i32, initial delay end i64 (-1 none) (`ConsumerGroupTargetAssignmentMetadata`) |
//! | 7 | group, member | target assignment (`ConsumerGroupTargetAssignmentMember`) |
//! | 8 | group, member | epoch i32, previous epoch i32, state u8, left u8, assigned, pending revocation (`ConsumerGroupCurrentMemberAssignment`) |

use std::collections::{BTreeMap, BTreeSet};

use super::consumer_group::Group;
use super::error::GroupError;
use super::member::Member;
use super::types::{Assignment, AssignorKind, CommittedOffset, MemberState, TopicPartition};

/// One record of `__consumer_offsets`: `value` None is a tombstone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRecord {
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

impl GroupRecord {
    /// The group the record belongs to (which places it on a partition), or None for a
    /// key this module cannot read.
    pub fn group_id(&self) -> Option<String> {
        RecordKey::decode(&self.key)
            .ok()
            .map(|key| key.group().to_owned())
    }
}

const KEY_OFFSET_COMMIT: u16 = 1;
const KEY_GROUP_METADATA: u16 = 3;
const KEY_MEMBER_METADATA: u16 = 5;
const KEY_TARGET_METADATA: u16 = 6;
const KEY_TARGET_MEMBER: u16 = 7;
const KEY_CURRENT_ASSIGNMENT: u16 = 8;
const VALUE_VERSION: u16 = 0;
const ABSENT: u16 = u16::MAX;

/// What a key names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum RecordKey {
    OffsetCommit {
        group: String,
        partition: TopicPartition,
    },
    GroupMetadata {
        group: String,
    },
    MemberMetadata {
        group: String,
        member: String,
    },
    TargetMetadata {
        group: String,
    },
    TargetMember {
        group: String,
        member: String,
    },
    CurrentAssignment {
        group: String,
        member: String,
    },
}

impl RecordKey {
    pub fn group(&self) -> &str {
        match self {
            RecordKey::OffsetCommit { group, .. }
            | RecordKey::GroupMetadata { group }
            | RecordKey::MemberMetadata { group, .. }
            | RecordKey::TargetMetadata { group }
            | RecordKey::TargetMember { group, .. }
            | RecordKey::CurrentAssignment { group, .. } => group,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        match self {
            RecordKey::OffsetCommit { group, partition } => {
                put_u16(&mut out, KEY_OFFSET_COMMIT);
                put_str(&mut out, group);
                put_str(&mut out, &partition.topic);
                out.extend_from_slice(&partition.partition.to_be_bytes());
            }
            RecordKey::GroupMetadata { group } => {
                put_u16(&mut out, KEY_GROUP_METADATA);
                put_str(&mut out, group);
            }
            RecordKey::TargetMetadata { group } => {
                put_u16(&mut out, KEY_TARGET_METADATA);
                put_str(&mut out, group);
            }
            RecordKey::MemberMetadata { group, member }
            | RecordKey::TargetMember { group, member }
            | RecordKey::CurrentAssignment { group, member } => {
                let kind = match self {
                    RecordKey::MemberMetadata { .. } => KEY_MEMBER_METADATA,
                    RecordKey::TargetMember { .. } => KEY_TARGET_MEMBER,
                    _ => KEY_CURRENT_ASSIGNMENT,
                };
                put_u16(&mut out, kind);
                put_str(&mut out, group);
                put_str(&mut out, member);
            }
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let mut r = Reader { bytes };
        let kind = r.u16()?;
        let group = r.string()?;
        let key = match kind {
            KEY_OFFSET_COMMIT => {
                let topic = r.string()?;
                let partition = r.u32()?;
                RecordKey::OffsetCommit {
                    group,
                    partition: TopicPartition { topic, partition },
                }
            }
            KEY_GROUP_METADATA => RecordKey::GroupMetadata { group },
            KEY_TARGET_METADATA => RecordKey::TargetMetadata { group },
            KEY_MEMBER_METADATA => RecordKey::MemberMetadata {
                group,
                member: r.string()?,
            },
            KEY_TARGET_MEMBER => RecordKey::TargetMember {
                group,
                member: r.string()?,
            },
            KEY_CURRENT_ASSIGNMENT => RecordKey::CurrentAssignment {
                group,
                member: r.string()?,
            },
            other => return Err(format!("unknown key type {other}")),
        };
        r.end()?;
        Ok(key)
    }
}

pub(super) fn offset_value(offset: &CommittedOffset) -> Vec<u8> {
    let mut out = value_header();
    out.extend_from_slice(&offset.offset.to_be_bytes());
    put_str(&mut out, &offset.metadata);
    out.extend_from_slice(&offset.commit_timestamp_ms.to_be_bytes());
    out
}

/// Every record that describes `group` (not its offsets), by encoded key.
pub(super) fn group_records(group: &Group) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut records = BTreeMap::new();
    let gid = || group.id.clone();

    let mut value = value_header();
    value.extend_from_slice(&group.epoch.to_be_bytes());
    put_u32(&mut value, len_u32(group.topic_view.len()));
    for (topic, count) in &group.topic_view {
        put_str(&mut value, topic);
        put_u32(&mut value, *count);
    }
    records.insert(RecordKey::GroupMetadata { group: gid() }.encode(), value);

    let mut value = value_header();
    value.extend_from_slice(&group.target_epoch.to_be_bytes());
    let delayed = group.assignment_delayed_until_ms.unwrap_or(-1);
    value.extend_from_slice(&delayed.to_be_bytes());
    records.insert(RecordKey::TargetMetadata { group: gid() }.encode(), value);

    for member in group.members.values() {
        records.extend(member_records(group, member));
    }
    records
}

/// The records of one member: its metadata, its part of the target, its assignment.
pub(super) fn member_records(group: &Group, member: &Member) -> Vec<(Vec<u8>, Vec<u8>)> {
    let key =
        |make: fn(String, String) -> RecordKey| make(group.id.clone(), member.id.clone()).encode();
    let mut records = Vec::with_capacity(3);
    let mut value = value_header();
    put_opt_str(&mut value, member.instance_id.as_deref());
    value.extend_from_slice(&member.rebalance_timeout_ms.to_be_bytes());
    value.push(assignor_code(member.server_assignor));
    put_u32(&mut value, len_u32(member.subscribed.len()));
    for topic in &member.subscribed {
        put_str(&mut value, topic);
    }
    records.push((
        key(|group, member| RecordKey::MemberMetadata { group, member }),
        value,
    ));

    if let Some(target) = group.target.get(&member.id) {
        let mut value = value_header();
        put_assignment(&mut value, target);
        records.push((
            key(|group, member| RecordKey::TargetMember { group, member }),
            value,
        ));
    }

    let mut value = value_header();
    value.extend_from_slice(&member.epoch.to_be_bytes());
    value.extend_from_slice(&member.previous_epoch.to_be_bytes());
    value.push(state_code(member.state));
    value.push(u8::from(member.left));
    put_assignment(&mut value, &member.assigned);
    put_assignment(&mut value, &member.pending_revocation);
    records.push((
        key(|group, member| RecordKey::CurrentAssignment { group, member }),
        value,
    ));
    records
}

/// Applies one live (non-tombstone) record to `group`, creating members as they appear.
/// Deadlines are not stored: `now_ms + timeout` restarts them, as Kafka does on load.
pub(super) fn apply(
    group: &mut Group,
    key: &RecordKey,
    value: &[u8],
    now_ms: i64,
    session_timeout_ms: i64,
) -> Result<(), String> {
    let mut r = Reader { bytes: value };
    let version = r.u16()?;
    if version != VALUE_VERSION {
        return Err(format!("unknown value version {version}"));
    }
    let member_of = |group: &mut Group, id: &str| -> Member {
        let mut member = group
            .members
            .remove(id)
            .unwrap_or_else(|| Member::new(id.to_owned(), None));
        member.session_deadline_ms = now_ms.saturating_add(session_timeout_ms);
        member
    };
    match key {
        RecordKey::OffsetCommit { partition, .. } => {
            let offset = CommittedOffset {
                offset: r.u64()?,
                metadata: r.string()?,
                commit_timestamp_ms: r.i64()?,
            };
            group.offsets.insert(partition.clone(), offset);
        }
        RecordKey::GroupMetadata { .. } => {
            group.epoch = r.i32()?;
            group.topic_view.clear();
            for _ in 0..r.u32()? {
                let topic = r.string()?;
                group.topic_view.insert(topic, r.u32()?);
            }
        }
        RecordKey::TargetMetadata { .. } => {
            group.target_epoch = r.i32()?;
            let delayed = r.i64()?;
            group.assignment_delayed_until_ms = (delayed >= 0).then_some(delayed);
        }
        RecordKey::MemberMetadata { member, .. } => {
            let mut m = member_of(group, member);
            m.instance_id = r.opt_string()?;
            m.rebalance_timeout_ms = r.i64()?;
            m.server_assignor = assignor_from_code(r.u8()?)?;
            m.subscribed = (0..r.u32()?)
                .map(|_| r.string())
                .collect::<Result<BTreeSet<_>, _>>()?;
            group.members.insert(member.clone(), m);
        }
        RecordKey::TargetMember { member, .. } => {
            group.target.insert(member.clone(), r.assignment()?);
        }
        RecordKey::CurrentAssignment { member, .. } => {
            let mut m = member_of(group, member);
            m.epoch = r.i32()?;
            m.previous_epoch = r.i32()?;
            m.state = state_from_code(r.u8()?)?;
            m.left = r.u8()? != 0;
            m.assigned = r.assignment()?;
            m.pending_revocation = r.assignment()?;
            m.revocation_deadline_ms = (m.state == MemberState::UnrevokedPartitions)
                .then(|| now_ms.saturating_add(m.rebalance_timeout_ms));
            group.members.insert(member.clone(), m);
        }
    }
    r.end()
}

/// The coordinator's error for record `index` that failed to decode.
pub(super) fn corrupt(index: usize, reason: String) -> GroupError {
    GroupError::CorruptRecord { index, reason }
}

fn value_header() -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    put_u16(&mut out, VALUE_VERSION);
    out
}

fn len_u32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Names longer than 65,534 bytes cannot be stored; topic names and ids are far shorter.
fn put_str(out: &mut Vec<u8>, s: &str) {
    let len = u16::try_from(s.len()).unwrap_or(ABSENT - 1);
    put_u16(out, len);
    out.extend_from_slice(&s.as_bytes()[..usize::from(len)]);
}

fn put_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => put_str(out, s),
        None => put_u16(out, ABSENT),
    }
}

fn put_assignment(out: &mut Vec<u8>, assignment: &Assignment) {
    let mut by_topic: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for tp in assignment {
        by_topic.entry(&tp.topic).or_default().push(tp.partition);
    }
    put_u32(out, len_u32(by_topic.len()));
    for (topic, partitions) in by_topic {
        put_str(out, topic);
        put_u32(out, len_u32(partitions.len()));
        for p in partitions {
            put_u32(out, p);
        }
    }
}

fn assignor_code(kind: Option<AssignorKind>) -> u8 {
    match kind {
        None => 0,
        Some(AssignorKind::Range) => 1,
        Some(AssignorKind::RoundRobin) => 2,
        Some(AssignorKind::Sticky) => 3,
    }
}

fn assignor_from_code(code: u8) -> Result<Option<AssignorKind>, String> {
    Ok(match code {
        0 => None,
        1 => Some(AssignorKind::Range),
        2 => Some(AssignorKind::RoundRobin),
        3 => Some(AssignorKind::Sticky),
        other => return Err(format!("unknown assignor code {other}")),
    })
}

fn state_code(state: MemberState) -> u8 {
    match state {
        MemberState::Stable => 0,
        MemberState::UnrevokedPartitions => 1,
        MemberState::UnreleasedPartitions => 2,
    }
}

fn state_from_code(code: u8) -> Result<MemberState, String> {
    Ok(match code {
        0 => MemberState::Stable,
        1 => MemberState::UnrevokedPartitions,
        2 => MemberState::UnreleasedPartitions,
        other => return Err(format!("unknown member state code {other}")),
    })
}

/// Reads without trusting the bytes: every length is checked against what is left.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        if self.bytes.len() < n {
            return Err(format!(
                "ends after {} bytes where {n} more were expected",
                self.bytes.len()
            ));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, String> {
        self.array().map(u16::from_be_bytes)
    }

    fn u32(&mut self) -> Result<u32, String> {
        self.array().map(u32::from_be_bytes)
    }

    fn i32(&mut self) -> Result<i32, String> {
        self.array().map(i32::from_be_bytes)
    }

    fn u64(&mut self) -> Result<u64, String> {
        self.array().map(u64::from_be_bytes)
    }

    fn i64(&mut self) -> Result<i64, String> {
        self.array().map(i64::from_be_bytes)
    }

    fn string(&mut self) -> Result<String, String> {
        match self.opt_string()? {
            Some(s) => Ok(s),
            None => Err("a required string is absent".to_owned()),
        }
    }

    fn opt_string(&mut self) -> Result<Option<String>, String> {
        let len = self.u16()?;
        if len == ABSENT {
            return Ok(None);
        }
        let bytes = self.take(usize::from(len))?;
        String::from_utf8(bytes.to_vec())
            .map(Some)
            .map_err(|_| "a string is not UTF-8".to_owned())
    }

    fn assignment(&mut self) -> Result<Assignment, String> {
        let mut out = Assignment::new();
        for _ in 0..self.u32()? {
            let topic = self.string()?;
            for _ in 0..self.u32()? {
                out.insert(TopicPartition::new(topic.clone(), self.u32()?));
            }
        }
        Ok(out)
    }

    fn end(&self) -> Result<(), String> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(format!("{} bytes left over", self.bytes.len()))
        }
    }
}
