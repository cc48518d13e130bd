//! Narrowing down operations whose outcome is unknown, before a check (etcd's robustness tests do the
//! same, in `tests/robustness/validate/patch_history.go`).
//!
//! An unknown write may take effect at any moment after its call, or never; every one left like that
//! multiplies the configurations a search must rule out before it can call a history illegal. Most can be
//! pinned down soundly when the test writes each value at most once per key:
//! - an unknown read changes nothing, so it is dropped;
//! - a value some completed operation observed was written before that operation returned.
//!
//! With the complete record of the store's changes (the watch events) and recorded revisions, more:
//! - a write whose value never appears in the record, and that nobody observed, never took effect: it is
//!   dropped; one whose value appears succeeded at that revision;
//! - the deletions of a key that no completed delete reports were made by the unknown deletes of that key
//!   (given to them in call order, which is always a valid choice since they are alike); the unknown
//!   deletes left over removed nothing and are dropped;
//! - a change at revision `r` was made before any response reporting revision `r` or later returned.
//!
//! The last rule assumes what etcd promises: revisions count the store's changes in the order they happen.

use super::{KvInput, KvOperation, KvOutput};
use crate::watch::{Change, Event};
use std::collections::{HashMap, HashSet};

/// `history` with its unknown outcomes narrowed down as the module documentation describes. The result
/// is linearizable exactly when `history` is, but checks faster; indices in a verdict refer to the result.
///
/// Pass `changes` only when it holds every change the store made from before the first operation to after
/// the last one: a whole-keyspace watcher's events, say, once [`check_watches`] found no violation
/// ([`observed_changes`] gathers them). Without it only the first two rules apply.
///
/// [`check_watches`]: crate::check_watches
/// [`observed_changes`]: crate::watch::observed_changes
pub fn patch_unknown_outcomes(history: &[KvOperation], changes: Option<&[Event]>) -> Vec<KvOperation> {
    let evidence = Evidence::gather(history);
    let record = changes.map(|changes| Record::new(history, changes));
    // Each unknown delete's rank among the unknown deletes of its key, in call order.
    let mut unknown_deletes: Vec<(&[u8], u64, usize)> = history
        .iter()
        .enumerate()
        .filter(|(_, op)| matches!((&op.input, &op.output), (KvInput::Delete { .. }, KvOutput::Unknown)))
        .map(|(index, op)| (op.input.key(), op.call_time, index))
        .collect();
    unknown_deletes.sort_unstable();
    let mut delete_rank: HashMap<usize, usize> = HashMap::new();
    for (position, &(key, _, index)) in unknown_deletes.iter().enumerate() {
        let first_of_key = unknown_deletes.partition_point(|&(other, _, _)| other < key);
        delete_rank.insert(index, position - first_of_key);
    }

    let mut patched = Vec::with_capacity(history.len());
    for (index, op) in history.iter().enumerate() {
        if op.output != KvOutput::Unknown {
            patched.push(op.clone());
            continue;
        }
        let key = op.input.key();
        let settled = match (&op.input, &record) {
            (KvInput::Get { .. }, _) => continue,
            (KvInput::Delete { .. }, Some(record)) if !record.unattributed_keys.contains(key) => {
                let deletions = record.unexplained_deletions.get(key).map_or(&[][..], Vec::as_slice);
                match deletions.get(delete_rank[&index]) {
                    None => continue, // It removed nothing.
                    Some(&revision) => Some((KvOutput::Delete { deleted: 1, revision: Some(revision) }, revision)),
                }
            }
            (KvInput::Put { value, .. } | KvInput::Cas { new: value, .. }, record)
                if evidence.writers[&(key, value.as_slice())] == 1 =>
            {
                let seen = evidence.first_seen.get(&(key, value.as_slice())).copied();
                match record.as_ref().map(|record| record.puts.get(&(key, value.as_slice()))) {
                    Some(None) if seen.is_none() => continue, // It never took effect.
                    Some(Some(&revision)) => {
                        let output = match op.input {
                            KvInput::Cas { .. } => KvOutput::Cas { succeeded: true, revision: Some(revision) },
                            _ => KvOutput::Put { revision: Some(revision) },
                        };
                        Some((output, revision))
                    }
                    _ => {
                        let mut op = op.clone();
                        op.return_time = seen.map(|seen| seen.max(op.call_time));
                        patched.push(op);
                        continue;
                    }
                }
            }
            _ => None,
        };
        let mut op = op.clone();
        if let Some((output, revision)) = settled {
            op.output = output;
            let seen = match &op.input {
                KvInput::Put { value, .. } | KvInput::Cas { new: value, .. } => {
                    evidence.first_seen.get(&(key, value.as_slice())).copied()
                }
                _ => None,
            };
            // A bound before the call makes the history illegal: keep the operation valid so the check says so.
            op.return_time =
                seen.into_iter().chain(evidence.returned_by(revision)).min().map(|bound| bound.max(op.call_time));
        }
        patched.push(op);
    }
    patched
}

/// What the completed operations tell about the unknown ones.
struct Evidence<'a> {
    /// How many operations write each (key, value); only a value written once identifies its write.
    writers: HashMap<(&'a [u8], &'a [u8]), usize>,
    /// The earliest return of a completed operation that saw each (key, value).
    first_seen: HashMap<(&'a [u8], &'a [u8]), u64>,
    /// (revision, earliest return of a response reporting that revision or a later one), by revision.
    reached: Vec<(i64, u64)>,
}

impl<'a> Evidence<'a> {
    fn gather(history: &'a [KvOperation]) -> Self {
        let mut writers: HashMap<(&[u8], &[u8]), usize> = HashMap::new();
        let mut first_seen: HashMap<(&[u8], &[u8]), u64> = HashMap::new();
        let mut reached = Vec::new();
        for op in history {
            let key = op.input.key();
            if let KvInput::Put { value, .. } | KvInput::Cas { new: value, .. } = &op.input {
                *writers.entry((key, value)).or_default() += 1;
            }
            let Some(returned) = op.return_time else { continue };
            let seen = match (&op.input, &op.output) {
                (_, KvOutput::Get { value: Some(value), .. }) => Some(value.as_slice()),
                (KvInput::Cas { expected: Some(expected), .. }, KvOutput::Cas { succeeded: true, .. }) => {
                    Some(expected.as_slice())
                }
                _ => None,
            };
            if let Some(value) = seen {
                let earliest = first_seen.entry((key, value)).or_insert(returned);
                *earliest = (*earliest).min(returned);
            }
            let revision = match &op.output {
                KvOutput::Get { mod_revision, .. } => *mod_revision,
                KvOutput::Put { revision } | KvOutput::Delete { revision, .. } | KvOutput::Cas { revision, .. } => {
                    *revision
                }
                KvOutput::Unknown => None,
            };
            reached.extend(revision.map(|revision| (revision, returned)));
        }
        reached.sort_unstable();
        for index in (0..reached.len().saturating_sub(1)).rev() {
            reached[index].1 = reached[index].1.min(reached[index + 1].1);
        }
        Evidence { writers, first_seen, reached }
    }

    /// The earliest return of a response that reports `revision` or a later one.
    fn returned_by(&self, revision: i64) -> Option<u64> {
        self.reached
            .get(self.reached.partition_point(|&(reached, _)| reached < revision))
            .map(|&(_, returned)| returned)
    }
}

/// The complete record of the store's changes, as far as the unknown operations go.
struct Record<'a> {
    /// The revision that put each (key, value).
    puts: HashMap<(&'a [u8], &'a [u8]), i64>,
    /// For each key, the revisions of its deletions that no completed delete reports, in order.
    unexplained_deletions: HashMap<&'a [u8], Vec<i64>>,
    /// Keys with a completed deletion whose revision was not recorded: their deletions cannot be told apart.
    unattributed_keys: HashSet<&'a [u8]>,
}

impl<'a> Record<'a> {
    fn new(history: &'a [KvOperation], changes: &'a [Event]) -> Self {
        let mut reported: HashSet<(&[u8], i64)> = HashSet::new();
        let mut unattributed_keys = HashSet::new();
        for op in history {
            match (&op.input, &op.output) {
                (KvInput::Delete { key }, KvOutput::Delete { deleted: 1, revision: Some(revision) }) => {
                    reported.insert((key, *revision));
                }
                (KvInput::Delete { key }, KvOutput::Delete { deleted: 1, revision: None }) => {
                    unattributed_keys.insert(key.as_slice());
                }
                _ => {}
            }
        }
        let mut puts = HashMap::new();
        let mut unexplained_deletions: HashMap<&[u8], Vec<i64>> = HashMap::new();
        for event in changes {
            match &event.change {
                Change::Put(value) => {
                    puts.insert((event.key.as_slice(), value.as_slice()), event.revision);
                }
                Change::Delete if !reported.contains(&(event.key.as_slice(), event.revision)) => {
                    unexplained_deletions.entry(&event.key).or_default().push(event.revision);
                }
                Change::Delete => {}
            }
        }
        unexplained_deletions.values_mut().for_each(|revisions| revisions.sort_unstable());
        Record { puts, unexplained_deletions, unattributed_keys }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Operation;

    fn done(input: KvInput, output: KvOutput, call: u64, ret: u64) -> KvOperation {
        Operation::completed(0, input, output, call, ret)
    }

    #[test]
    fn unknown_reads_are_dropped_and_observed_writes_bounded() {
        let history = [
            KvOperation::unknown(1, KvInput::get("k"), 0),
            KvOperation::unknown(1, KvInput::put("k", "a"), 1),
            done(KvInput::get("k"), KvOutput::get(Some(b"a")), 20, 30),
            done(KvInput::get("k"), KvOutput::get(Some(b"a")), 10, 25),
            KvOperation::unknown(1, KvInput::put("k", "never seen"), 40),
            KvOperation::unknown(1, KvInput::delete("k"), 41),
        ];
        let patched = patch_unknown_outcomes(&history, None);
        assert_eq!(patched.len(), 5);
        assert_eq!((patched[0].return_time, &patched[0].output), (Some(25), &KvOutput::Unknown));
        assert_eq!(patched[3..], history[4..]);
    }

    #[test]
    fn the_change_record_settles_unknown_writes() {
        let history = [
            KvOperation::unknown(1, KvInput::put("k", "applied"), 0),
            KvOperation::unknown(1, KvInput::cas("k", None, "lost"), 1),
            done(KvInput::put("other", "x"), KvOutput::Put { revision: Some(9) }, 2, 50),
            done(KvInput::put("other", "y"), KvOutput::Put { revision: Some(3) }, 2, 40),
        ];
        let changes = [Event::put(4, "k", "applied"), Event::put(3, "other", "y"), Event::put(9, "other", "x")];
        let patched = patch_unknown_outcomes(&history, Some(&changes));
        assert_eq!(patched.len(), 3, "the cas never took effect");
        assert_eq!(patched[0].output, KvOutput::Put { revision: Some(4) });
        assert_eq!(patched[0].return_time, Some(50), "revision 9 was reported at 50, so revision 4 came before");
    }

    #[test]
    fn unexplained_deletions_go_to_the_unknown_deletes_in_call_order() {
        let deleted = |revision| KvOutput::Delete { deleted: 1, revision: Some(revision) };
        let put = |revision| KvOutput::Put { revision: Some(revision) };
        let history = [
            done(KvInput::put("k", "a"), put(2), 0, 1),
            KvOperation::unknown(1, KvInput::delete("k"), 7),
            KvOperation::unknown(2, KvInput::delete("k"), 2),
            done(KvInput::put("k", "b"), put(4), 3, 4),
            done(KvInput::delete("k"), deleted(5), 5, 6),
            KvOperation::unknown(3, KvInput::delete("k"), 9),
            done(KvInput::put("k", "c"), put(6), 6, 8),
            done(KvInput::put("k", "d"), put(8), 20, 30),
        ];
        let changes = [
            Event::put(2, "k", "a"),
            Event::delete(3, "k"),
            Event::put(4, "k", "b"),
            Event::delete(5, "k"),
            Event::put(6, "k", "c"),
            Event::delete(7, "k"),
            Event::put(8, "k", "d"),
        ];
        let patched = patch_unknown_outcomes(&history, Some(&changes));
        assert_eq!(patched.len(), 7, "the third unknown delete removed nothing");
        assert_eq!((&patched[1].output, patched[1].return_time), (&deleted(7), Some(30)));
        assert_eq!((&patched[2].output, patched[2].return_time), (&deleted(3), Some(4)));
        assert!(crate::check(&crate::KvModel, &patched, std::time::Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn values_written_twice_are_left_alone() {
        let history = [
            KvOperation::unknown(1, KvInput::put("k", "a"), 0),
            done(KvInput::put("k", "a"), KvOutput::put(), 1, 2),
            done(KvInput::get("k"), KvOutput::get(Some(b"a")), 3, 4),
        ];
        assert_eq!(patch_unknown_outcomes(&history, Some(&[])), history.to_vec());
    }
}
