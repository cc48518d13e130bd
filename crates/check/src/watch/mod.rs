//! The watch-stream checker: every watcher must see every change under its prefix, once, in revision
//! order, and agree with the other watchers and with the acknowledged writes about what each change was.
//!
//! The reference is the union of everything known to have happened: the acknowledged writes (see
//! [`acknowledged_writes`](crate::acknowledged_writes)) and every event any watcher received. A change
//! is named by its (revision, key): one revision can change several keys (a transaction), but a key at
//! most once. A watcher is held to the part of the union between its start revision and the last
//! revision it received, so a watcher cut short by the end of the test is not blamed for what came after.

use crate::kv::Shown;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::{self, Display};

/// What a change did to its key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Change {
    Put(Vec<u8>),
    Delete,
}

/// One change to one key: a watch event, or an acknowledged write.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Event {
    pub revision: i64,
    pub key: Vec<u8>,
    pub change: Change,
}

impl Event {
    pub fn put(revision: i64, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        Event { revision, key: key.into(), change: Change::Put(value.into()) }
    }

    pub fn delete(revision: i64, key: impl Into<Vec<u8>>) -> Self {
        Event { revision, key: key.into(), change: Change::Delete }
    }
}

/// Everything one watcher received, in the order it received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchStream {
    /// How the watcher is named in violations.
    pub name: String,
    /// The watcher's key prefix; empty for the whole keyspace.
    pub prefix: Vec<u8>,
    /// The revision the watch was asked to start from, when it was given one. Without it the watcher is
    /// only held to changes from its first event on.
    pub start_revision: Option<i64>,
    pub events: Vec<Event>,
}

/// One thing wrong with the watch streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchViolation {
    /// An event's revision is lower than the one received just before it.
    OutOfOrder { watcher: String, position: usize, previous_revision: i64, revision: i64, key: Vec<u8> },
    /// The same (revision, key) was delivered twice to one watcher.
    Duplicate { watcher: String, revision: i64, key: Vec<u8>, first_position: usize, second_position: usize },
    /// An event the watcher did not ask for: a key outside its prefix, or a revision before its start.
    OutsideFilter { watcher: String, position: usize, revision: i64, key: Vec<u8> },
    /// Two sources (watchers, or the acknowledged writes) disagree about a change.
    Disagreement {
        revision: i64,
        key: Vec<u8>,
        first_source: String,
        first: Change,
        second_source: String,
        second: Change,
    },
    /// A watcher's event differs from the acknowledged write at the same revision and key.
    WriteMismatch { watcher: String, revision: i64, key: Vec<u8>, acknowledged: Change, delivered: Change },
    /// A change inside the watcher's range that the watcher never received.
    Gap { watcher: String, revision: i64, key: Vec<u8>, change: Change, known_from: String },
}

/// The name of the acknowledged writes as a source of changes.
const ACKNOWLEDGED: &str = "the acknowledged writes";

/// Checks the watch streams against each other and against the acknowledged writes, reporting every
/// violation found.
pub fn check_watches(acknowledged: &[Event], watchers: &[WatchStream]) -> Result<(), Vec<WatchViolation>> {
    let mut violations = Vec::new();
    for watcher in watchers {
        check_stream(watcher, &mut violations);
    }

    // Everything known to have happened, each with the first source that reported it.
    let mut union: BTreeMap<(i64, &[u8]), (&Change, &str)> = BTreeMap::new();
    let sources = acknowledged
        .iter()
        .map(|event| (event, ACKNOWLEDGED))
        .chain(watchers.iter().flat_map(|watcher| watcher.events.iter().map(|event| (event, watcher.name.as_str()))));
    for (event, source) in sources {
        let (known, known_source) =
            *union.entry((event.revision, event.key.as_slice())).or_insert((&event.change, source));
        if *known == event.change {
            continue;
        }
        violations.push(if known_source == ACKNOWLEDGED && source != ACKNOWLEDGED {
            WatchViolation::WriteMismatch {
                watcher: source.to_string(),
                revision: event.revision,
                key: event.key.clone(),
                acknowledged: known.clone(),
                delivered: event.change.clone(),
            }
        } else {
            WatchViolation::Disagreement {
                revision: event.revision,
                key: event.key.clone(),
                first_source: known_source.to_string(),
                first: known.clone(),
                second_source: source.to_string(),
                second: event.change.clone(),
            }
        });
    }

    for watcher in watchers {
        let Some(last) = watcher.events.iter().map(|event| event.revision).max() else {
            continue;
        };
        let from = watcher.start_revision.unwrap_or(watcher.events[0].revision);
        let received: HashSet<(i64, &[u8])> =
            watcher.events.iter().map(|event| (event.revision, event.key.as_slice())).collect();
        let range = union.range((from, &[][..])..).take_while(|((revision, _), _)| *revision <= last);
        for (&(revision, key), &(change, source)) in range {
            if key.starts_with(&watcher.prefix) && !received.contains(&(revision, key)) {
                violations.push(WatchViolation::Gap {
                    watcher: watcher.name.clone(),
                    revision,
                    key: key.to_vec(),
                    change: change.clone(),
                    known_from: source.to_string(),
                });
            }
        }
    }
    if violations.is_empty() { Ok(()) } else { Err(violations) }
}

/// Every change known to have happened, once each, in (revision, key) order: the acknowledged writes and
/// every watcher's events. Where sources disagree the first one wins; [`check_watches`] reports that.
pub fn observed_changes(acknowledged: &[Event], watchers: &[WatchStream]) -> Vec<Event> {
    let mut union: BTreeMap<(i64, &[u8]), &Event> = BTreeMap::new();
    for event in acknowledged.iter().chain(watchers.iter().flat_map(|watcher| &watcher.events)) {
        union.entry((event.revision, event.key.as_slice())).or_insert(event);
    }
    union.into_values().cloned().collect()
}

/// The checks that need only one stream: order, duplicates, and the watcher's filter.
fn check_stream(watcher: &WatchStream, violations: &mut Vec<WatchViolation>) {
    let mut seen: HashMap<(i64, &[u8]), usize> = HashMap::new();
    let mut previous: Option<i64> = None;
    for (position, event) in watcher.events.iter().enumerate() {
        let before_start = watcher.start_revision.is_some_and(|start| event.revision < start);
        if before_start || !event.key.starts_with(&watcher.prefix) {
            violations.push(WatchViolation::OutsideFilter {
                watcher: watcher.name.clone(),
                position,
                revision: event.revision,
                key: event.key.clone(),
            });
        }
        if let Some(previous_revision) = previous.filter(|&previous_revision| event.revision < previous_revision) {
            violations.push(WatchViolation::OutOfOrder {
                watcher: watcher.name.clone(),
                position,
                previous_revision,
                revision: event.revision,
                key: event.key.clone(),
            });
        }
        previous = Some(event.revision);
        if let Some(&first_position) = seen.get(&(event.revision, event.key.as_slice())) {
            violations.push(WatchViolation::Duplicate {
                watcher: watcher.name.clone(),
                revision: event.revision,
                key: event.key.clone(),
                first_position,
                second_position: position,
            });
        } else {
            seen.insert((event.revision, event.key.as_slice()), position);
        }
    }
}

impl Display for Change {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Put(value) => write!(formatter, "put {}", Shown(value)),
            Change::Delete => write!(formatter, "delete"),
        }
    }
}

impl Display for WatchViolation {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WatchViolation::OutOfOrder { watcher, position, previous_revision, revision, key } => write!(
                formatter,
                "{watcher}: event {position} (key {}) has revision {revision}, after revision {previous_revision}",
                Shown(key)
            ),
            WatchViolation::Duplicate { watcher, revision, key, first_position, second_position } => write!(
                formatter,
                "{watcher}: key {} at revision {revision} delivered twice, as events {first_position} and {second_position}",
                Shown(key)
            ),
            WatchViolation::OutsideFilter { watcher, position, revision, key } => write!(
                formatter,
                "{watcher}: event {position} (key {} at revision {revision}) is outside the watcher's prefix or start",
                Shown(key)
            ),
            WatchViolation::Disagreement { revision, key, first_source, first, second_source, second } => write!(
                formatter,
                "key {} at revision {revision}: {first_source} says {first}, {second_source} says {second}",
                Shown(key)
            ),
            WatchViolation::WriteMismatch { watcher, revision, key, acknowledged, delivered } => write!(
                formatter,
                "{watcher}: key {} at revision {revision} delivered as {delivered}, but the acknowledged write was {acknowledged}",
                Shown(key)
            ),
            WatchViolation::Gap { watcher, revision, key, change, known_from } => write!(
                formatter,
                "{watcher}: missed {change} of key {} at revision {revision} (known from {known_from})",
                Shown(key)
            ),
        }
    }
}

#[cfg(test)]
mod tests;
