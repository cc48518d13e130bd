//! Properties of the search itself, with the key-value model as the specification.

use super::*;
use crate::kv::{KvInput, KvModel, KvOperation, KvOutput};

#[test]
fn a_deep_history_is_searched_without_recursion() {
    // 20,000 operations on one key, one after the other: as deep as a search gets.
    let history: Vec<KvOperation> = (0..20_000u64)
        .map(|index| {
            let value = (index / 2).to_string();
            let (input, output) = if index % 2 == 0 {
                (KvInput::put("k", value.as_str()), KvOutput::put())
            } else {
                (KvInput::get("k"), KvOutput::get(Some(value.as_bytes())))
            };
            Operation::completed(0, input, output, index * 2, index * 2 + 1)
        })
        .collect();
    let result = check(&KvModel, &history, Duration::from_secs(60));
    assert!(result.is_ok(), "{result}");
}

#[test]
fn an_exhausted_budget_gives_an_unknown_verdict() {
    let history = vec![
        Operation::completed(0, KvInput::put("a", "1"), KvOutput::put(), 0, 1),
        Operation::completed(0, KvInput::put("b", "1"), KvOutput::put(), 0, 1),
    ];
    assert_eq!(
        check(&KvModel, &history, Duration::ZERO),
        CheckResult::Timeout(vec!["key \"a\"".to_string(), "key \"b\"".to_string()])
    );
}

/// Forty concurrent puts and a concurrent read of a value never written: every order of the puts is
/// explored before the search could conclude.
fn forty_concurrent_puts_and_an_impossible_read() -> Vec<KvOperation> {
    let mut history = vec![Operation::completed(0, KvInput::put("k", "a"), KvOutput::put(), 0, 1)];
    for client in 1..=40 {
        history.push(Operation::completed(
            client,
            KvInput::put("k", client.to_string().as_str()),
            KvOutput::put(),
            2,
            100,
        ));
    }
    history.push(Operation::completed(99, KvInput::get("k"), KvOutput::get(Some(b"never")), 2, 100));
    history
}

#[test]
fn the_budget_is_enforced_inside_a_search() {
    // Many concurrent reads of a value never written: every order of them is explored before the
    // search could give up, far more than a millisecond's work.
    let history = forty_concurrent_puts_and_an_impossible_read();
    let started = Instant::now();
    let result = check(&KvModel, &history, Duration::from_millis(50));
    assert!(matches!(result, CheckResult::Timeout(_)), "{result}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn an_illegal_partition_is_reported_even_when_another_times_out() {
    let mut history = vec![
        Operation::completed(0, KvInput::put("bad", "a"), KvOutput::put(), 0, 1),
        Operation::completed(0, KvInput::get("bad"), KvOutput::get(None), 2, 3),
    ];
    for client in 1..=40 {
        history.push(Operation::completed(
            client,
            KvInput::put("slow", client.to_string().as_str()),
            KvOutput::put(),
            2,
            100,
        ));
    }
    history.push(Operation::completed(99, KvInput::get("slow"), KvOutput::get(Some(b"never")), 2, 100));
    match check(&KvModel, &history, Duration::from_millis(50)) {
        CheckResult::Illegal(partitions) => assert_eq!(partitions[0].partition, "key \"bad\""),
        other => panic!("expected the illegal key, got {other}"),
    }
}

#[test]
fn unfinished_operations_sort_after_everything() {
    // The unknown put is called first; a linearization must be able to put it last.
    let history: Vec<KvOperation> = vec![
        KvOperation::unknown(0, KvInput::put("k", "x"), 0),
        Operation::completed(1, KvInput::put("k", "a"), KvOutput::put(), 1, 2),
        Operation::completed(1, KvInput::get("k"), KvOutput::get(Some(b"a")), 3, 4),
    ];
    assert!(check(&KvModel, &history, Duration::from_secs(1)).is_ok());
}

#[test]
fn operations_that_touch_in_time_count_as_concurrent() {
    // The read is called at the instant the write returns, so it may take effect first.
    let history: Vec<KvOperation> = vec![
        Operation::completed(0, KvInput::put("k", "a"), KvOutput::put(), 0, 5),
        Operation::completed(1, KvInput::get("k"), KvOutput::get(None), 5, 6),
    ];
    assert!(check(&KvModel, &history, Duration::from_secs(1)).is_ok());
}

#[test]
#[should_panic(expected = "before its call")]
fn an_operation_returning_before_its_call_is_refused() {
    let history: Vec<KvOperation> = vec![Operation::completed(0, KvInput::get("k"), KvOutput::get(None), 5, 4)];
    check(&KvModel, &history, Duration::from_secs(1));
}

#[test]
fn a_memory_budget_gives_an_unknown_verdict() {
    let history = forty_concurrent_puts_and_an_impossible_read();
    let budget = Budget { time: Duration::from_secs(600), explored: 10_000 };
    let started = Instant::now();
    assert_eq!(check(&KvModel, &history, budget), CheckResult::Timeout(vec!["key \"k\"".to_string()]));
    assert!(started.elapsed() < Duration::from_secs(5));
}
