//! The sequential specification of one key: what each operation does to a [`KvState`] and may answer.

use super::{KvInput, KvOutput, KvState, LastChange, Shown};
use crate::linearizability::Model;

/// The key-value model; see the [module documentation](super).
#[derive(Debug, Clone, Copy, Default)]
pub struct KvModel;

impl Model for KvModel {
    type State = KvState;
    type Input = KvInput;
    type Output = KvOutput;
    type Partition = Vec<u8>;

    fn init(&self) -> KvState {
        KvState::default()
    }

    fn step(&self, state: &KvState, input: &KvInput, output: &KvOutput) -> Option<KvState> {
        let last = state.last_change;
        // A change at `revision` (None: not recorded) leaving `value`.
        let change = |value: Option<Vec<u8>>, revision: Option<i64>| {
            revision
                .is_none_or(|revision| last.precedes(revision))
                .then(|| KvState { value, last_change: last.then(revision) })
        };
        // A response that changed nothing, reporting store revision `revision`.
        let unchanged = |revision: Option<i64>| {
            revision.is_none_or(|revision| last.allows_response(revision)).then(|| state.clone())
        };
        match (input, output) {
            (KvInput::Get { .. }, KvOutput::Unknown) => Some(state.clone()),
            (KvInput::Get { .. }, KvOutput::Get { value, mod_revision }) => {
                if *value != state.value {
                    return None;
                }
                match (value, *mod_revision, last) {
                    (None, _, _) | (_, None, _) => Some(state.clone()),
                    (Some(_), Some(read), LastChange::At(known)) => (read == known).then(|| state.clone()),
                    // The write's revision was not recorded; the read tells it.
                    (Some(_), Some(read), LastChange::After(floor)) => {
                        (read > floor).then(|| KvState { value: value.clone(), last_change: LastChange::At(read) })
                    }
                }
            }
            (KvInput::Put { value, .. }, KvOutput::Unknown) => change(Some(value.clone()), None),
            (KvInput::Put { value, .. }, KvOutput::Put { revision }) => change(Some(value.clone()), *revision),
            (KvInput::Delete { .. }, KvOutput::Unknown) => match state.value {
                None => Some(state.clone()),
                Some(_) => change(None, None),
            },
            (KvInput::Delete { .. }, KvOutput::Delete { deleted, revision }) => match (&state.value, deleted) {
                (None, 0) => unchanged(*revision),
                (Some(_), 1) => change(None, *revision),
                _ => None,
            },
            (KvInput::Cas { expected, new, .. }, KvOutput::Unknown) => match state.value == *expected {
                true => change(Some(new.clone()), None),
                false => Some(state.clone()),
            },
            (KvInput::Cas { expected, new, .. }, KvOutput::Cas { succeeded, revision }) => {
                match (state.value == *expected, succeeded) {
                    (true, true) => change(Some(new.clone()), *revision),
                    (false, false) => unchanged(*revision),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// Revisions only grow, so an answer that names a revision the key has moved past stays impossible.
    fn impossible_from(&self, state: &KvState, _input: &KvInput, output: &KvOutput) -> bool {
        let last = state.last_change;
        match output {
            KvOutput::Get { value: Some(value), mod_revision: Some(read) } => match last {
                LastChange::At(known) => known > *read || known == *read && state.value.as_ref() != Some(value),
                LastChange::After(floor) => floor >= *read,
            },
            KvOutput::Put { revision: Some(revision) }
            | KvOutput::Delete { deleted: 1, revision: Some(revision) }
            | KvOutput::Cas { succeeded: true, revision: Some(revision) } => !last.precedes(*revision),
            KvOutput::Delete { deleted: 0, revision: Some(revision) }
            | KvOutput::Cas { succeeded: false, revision: Some(revision) } => !last.allows_response(*revision),
            _ => false,
        }
    }

    fn partition(&self, input: &KvInput) -> Vec<u8> {
        input.key().to_vec()
    }

    fn describe_partition(&self, partition: &Vec<u8>) -> String {
        format!("key {}", Shown(partition))
    }
}

impl LastChange {
    /// The revision the last change is at, or after.
    fn floor(self) -> i64 {
        match self {
            LastChange::At(revision) | LastChange::After(revision) => revision,
        }
    }

    /// Whether a change at `revision` can come after this one.
    fn precedes(self, revision: i64) -> bool {
        revision > self.floor()
    }

    /// Whether a response reporting store revision `revision` can come after this change.
    fn allows_response(self, revision: i64) -> bool {
        match self {
            LastChange::At(known) => revision >= known,
            LastChange::After(floor) => revision > floor,
        }
    }

    /// The last change once a change at `revision` (None: not recorded) follows this one.
    fn then(self, revision: Option<i64>) -> LastChange {
        revision.map_or(LastChange::After(self.floor()), LastChange::At)
    }
}
