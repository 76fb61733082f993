//! Bad input gets a clear error and changes nothing.

use super::super::{AssignorKind, GroupState, ID_BYTES_MAX};
use super::*;

#[test]
fn a_refused_join_leaves_no_group_behind() {
    let mut c = coordinator(&[("t", 1)]);
    let mut request = Consumer::new(&["t"]).request();
    request.rebalance_timeout_ms = 0;
    let error = c.heartbeat(&request, 0).expect_err("invalid");
    assert_eq!(
        error.to_string(),
        "group \"g\": rebalance timeout must be positive, got 0 ms"
    );
    assert_eq!(c.group_state(GROUP), GroupState::Dead);
    assert!(c.take_records().is_empty());
}

#[test]
fn negative_epochs_empty_group_ids_and_oversized_names_are_refused() {
    let mut c = coordinator(&[("t", 1)]);
    let _m = joined(&mut c, &["t"], 0);
    let mut request = Consumer::new(&["t"]).request();
    request.member_epoch = -1;
    let error = c.heartbeat(&request, 0).expect_err("negative epoch");
    assert!(
        matches!(error, GroupError::InvalidRequest { .. }),
        "{error}"
    );

    let mut request = Consumer::new(&["t"]).request();
    request.group_id = String::new();
    let error = c.heartbeat(&request, 0).expect_err("empty group id");
    assert_eq!(error.to_string(), "group \"\": the group id is empty");

    let mut request = Consumer::new(&["t"]).request();
    request.member_id = "m".repeat(ID_BYTES_MAX + 1);
    let error = c.heartbeat(&request, 0).expect_err("long member id");
    assert!(
        error.to_string().contains("member id is 1025 bytes"),
        "{error}"
    );

    let mut request = Consumer::new(&["t"]).request();
    request.subscribed_topics.insert("x".repeat(300));
    let error = c.heartbeat(&request, 0).expect_err("long topic");
    assert!(
        error.to_string().contains("topic name of 300 bytes"),
        "{error}"
    );
}

#[test]
fn assignor_names_parse_and_unknown_ones_are_refused() {
    for kind in AssignorKind::ALL {
        assert_eq!(kind.name().parse::<AssignorKind>(), Ok(kind));
    }
    assert_eq!("uniform".parse::<AssignorKind>(), Ok(AssignorKind::Sticky));
    let error = "cooperative".parse::<AssignorKind>().expect_err("unknown");
    assert_eq!(
        error.to_string(),
        "unknown partition assignor \"cooperative\"; the built-in ones are range, round-robin and sticky"
    );
}

#[test]
fn the_group_uses_the_assignor_most_members_ask_for() {
    let mut c = coordinator(&[("t", 4)]);
    for wants in [Some(AssignorKind::Range), Some(AssignorKind::Range), None] {
        let mut request = Consumer::new(&["t"]).request();
        request.server_assignor = wants;
        c.heartbeat(&request, 0).expect("join");
    }
    let description = c.describe_group(GROUP).expect("group");
    assert_eq!(description.assignor, AssignorKind::Range);
    // Range over members in id order: contiguous blocks.
    for member in &description.members {
        let partitions: Vec<u32> = member
            .target_assignment
            .iter()
            .map(|tp| tp.partition)
            .collect();
        assert!(
            partitions.windows(2).all(|w| w[1] == w[0] + 1),
            "range gives contiguous partitions, got {partitions:?}"
        );
    }
}
