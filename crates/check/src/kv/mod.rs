//! The model of etcd's key-value store as a set of independent registers, one per key.
//!
//! Operations: Get, Put, Delete, and a compare-and-set transaction (etcd's `Txn` comparing the key's value,
//! or its absence through `create_revision == 0`, then putting). Every key is its own partition.
//!
//! Revisions are optional. When a client records them (the `header.revision` of a response, the
//! `mod_revision` of a read key), the model also checks that a read returns the revision of the write
//! that produced its value, that the changes to a key have increasing revisions, and that no response
//! reports a revision older than the key's last change. A change whose revision was not recorded leaves
//! only a lower bound ([`LastChange::After`]) until a read reveals it. Recording revisions also makes
//! the search much faster: an answer naming a revision the key has moved past can never become possible,
//! which lets the search abandon a wrong order at once.
//!
//! Histories with many unknown outcomes are decided much faster after [`patch_unknown_outcomes`].

mod model;
mod patch;

pub use model::KvModel;
pub use patch::patch_unknown_outcomes;

use crate::history::Operation;
use std::fmt::{self, Debug};

/// One key-value operation, as recorded by a client.
pub type KvOperation = Operation<KvInput, KvOutput>;

/// What a client asked for.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum KvInput {
    Get {
        key: Vec<u8>,
    },
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        key: Vec<u8>,
    },
    /// Put `new` if the key's value is `expected` (`None`: if the key is absent).
    Cas {
        key: Vec<u8>,
        expected: Option<Vec<u8>>,
        new: Vec<u8>,
    },
}

impl KvInput {
    pub fn get(key: impl Into<Vec<u8>>) -> Self {
        KvInput::Get { key: key.into() }
    }

    pub fn put(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        KvInput::Put { key: key.into(), value: value.into() }
    }

    pub fn delete(key: impl Into<Vec<u8>>) -> Self {
        KvInput::Delete { key: key.into() }
    }

    pub fn cas(key: impl Into<Vec<u8>>, expected: Option<&[u8]>, new: impl Into<Vec<u8>>) -> Self {
        KvInput::Cas { key: key.into(), expected: expected.map(<[u8]>::to_vec), new: new.into() }
    }

    pub fn key(&self) -> &[u8] {
        match self {
            KvInput::Get { key } | KvInput::Put { key, .. } | KvInput::Delete { key } | KvInput::Cas { key, .. } => key,
        }
    }
}

/// What came back. Revisions are `None` when the client did not record them.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum KvOutput {
    /// The key's value (`None`: absent) and, when present, the revision that last modified it.
    Get { value: Option<Vec<u8>>, mod_revision: Option<i64> },
    /// The store revision of the put (the response's `header.revision`).
    Put { revision: Option<i64> },
    /// How many keys were deleted (0 or 1), and the response's `header.revision`.
    Delete { deleted: u64, revision: Option<i64> },
    /// Whether the comparison held, and the response's `header.revision`.
    Cas { succeeded: bool, revision: Option<i64> },
    /// No answer came: the operation may or may not have taken effect.
    Unknown,
}

impl KvOutput {
    pub fn get(value: Option<&[u8]>) -> Self {
        KvOutput::Get { value: value.map(<[u8]>::to_vec), mod_revision: None }
    }

    pub fn put() -> Self {
        KvOutput::Put { revision: None }
    }

    pub fn delete(deleted: u64) -> Self {
        KvOutput::Delete { deleted, revision: None }
    }

    pub fn cas(succeeded: bool) -> Self {
        KvOutput::Cas { succeeded, revision: None }
    }
}

impl KvOperation {
    /// A key-value operation whose answer never came.
    pub fn unknown(client: u64, input: KvInput, call_time: u64) -> Self {
        Operation::unfinished(client, input, KvOutput::Unknown, call_time)
    }
}

/// One key's register: its value, and what is known of the revision of its last change.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct KvState {
    pub value: Option<Vec<u8>>,
    pub last_change: LastChange,
}

/// What is known of the revision of a key's last change: the put that wrote its value, or the delete
/// that removed it. Either way it only grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LastChange {
    /// Exactly this revision.
    At(i64),
    /// Some revision after this one (the change's revision was not recorded).
    After(i64),
}

/// Before the first change: etcd's revisions start at 1.
impl Default for LastChange {
    fn default() -> Self {
        LastChange::After(0)
    }
}

/// The changes the history's acknowledged writes made, as watch events: every put with a recorded
/// revision, every delete that deleted the key, every compare-and-set that succeeded. Writes whose
/// answer never came, or whose revision was not recorded, are left out.
pub fn acknowledged_writes(history: &[KvOperation]) -> Vec<crate::watch::Event> {
    use crate::watch::{Change, Event};
    let mut writes = Vec::new();
    for op in history {
        let change = match (&op.input, &op.output) {
            (KvInput::Put { value, .. }, KvOutput::Put { revision: Some(revision) }) => {
                (Change::Put(value.clone()), *revision)
            }
            (KvInput::Delete { .. }, KvOutput::Delete { deleted: 1, revision: Some(revision) }) => {
                (Change::Delete, *revision)
            }
            (KvInput::Cas { new, .. }, KvOutput::Cas { succeeded: true, revision: Some(revision) }) => {
                (Change::Put(new.clone()), *revision)
            }
            _ => continue,
        };
        writes.push(Event { revision: change.1, key: op.input.key().to_vec(), change: change.0 });
    }
    writes
}

/// Bytes shown as a quoted string, escaping what is not printable ASCII.
pub(crate) struct Shown<'a>(pub &'a [u8]);

impl Debug for Shown<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "\"{}\"", self.0.escape_ascii())
    }
}

impl fmt::Display for Shown<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        Debug::fmt(self, formatter)
    }
}

/// `@5` after a value when its revision is known.
struct AtRevision(Option<i64>);

impl Debug for AtRevision {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(revision) => write!(formatter, "@{revision}"),
            None => Ok(()),
        }
    }
}

fn optional(value: &Option<Vec<u8>>) -> String {
    match value {
        Some(value) => format!("{}", Shown(value)),
        None => "absent".to_string(),
    }
}

impl Debug for KvInput {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvInput::Get { key } => write!(formatter, "get({})", Shown(key)),
            KvInput::Put { key, value } => write!(formatter, "put({}, {})", Shown(key), Shown(value)),
            KvInput::Delete { key } => write!(formatter, "delete({})", Shown(key)),
            KvInput::Cas { key, expected, new } => {
                write!(formatter, "cas({}, if {} then {})", Shown(key), optional(expected), Shown(new))
            }
        }
    }
}

impl Debug for KvOutput {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvOutput::Get { value, mod_revision } => {
                write!(formatter, "{}{:?}", optional(value), AtRevision(*mod_revision))
            }
            KvOutput::Put { revision } => write!(formatter, "ok{:?}", AtRevision(*revision)),
            KvOutput::Delete { deleted, revision } => write!(formatter, "deleted {deleted}{:?}", AtRevision(*revision)),
            KvOutput::Cas { succeeded: true, revision } => write!(formatter, "succeeded{:?}", AtRevision(*revision)),
            KvOutput::Cas { succeeded: false, revision } => write!(formatter, "failed{:?}", AtRevision(*revision)),
            KvOutput::Unknown => write!(formatter, "unknown"),
        }
    }
}

impl Debug for KvState {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.last_change {
            LastChange::At(revision) => write!(formatter, "{}@{revision}", optional(&self.value)),
            LastChange::After(0) => write!(formatter, "{}", optional(&self.value)),
            LastChange::After(revision) => write!(formatter, "{}@>{revision}", optional(&self.value)),
        }
    }
}

#[cfg(test)]
mod random_tests;
#[cfg(test)]
mod tests;
