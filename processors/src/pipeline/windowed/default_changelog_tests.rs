//! Which window stages keep a changelog: by default after `key_by`, none after
//! `key_by_local`, none for an accumulator without an encoding, and none in a pipeline
//! where a default one would stand beside a stage without one.

use std::time::Duration;

use super::tests::refusal;
use super::WindowedPipeline;
use crate::pipeline::{Pipeline, Runnable};
use crate::window::WindowSpec;

/// The stages of `runnable` that keep a changelog, and whether by default.
fn changelogs(runnable: &Runnable) -> Vec<(String, bool)> {
    let mut stages = Vec::new();
    runnable.chain.changelog_stages(&mut stages);
    stages.into_iter().map(|s| (s.name, s.by_default)).collect()
}

/// The input records' offsets: items that can travel through a repartition topic.
fn offsets() -> Pipeline<u64> {
    Pipeline::from_topic("t").map(|record| record.offset)
}

fn tumbling() -> WindowSpec {
    WindowSpec::tumbling(Duration::from_secs(10))
}

#[test]
fn a_window_after_key_by_keeps_a_changelog_by_default_and_after_key_by_local_none() {
    let by_key = offsets()
        .key_by(|n| n % 3)
        .filter(|(key, _)| *key > 0)
        .inspect(|_| {})
        .window(tumbling())
        .name("counts")
        .count()
        .for_each(|_, _| {});
    assert_eq!(changelogs(&by_key), vec![("counts".to_string(), true)]);
    assert!(by_key.invalid.is_none());
    let top = offsets()
        .key_by(|n| n % 3)
        .window(tumbling())
        .name("top")
        .top_k(2)
        .for_each(|_, _| {});
    assert_eq!(changelogs(&top), vec![("top".to_string(), true)]);
    let explicit_hop = offsets()
        .map(|n| (n % 3, n))
        .repartition()
        .window(tumbling())
        .count()
        .for_each(|_, _| {});
    assert_eq!(changelogs(&explicit_hop).len(), 1, "as after key_by");

    let local = offsets()
        .key_by_local(|n| n % 3)
        .window(tumbling())
        .count()
        .for_each(|_, _| {});
    assert_eq!(changelogs(&local), vec![]);
    // A `map` may change what the key is: the default goes with it.
    let mapped = offsets()
        .key_by(|n| n % 3)
        .map(|(key, n)| (key, n + 1))
        .window(tumbling())
        .count()
        .for_each(|_, _| {});
    assert_eq!(changelogs(&mapped), vec![]);
    let off = offsets()
        .key_by(|n| n % 3)
        .window(tumbling())
        .without_changelog()
        .count()
        .for_each(|_, _| {});
    assert_eq!(changelogs(&off), vec![]);
    let asked = offsets()
        .key_by_local(|n| n % 3)
        .window(tumbling())
        .name("counts")
        .changelog()
        .count()
        .for_each(|_, _| {});
    assert_eq!(changelogs(&asked), vec![("counts".to_string(), false)]);
}

#[tokio::test]
async fn a_fold_after_key_by_keeps_no_changelog_and_one_asked_for_is_refused() {
    let fold = offsets()
        .key_by(|n| n % 3)
        .window(tumbling())
        .fold(|| 0u64, |acc, _| *acc += 1, |a, b| *a += b)
        .for_each(|_, _| {});
    assert!(fold.invalid.is_none(), "{:?}", fold.invalid);
    assert_eq!(changelogs(&fold), vec![]);
    let reduce = offsets()
        .key_by(|n| n % 3)
        .window(tumbling())
        .reduce(|a, b| a + b)
        .for_each(|_, _| {});
    assert!(reduce.invalid.is_none(), "{:?}", reduce.invalid);
    assert_eq!(changelogs(&reduce), vec![]);
    let asked = offsets()
        .key_by(|n| n % 3)
        .window(tumbling())
        .changelog()
        .fold(|| 0u64, |acc, _| *acc += 1, |a, b| *a += b)
        .for_each(|_, _| {});
    assert!(refusal(asked)
        .await
        .contains("accumulator with an encoding"));
}

#[tokio::test]
async fn default_changelogs_beside_a_stage_without_one_are_dropped_and_asked_for_ones_refused() {
    let counts_then_fold = |first: fn(WindowedPipeline<u64, u64>) -> WindowedPipeline<u64, u64>| {
        first(offsets().key_by(|n| n % 3).window(tumbling()))
            .name("counts")
            .count()
            .map(|result| result.value)
            .key_by(|count| count % 2)
            .window(tumbling())
            .name("sums")
            .fold(|| 0u64, |acc, n| *acc += n, |a, b| *a += b)
            .for_each(|_, _| {})
    };
    let defaults = counts_then_fold(|w| w);
    assert!(defaults.invalid.is_none(), "{:?}", defaults.invalid);
    assert_eq!(changelogs(&defaults), vec![], "every stage replays");

    let asked = counts_then_fold(WindowedPipeline::changelog);
    assert!(refusal(asked).await.contains("give every window stage"));

    let off_and_asked = offsets()
        .key_by(|n| n % 3)
        .window(tumbling())
        .changelog()
        .count()
        .map(|result| result.value)
        .key_by(|count| count % 2)
        .window(tumbling())
        .without_changelog()
        .count()
        .for_each(|_, _| {});
    assert!(refusal(off_and_asked)
        .await
        .contains("give every window stage"));

    let both_default = offsets()
        .key_by(|n| n % 3)
        .window(tumbling())
        .name("first")
        .count()
        .map(|result| result.value)
        .key_by(|count| count % 2)
        .window(tumbling())
        .name("second")
        .count()
        .for_each(|_, _| {});
    assert_eq!(
        changelogs(&both_default),
        vec![("first".to_string(), true), ("second".to_string(), true)]
    );
}
