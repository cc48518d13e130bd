//! Randomized histories: a simulated store applies every operation at an instant inside its interval, so
//! the history is linearizable by construction; corrupting one read must make it illegal.

use super::*;
use crate::linearizability::{CheckResult, Model, check};
use crate::watch::Event;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// splitmix64: small, seedable, good enough to shape test histories.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut mixed = self.0;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        mixed ^ (mixed >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

/// What happened to an operation's answer.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fate {
    Returned,
    LostAfterApplying,
    LostWithoutApplying,
}

/// One operation's interval and the instant it takes effect, before its input is chosen.
struct Slot {
    client: u64,
    call: u64,
    effect: u64,
    ret: u64,
}

struct Shape {
    seed: u64,
    clients: u64,
    operations_per_client: usize,
    keys: u64,
    record_revisions: bool,
}

/// A linearizable history: every operation takes effect at a random instant strictly inside its
/// interval, in a sequential store with etcd's revision counter. Also returns the store's changes, as a
/// whole-keyspace watcher would see them.
fn legal_history(shape: &Shape) -> (Vec<KvOperation>, Vec<Event>) {
    let mut rng = Rng(shape.seed);
    let mut slots = Vec::new();
    for client in 0..shape.clients {
        let mut time = rng.below(20);
        for _ in 0..shape.operations_per_client {
            let call = time + 1 + rng.below(10);
            let effect = call + 1 + rng.below(30);
            let ret = effect + 1 + rng.below(30);
            slots.push(Slot { client, call, effect, ret });
            time = ret;
        }
    }
    slots.sort_by_key(|slot| slot.effect);

    let mut store: HashMap<Vec<u8>, (Vec<u8>, i64)> = HashMap::new();
    let mut revision = 1;
    let mut written = 0;
    let mut history = Vec::with_capacity(slots.len());
    let mut changes = Vec::new();
    let recorded = |revision: i64| shape.record_revisions.then_some(revision);
    for slot in &slots {
        let key = format!("key-{}", rng.below(shape.keys)).into_bytes();
        let current = store.get(&key).cloned();
        written += 1;
        let fresh = format!("value-{written}").into_bytes();
        let is_write = rng.below(10) >= 3;
        let fate = match rng.below(60) {
            0 if is_write => Fate::LostAfterApplying,
            1 if is_write => Fate::LostWithoutApplying,
            _ => Fate::Returned,
        };
        let applies = fate != Fate::LostWithoutApplying;
        let (input, output) = if !is_write {
            let output = KvOutput::Get {
                value: current.as_ref().map(|(value, _)| value.clone()),
                mod_revision: current.as_ref().and_then(|&(_, revision)| recorded(revision)),
            };
            (KvInput::Get { key: key.clone() }, output)
        } else {
            match rng.below(4) {
                0 | 1 => {
                    if applies {
                        revision += 1;
                        store.insert(key.clone(), (fresh.clone(), revision));
                        changes.push(Event::put(revision, key.clone(), fresh.clone()));
                    }
                    (KvInput::Put { key: key.clone(), value: fresh }, KvOutput::Put { revision: recorded(revision) })
                }
                2 => {
                    let deleted = u64::from(current.is_some());
                    if applies && current.is_some() {
                        revision += 1;
                        store.remove(&key);
                        changes.push(Event::delete(revision, key.clone()));
                    }
                    (KvInput::Delete { key: key.clone() }, KvOutput::Delete { deleted, revision: recorded(revision) })
                }
                _ => {
                    // Mostly compare against the current value, sometimes against a stale one.
                    let expected = match (rng.below(3), &current) {
                        (0, _) => Some(b"stale".to_vec()),
                        (_, current) => current.as_ref().map(|(value, _)| value.clone()),
                    };
                    let succeeded = expected == current.as_ref().map(|(value, _)| value.clone());
                    if applies && succeeded {
                        revision += 1;
                        store.insert(key.clone(), (fresh.clone(), revision));
                        changes.push(Event::put(revision, key.clone(), fresh.clone()));
                    }
                    let output = KvOutput::Cas { succeeded, revision: recorded(revision) };
                    (KvInput::Cas { key: key.clone(), expected, new: fresh }, output)
                }
            }
        };
        history.push(match fate {
            Fate::Returned => Operation::completed(slot.client, input, output, slot.call, slot.ret),
            Fate::LostAfterApplying | Fate::LostWithoutApplying => KvOperation::unknown(slot.client, input, slot.call),
        });
    }
    history.sort_by_key(|op| op.call_time);
    (history, changes)
}

/// Replaces the value of the completed read nearest the middle of `history` by one never written.
/// Returns its index.
fn corrupt_a_read(history: &mut [KvOperation]) -> usize {
    let middle = history.len() / 2;
    let index = (middle..history.len())
        .find(|&index| matches!(history[index].output, KvOutput::Get { value: Some(_), .. }))
        .expect("a read of a present key after the middle");
    if let KvOutput::Get { value, .. } = &mut history[index].output {
        *value = Some(b"never written".to_vec());
    }
    index
}

fn check_shape(shape: &Shape) {
    let (mut history, _) = legal_history(shape);
    assert!(history.iter().any(|op| op.return_time.is_none()), "the history should hold unknown outcomes");

    let started = Instant::now();
    let result = check(&KvModel, &history, Duration::from_secs(60));
    assert!(result.is_ok(), "the legal history was judged {result}");
    assert!(started.elapsed() < Duration::from_secs(20), "the legal history took {:?}", started.elapsed());

    let corrupted = corrupt_a_read(&mut history);
    let key = history[corrupted].input.key().to_vec();
    match check(&KvModel, &history, Duration::from_secs(60)) {
        CheckResult::Illegal(partitions) => {
            assert_eq!(partitions.len(), 1, "{}", CheckResult::Illegal(partitions.clone()));
            assert_eq!(partitions[0].partition, KvModel.describe_partition(&key));
            assert!(partitions[0].stuck.contains(&corrupted), "{}", partitions[0]);
        }
        other => panic!("the corrupted history was judged {other}"),
    }
}

#[test]
fn a_random_legal_history_passes_and_one_corrupt_read_fails() {
    check_shape(&Shape { seed: 7, clients: 8, operations_per_client: 400, keys: 4, record_revisions: false });
}

#[test]
fn a_random_legal_history_with_revisions_passes_and_one_corrupt_read_fails() {
    check_shape(&Shape { seed: 11, clients: 8, operations_per_client: 400, keys: 4, record_revisions: true });
}

#[test]
fn random_histories_on_one_hot_key_pass() {
    for seed in 0..5 {
        let shape = Shape { seed, clients: 8, operations_per_client: 100, keys: 1, record_revisions: seed % 2 == 0 };
        let (history, _) = legal_history(&shape);
        let result = check(&KvModel, &history, Duration::from_secs(60));
        assert!(result.is_ok(), "seed {seed}: {result}");
    }
}

#[test]
fn a_large_history_with_many_unknown_outcomes_is_decided_once_patched() {
    // 16,000 operations, a few hundred of them unknown: unpatched, the corrupt version is out of reach.
    let shape = Shape { seed: 3, clients: 8, operations_per_client: 2000, keys: 4, record_revisions: true };
    let (history, changes) = legal_history(&shape);
    let mut patched = patch_unknown_outcomes(&history, Some(&changes));
    assert!(patched.len() < history.len(), "some unknown writes never took effect and are dropped");
    assert!(patched.iter().all(|op| op.output != KvOutput::Unknown), "the record settles every unknown outcome");
    let result = check(&KvModel, &patched, Duration::from_secs(60));
    assert!(result.is_ok(), "{result}");

    let corrupted = corrupt_a_read(&mut patched);
    let started = Instant::now();
    let result = check(&KvModel, &patched, Duration::from_secs(60));
    match &result {
        CheckResult::Illegal(partitions) => assert!(
            partitions[0].stuck.contains(&corrupted),
            "{result} corrupted #{corrupted} {:?}",
            patched[corrupted]
        ),
        other => panic!("the corrupted history was judged {other}"),
    }
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
}

#[test]
fn recorded_revisions_keep_a_hot_key_quick() {
    // 16 clients on one key: about 14 operations in flight at any time. Without revisions the orders to
    // rule out are too many; with them, a wrong order is abandoned as soon as it names a stale revision.
    let shape = Shape { seed: 3, clients: 16, operations_per_client: 500, keys: 1, record_revisions: true };
    let (history, _) = legal_history(&shape);
    // Milliseconds with the revisions' help, several seconds without.
    let result = check(&KvModel, &history, Duration::from_secs(3));
    assert!(result.is_ok(), "{result}");
}
