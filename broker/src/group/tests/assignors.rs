use super::super::{assign, AssignorKind, AssignorMember, TopicMetadata};
use super::*;

struct Input {
    ids: Vec<String>,
    subscribed: Vec<BTreeSet<String>>,
    previous: Vec<Assignment>,
}

impl Input {
    fn new(members: usize, topics: &[&str]) -> Self {
        let subscription: BTreeSet<String> = topics.iter().map(|t| (*t).to_owned()).collect();
        Input {
            ids: (0..members).map(|i| format!("m{i:02}")).collect(),
            subscribed: vec![subscription; members],
            previous: vec![Assignment::new(); members],
        }
    }

    fn run(&self, kind: AssignorKind, topics: &TopicMetadata) -> BTreeMap<String, Assignment> {
        let members: Vec<AssignorMember<'_>> = (0..self.ids.len())
            .map(|i| AssignorMember {
                member_id: &self.ids[i],
                sort_key: &self.ids[i],
                subscribed: &self.subscribed[i],
                previous: &self.previous[i],
            })
            .collect();
        assign(kind, &members, topics)
    }

    /// The next round starts from this one's result, as the coordinator does.
    fn carry(&mut self, result: &BTreeMap<String, Assignment>) {
        for (i, id) in self.ids.iter().enumerate() {
            self.previous[i] = result.get(id).cloned().unwrap_or_default();
        }
    }
}

fn topics(list: &[(&str, u32)]) -> TopicMetadata {
    list.iter().map(|&(t, n)| (t.to_owned(), n)).collect()
}

fn sizes(result: &BTreeMap<String, Assignment>) -> Vec<usize> {
    let mut sizes: Vec<usize> = result.values().map(BTreeSet::len).collect();
    sizes.sort_unstable();
    sizes
}

#[test]
fn ten_partitions_over_10_5_and_15_members_gives_1_each_2_each_and_5_idle() {
    let metadata = topics(&[("clicks", 10)]);
    for kind in AssignorKind::ALL {
        let one_each = Input::new(10, &["clicks"]).run(kind, &metadata);
        assert_eq!(sizes(&one_each), vec![1; 10], "{kind}");
        let two_each = Input::new(5, &["clicks"]).run(kind, &metadata);
        assert_eq!(sizes(&two_each), vec![2; 5], "{kind}");
        let busy_and_idle = Input::new(15, &["clicks"]).run(kind, &metadata);
        let mut expected = vec![0; 5];
        expected.extend([1; 10]);
        assert_eq!(sizes(&busy_and_idle), expected, "{kind}");
    }
}

#[test]
fn range_gives_contiguous_ranges_and_the_first_members_the_extra_partitions() {
    let result = Input::new(3, &["t"]).run(AssignorKind::Range, &topics(&[("t", 7)]));
    assert_eq!(result["m00"], tps("t", 0..3));
    assert_eq!(result["m01"], tps("t", 3..5));
    assert_eq!(result["m02"], tps("t", 5..7));
}

#[test]
fn round_robin_deals_partitions_in_turn_across_topics() {
    let result =
        Input::new(2, &["a", "b"]).run(AssignorKind::RoundRobin, &topics(&[("a", 3), ("b", 2)]));
    let mut m0 = tps("a", [0, 2]);
    m0.extend(tps("b", [1]));
    let mut m1 = tps("a", [1]);
    m1.extend(tps("b", [0]));
    assert_eq!(result["m00"], m0);
    assert_eq!(result["m01"], m1);
}

#[test]
fn every_assignor_gives_partitions_only_to_subscribers() {
    let mut input = Input::new(3, &["a"]);
    input.subscribed[2] = ["b".to_owned()].into();
    let metadata = topics(&[("a", 4), ("b", 3), ("unsubscribed", 5)]);
    for kind in AssignorKind::ALL {
        let result = input.run(kind, &metadata);
        assert_eq!(result["m02"], tps("b", 0..3), "{kind}");
        let a: Assignment = result["m00"].union(&result["m01"]).cloned().collect();
        assert_eq!(a, tps("a", 0..4), "{kind}");
        assert_eq!(sizes(&result)[..2], [2, 2], "{kind}");
    }
}

/// Partitions whose owner differs between two assignments.
fn moved(
    before: &BTreeMap<String, Assignment>,
    after: &BTreeMap<String, Assignment>,
) -> Assignment {
    let owner = |map: &BTreeMap<String, Assignment>| -> BTreeMap<TopicPartition, String> {
        map.iter()
            .flat_map(|(m, a)| a.iter().map(move |tp| (tp.clone(), m.clone())))
            .collect()
    };
    let (b, a) = (owner(before), owner(after));
    b.iter()
        .filter(|(tp, m)| a.get(*tp) != Some(*m))
        .map(|(tp, _)| tp.clone())
        .collect()
}

#[test]
fn sticky_moves_only_what_a_joining_member_must_take() {
    let metadata = topics(&[("t", 10)]);
    let mut input = Input::new(3, &["t"]);
    let first = input.run(AssignorKind::Sticky, &metadata);
    assert_eq!(sizes(&first), vec![3, 3, 4]);
    input.carry(&first);

    input.ids.push("m03".to_owned());
    input.subscribed.push(input.subscribed[0].clone());
    input.previous.push(Assignment::new());
    let second = input.run(AssignorKind::Sticky, &metadata);
    assert_eq!(sizes(&second), vec![2, 2, 3, 3]);
    let moved = moved(&first, &second);
    assert_eq!(
        moved.len(),
        2,
        "the new member needs 2 partitions; moved {moved:?}"
    );
    assert_eq!(moved, second["m03"]);
}

#[test]
fn sticky_moves_only_the_partitions_of_a_member_that_leaves() {
    let metadata = topics(&[("t", 10)]);
    let mut input = Input::new(4, &["t"]);
    let first = input.run(AssignorKind::Sticky, &metadata);
    input.carry(&first);
    let leaver = input.ids.remove(1);
    input.subscribed.remove(1);
    input.previous.remove(1);
    let second = input.run(AssignorKind::Sticky, &metadata);
    assert_eq!(sizes(&second), vec![3, 3, 4]);
    assert_eq!(moved(&first, &second), first[&leaver]);
}

#[test]
fn sticky_keeps_a_balanced_assignment_as_it_is() {
    let metadata = topics(&[("a", 7), ("b", 5)]);
    let mut input = Input::new(5, &["a", "b"]);
    let first = input.run(AssignorKind::Sticky, &metadata);
    input.carry(&first);
    let again = input.run(AssignorKind::Sticky, &metadata);
    assert_eq!(first, again);
}

#[test]
fn sticky_gives_new_partitions_to_the_least_loaded() {
    let mut input = Input::new(3, &["t"]);
    let first = input.run(AssignorKind::Sticky, &topics(&[("t", 4)]));
    input.carry(&first);
    let grown = input.run(AssignorKind::Sticky, &topics(&[("t", 6)]));
    assert_eq!(sizes(&grown), vec![2, 2, 2]);
    assert_eq!(moved(&first, &grown), Assignment::new());
}
