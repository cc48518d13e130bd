//! Watch streams with one fault each, and a clean case.

use super::*;

fn watcher(name: &str, prefix: &str, start_revision: Option<i64>, events: Vec<Event>) -> WatchStream {
    WatchStream { name: name.to_string(), prefix: prefix.into(), start_revision, events }
}

/// The writes of a small run: revisions 2 to 6, the fifth a transaction touching two keys.
fn acknowledged() -> Vec<Event> {
    vec![
        Event::put(2, "a", "1"),
        Event::put(3, "b", "1"),
        Event::delete(4, "a"),
        Event::put(5, "a", "2"),
        Event::put(5, "c", "1"),
        Event::put(6, "b", "2"),
    ]
}

fn violations(watchers: &[WatchStream]) -> Vec<WatchViolation> {
    check_watches(&acknowledged(), watchers).expect_err("expected violations")
}

#[test]
fn complete_streams_pass() {
    let everything = watcher("all", "", Some(2), acknowledged());
    let from_four = watcher("late", "", Some(4), acknowledged()[2..].to_vec());
    // A watcher cut short is only held to what came before its last event.
    let cut_short = watcher("short", "", Some(1), acknowledged()[..3].to_vec());
    let only_b = watcher("b-only", "b", Some(2), vec![Event::put(3, "b", "1"), Event::put(6, "b", "2")]);
    // Changes no client acknowledged (their answers were lost) still count when a watcher saw them.
    let mut with_unacknowledged = acknowledged();
    with_unacknowledged.push(Event::put(7, "d", "1"));
    let extra = watcher("extra", "", Some(2), with_unacknowledged.clone());
    let extra_too = watcher("extra-too", "d", None, vec![Event::put(7, "d", "1")]);
    assert_eq!(check_watches(&acknowledged(), &[everything, from_four, cut_short, only_b, extra, extra_too]), Ok(()));
}

#[test]
fn a_missed_event_is_a_gap() {
    let mut events = acknowledged();
    events.remove(3); // revision 5, key a
    let found = violations(&[watcher("w", "", Some(2), events)]);
    assert_eq!(
        found,
        vec![WatchViolation::Gap {
            watcher: "w".into(),
            revision: 5,
            key: b"a".to_vec(),
            change: Change::Put(b"2".to_vec()),
            known_from: ACKNOWLEDGED.into(),
        }]
    );
    assert_eq!(
        found[0].to_string(),
        "w: missed put \"2\" of key \"a\" at revision 5 (known from the acknowledged writes)"
    );
}

#[test]
fn a_change_only_another_watcher_saw_is_a_gap_too() {
    let seen = vec![Event::put(2, "a", "1"), Event::put(3, "x", "9"), Event::put(6, "b", "2")];
    let missed = vec![Event::put(2, "a", "1"), Event::put(6, "b", "2")];
    let found =
        check_watches(&[], &[watcher("seen", "", Some(2), seen), watcher("missed", "", Some(2), missed)]).unwrap_err();
    assert_eq!(
        found,
        vec![WatchViolation::Gap {
            watcher: "missed".into(),
            revision: 3,
            key: b"x".to_vec(),
            change: Change::Put(b"9".to_vec()),
            known_from: "seen".into(),
        }]
    );
}

#[test]
fn a_missed_event_before_the_first_received_is_a_gap_when_the_start_is_known() {
    let found = violations(&[watcher("w", "", Some(2), acknowledged()[1..].to_vec())]);
    assert!(matches!(&found[..], [WatchViolation::Gap { revision: 2, .. }]), "{found:?}");
    // Without a start revision the watcher is held only to changes from its first event.
    assert_eq!(check_watches(&acknowledged(), &[watcher("w", "", None, acknowledged()[1..].to_vec())]), Ok(()));
}

#[test]
fn an_event_delivered_twice_is_a_duplicate() {
    let mut events = acknowledged();
    events.insert(2, Event::put(3, "b", "1"));
    let found = violations(&[watcher("w", "", Some(2), events)]);
    assert_eq!(
        found,
        vec![WatchViolation::Duplicate {
            watcher: "w".into(),
            revision: 3,
            key: b"b".to_vec(),
            first_position: 1,
            second_position: 2,
        }]
    );
}

#[test]
fn events_out_of_revision_order_are_reported() {
    let mut events = acknowledged();
    events.swap(1, 2); // revision 4 before revision 3
    let found = violations(&[watcher("w", "", Some(2), events)]);
    assert_eq!(
        found,
        vec![WatchViolation::OutOfOrder {
            watcher: "w".into(),
            position: 2,
            previous_revision: 4,
            revision: 3,
            key: b"b".to_vec(),
        }]
    );
}

#[test]
fn watchers_that_disagree_are_reported() {
    let first = vec![Event::put(10, "x", "1")];
    let second = vec![Event::delete(10, "x")];
    let found =
        check_watches(&[], &[watcher("first", "", None, first), watcher("second", "", None, second)]).unwrap_err();
    assert_eq!(
        found,
        vec![WatchViolation::Disagreement {
            revision: 10,
            key: b"x".to_vec(),
            first_source: "first".into(),
            first: Change::Put(b"1".to_vec()),
            second_source: "second".into(),
            second: Change::Delete,
        }]
    );
}

#[test]
fn an_event_that_differs_from_the_acknowledged_write_is_reported() {
    let mut events = acknowledged();
    events[5] = Event::put(6, "b", "stale");
    let found = violations(&[watcher("w", "", Some(2), events)]);
    assert_eq!(
        found,
        vec![WatchViolation::WriteMismatch {
            watcher: "w".into(),
            revision: 6,
            key: b"b".to_vec(),
            acknowledged: Change::Put(b"2".to_vec()),
            delivered: Change::Put(b"stale".to_vec()),
        }]
    );
}

#[test]
fn events_outside_the_watchers_filter_are_reported() {
    let events = vec![Event::put(2, "a", "1"), Event::put(3, "b", "1")];
    let found = violations(&[watcher("a-only", "a", Some(2), events)]);
    assert!(matches!(&found[0], WatchViolation::OutsideFilter { position: 1, revision: 3, .. }), "{found:?}");
    // The gap check skips key b, outside the prefix: the misdelivery is the only violation.
    assert_eq!(found.len(), 1, "{found:?}");
}

#[test]
fn observed_changes_are_the_union_in_revision_order() {
    let late = watcher("late", "", None, vec![Event::put(7, "d", "1"), Event::put(6, "b", "2")]);
    let mut expected = acknowledged();
    expected.push(Event::put(7, "d", "1"));
    assert_eq!(observed_changes(&acknowledged()[3..], &[watcher("all", "", None, acknowledged()), late]), expected);
}
