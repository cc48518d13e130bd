//! Hand-written key-value histories, each named after the behaviour it pins down.

use super::*;
use crate::linearizability::{CheckResult, IllegalPartition, Model, check};
use std::time::Duration;

fn done(client: u64, input: KvInput, output: KvOutput, call: u64, ret: u64) -> KvOperation {
    Operation::completed(client, input, output, call, ret)
}

fn verdict(history: &[KvOperation]) -> CheckResult {
    check(&KvModel, history, Duration::from_secs(10))
}

fn assert_linearizable(history: &[KvOperation]) {
    let result = verdict(history);
    assert!(result.is_ok(), "expected linearizable, got {result}");
}

/// The single illegal partition of `history`.
fn single_illegal(history: &[KvOperation]) -> IllegalPartition {
    match verdict(history) {
        CheckResult::Illegal(mut partitions) if partitions.len() == 1 => partitions.remove(0),
        other => panic!("expected exactly one illegal partition, got {other}"),
    }
}

fn get(value: &str) -> KvOutput {
    KvOutput::get(Some(value.as_bytes()))
}

fn get_at(value: &str, mod_revision: i64) -> KvOutput {
    KvOutput::Get { value: Some(value.into()), mod_revision: Some(mod_revision) }
}

fn put_at(revision: i64) -> KvOutput {
    KvOutput::Put { revision: Some(revision) }
}

#[test]
fn sequential_writes_and_reads_are_linearizable() {
    assert_linearizable(&[
        done(0, KvInput::get("k"), KvOutput::get(None), 0, 1),
        done(0, KvInput::put("k", "a"), KvOutput::put(), 2, 3),
        done(1, KvInput::get("k"), get("a"), 4, 5),
        done(1, KvInput::delete("k"), KvOutput::delete(1), 6, 7),
        done(0, KvInput::delete("k"), KvOutput::delete(0), 8, 9),
        done(0, KvInput::get("k"), KvOutput::get(None), 10, 11),
    ]);
}

#[test]
fn overlapping_writes_may_take_effect_out_of_call_order() {
    // put(a) is called first but takes effect after put(b): the reads see b, then a.
    assert_linearizable(&[
        done(0, KvInput::put("k", "a"), KvOutput::put(), 0, 10),
        done(1, KvInput::put("k", "b"), KvOutput::put(), 5, 15),
        done(2, KvInput::get("k"), get("b"), 6, 7),
        done(2, KvInput::get("k"), get("a"), 8, 9),
        done(3, KvInput::get("k"), get("a"), 20, 21),
    ]);
}

#[test]
fn a_read_concurrent_with_a_write_may_see_either_value() {
    assert_linearizable(&[
        done(0, KvInput::put("k", "a"), KvOutput::put(), 0, 1),
        done(0, KvInput::put("k", "b"), KvOutput::put(), 2, 10),
        done(1, KvInput::get("k"), get("a"), 3, 4),
        done(2, KvInput::get("k"), get("b"), 3, 4),
        done(1, KvInput::get("k"), get("b"), 5, 6),
    ]);
}

#[test]
fn an_unknown_write_that_took_effect_is_linearizable() {
    assert_linearizable(&[
        done(0, KvInput::put("k", "a"), KvOutput::put(), 0, 1),
        KvOperation::unknown(1, KvInput::put("k", "b"), 2),
        done(2, KvInput::get("k"), get("b"), 50, 51),
        done(2, KvInput::get("k"), get("b"), 52, 53),
    ]);
}

#[test]
fn an_unknown_write_that_never_took_effect_is_linearizable() {
    assert_linearizable(&[
        done(0, KvInput::put("k", "a"), KvOutput::put(), 0, 1),
        KvOperation::unknown(1, KvInput::put("k", "b"), 2),
        KvOperation::unknown(1, KvInput::delete("k"), 3),
        KvOperation::unknown(1, KvInput::cas("k", Some(b"a"), "c"), 4),
        done(2, KvInput::get("k"), get("a"), 50, 51),
        done(2, KvInput::get("k"), get("a"), 52, 53),
    ]);
}

#[test]
fn an_unknown_write_cannot_take_effect_twice() {
    // Once the unknown put(b) was seen and overwritten, the old value b cannot come back.
    let partition = single_illegal(&[
        KvOperation::unknown(1, KvInput::put("k", "b"), 0),
        done(2, KvInput::get("k"), get("b"), 10, 11),
        done(0, KvInput::put("k", "a"), KvOutput::put(), 12, 13),
        done(2, KvInput::get("k"), get("b"), 14, 15),
    ]);
    assert_eq!(partition.stuck, vec![3]);
}

#[test]
fn a_chain_of_compare_and_sets_is_linearizable() {
    assert_linearizable(&[
        done(0, KvInput::cas("k", None, "1"), KvOutput::cas(true), 0, 1),
        done(1, KvInput::cas("k", None, "x"), KvOutput::cas(false), 2, 3),
        // Two concurrent attempts from "1": exactly one wins.
        done(0, KvInput::cas("k", Some(b"1"), "2"), KvOutput::cas(false), 4, 8),
        done(1, KvInput::cas("k", Some(b"1"), "3"), KvOutput::cas(true), 5, 7),
        done(2, KvInput::cas("k", Some(b"3"), "4"), KvOutput::cas(true), 9, 10),
        done(2, KvInput::get("k"), get("4"), 11, 12),
    ]);
}

#[test]
fn two_compare_and_sets_from_the_same_value_cannot_both_succeed() {
    let partition = single_illegal(&[
        done(0, KvInput::put("k", "1"), KvOutput::put(), 0, 1),
        done(1, KvInput::cas("k", Some(b"1"), "2"), KvOutput::cas(true), 2, 6),
        done(2, KvInput::cas("k", Some(b"1"), "3"), KvOutput::cas(true), 3, 5),
    ]);
    assert_eq!(partition.longest_prefix.len(), 2);
}

#[test]
fn a_stale_read_after_a_completed_write_is_illegal() {
    let partition = single_illegal(&[
        done(0, KvInput::put("k", "a"), KvOutput::put(), 0, 1),
        done(0, KvInput::put("k", "b"), KvOutput::put(), 2, 3),
        done(1, KvInput::get("k"), get("a"), 4, 5),
    ]);
    assert_eq!(partition.longest_prefix, vec![0, 1]);
    assert_eq!(partition.stuck, vec![2]);
    assert_eq!(partition.state_after_prefix, "\"b\"");
    assert!(partition.explanation.contains("#2 client 1 [4, 5] get(\"k\") -> \"a\""), "{}", partition.explanation);
    assert!(partition.explanation.contains("the model rejects"), "{}", partition.explanation);
}

#[test]
fn a_read_of_a_value_never_written_is_illegal() {
    let partition = single_illegal(&[
        done(0, KvInput::put("k", "a"), KvOutput::put(), 0, 10),
        done(1, KvInput::get("k"), get("z"), 2, 3),
    ]);
    assert_eq!(partition.longest_prefix, vec![0]);
    assert_eq!(partition.stuck, vec![1]);
}

#[test]
fn a_lost_acknowledged_write_is_illegal() {
    // The first write was acknowledged, yet every later read finds the key absent.
    single_illegal(&[
        done(0, KvInput::put("k", "a"), KvOutput::put(), 0, 1),
        done(1, KvInput::get("k"), KvOutput::get(None), 5, 6),
        done(2, KvInput::get("k"), KvOutput::get(None), 7, 8),
    ]);
}

#[test]
fn a_client_that_does_not_read_its_own_write_is_illegal() {
    single_illegal(&[
        done(1, KvInput::put("k", "a"), KvOutput::put(), 0, 1),
        done(0, KvInput::put("k", "b"), KvOutput::put(), 2, 3),
        done(0, KvInput::get("k"), get("a"), 4, 5),
    ]);
}

#[test]
fn sequential_reads_that_go_back_in_time_are_illegal() {
    // The write of b is still in flight, but once a read saw b a later read cannot see a.
    let partition = single_illegal(&[
        done(0, KvInput::put("k", "a"), KvOutput::put(), 0, 1),
        done(0, KvInput::put("k", "b"), KvOutput::put(), 2, 20),
        done(1, KvInput::get("k"), get("b"), 3, 4),
        done(2, KvInput::get("k"), get("a"), 5, 6),
    ]);
    assert!(partition.stuck.contains(&3), "{partition}");
}

#[test]
fn a_delete_must_report_whether_the_key_existed() {
    single_illegal(&[
        done(0, KvInput::put("k", "a"), KvOutput::put(), 0, 1),
        done(0, KvInput::delete("k"), KvOutput::delete(0), 2, 3),
    ]);
}

#[test]
fn a_read_must_return_the_revision_of_the_write_it_sees() {
    assert_linearizable(&[
        done(0, KvInput::put("k", "a"), put_at(2), 0, 1),
        done(1, KvInput::get("k"), get_at("a", 2), 2, 3),
        done(0, KvInput::put("k", "a"), put_at(7), 4, 5),
        done(1, KvInput::get("k"), get_at("a", 7), 6, 7),
    ]);
    // Same value, but the revision belongs to the overwritten write: a stale read.
    single_illegal(&[
        done(0, KvInput::put("k", "a"), put_at(2), 0, 1),
        done(0, KvInput::put("k", "a"), put_at(7), 4, 5),
        done(1, KvInput::get("k"), get_at("a", 2), 6, 7),
    ]);
}

#[test]
fn writes_to_a_key_must_have_increasing_revisions() {
    single_illegal(&[
        done(0, KvInput::put("k", "a"), put_at(5), 0, 1),
        done(0, KvInput::put("k", "b"), put_at(4), 2, 3),
    ]);
    single_illegal(&[
        done(0, KvInput::put("k", "a"), put_at(5), 0, 1),
        done(0, KvInput::delete("k"), KvOutput::Delete { deleted: 1, revision: Some(5) }, 2, 3),
    ]);
}

#[test]
fn a_read_reveals_the_revision_of_an_unrecorded_write() {
    let unrecorded = done(0, KvInput::put("k", "a"), KvOutput::put(), 0, 1);
    assert_linearizable(&[unrecorded.clone(), done(1, KvInput::get("k"), get_at("a", 3), 2, 3)]);
    // Two reads of the same write cannot see two different revisions.
    single_illegal(&[
        unrecorded,
        done(1, KvInput::get("k"), get_at("a", 3), 2, 3),
        done(1, KvInput::get("k"), get_at("a", 4), 4, 5),
    ]);
}

#[test]
fn an_illegal_key_among_many_legal_ones_is_found_and_named() {
    let mut history = Vec::new();
    let mut time = 0;
    let mut stale_read = 0;
    for key in 0..40 {
        let key = format!("key-{key}");
        history.push(done(0, KvInput::put(key.as_str(), "old"), KvOutput::put(), time, time + 1));
        history.push(done(1, KvInput::put(key.as_str(), "new"), KvOutput::put(), time + 2, time + 3));
        let seen = if key == "key-17" { "old" } else { "new" };
        if key == "key-17" {
            stale_read = history.len();
        }
        history.push(done(2, KvInput::get(key.as_str()), get(seen), time + 4, time + 5));
        time += 6;
    }
    let partition = single_illegal(&history);
    assert_eq!(partition.partition, "key \"key-17\"");
    assert_eq!(partition.operations, 3);
    assert_eq!(partition.stuck, vec![stale_read]);
    assert!(partition.explanation.starts_with("partition key \"key-17\""), "{partition}");
}

#[test]
fn acknowledged_writes_become_watch_events() {
    use crate::watch::Event;
    let history = [
        done(0, KvInput::put("a", "1"), put_at(2), 0, 1),
        done(0, KvInput::put("b", "1"), KvOutput::put(), 0, 1),
        done(0, KvInput::delete("a"), KvOutput::Delete { deleted: 1, revision: Some(3) }, 2, 3),
        done(0, KvInput::delete("a"), KvOutput::Delete { deleted: 0, revision: Some(3) }, 4, 5),
        done(0, KvInput::cas("a", None, "2"), KvOutput::Cas { succeeded: true, revision: Some(4) }, 6, 7),
        done(0, KvInput::cas("a", None, "3"), KvOutput::Cas { succeeded: false, revision: Some(4) }, 8, 9),
        KvOperation::unknown(1, KvInput::put("a", "4"), 10),
    ];
    assert_eq!(
        acknowledged_writes(&history),
        vec![Event::put(2, "a", "1"), Event::delete(3, "a"), Event::put(4, "a", "2")]
    );
}

#[test]
fn answers_naming_a_revision_the_key_has_moved_past_are_impossible_for_good() {
    let state = KvState { value: Some(b"a".to_vec()), last_change: LastChange::At(5) };
    let impossible = |output: KvOutput| KvModel.impossible_from(&state, &KvInput::put("k", "x"), &output);
    assert!(impossible(put_at(5)));
    assert!(!impossible(put_at(6)));
    assert!(!impossible(KvOutput::put()), "an unrecorded revision may be anything");
    assert!(impossible(KvOutput::Cas { succeeded: false, revision: Some(4) }));
    assert!(!impossible(KvOutput::Cas { succeeded: false, revision: Some(5) }));
    assert!(impossible(get_at("a", 4)));
    assert!(impossible(get_at("b", 5)), "the change at 5 wrote a, not b");
    assert!(!impossible(get_at("a", 5)));
    assert!(!impossible(get_at("b", 6)));
    assert!(!impossible(KvOutput::Unknown));

    let unrecorded = KvState { value: Some(b"a".to_vec()), last_change: LastChange::After(5) };
    assert!(KvModel.impossible_from(&unrecorded, &KvInput::get("k"), &get_at("a", 5)));
    assert!(!KvModel.impossible_from(&unrecorded, &KvInput::get("k"), &get_at("a", 6)));
    assert_eq!(
        KvModel.step(&unrecorded, &KvInput::get("k"), &get_at("a", 6)),
        Some(KvState { value: Some(b"a".to_vec()), last_change: LastChange::At(6) })
    );
}

#[test]
fn a_read_may_not_report_a_revision_before_an_unrecorded_write() {
    single_illegal(&[
        done(0, KvInput::put("k", "a"), put_at(5), 0, 1),
        done(0, KvInput::put("k", "b"), KvOutput::put(), 2, 3),
        done(1, KvInput::get("k"), get_at("b", 4), 4, 5),
    ]);
}
