//! Unit tests of [`FrequentItems`]: table layout after purges and compactions, detached and
//! logged long keys, overflow, and budgets.

use super::*;

fn check_table(sketch: &FrequentItems) {
    assert_eq!(sketch.held().count(), sketch.len);
    assert!(sketch.len <= sketch.capacity);
    for (index, slot) in sketch.slots.iter().enumerate() {
        if slot.is_empty() {
            continue;
        }
        if slot.is_detached() {
            assert_eq!(sketch.locate_hash(&Probe::of_hash(slot.hash())), Ok(index));
            continue;
        }
        let key = sketch.key_ref(slot).as_slice().to_vec();
        assert_eq!(Probe::of(&key).home_hash, slot.home_hash());
        assert_eq!(sketch.find(&key), Some(slot));
    }
}

/// Long keys of one length, so that a full key log has no room for any of them.
fn long(i: usize) -> Vec<u8> {
    format!("a long key number {i:05}").into_bytes()
}

/// Updates `long(first)`, `long(first + 1)`, ... with `weight(i)` while the key log has room for
/// the next; returns how many.
fn fill_key_log(sketch: &mut FrequentItems, first: usize, weight: impl Fn(usize) -> u64) -> usize {
    let mut i = first;
    while sketch.keys.fits(long(i).len()) {
        sketch.update(&long(i), weight(i));
        i += 1;
    }
    i - first
}

#[test]
fn purges_and_compactions_keep_every_held_key_findable() {
    let mut sketch = FrequentItems::with_budget_and_key_bytes(2048, 20).unwrap();
    for i in 0..20_000u64 {
        // Keys of 1 to 40 bytes, a few of them heavy.
        let id = if i % 3 == 0 {
            i % 7
        } else {
            i * 2_654_435_761 % 5_003
        };
        let key = format!("{id:0width$}", width = 1 + (id % 40) as usize);
        sketch.update(key.as_bytes(), 1 + i % 3);
        if i % 997 == 0 {
            check_table(&sketch);
        }
    }
    check_table(&sketch);
    assert!(sketch.maximum_error() > 0);
}

#[test]
fn a_key_longer_than_the_key_log_is_counted_detached() {
    let mut sketch = FrequentItems::with_budget_and_key_bytes(1024, 8).unwrap();
    let huge = vec![b'x'; 4096];
    sketch.update(b"short", 2);
    sketch.update(&huge, 5);
    sketch.update(&huge, 1);
    assert_eq!(sketch.maximum_error(), 0);
    assert_eq!(sketch.lower_bound(b"short"), 2);
    assert_eq!(
        (sketch.lower_bound(&huge), sketch.upper_bound(&huge)),
        (6, 6)
    );
    assert_eq!(sketch.estimate(&huge), 6);
    // Counted, but its bytes are not held, so it is not shown.
    let top: Vec<Vec<u8>> = sketch.top_k(10).into_iter().map(|item| item.key).collect();
    assert_eq!(top, [b"short".to_vec()]);
    check_table(&sketch);
}

/// Once the key log is full, a detached key that outweighs the lighter half of the logged
/// keys takes their bytes at its next occurrence; the lighter half stays counted, exactly.
#[test]
fn a_detached_key_gets_bytes_once_it_outweighs_the_lighter_logged_keys() {
    let mut sketch = FrequentItems::with_budget_and_key_bytes(8192, 8).unwrap();
    let logged = fill_key_log(&mut sketch, 0, |i| 1 + i as u64 % 4);
    assert!(logged > 4, "{logged}");
    let late = long(9_999);
    sketch.update(&late, 1);
    assert!(sketch.find(&late).unwrap().is_detached(), "the log is full");
    sketch.update(&late, 9);
    assert!(sketch.find(&late).unwrap().is_logged(), "10 outweighs half");
    assert_eq!(sketch.top_k(1)[0].key, late);
    assert_eq!(sketch.maximum_error(), 0);
    let floor = sketch.log_floor;
    assert!((1..4).contains(&floor), "{floor}");
    for i in 0..logged {
        assert_eq!(sketch.lower_bound(&long(i)), 1 + i as u64 % 4, "{i}");
        let slot = sketch.find(&long(i)).unwrap();
        assert_eq!(slot.is_detached(), slot.count() <= floor, "{i}");
    }
    check_table(&sketch);
    // A light one stays detached, and so unseen by `top_k`, while the log is full of heavier
    // keys; it is logged again once it outweighs them.
    fill_key_log(&mut sketch, 10_000, |_| 5);
    let light = long(0);
    sketch.update(&light, 1);
    assert!(sketch.find(&light).unwrap().is_detached());
    sketch.update(&light, 10);
    assert_eq!(sketch.top_k(1)[0].key, light);
    check_table(&sketch);
}

/// Keys logged into room a purge of bytes freed can be lighter than the quantile that purge
/// took: they lower the floor, so a heavier detached key is not kept out by a stale one.
#[test]
fn keys_logged_after_a_purge_of_bytes_lower_the_floor() {
    let mut sketch = FrequentItems::with_budget_and_key_bytes(8192, 8).unwrap();
    fill_key_log(&mut sketch, 0, |_| 10);
    let middling = long(50_000);
    sketch.update(&middling, 5);
    assert!(sketch.find(&middling).unwrap().is_detached());
    assert_eq!(sketch.log_floor, 10);
    // Outweighs them all: they are detached, and it is logged.
    let heavy = long(60_000);
    sketch.update(&heavy, 100);
    assert!(sketch.find(&heavy).unwrap().is_logged());
    // Light keys fill the room it left.
    fill_key_log(&mut sketch, 70_000, |_| 1);
    assert_eq!(sketch.log_floor, 1);
    sketch.update(&middling, 1);
    assert!(
        sketch.find(&middling).unwrap().is_logged(),
        "6 outweighs the keys of 1 logged since"
    );
    let top: Vec<Vec<u8>> = sketch.top_k(2).into_iter().map(|item| item.key).collect();
    assert_eq!(top, [heavy, middling]);
    assert_eq!(sketch.maximum_error(), 0);
    check_table(&sketch);
}

/// Weight past a counter's range raises upper bounds only: a lower bound that counted it
/// as offset would rise for every key whose counter started before.
#[test]
fn weight_past_a_counter_raises_upper_bounds_only() {
    let mut sketch = FrequentItems::with_budget(4096).unwrap();
    sketch.update(b"a", 1);
    sketch.update(b"b", COUNT_MAX + 100);
    assert_eq!(
        (sketch.lower_bound(b"a"), sketch.upper_bound(b"a")),
        (1, 101)
    );
    assert_eq!(sketch.lower_bound(b"b"), COUNT_MAX);
    assert_eq!(sketch.upper_bound(b"b"), COUNT_MAX + 100);
    let mut merged = FrequentItems::with_budget(4096).unwrap();
    merged.update(b"a", 1);
    merged.merge(&sketch);
    assert_eq!(merged.lower_bound(b"a"), 2);
    assert_eq!(merged.upper_bound(b"b"), COUNT_MAX + 100);
}

#[test]
fn a_budget_too_small_is_refused_with_the_budget_that_fits() {
    for hint in [0, 8, 16, 300] {
        let Err(SketchError::BudgetTooSmall { needed_bytes, .. }) =
            FrequentItems::with_budget_and_key_bytes(64, hint)
        else {
            panic!("64 bytes cannot hold a sketch");
        };
        let sketch = FrequentItems::with_budget_and_key_bytes(needed_bytes, hint).unwrap();
        assert!(sketch.memory_bytes() <= needed_bytes);
        assert!(FrequentItems::with_budget_and_key_bytes(needed_bytes - 1, hint).is_err());
    }
}
